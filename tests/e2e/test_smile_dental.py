"""Smile Dental, end to end: a user's own agent, personas and experiment, written from the docs.

The agent (tests/e2e/data) books check-ups through a client tool (`check_slots`, answered by the
persona's mock or the agent's `default_mock`), a webhook (`book_appointment`, a real HTTP request
to the clinic's server on 127.0.0.1 with a bearer secret, 200 or 500) whose reference a `save`
puts into `{{booking_ref}}`, and system tools (`transfer_to_number`, `end_call`). Its patients: an
English check-up, an impatient one in pain who is transferred, a Spanish speaker (language `es`,
the agent's Spanish first message), a silent line, and one whose booking the calendar refuses.
Every persona can pass, so a run of them must pass its gates.

Every command is the real CLI in a subprocess (`python -m voicelab.surfaces.cli.main`), run from the user's own
folder, with runs and reports under pytest's tmp path; the service is `voicelab api` on a free
port. Each expectation is what docs/formats.md, docs/api.md or README.md promise; a test marked
xfail asserts documented behaviour the product does not have yet (the reason names the bug).
"""

from __future__ import annotations

import html
import json
import re
import shutil
import signal
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from .conftest import (
    SECRET,
    Clinic,
    Service,
    World,
    http,
    http_json,
    start_service,
    stderr_lines,
)

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

PERSONAS = ["olivia-checkup", "tom-toothache", "lucia-revision", "silent-line", "ben-booking-down"]
FAILING = ["nadia-parking", "hold-music"]
REPEATS = 2
BATCH_RUN = "smile-batch"
GATE_RUN = "smile-gate"
EXPERIMENT_RUN = "smile-experiment"
EXPERIMENT_REPEATS = 3
VARIANTS = ["as-written", "forgets-reference", "slow"]

# docs/formats.md, "CallResult"
CALL_RESULT_FIELDS = {
    "conversation_id", "status", "duration_seconds", "transcript", "run_id", "call_id", "variant", "persona_id",
    "agent_id", "backend", "caller", "mode", "started_at", "end_reason", "error", "metrics", "checks", "success",
    "analysis", "audio_path", "caller_conversation_id", "caller_transcript", "retries", "tool_calls",
}
END_REASONS = {"agent_ended", "caller_ended", "timeout", "disconnected", "error", "cancelled"}
TRANSCRIPT_FIELDS = {"speaker", "text", "timestamp", "latency_ms", "original_text"}
TOOL_CALL_FIELDS = {"tool", "type", "id", "args", "result", "is_error", "at", "latency_ms", "turn"}
METRICS_FIELDS = {"turns", "agent_turns", "user_turns", "response_latency_ms", "interruptions"}
# what the tests look for in reports: every persona and the Spanish persona's own words
UNICODE_TEXTS = ["Lucía", "¿En qué puedo ayudarle?", "número de reserva es SD-5678"]


@dataclass
class Finished:
    """A CLI command that placed calls, and what it left behind."""

    result: Any  # subprocess.CompletedProcess[str]
    run_dir: Path
    junit: Path | None = None
    #: The clinic server's bookings made while this command ran (tests run in any order, and other
    #: commands, mutants among them, book at the same clinic).
    bookings: list = field(default_factory=list)

    def calls(self) -> list[dict]:
        return [json.loads(line) for line in (self.run_dir / "calls.jsonl").read_bytes().decode("utf-8").splitlines()
                if line.strip()]

    def manifest(self) -> dict:
        return json.loads((self.run_dir / "run.json").read_text(encoding="utf-8"))


def explain(result: Any) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-4000:]}"


def personas_folder(world: World, name: str, *files: Path) -> Path:
    """A folder of persona files of the user's (the --personas of a run)."""
    folder = world.home / name
    if not folder.exists():
        folder.mkdir()
        for file in files:
            shutil.copy(file, folder / file.name)
    return folder


def self_contained(page: str) -> list[str]:
    """Scripts, styles, images or frames the page would fetch from the network."""
    return re.findall(r"<(?:script|link|img|iframe|source)\b[^>]*\b(?:src|href)\s*=\s*[\"']?((?:https?:)?//[^\"'\s>]+)",
                      page, flags=re.IGNORECASE)


# ---------------------------------------------------------------------------- fixtures: the runs


@pytest.fixture(scope="module")
def batch(world: World, clinic: Clinic) -> Finished:
    """`voicelab run` over every persona, twice each, with JUnit XML."""
    junit = world.home / "junit-batch.xml"
    before = len(clinic.bookings())
    result = world.voicelab("run", "--personas", str(world.personas), "--agents", str(world.agents),
                            "--repeats", str(REPEATS), "--concurrency", "8", "--run-id", BATCH_RUN,
                            "--junit", str(junit), "--no-report", *world.store())
    return Finished(result, world.runs / BATCH_RUN, junit, clinic.bookings()[before:])


@pytest.fixture(scope="module")
def gate(world: World) -> Finished:
    """`voicelab run` over the personas plus two that cannot pass: the gate must fail."""
    folder = personas_folder(world, "gate-personas", world.personas / "smile-dental.yaml",
                             world.data / "more-personas" / "smile-dental-failing.yaml")
    junit = world.home / "junit-gate.xml"
    result = world.voicelab("run", "--personas", str(folder), "--agents", str(world.agents),
                            "--repeats", str(REPEATS), "--concurrency", "8", "--run-id", GATE_RUN,
                            "--junit", str(junit), "--no-report", *world.store())
    return Finished(result, world.runs / GATE_RUN, junit)


@pytest.fixture(scope="module")
def experiment(world: World) -> Finished:
    junit = world.home / "junit-experiment.xml"
    result = world.voicelab("experiment", str(world.data / "experiments" / "smile-dental-reference.yaml"),
                            "--run-id", EXPERIMENT_RUN, "--concurrency", "8", "--junit", str(junit),
                            "--no-report", *world.store())
    return Finished(result, world.runs / EXPERIMENT_RUN, junit)


# ---------------------------------------------------------------------------- voicelab personas


def test_personas_validates_the_users_files(world: World) -> None:
    result = world.voicelab("personas", "--personas", str(world.personas), "--agents", str(world.agents))
    assert result.returncode == 0, explain(result)
    assert "all valid" in result.stdout
    for persona in PERSONAS:
        assert persona in result.stdout


# (file, text in it, replacement, what the one line must name): each a mistake docs/formats.md
# says loading refuses, naming the file, the persona or agent id and the field.
BROKEN = {
    "unknown-key": ("personas/smile-dental.yaml", 'agent_says: ["Tuesday at 10:30"',
                    'agent_sayz: ["Tuesday at 10:30"', ["smile-dental.yaml", "olivia-checkup", "agent_sayz"]),
    "missing-variable": ("personas/smile-dental.yaml", 'phone_number: "+34612345678"', 'telefono: "+34612345678"',
                         ["smile-dental.yaml", "lucia-revision", "phone_number"]),
    "arg-outside-enum": ("personas/smile-dental.yaml", "args: {treatment: checkup}", "args: {treatment: whitening}",
                         ["smile-dental.yaml", "olivia-checkup", "treatment"]),
    "goto-unknown-step": ("agents/smile-dental.yaml", "on_error: booking_failed", "on_error: booking_fail",
                          ["smile-dental.yaml", "smile-dental", "booking_fail"]),
}


def broken_copy(world: World, name: str, file: str, old: str, new: str) -> Path:
    copy = world.home / f"broken-{name}"
    shutil.copytree(world.data, copy)
    path = copy / file
    text = path.read_text(encoding="utf-8")
    assert text.count(old) >= 1, f"{old!r} not in {file}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return copy


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_a_broken_copy_is_refused_in_one_line(world: World, name: str) -> None:
    file, old, new, named = BROKEN[name]
    copy = broken_copy(world, name, file, old, new)
    result = world.voicelab("personas", "--personas", str(copy / "personas"), "--agents", str(copy / "agents"))
    assert result.returncode == 2, explain(result)
    lines = stderr_lines(result)
    assert len(lines) == 1, explain(result)
    assert "Traceback" not in result.stderr
    for word in named:
        assert word in lines[0], f"{word!r} not named in: {lines[0]}"


def test_a_first_message_variable_set_only_later_by_save_is_refused(world: World) -> None:
    copy = broken_copy(world, "early-variable", "agents/smile-dental.yaml",
                       "this is Smile Dental. How can I help you today?",
                       "this is Smile Dental, booking {{booking_ref}}. How can I help you today?")
    result = world.voicelab("personas", "--personas", str(copy / "personas"), "--agents", str(copy / "agents"))
    assert result.returncode == 2, explain(result)
    assert len(stderr_lines(result)) == 1 and "booking_ref" in result.stderr, explain(result)


@dataclass
class NoSecret:
    result: Any
    runs: Path
    bookings_before: int
    bookings_after: int


@pytest.fixture(scope="module")
def no_secret(world: World, clinic: Clinic) -> NoSecret:
    """`voicelab run` without SECRET__CLINIC_TOKEN, which the agent's webhook headers use."""
    env = {name: value for name, value in world.env.items() if name != "SECRET__CLINIC_TOKEN"}
    runs = world.home / "runs-no-secret"
    before = len(clinic.bookings())
    result = world.voicelab("run", "--personas", str(world.personas), "--agents", str(world.agents),
                            "--persona", "olivia-checkup", "--run-id", "no-secret", "--no-report",
                            "--runs", str(runs), "--reports", str(world.reports), env=env)
    return NoSecret(result, runs, before, len(clinic.bookings()))


def test_a_missing_webhook_secret_is_a_settings_error_before_anything_is_placed(no_secret: NoSecret) -> None:
    result = no_secret.result
    assert result.returncode == 2, explain(result)
    lines = stderr_lines(result)
    assert len(lines) == 1 and "SECRET__CLINIC_TOKEN" in lines[0], explain(result)
    assert not (no_secret.runs / "no-secret").exists(), "a run was created although nothing may be placed"
    assert no_secret.bookings_after == no_secret.bookings_before


def test_the_missing_secret_line_names_the_agent(no_secret: NoSecret) -> None:
    assert no_secret.result.returncode == 2
    assert "smile-dental" in no_secret.result.stderr, explain(no_secret.result)


# ---------------------------------------------------------------------------- voicelab run


def test_run_passes_when_every_persona_can_pass(batch: Finished) -> None:
    assert batch.result.returncode == 0, explain(batch.result)
    assert "Traceback" not in batch.result.stderr
    for persona in PERSONAS:
        assert persona in batch.result.stdout


def test_run_stores_one_documented_call_result_per_call(batch: Finished) -> None:
    calls = batch.calls()
    assert sorted(call["call_id"] for call in calls) == sorted(
        f"{persona}#{repeat}" for persona in PERSONAS for repeat in range(1, REPEATS + 1))
    for call in calls:
        where = call["call_id"]
        assert CALL_RESULT_FIELDS <= set(call), f"{where}: missing {CALL_RESULT_FIELDS - set(call)}"
        assert call["run_id"] == BATCH_RUN and call["variant"] is None
        assert call["call_id"].split("#")[0] == call["persona_id"] and call["agent_id"] == "smile-dental"
        assert (call["backend"], call["caller"], call["mode"]) == ("local", "scripted", "text")
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", call["started_at"]), call["started_at"]
        assert call["status"] in {"completed", "failed"} and call["end_reason"] in END_REASONS
        assert call["conversation_id"].startswith("conv_")
        assert isinstance(call["duration_seconds"], float) and call["duration_seconds"] >= 0
        assert METRICS_FIELDS <= set(call["metrics"]), where
        for turn in call["transcript"]:
            assert TRANSCRIPT_FIELDS <= set(turn), f"{where}: {turn}"
            assert turn["speaker"] in {"agent", "user"} and isinstance(turn["text"], str)
        for check in call["checks"]:
            assert set(check) >= {"name", "passed", "detail"} and isinstance(check["passed"], bool)
        for tool_call in call["tool_calls"]:
            assert TOOL_CALL_FIELDS <= set(tool_call), f"{where}: {tool_call}"
            assert tool_call["type"] in {"client", "webhook", "system"}
        assert call["success"] == (call["status"] == "completed" and all(c["passed"] for c in call["checks"]))
        assert call["success"], f"{where} failed: {[c for c in call['checks'] if not c['passed']]}, {call['error']}"


def _by_persona(calls: list[dict], persona: str) -> list[dict]:
    return [call for call in calls if call["persona_id"] == persona]


def _tools(call: dict) -> dict[str, dict]:
    return {tool_call["tool"]: tool_call for tool_call in call["tool_calls"]}


def test_run_every_tool_kind_as_the_patients_world_answered(batch: Finished) -> None:
    calls = batch.calls()
    for call in _by_persona(calls, "olivia-checkup"):
        tools = _tools(call)
        assert tools["check_slots"]["type"] == "client"
        assert tools["check_slots"]["result"] == {"slot": "Tuesday at 10:30", "available": True}  # persona mock
        assert tools["book_appointment"]["type"] == "webhook" and not tools["book_appointment"]["is_error"]
        assert "SD-0123" in json.dumps(tools["book_appointment"]["result"])  # the clinic's real answer, saved
        assert "booking reference is SD-0123" in call["transcript"][-1]["text"]
        assert call["end_reason"] == "agent_ended"
    for call in _by_persona(calls, "ben-booking-down"):
        tools = _tools(call)
        assert tools["check_slots"]["result"] == {"slot": "Monday at 9:00", "available": True}  # default_mock
        assert tools["book_appointment"]["is_error"] is True  # the clinic answered 500
        assert call["status"] == "completed" and call["end_reason"] == "agent_ended"
    for call in _by_persona(calls, "tom-toothache"):
        tools = _tools(call)
        assert tools["transfer_to_number"]["type"] == "system"
        assert set(tools) == {"transfer_to_number"}
        assert call["end_reason"] == "agent_ended"
    for call in _by_persona(calls, "silent-line"):
        assert [turn for turn in call["transcript"] if turn["speaker"] == "user"] == []
        assert call["end_reason"] == "agent_ended" and call["duration_seconds"] < 12
    for call in _by_persona(calls, "lucia-revision"):
        assert call["transcript"][0]["speaker"] == "agent"
        assert call["transcript"][0]["text"].startswith("Hola Lucía")
        assert _tools(call)["book_appointment"]["args"]["patient_name"] == "Lucía"


def test_run_webhook_requests_are_real_and_the_secret_stays_out_of_the_store(batch: Finished,
                                                                            clinic: Clinic) -> None:
    assert batch.result.returncode in (0, 1), explain(batch.result)
    bookings = [booking for booking in batch.bookings if booking.path == "/bookings/+447700900123"]
    assert bookings, "the clinic's server never saw Olivia's booking"
    for booking in bookings:
        assert booking.authorization == f"Bearer {SECRET}"
        assert booking.body == {"slot": "Tuesday at 10:30", "patient_name": "Olivia"}
    for path in batch.run_dir.rglob("*"):
        if path.is_file():
            assert SECRET not in path.read_bytes().decode("utf-8", "replace"), f"the secret is in {path}"
    assert SECRET not in batch.result.stdout + batch.result.stderr


def test_run_manifest(batch: Finished) -> None:
    manifest = batch.manifest()
    assert manifest["run_id"] == BATCH_RUN and manifest["state"] == "finished"
    assert sorted(manifest["personas"]) == sorted(PERSONAS)
    assert manifest["repeats"] == REPEATS and manifest["backend"] == "local" and manifest["mode"] == "text"
    assert manifest["pass_thresholds"] == {persona: 1.0 for persona in PERSONAS}
    assert manifest["persona_info"]["lucia-revision"]["language"] == "es"
    assert [session["calls_stored"] for session in manifest["sessions"]] == [len(PERSONAS) * REPEATS]


def _junit(path: Path) -> ET.Element:
    assert path.exists(), f"no JUnit XML at {path}"
    return ET.parse(path).getroot()


def test_run_junit_xml(batch: Finished) -> None:
    root = _junit(batch.junit)
    assert root.tag == "testsuites"
    [suite] = root.findall("testsuite")
    assert suite.get("name") == BATCH_RUN
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == (str(len(PERSONAS)), "0", "0")
    for attribute in ("skipped", "time", "timestamp"):
        assert suite.get(attribute) is not None
    cases = {case.get("name"): case for case in suite.findall("testcase")}
    assert sorted(cases) == sorted(PERSONAS)
    for case in cases.values():
        assert case.get("classname") == "voicelab.smile-dental"
        assert case.find("failure") is None
        assert f"{REPEATS}/{REPEATS}" in case.findtext("system-out", "")


def test_run_gate_fails_for_the_personas_that_cannot_pass(gate: Finished) -> None:
    assert gate.result.returncode == 1, explain(gate.result)
    assert "Traceback" not in gate.result.stderr
    reasons = [line for line in gate.result.stdout.splitlines() + gate.result.stderr.splitlines()
               if "gate failed" in line]
    assert sorted(reason for persona in FAILING for reason in reasons if persona in reason) == sorted(reasons)
    for persona in FAILING:
        assert any(persona in reason for reason in reasons), f"{persona} not among the reasons: {reasons}"
    assert len(gate.calls()) == (len(PERSONAS) + len(FAILING)) * REPEATS
    suite = _junit(gate.junit).find("testsuite")
    assert suite.get("failures") == str(len(FAILING))
    cases = {case.get("name"): case for case in suite.findall("testcase")}
    assert "free parking" in cases["nadia-parking"].find("failure").get("message")
    assert cases["olivia-checkup"].find("failure") is None
    timeouts = [call for call in _by_persona(gate.calls(), "hold-music")]
    assert {call["end_reason"] for call in timeouts} == {"timeout"}


def test_the_gate_decision_is_printed_before_the_junit_xml_is_written(gate: Finished) -> None:
    out = gate.result.stdout
    assert "gate failed" in out and "JUnit XML" in out, explain(gate.result)
    assert out.index("gate failed") < out.index("JUnit XML"), out


# ---------------------------------------------------------------------------- voicelab report


def test_report_is_one_self_contained_page_with_every_persona(world: World, gate: Finished) -> None:
    assert gate.run_dir.exists(), explain(gate.result)
    result = world.voicelab("report", GATE_RUN, *world.store())
    assert result.returncode == 0, explain(result)
    page_path = world.reports / f"{GATE_RUN}.html"
    assert page_path.exists(), explain(result)
    raw = page_path.read_text(encoding="utf-8")
    assert self_contained(raw) == []
    page = html.unescape(raw)
    for persona in PERSONAS + FAILING:
        assert persona in page, persona
    for text in UNICODE_TEXTS + ["smile-dental", "free parking"]:
        assert text in page, text


def test_a_spanish_persona_is_answered_in_spanish_or_refused(world: World) -> None:
    copy = broken_copy(world, "no-language-override", "agents/smile-dental.yaml", "overrides: [language]\n", "")
    checked = world.voicelab("personas", "--personas", str(copy / "personas"), "--agents", str(copy / "agents"))
    if checked.returncode == 2:  # refused at load, naming the language: also what the docs allow
        assert len(stderr_lines(checked)) == 1 and "language" in checked.stderr
        return
    result = world.voicelab("run", "--personas", str(copy / "personas"), "--agents", str(copy / "agents"),
                            "--persona", "lucia-revision", "--run-id", "no-override", "--no-report",
                            "--runs", str(world.home / "runs-no-override"), "--reports", str(world.reports))
    call = json.loads((world.home / "runs-no-override" / "no-override" / "calls.jsonl").read_text("utf-8"))
    assert call["transcript"][0]["text"].startswith("Hola Lucía"), call["transcript"][0]
    assert result.returncode == 0, explain(result)


# ---------------------------------------------------------------------------- voicelab experiment


def test_experiment_gates_fail_on_the_variant_that_forgets_the_reference(experiment: Finished) -> None:
    result = experiment.result
    assert result.returncode == 1, explain(result)
    assert "Traceback" not in result.stderr
    reasons = [line for line in result.stdout.splitlines() + result.stderr.splitlines() if "gate failed" in line]
    assert sorted(r.split(":")[1].strip() for r in reasons) == [
        "forgets-reference/lucia-revision", "forgets-reference/olivia-checkup"], reasons


def test_experiment_run_is_one_interleaved_run_of_every_variant(experiment: Finished) -> None:
    manifest = experiment.manifest()
    assert manifest["kind"] == "experiment"
    assert [variant["id"] for variant in manifest["variants"]] == VARIANTS
    calls = experiment.calls()
    assert len(calls) == len(VARIANTS) * len(PERSONAS) * EXPERIMENT_REPEATS
    for call in calls:
        variant, rest = call["call_id"].split("/", 1)
        assert variant == call["variant"] and rest.split("#")[0] == call["persona_id"]
    passed = {variant: sum(c["success"] for c in calls if c["variant"] == variant) for variant in VARIANTS}
    assert passed == {"as-written": 15, "forgets-reference": 9, "slow": 15}
    slow = [ms for c in calls if c["variant"] == "slow" for ms in c["metrics"]["response_latency_ms"]]
    assert slow and min(slow) >= 550
    suites = {suite.get("name"): suite for suite in _junit(experiment.junit).findall("testsuite")}
    assert sorted(suites) == sorted(f"{EXPERIMENT_RUN}:{variant}" for variant in VARIANTS)
    assert suites[f"{EXPERIMENT_RUN}:forgets-reference"].get("failures") == "2"
    case = next(c for c in suites[f"{EXPERIMENT_RUN}:forgets-reference"] if c.get("name") == "olivia-checkup")
    assert case.get("classname") == "voicelab.smile-dental.forgets-reference"


# ---------------------------------------------------------------------------- voicelab compare


def compare(world: World, base: str, candidate: str, *options: str) -> Any:
    return world.voicelab("compare", base, candidate, *options, *world.store())


def test_compare_finds_the_broken_variant_worse(world: World, experiment: Finished) -> None:
    assert experiment.run_dir.exists(), explain(experiment.result)
    result = compare(world, f"{EXPERIMENT_RUN}:as-written", f"{EXPERIMENT_RUN}:forgets-reference",
                     "--fail-if-worse", "--no-report")
    assert result.returncode == 1, explain(result)
    assert "Traceback" not in result.stderr
    for text in ("olivia-checkup", "lucia-revision", "booking reference is SD-0123", "número de reserva es SD-5678"):
        assert text in result.stdout, text


def test_compare_finds_the_slow_variant_worse_on_latency(world: World, experiment: Finished) -> None:
    result = compare(world, f"{EXPERIMENT_RUN}:as-written", f"{EXPERIMENT_RUN}:slow", "--fail-if-worse",
                     "--no-report")
    assert result.returncode == 1, explain(result)
    assert "latency" in result.stdout


def test_compare_a_variant_with_itself_is_not_worse(world: World, experiment: Finished) -> None:
    side = f"{EXPERIMENT_RUN}:as-written"
    result = compare(world, side, side, "--fail-if-worse", "--no-report")
    assert result.returncode == 0, explain(result)


def test_compare_a_run_with_itself_writes_its_report(world: World, batch: Finished) -> None:
    result = compare(world, BATCH_RUN, BATCH_RUN, "--fail-if-worse")
    assert result.returncode == 0, explain(result)
    assert "Traceback" not in result.stderr
    page = world.reports / f"compare-{BATCH_RUN}-vs-{BATCH_RUN}.html"
    assert page.exists(), explain(result)
    raw = page.read_text(encoding="utf-8")
    assert self_contained(raw) == []
    assert "lucia-revision" in html.unescape(raw)


def test_compare_an_unknown_variant_is_bad_input(world: World, experiment: Finished) -> None:
    result = compare(world, f"{EXPERIMENT_RUN}:as-written", f"{EXPERIMENT_RUN}:no-such-variant", "--no-report")
    assert result.returncode == 2, explain(result)
    assert len(stderr_lines(result)) == 1 and "no-such-variant" in result.stderr


# ---------------------------------------------------------------------------- voicelab mutate


def test_mutate_scores_the_suite_and_lists_survivors(world: World) -> None:
    result = world.voicelab("mutate", "--agent", "smile-dental", "--personas", str(world.personas), "--agents",
                            str(world.agents), "--concurrency", "8", "--json", "--no-report", *world.store())
    assert result.returncode == 0, explain(result)
    figures = json.loads(result.stdout)
    for key in ("run_id", "agent", "mutants", "caught", "score", "calls", "failing_original", "survivors",
                "wall_s", "report"):
        assert key in figures, key
    assert figures["agent"] == "smile-dental" and figures["mutants"] > 0
    assert 0 <= figures["score"] <= 1
    assert figures["score"] == pytest.approx(figures["caught"] / figures["mutants"])
    assert figures["failing_original"] == []  # every persona passes the agent as written
    assert len(figures["survivors"]) == figures["mutants"] - figures["caught"]
    for survivor in figures["survivors"]:
        assert set(survivor) >= {"id", "change", "would_be_caught_by"}
        assert re.fullmatch(r"m\d\d-[a-z0-9-]+", survivor["id"]), survivor["id"]
    run_dir = world.runs / figures["run_id"]
    manifest = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    assert manifest["kind"] == "mutation"
    mutants = [variant["id"] for variant in manifest["variants"]][1:]
    assert manifest["variants"][0]["id"] == "original" and len(mutants) == figures["mutants"]
    for mutant in mutants:
        assert (run_dir / "mutants" / f"{mutant}.yaml").exists(), mutant
    assert figures["calls"] == len(PERSONAS) * (len(mutants) + 1)


# ---------------------------------------------------------------------------- voicelab api


PATIENT = {"user_info": {"first_name": "Olivia", "last_name": "Bennett", "phone_number": "+447700900123"}}


def wait_for_call(service: Service, location: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, body = http_json("GET", service.url + location)
        assert status == 200, body
        assert body["state"] in {"queued", "running", "done"}, body
        if body["state"] == "done":
            return body
        time.sleep(0.2)
    raise AssertionError(f"{location} not done within {timeout} s")


def start_background_call(service: Service, body: dict) -> dict:
    status, headers, raw = http("POST", service.url + "/api/conversations", body)
    answer = json.loads(raw)
    assert status == 202, answer
    assert set(answer) >= {"id", "state", "location"} and answer["location"].endswith(answer["id"])
    assert {name.lower(): value for name, value in headers.items()}["location"] == answer["location"]
    return wait_for_call(service, answer["location"])


def stored_call(service: Service, run_id: str, call_id: str) -> dict:
    status, headers, raw = http("GET", f"{service.url}/api/runs/{run_id}/calls")
    assert status == 200, raw[:500]
    assert headers.get("content-type", headers.get("Content-Type", "")).startswith("application/x-ndjson")
    calls = [json.loads(line) for line in raw.decode("utf-8").splitlines() if line.strip()]
    return next(call for call in calls if call["call_id"] == call_id)


def test_service_places_a_background_call_to_the_users_agent(service: Service) -> None:
    done = start_background_call(service, {**PATIENT, "persona_id": "olivia-checkup", "agent_id": "smile-dental"})
    assert done["status"] == "completed" and done["end_reason"] == "agent_ended", done
    assert done["conversation_id"].startswith("conv_") and done["error"] is None
    assert done["call_id"] == done["id"] and re.fullmatch(r"call-[0-9a-f]{12}", done["id"])
    assert done["run_id"].startswith("api-") and done["stored"] is True
    for turn in done["transcript"]:
        assert set(turn) == {"speaker", "text", "timestamp"}
    assert "booking reference is SD-0123" in done["transcript"][-1]["text"]
    assert done["success"] is True
    # the result's checks and tool calls are the stored result's (docs/api.md)
    assert done["checks"] and all(check["passed"] for check in done["checks"]), done["checks"]
    call = stored_call(service, done["run_id"], done["id"])
    assert (call["persona_id"], call["agent_id"]) == ("olivia-checkup", "smile-dental")
    assert [check["name"] for check in call["checks"]] == [check["name"] for check in done["checks"]]
    assert {"check_slots", "book_appointment"} <= {tool_call["tool"] for tool_call in done["tool_calls"]}
    assert {"check_slots", "book_appointment"} <= {tool_call["tool"] for tool_call in call["tool_calls"]}


def test_service_call_defaults_to_the_personas_agent(service: Service) -> None:
    lucia = {"first_name": "Lucía", "last_name": "Fernández", "phone_number": "+34612345678"}
    done = start_background_call(service, {"user_info": lucia, "persona_id": "lucia-revision"})
    assert done["success"] is True, done
    assert done["transcript"][0]["text"].startswith("Hola Lucía"), done["transcript"][0]
    assert stored_call(service, done["run_id"], done["id"])["agent_id"] == "smile-dental"


def test_service_refuses_a_call_missing_the_agents_variables(service: Service, clinic: Clinic) -> None:
    """Without a persona, the agent's own variables come from the request: patient_name is missing."""
    status, body = http_json("POST", service.url + "/api/conversations", {**PATIENT, "agent_id": "smile-dental"})
    assert status == 422 and body["error"] == "invalid_request", body
    assert "variables.patient_name" in [field["field"] for field in body["fields"]], body


def test_service_reports_its_own_run_as_running(service: Service) -> None:
    done = start_background_call(service, {**PATIENT, "persona_id": "tom-toothache",
                                           "agent_id": "smile-dental"})
    status, run = http_json("GET", f"{service.url}/api/runs/{done['run_id']}")
    assert status == 200, run
    assert run["kind"] == "service" and run["counts"]["done"] >= 1
    assert (run["state"], run["stopped_by"]) == ("running", None), run


def test_service_refuses_bad_run_options(service: Service) -> None:
    status, body = http_json("POST", service.url + "/api/runs", {"agent": "no-such-agent"})
    assert status == 422 and body["error"] == "invalid_request", body
    status, body = http_json("POST", service.url + "/api/runs", {"agent": "smile-dental", "repeats": 0})
    assert status == 422 and any(f["field"].endswith("repeats") for f in body["fields"]), body


def test_service_runs_a_batch_and_serves_its_report(service: Service) -> None:
    run_id = "smile-over-http"
    status, headers, raw = http("POST", service.url + "/api/runs", {"agent": "smile-dental", "repeats": 1,
                                                                  "concurrency": 8, "run_id": run_id})
    answer = json.loads(raw)
    assert status == 202, answer
    location = {name.lower(): value for name, value in headers.items()}["location"]
    assert location.endswith(f"/api/runs/{run_id}")
    deadline = time.monotonic() + 60
    while True:
        status, run = http_json("GET", service.url + f"/api/runs/{run_id}")
        assert status == 200, run
        if run["state"] != "running" or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert run["state"] == "finished", run
    assert run["counts"]["planned"] == run["counts"]["done"] == run["counts"]["passed"] == len(PERSONAS), run
    assert run["gate"]["passed"] is True, run
    status, again = http_json("POST", service.url + "/api/runs", {"agent": "smile-dental", "run_id": run_id})
    assert status == 409 and again["error"] == "conflict", again
    status, ids = http_json("GET", service.url + "/api/runs")
    assert status == 200 and run_id in json.dumps(ids)
    status, headers, page = http("GET", service.url + f"/api/runs/{run_id}/report", timeout=120)
    assert status == 200, page[:1000]
    assert {n.lower(): v for n, v in headers.items()}["content-type"].startswith("text/html")
    text = page.decode("utf-8")
    assert self_contained(text) == []
    for persona in PERSONAS:
        assert persona in html.unescape(text), persona
    assert "Lucía" in html.unescape(text)
    call = stored_call(service, run_id, "lucia-revision#1")
    assert call["success"] and call["transcript"][0]["text"].startswith("Hola Lucía")


@dataclass
class Restarted:
    done: dict
    code: int
    manifest: dict
    status: int
    again: Any
    log: str


@pytest.fixture(scope="module")
def restarted(world: World) -> Restarted:
    """A call placed by one service, which SIGTERM stops; then a new service over the same store."""
    runs, reports = world.home / "runs-restart", world.home / "reports-restart"
    first = start_service(world, runs, reports, "api-restart-1")
    try:
        ben = {"first_name": "Ben", "last_name": "Carter", "phone_number": "+447700900500"}
        done = start_background_call(first, {"user_info": ben, "persona_id": "ben-booking-down"})
    finally:
        code = first.stop(signal.SIGTERM)
    manifest = json.loads((runs / done["run_id"] / "run.json").read_text(encoding="utf-8"))
    second = start_service(world, runs, reports, "api-restart-2")
    try:
        status, again = http_json("GET", f"{second.url}/api/conversations/{done['id']}")
    finally:
        second.stop()
    return Restarted(done, code, manifest, status, again, first.log_text())


def test_service_stops_cleanly_on_sigterm(restarted: Restarted) -> None:
    assert restarted.code == 143, restarted.log  # docs/api.md: SIGTERM -> exit status 143
    assert "Traceback" not in restarted.log
    assert restarted.manifest["state"] == "finished", restarted.manifest  # "marks its run finished"
    assert restarted.manifest["sessions"][-1]["calls_stored"] == 1, restarted.manifest
    assert restarted.done["success"] is True, restarted.done  # the booking failed (500) and Ben was told


def test_service_restart_answers_for_a_stored_call(restarted: Restarted) -> None:
    assert restarted.status == 200, restarted.again
    assert restarted.again["state"] == "done", restarted.again
    assert restarted.again["conversation_id"] == restarted.done["conversation_id"], restarted.again
