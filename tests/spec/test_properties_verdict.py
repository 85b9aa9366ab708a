"""`expect.platform_verdict` over generated verdicts and analyses: any criterion and data ids
(unicode), any values, verdicts the backend gave or left out, an analysis that was never
fetched or came back with an error. What a user relies on: one check per verdict named; each
passes exactly when the backend said that; a verdict nobody fetched is never a pass; the
detail names what the backend said.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from voicelab.spec.checks import checks
from voicelab.spec.models import Expectations, PlatformConversation, TranscriptEntry

ids = st.one_of(st.text(alphabet=st.characters(categories=("L", "N", "P")), min_size=1, max_size=12),
                st.sampled_from(["call_successful", "x: call_successful", "criterion a"]))  # names alike
results = st.sampled_from(["success", "failure"])
values = st.one_of(st.text(max_size=12), st.integers(-5, 5), st.booleans())
TRANSCRIPT = [TranscriptEntry(speaker="agent", text="Hello.", timestamp=0.0)]


@st.composite
def cases(draw):
    overall = draw(st.one_of(st.none(), results))
    criteria = draw(st.dictionaries(ids, results, max_size=4))
    data = draw(st.dictionaries(ids, values, max_size=4))
    # what the backend said: each verdict the same, the other one, or absent
    said_overall = draw(st.sampled_from([overall, "success", "failure", "unknown", None]))
    said_criteria = {k: draw(st.sampled_from([v, "success", "failure", "unknown"])) for k, v in criteria.items()
                     if draw(st.booleans())}
    said_data = {k: draw(st.one_of(st.just(v), values)) for k, v in data.items() if draw(st.booleans())}
    return overall, criteria, data, said_overall, said_criteria, said_data


def run(expect: Expectations, analysis):
    return checks(expect, TRANSCRIPT, duration_s=1.0, end_reason="agent_ended", analysis=analysis)


@given(cases())
def test_each_verdict_passes_exactly_when_the_backend_said_it(case):
    overall, criteria, data, said_overall, said_criteria, said_data = case
    expect = Expectations(platform_verdict={"call_successful": overall, "evaluation_criteria": criteria,
                                            "data_collection": data})
    analysis = PlatformConversation(
        call_successful=said_overall,
        evaluation_criteria_results={k: {"result": v, "rationale": "r"} for k, v in said_criteria.items()},
        data_collection_results={k: {"value": v, "rationale": "r"} for k, v in said_data.items()})
    got = {c.name: c for c in run(expect, analysis)}
    assert len(got) == (overall is not None) + len(criteria) + len(data)
    if overall is not None:
        check = got["platform_verdict: call_successful"]
        assert check.passed == (said_overall == overall), check
        assert f"expected {overall}" in check.detail
    for key, value in criteria.items():
        check = got[f"platform_verdict: criterion {key}"]
        assert check.passed == (said_criteria.get(key) == value), check
    for key, value in data.items():
        check = got[f"platform_verdict: data {key}"]
        said = said_data.get(key)
        assert check.passed == (key in said_data and str(value).strip().lower() == str(said).strip().lower()), check


@given(st.one_of(st.none(), results), st.dictionaries(ids, results, max_size=3), st.booleans())
def test_a_verdict_nobody_fetched_never_passes(overall, criteria, errored):
    expect = Expectations(platform_verdict={"call_successful": overall, "evaluation_criteria": criteria})
    analysis = PlatformConversation(error="fetching the conversation failed: 503") if errored else None
    got = run(expect, analysis)
    assert len(got) == (overall is not None) + len(criteria)
    assert all(not c.passed and c.detail.startswith("not judged") for c in got)


def test_no_verdict_expected_is_no_check():
    assert [c for c in run(Expectations(), None) if c.name.startswith("platform_verdict")] == []
