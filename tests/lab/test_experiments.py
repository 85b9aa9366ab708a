"""Experiments: variants compared with confidence, gates that fail CI, mutants that prove a suite
can fail. The statistics are checked against published values; the runs are real batches on the
local backend; the CLI is `voicelab` as a user types it."""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path

import pytest
import xmlschema
import yaml

from voicelab.lab import stats
from voicelab.lab.compare import decide, load_side, persona_comparison
from voicelab.lab.experiment import load_experiment, run_experiment
from voicelab.lab.store import RunStore
from voicelab.lab.tables import load_runs
from voicelab.spec.errors import DatasetError
from voicelab.surfaces.cli.main import main

from ..asserts import failing
from ..conftest import AGENTS, PERSONAS

ROOT = Path(__file__).resolve().parents[2]
FORGETS = ROOT / "experiments" / "agents" / "chargeback-forgets-reason.yaml"
SCHEMA = Path(__file__).resolve().parents[1] / "schemas" / "junit.xsd"


# --------------------------------------------------------------------------- statistics


def test_wilson_intervals_match_newcombes_table():
    """Newcombe (1998), Statistics in Medicine 17:857, table I, method 3 (Wilson score)."""
    assert stats.wilson(81, 263) == pytest.approx((0.2553, 0.3662), abs=5e-5)
    assert stats.wilson(15, 148) == pytest.approx((0.0624, 0.1605), abs=5e-5)
    assert stats.wilson(0, 20) == pytest.approx((0.0, 0.1611), abs=5e-5)
    assert all(math.isnan(v) for v in stats.wilson(0, 0))


def test_fishers_exact_test_matches_the_lady_tasting_tea():
    """Fisher's own example: 3 of 4 cups right each way; one-sided p = 17/70, two-sided 34/70."""
    assert stats.exact_p(3, 4, 1, 4, alternative="greater") == pytest.approx(17 / 70)
    assert stats.exact_p(3, 4, 1, 4) == pytest.approx(34 / 70)
    assert stats.exact_p(5, 5, 0, 5, alternative="greater") == pytest.approx(1 / 252)  # 1 / C(10, 5)
    assert math.isnan(stats.exact_p(0, 0, 1, 1))


def brute_power(p_high: float, p_low: float, n: int) -> float:
    """Power of the one-sided Fisher test by brute force: scipy's test on every table of n calls a
    side, weighted by its binomial probability (what stats.fisher_power computes faster)."""
    from scipy import stats as sps

    return sum(sps.binom.pmf(x, n, p_high) * sps.binom.pmf(y, n, p_low)
               for x in range(n + 1) for y in range(n + 1)
               if stats.below_alpha(sps.fisher_exact([[x, n - x], [y, n - y]], alternative="greater").pvalue))


def test_calls_needed_is_the_smallest_n_an_exact_fisher_test_detects():
    """3/3 against 0/3 is one-sided p = 1/20, not below 0.05 (the normal approximation said 2 calls
    per side would do); 4/4 against 0/4 is 1/70. Every n below the answer has under 80% power."""
    assert stats.exact_p(3, 3, 0, 3, alternative="greater") == pytest.approx(1 / 20)
    assert stats.calls_needed(1.0, 0.0) == 4 == stats.calls_needed(0.0, 1.0)
    n = stats.calls_needed(1.0, 0.5)
    assert brute_power(1.0, 0.5, n) >= 0.8 > max(brute_power(1.0, 0.5, m) for m in range(2, n))
    assert stats.fisher_power(0.9, 0.4, 12) == pytest.approx(brute_power(0.9, 0.4, 12), abs=1e-12)
    assert stats.calls_needed(0.9, 0.9) is None
    assert stats.calls_needed(0.9, 0.88) == stats.MAX_CALLS + 1
    assert stats.needed_text(stats.MAX_CALLS + 1) == f"more than {stats.MAX_CALLS}"


def test_bootstrap_difference_of_latency_quantiles():
    base = [100.0 + i for i in range(50)]
    slow = [v + 600 for v in base]
    estimate, low, high = stats.bootstrap_difference(base, slow, 95)
    assert estimate == pytest.approx(600) and low <= 600 <= high and high - low < 60
    assert stats.bootstrap_difference([5.0, 5.0], [7.0, 7.0], 50) == (2.0, 2.0, 2.0)  # no spread, no doubt
    assert all(math.isnan(v) for v in stats.bootstrap_difference([], [1.0], 50))
    assert stats.bootstrap_difference(base, slow, 95) == (estimate, low, high)  # seeded: reproducible


# --------------------------------------------------------------------------- experiment files


def write_experiment(folder: Path, **fields) -> Path:
    body = {"id": "exp", "personas": ["anna-double-charge", "sven-wrong-person"], "repeats": 2,
            "personas_path": str(PERSONAS), "agents_path": str(AGENTS),
            "variants": [{"id": "as-written"}, {"id": "forgets-reason", "agent_file": str(FORGETS)}], **fields}
    path = folder / "exp.yaml"
    path.write_text(yaml.safe_dump(body), encoding="utf-8")
    return path


@pytest.mark.parametrize(("fields", "message"), [
    ({"variants": [{"id": "only-one"}]}, "variants"),
    ({"variants": [{"id": "a"}, {"id": "a"}]}, "variant id 'a' is used twice"),
    ({"variants": [{"id": "a"}, {"id": "b", "agent_file": "missing.yaml"}]}, "agent file missing.yaml not found"),
    ({"variants": [{"id": "a"}, {"id": "b", "branch_id": "br_1"}]}, "use them with backend: elevenlabs"),
    ({"repeats": 0}, "repeats"),
    ({"colour": "blue"}, "unknown key"),
])
def test_a_bad_experiment_file_is_one_clear_error(tmp_path: Path, fields: dict, message: str):
    with pytest.raises(DatasetError) as error:
        load_experiment(write_experiment(tmp_path, **fields))
    assert message in str(error.value) and "exp.yaml" in str(error.value)


def test_the_cli_refuses_a_bad_experiment_with_exit_2(tmp_path: Path, capsys):
    assert main(["experiment", str(write_experiment(tmp_path, variants=[{"id": "a"}]))]) == 2
    err = capsys.readouterr().err
    assert err.startswith("voicelab: error:") and "Traceback" not in err


def test_an_experiment_interleaves_variants_in_one_resumable_run(tmp_path: Path):
    """Variant innermost; every result names its variant and reached its own agent copy; a
    cancelled run resumes without placing any call twice."""
    path = write_experiment(tmp_path)
    cancel = threading.Event()

    def cancel_after_two_results() -> None:  # as Ctrl+C would, once some calls are stored
        calls = tmp_path / "runs" / "e1" / "calls.jsonl"
        while not cancel.wait(0.02):
            if calls.exists() and calls.read_text().count("\n") >= 2:
                cancel.set()

    threading.Thread(target=cancel_after_two_results, daemon=True).start()
    first = run_experiment(path, run_id="e1", runs_root=str(tmp_path / "runs"), concurrency=1, progress=False,
                           cancel_event=cancel)
    done_first = {r.call_id for r in first.results if r.end_reason != "cancelled"}
    assert first.interrupted and 0 < len(done_first) < 8
    from voicelab.lab.batch import resume_batch

    second = resume_batch("e1", runs_root=str(tmp_path / "runs"), progress=False)
    assert not second.interrupted
    results = second.results
    assert sorted(r.call_id for r in results) == sorted(
        f"{v}/{p}#{n}" for v in ("as-written", "forgets-reason") for p in ("anna-double-charge", "sven-wrong-person")
        for n in (1, 2))
    run = RunStore(tmp_path / "runs").open("e1")
    placed = [json.loads(line)["call_id"] for line in run.calls_path.read_text().splitlines()]
    finished = [c for c in placed if c in done_first]
    assert len(finished) == len(set(finished)), "a finished call was placed again"
    order = [json.loads(line)["call_id"] for line in run.calls_path.read_text().splitlines()][:4]
    assert [c.split("/")[0] for c in order[:2]] == ["as-written", "forgets-reason"], "variants interleave"
    for r in results:
        assert r.variant == r.call_id.split("/")[0] and r.agent_id == f"chargeback--{r.variant}"
    anna = {r.variant: r for r in results if r.persona_id == "anna-double-charge"}
    assert anna["as-written"].success and not anna["forgets-reason"].success
    assert failing(anna["forgets-reason"]) == ["agent_says: duplicate charge"]
    manifest = run.manifest
    assert manifest.kind == "experiment" and [v.id for v in manifest.variants] == ["as-written", "forgets-reason"]
    assert len(manifest.sessions) == 2 and manifest.sessions[1].resumed


def test_a_variant_with_more_latency_answers_later_and_overrides_reach_the_agent(tmp_path: Path):
    path = write_experiment(tmp_path, personas=["kevin-in-a-hurry"], repeats=1, variants=[
        {"id": "fast"}, {"id": "slow", "latency_ms": 400},
        {"id": "greets", "overrides": {"first_message": "Good morning {{first_name}}, Northbank here."}}])
    outcome = run_experiment(path, run_id="lat", runs_root=str(tmp_path / "runs"), progress=False)
    by = {r.variant: r for r in outcome.results}
    fast, slow = (max(by[v].metrics.response_latency_ms) for v in ("fast", "slow"))
    assert slow >= fast + 350
    assert by["greets"].transcript[0].text.startswith("Good morning Kevin, Northbank here.")


# --------------------------------------------------------------------------- compare and gates


@pytest.fixture(scope="module")
def experiment_run(tmp_path_factory) -> Path:
    """anna x 5 repeats: 5/5 against 0/5 is Fisher p = 1/252 one-sided; sven passes both."""
    folder = tmp_path_factory.mktemp("exp")
    path = write_experiment(folder, repeats=5, variants=[
        {"id": "as-written"}, {"id": "forgets-reason", "agent_file": str(FORGETS)}, {"id": "again"},
        {"id": "slow", "latency_ms": 300}])
    run_experiment(path, run_id="cmp", runs_root=str(folder / "runs"), progress=False)
    return folder / "runs"


def test_compare_finds_the_regression_and_names_the_check(experiment_run: Path):
    base, cand = load_side("cmp:as-written", experiment_run), load_side("cmp:forgets-reason", experiment_run)
    table = persona_comparison(base, cand).set_index("persona_id")
    anna = table.loc["anna-double-charge"]
    assert (anna["base_passed"], anna["cand_passed"]) == (5, 0)
    assert anna["p_value"] == pytest.approx(2 / 252) and anna["regression"]
    assert anna["newly_failing"] == "agent_says: duplicate charge"
    sven = table.loc["sven-wrong-person"]
    assert not sven["significant"] and sven["p_value"] == 1.0
    decision = decide(base, cand)
    assert decision.worse and "one-sided Fisher p = 0.0163" in decision.reasons[0]


def test_compare_fail_if_worse_exits_1_on_worse_and_0_on_equal(experiment_run: Path, capsys):
    common = ["--runs", str(experiment_run), "--no-report", "--fail-if-worse"]
    assert main(["compare", "cmp:as-written", "cmp:forgets-reason", *common]) == 1
    out = capsys.readouterr().out
    assert "cmp:forgets-reason vs cmp:as-written: WORSE" in out and "REGRESSION" in out
    assert main(["compare", "cmp:as-written", "cmp:again", *common]) == 0
    out = capsys.readouterr().out
    assert "not worse" in out and "no difference seen" in out
    assert main(["compare", "cmp:as-written", "cmp:slow", *common]) == 1  # p95 latency beyond 100 ms
    assert "p95 latency" in capsys.readouterr().out
    assert main(["compare", "cmp:as-written", "cmp:slow", *common, "--latency-margin-ms", "5000"]) == 0
    capsys.readouterr()
    assert main(["compare", "cmp", "cmp:again", *common]) == 2  # an experiment run needs its variant
    assert "compare one of them, e.g. cmp:as-written" in capsys.readouterr().err


def test_compare_writes_its_report_through_the_compare_notebook(experiment_run: Path, tmp_path: Path, capsys):
    assert main(["compare", "cmp:as-written", "cmp:forgets-reason", "--runs", str(experiment_run),
                 "--reports", str(tmp_path)]) == 0  # without --fail-if-worse: a report, not a gate
    page = (tmp_path / "compare-cmp_as-written-vs-cmp_forgets-reason.html").read_text()
    assert "is worse than" in page and "Fisher" in page and "Wilson" in page and "vl-regression" in page
    assert page.count('class="vl-chart"') == 2 and "<script" not in page


def test_compare_a_run_against_itself_writes_its_report_and_passes_the_gate(experiment_run: Path, tmp_path: Path,
                                                                            capsys):
    """`compare RUN RUN`: the same label on both sides once broke the pass-rate chart (duplicate
    index labels); the sides are told apart and the gate passes."""
    assert main(["compare", "cmp:as-written", "cmp:as-written", "--runs", str(experiment_run),
                 "--reports", str(tmp_path), "--fail-if-worse"]) == 0
    out = capsys.readouterr().out
    assert "cmp:as-written vs cmp:as-written: not worse" in out and "not written" not in out
    page = (tmp_path / "compare-cmp_as-written-vs-cmp_as-written.html").read_text()
    assert "is not worse than" in page and page.count('class="vl-chart"') == 2
    assert "cmp:as-written (baseline)" in page and "cmp:as-written (candidate)" in page


def test_compare_fail_if_worse_fails_when_one_persona_fails_every_call_it_passed(tmp_path: Path, capsys):
    """anna goes from 3/3 to 0/3 (Fisher p = 0.1) among four personas that pass throughout: the
    pooled 15/15 against 12/15 is no significant drop, yet no user would ship it. The gate fails,
    naming anna and the check that newly fails."""
    path = write_experiment(tmp_path, repeats=3, personas=[
        "anna-double-charge", "sven-wrong-person", "kevin-in-a-hurry", "tomasz-merchant-refunded",
        "olga-credit-question"])
    run_experiment(path, run_id="one", runs_root=str(tmp_path / "runs"), progress=False)
    assert main(["compare", "one:as-written", "one:forgets-reason", "--runs", str(tmp_path / "runs"), "--no-report",
                 "--fail-if-worse"]) == 1
    out = capsys.readouterr().out
    base, cand = load_side("one:as-written", tmp_path / "runs"), load_side("one:forgets-reason", tmp_path / "runs")
    overall = persona_comparison(base, cand).iloc[0]
    assert (overall["base_passed"], overall["cand_passed"]) == (15, 12) and not stats.below_alpha(overall["p_worse"])
    assert "one:forgets-reason vs one:as-written: WORSE" in out
    assert ("worse: persona anna-double-charge: 3/3 -> 0/3 passed (it passed every baseline call and fails every "
            "candidate call") in out
    assert "checks failing only in the candidate: agent_says: duplicate charge" in out
    decision = decide(base, cand)
    assert decision.personas == ["anna-double-charge"]
    assert decision.newly_failing == {"anna-double-charge": ["agent_says: duplicate charge"]}
    assert main(["compare", "one:forgets-reason", "one:as-written", "--runs", str(tmp_path / "runs"), "--no-report",
                 "--fail-if-worse"]) == 0  # the other way round it is better, not worse


def test_junit_xml_validates_and_fails_the_broken_variant(experiment_run: Path, tmp_path: Path):
    from voicelab.lab.junit import gate_failures, junit_xml

    tables = load_runs("cmp", root=experiment_run)
    xml = junit_xml(tables)
    xmlschema.XMLSchema(str(SCHEMA)).validate(xml)
    tree = xmlschema.XMLSchema(str(SCHEMA)).to_dict(xml)
    suites = {s["@name"]: s for s in tree["testsuite"]}
    broken = suites["cmp:forgets-reason"]
    assert (broken["@tests"], broken["@failures"]) == (2, 1)
    anna = next(c for c in broken["testcase"] if c["@name"] == "anna-double-charge")
    assert anna["@classname"] == "voicelab.chargeback.forgets-reason"
    failure = anna["failure"][0]
    assert "pass rate 0/5 (0%)" in failure["@message"] and "agent_says: duplicate charge" in failure["@message"]
    assert "agent: " in failure["$"] and "user: " in failure["$"]  # a transcript excerpt
    assert suites["cmp:as-written"]["@failures"] == 0
    assert gate_failures(tables, None) == [
        "forgets-reason/anna-double-charge: 0/5 passed (0%), under its pass_threshold 100%"]
    assert gate_failures(tables, 0.5) == []  # 35 of 40 calls passed
    assert gate_failures(tables, 0.95)[0].startswith("88% of calls succeeded, under --fail-under 95%")


def test_run_gates_honour_a_personas_pass_threshold(tmp_path: Path, capsys):
    """A persona allowed to pass 1 in 2 keeps the gate green; --junit writes the file."""
    personas = yaml.safe_load((PERSONAS / "chargeback.yaml").read_text())
    anna = next(p for p in personas["personas"] if p["id"] == "anna-double-charge")
    anna["expect"]["agent_says"].append("a phrase the agent never says")
    files = tmp_path / "personas.yaml"
    files.write_text(yaml.safe_dump({"personas": [anna]}))
    common = ["run", "--personas", str(files), "--agents", str(AGENTS), "--runs", str(tmp_path / "runs"),
              "--no-report", "--repeats", "2"]
    assert main([*common, "--run-id", "strict", "--junit", str(tmp_path / "j.xml")]) == 1
    assert "gate failed: anna-double-charge: 0/2 passed (0%), under its pass_threshold 100%" in capsys.readouterr().out
    xmlschema.XMLSchema(str(SCHEMA)).validate(str(tmp_path / "j.xml"))
    anna["pass_threshold"] = 0.0
    files.write_text(yaml.safe_dump({"personas": [anna]}))
    assert main([*common, "--run-id", "lenient"]) == 0
    anna["pass_threshold"] = 1.5
    files.write_text(yaml.safe_dump({"personas": [anna]}))
    assert main([*common, "--run-id", "bad"]) == 2
    assert "pass_threshold" in capsys.readouterr().err


# --------------------------------------------------------------------------- mutation testing


@pytest.mark.slow  # two mutation runs (a baseline and two mutants each)
def test_a_mutant_survives_a_weak_persona_file_and_a_strong_one_catches_it(tmp_path: Path):
    from voicelab.lab.mutate import run_mutation, score

    personas = yaml.safe_load((PERSONAS / "chargeback.yaml").read_text())
    anna = next(p for p in personas["personas"] if p["id"] == "anna-double-charge")
    weak = {**anna, "expect": {k: v for k, v in anna["expect"].items() if k != "agent_never_says"}}
    for name, persona in (("weak", weak), ("strong", anna)):
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump({"personas": [persona]}))
        run_mutation("chargeback", str(tmp_path / f"{name}.yaml"), str(AGENTS), run_id=name,
                     runs_root=str(tmp_path / "runs"), only=["forbidden-phrase", "no-end-call"], progress=False)
    weak_score, strong_score = score("weak", str(tmp_path / "runs")), score("strong", str(tmp_path / "runs"))
    assert {m.id.split("-", 1)[1] for m in weak_score.mutants} == {"forbidden-phrase", "no-end-call"}
    forbidden = {m.id.split("-", 1)[1]: m for m in weak_score.mutants}["forbidden-phrase"]
    # no persona lists anything the agent must never say: the agent's own prompt does ("Never ask for
    # a full card number, PIN or security code"), and the survivor says which expectation catches it
    assert not forbidden.caught and forbidden.catch_hint.startswith("agent_never_says: full card number")
    assert "your full card number?" in forbidden.change
    caught = {m.id.split("-", 1)[1]: m for m in strong_score.mutants}["forbidden-phrase"]
    assert caught.caught and caught.caught_by == {"anna-double-charge": ["agent_never_says: card number"]}
    assert strong_score.score == 1.0 and weak_score.score == 0.5


DENTIST = {
    "id": "dentist", "name": "Smile Dental front desk", "language": "en",
    "first_message": "Hello {{first_name}}, this is Smile Dental about your check-up.",
    "prompt": "You are the front desk of Smile Dental. Offer a check-up slot and book it.",
    "flow": {"start": "offer", "steps": {
        "offer": {"say": "We have Tuesday at 10:00. Does that suit you?",
                  "intents": [{"when": ["yes", "tuesday"], "goto": "booked"}]},
        "booked": {"say": "You are booked for Tuesday at 10:00. Goodbye.", "end_call": True}}},
}
PATIENT = {
    "id": "lena-check-up", "name": "Lena Berg", "summary": "Wants her yearly check-up.", "agent": "dentist",
    "variables": {"first_name": "Lena"},
    "caller": {"replies": [{"when": ["suit you"], "say": "Yes, Tuesday is fine."}], "hang_up_after_turns": 4},
    "expect": {"agent_says": ["Tuesday at 10:00"], "agent_never_says": ["insurance number"], "ended_by": "agent"},
}


def test_a_dentist_suite_catches_the_forbidden_phrase_it_listens_for(tmp_path: Path):
    """The forbidden phrase comes from the suite's own agent_never_says, not from a bank: a dental
    practice's suite that must never hear "insurance number" catches a mutant that says it."""
    from voicelab.lab.mutate import run_mutation, score

    (tmp_path / "agents").mkdir()
    (tmp_path / "agents" / "dentist.yaml").write_text(yaml.safe_dump(DENTIST))
    (tmp_path / "patients.yaml").write_text(yaml.safe_dump({"personas": [PATIENT]}))
    run_mutation("dentist", str(tmp_path / "patients.yaml"), str(tmp_path / "agents"), run_id="dental",
                 runs_root=str(tmp_path / "runs"), only=["forbidden-phrase"], progress=False)
    result = score("dental", str(tmp_path / "runs"))
    (mutant,) = result.mutants
    assert "Insurance number?" in mutant.change and "card number" not in mutant.change
    assert mutant.caught and mutant.caught_by == {"lena-check-up": ["agent_never_says: insurance number"]}
    assert result.score == 1.0 and result.failing_original == []


BOOKING = {
    "id": "dentist", "name": "Smile Dental bookings", "language": "en",
    "first_message": "Hello {{first_name}}, this is Smile Dental.",
    "prompt": "You are the front desk of Smile Dental. Book a check-up and give the booking reference.",
    "tools": [{"name": "book_slot", "parameters": {"name": {"type": "string"}}, "required": ["name"],
               "default_mock": {"result": {"ref": "B-17"}}}],
    "flow": {"start": "offer", "steps": {
        "offer": {"say": "Shall I book your check-up for Tuesday at 10:00?",
                  "intents": [{"when": ["yes"], "goto": "book"}]},
        "book": {"call": {"tool": "book_slot", "args": {"name": "{{first_name}}"}, "save": {"booking_ref": "ref"},
                          "on_success": "done", "on_error": "sorry"}},
        "sorry": {"say": "Sorry, the calendar is down. Please call again. Goodbye.", "end_call": True},
        "done": {"say": "Booked for Tuesday at 10:00, {{first_name}}. Your reference is {{booking_ref}}. Goodbye.",
                 "end_call": True}}},
}


def test_every_mutant_is_an_agent_the_loader_takes(tmp_path: Path, capsys):
    """A variable the flow saves later (the booking reference) has no value in the first message
    or in the tool call that saves it: a mutant saying or sending it there would be refused when
    loaded, and `voicelab mutate` once exited 2 (bad input) on the user's valid agent."""
    from voicelab.lab.mutate import mutants
    from voicelab.spec.datasets import load_agent_file, validate_agent

    (tmp_path / "agents").mkdir()
    (tmp_path / "agents" / "dentist.yaml").write_text(yaml.safe_dump(BOOKING))
    patient = {**PATIENT, "caller": {"replies": [{"when": ["shall i book"], "say": "Yes please."}],
                                     "hang_up_after_turns": 4},
               "expect": {"agent_says": ["B-17", "Lena"], "agent_calls": [{"tool": "book_slot",
                                                                             "args": {"name": "Lena"}}]}}
    (tmp_path / "patients.yaml").write_text(yaml.safe_dump({"personas": [patient]}))
    found = mutants(load_agent_file(tmp_path / "agents" / "dentist.yaml"))
    for m in found:
        validate_agent(m.agent, m.id)  # DatasetError for a variable said before the flow sets it
    ids = {m.id.split("-", 1)[1] for m in found}
    assert {"swap-variable-booking-ref", "wrong-arg-book"} <= ids
    assert "swap-variable-first-name" not in ids  # its only partner, booking_ref, has no value in the first message
    wrong = next(m for m in found if m.id.endswith("wrong-arg-book"))
    assert "name={{first_name}}-x" in wrong.change  # not {{booking_ref}}, which the call itself saves
    assert main(["mutate", "--agent", "dentist", "--personas", str(tmp_path / "patients.yaml"), "--agents",
                 str(tmp_path / "agents"), "--runs", str(tmp_path / "runs"), "--no-report", "--json",
                 "--only", "swap-variable", "wrong-arg"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["mutants"] == 2 and figures["caught"] == 2 and figures["not_run"] == []


def test_a_mutant_whose_calls_fail_to_run_is_not_run_rather_than_caught(tmp_path: Path):
    """Calls closed at connection (1008, a missing variable) fail their agent_says checks too, on
    an empty transcript; that is no check noticing the change. Such a mutant is reported apart and
    left out of the score; one whose calls ran and failed a check is caught."""
    from voicelab.lab.mutate import ORIGINAL, score
    from voicelab.lab.store import RunStore
    from voicelab.lab.tables import load_runs
    from voicelab.report.build import mutation_html
    from voicelab.spec.models import CallResult, Check, RunManifest, TranscriptEntry

    variants = [{"id": ORIGINAL}, {"id": "m01-drop-sentence-offer", "mutation": "offer says less"},
                {"id": "m02-swap-variable-name", "mutation": "says {{slot}}"},
                {"id": "m03-slow-step-booked", "mutation": "booked 2 s later"}]
    manifest = RunManifest(run_id="mut", personas=["lena"], agent="dentist", kind="mutation", variants=variants)
    run = RunStore(tmp_path / "runs").create(manifest)

    def call(variant: str, n: int, *, ran: bool, passed: bool) -> CallResult:
        return CallResult(
            conversation_id=None if not ran else f"c-{variant}-{n}", status="completed" if ran else "failed",
            duration_seconds=1.0, transcript=[TranscriptEntry(speaker="agent", text="Hello", timestamp=0.0)] * ran,
            run_id="mut", call_id=f"{variant}/lena#{n}", persona_id="lena", agent_id="dentist", backend="local",
            caller="scripted", mode="text", started_at="2026-01-01T00:00:00Z",
            end_reason="agent_ended" if ran else "error",
            error=None if ran else "websocket closed with 1008: missing dynamic variable 'slot'",
            checks=[Check(name="agent_says: Tuesday at 10:00", passed=passed, detail="")], success=passed and ran,
            variant=variant)

    for n in (1, 2):
        run.append(call(ORIGINAL, n, ran=True, passed=True))
        run.append(call("m01-drop-sentence-offer", n, ran=True, passed=False))  # a check noticed
        run.append(call("m02-swap-variable-name", n, ran=False, passed=False))  # closed at connection
        run.append(call("m03-slow-step-booked", n, ran=True, passed=True))  # nobody noticed
    result = score("mut", str(tmp_path / "runs"))
    assert [m.id for m in result.mutants] == ["m01-drop-sentence-offer", "m03-slow-step-booked"]
    assert result.caught == 1 and result.score == 0.5  # 1 of the 2 that ran, not 2 of 3
    (invalid,) = result.invalid
    assert invalid.id == "m02-swap-variable-name" and not invalid.caught
    assert invalid.not_run == "2 of 2 calls could not run: websocket closed with 1008: missing dynamic variable 'slot'"
    assert result.as_dict()["not_run"] == [{"id": "m02-swap-variable-name", "change": "says {{slot}}",
                                            "why": invalid.not_run}]
    page = mutation_html(load_runs("mut", root=tmp_path / "runs"))
    assert "1 of 2 mutants of dentist caught" in page and "1 mutant is not in the score" in page
    assert "not run" in page and "missing dynamic variable" in page


@pytest.mark.slow
def test_the_experiment_notebook_runs_under_papermill(tmp_path: Path):
    import nbformat
    import papermill

    path = write_experiment(tmp_path, repeats=1)
    out = tmp_path / "experiment.out.ipynb"
    papermill.execute_notebook(str(ROOT / "notebooks" / "experiment.ipynb"), str(out), kernel_name="python3",
                               progress_bar=False, cwd=str(tmp_path),
                               parameters={"experiment_file": str(path), "run_id": "nb",
                                           "runs_root": str(tmp_path / "runs")})
    results = RunStore(tmp_path / "runs").open("nb").results()
    assert sorted(r.call_id for r in results) == sorted(
        f"{v}/{p}#1" for v in ("as-written", "forgets-reason") for p in ("anna-double-charge", "sven-wrong-person"))
    nb = nbformat.read(out, as_version=4)
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    html = "".join(o.get("data", {}).get("text/html", "") for o in outputs)
    text = "".join(o.get("text", "") for o in outputs)
    assert "run nb: 4 calls" in text
    assert "nb:forgets-reason vs nb:as-written" in html and "Fisher" in html
    assert html.count('<img class="vl-chart"') == 2
