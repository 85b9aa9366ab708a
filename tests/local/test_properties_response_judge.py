"""The local backend's verdict on an `llm` (response) test (scenario.judge_response), over
generated responses and examples: any unicode, empty texts, examples of one kind or both, up to
the platform's five per kind. What a user relies on: a response that is one of the success
examples (and shares nothing with the failures) passes; one that is a failure example (and shares
nothing with the successes) fails; with nothing to judge by it fails saying why; swapping the
examples' kinds never makes both verdicts passes; a verdict always says the closeness it used.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from voicelab.local.scenario import judge_response

words = st.text(alphabet=st.characters(categories=("L", "N")), min_size=1, max_size=8)
sentences = st.lists(words, min_size=1, max_size=8).map(" ".join)
texts = st.one_of(sentences, st.text(max_size=30))


def examples(kind: str, responses: list[str]) -> list[dict]:
    return [{"response": r, "type": kind} for r in responses]


def disjoint(a: str, b: str) -> bool:
    import re

    return not set(re.findall(r"[^\W_]+", a.casefold())) & set(re.findall(r"[^\W_]+", b.casefold()))


@given(st.lists(sentences, min_size=1, max_size=5), st.lists(sentences, max_size=5), st.data())
def test_a_response_that_is_a_success_example_passes(successes, failures, data):
    response = data.draw(st.sampled_from(successes))
    if not all(disjoint(response, f) for f in failures):
        return
    passed, why = judge_response({"success_examples": examples("success", successes),
                                  "failure_examples": examples("failure", failures)}, response)
    assert passed, why
    assert "closest success example 1.00" in why


@given(st.lists(sentences, max_size=5), st.lists(sentences, min_size=1, max_size=5), st.data())
def test_a_response_that_is_a_failure_example_fails(successes, failures, data):
    response = data.draw(st.sampled_from(failures))
    if not all(disjoint(response, s) for s in successes):
        return
    passed, why = judge_response({"success_examples": examples("success", successes),
                                  "failure_examples": examples("failure", failures)}, response)
    assert not passed, why


@given(texts, st.sampled_from(["", "The agent is kind", "Ist der Agent höflich?"]))
def test_nothing_to_judge_by_is_a_failure_that_says_why(response, condition):
    passed, why = judge_response({"success_condition": condition}, response)
    assert not passed and "without a model" in why


@given(texts, st.lists(texts, min_size=1, max_size=5), st.lists(texts, min_size=1, max_size=5))
def test_swapping_the_examples_never_passes_both_ways(response, a, b):
    one, why = judge_response({"success_examples": examples("success", a),
                               "failure_examples": examples("failure", b)}, response)
    other, why_other = judge_response({"success_examples": examples("success", b),
                                       "failure_examples": examples("failure", a)}, response)
    assert not (one and other), (why, why_other)
    assert "word overlap" in why and "word overlap" in why_other


@given(texts, st.sampled_from(["refund", "Kündigung", "直"]))
def test_a_condition_in_the_grammar_is_judged_on_the_words(response, phrase):
    passed, why = judge_response({"success_condition": f'The agent says "{phrase}".',
                                  "success_examples": examples("success", [response])}, response)
    assert passed == (phrase.casefold() in response.casefold()), why
