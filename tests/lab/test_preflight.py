"""`voicelab preflight`: the agent's settings as the platform has them (GET agent through the SDK,
answered by the real local backend serving agent specs changed with model_copy), against what a
run of the personas needs; the CLI in real processes; `run --backend elevenlabs` refusing before
anything is placed; and the rules as properties over generated variables and tools."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from voicelab.lab.preflight import (
    agent_settings,
    check,
    client_tool_findings,
    expected_tool_findings,
    override_findings,
    run_preflight,
    variable_findings,
)
from voicelab.local import LocalBackend
from voicelab.spec.datasets import Dataset
from voicelab.spec.models import Tool, ToolMock

from ..conftest import AGENTS, PERSONAS, ROOT

KEY = "sk_preflighttestkey_0123456789abcdef"


def with_changes(dataset: Dataset, *personas, agents=()) -> Dataset:
    """The dataset with these personas and agent specs (changed copies) in place of their originals."""
    return Dataset(personas={**dataset.personas, **{p.id: p for p in personas}},
                   agents={**dataset.agents, **{a.id: a for a in agents}}, persona_files=dataset.persona_files)


def served(dataset: Dataset, *agents) -> dict:
    """The agents a backend serves: the bundled ones, these changed copies in place of theirs."""
    return {**dataset.agents, **{a.id: a for a in agents}}


def findings_of(dataset: Dataset, server: LocalBackend, persona_ids, *, mode: str = "text") -> list:
    return run_preflight(dataset, list(persona_ids), backend="local", mode=mode, local_url=server.base_url).findings


def not_ok(findings) -> dict:
    return {(f.check, f.subject): f for f in findings if f.verdict != "ok"}


def chargeback_ids(dataset: Dataset) -> list[str]:
    return [p.id for p in dataset.personas.values() if p.agent == "chargeback"]


def screening_ids(dataset: Dataset) -> list[str]:
    return [p.id for p in dataset.personas.values() if p.agent == "applicant-screening"]


# --------------------------------------------------------------------------- each finding, on the real backend


def test_the_bundled_agents_as_served_pass_every_check_in_both_modes(dataset, backend):
    for mode in ("text", "voice"):
        result = run_preflight(dataset, list(dataset.personas), backend="local", mode=mode,
                               local_url=backend.base_url)
        assert not_ok(result.findings) == {}
        assert set(result.agents) == {"chargeback", "applicant-screening"}
        checks = {f.check for f in result.findings}
        assert checks == {"overrides", "variables", "tools", "expected", "language", "audio"}


def test_an_override_the_agent_does_not_allow_blocks(dataset, local_backend):
    screening = dataset.agents["applicant-screening"]
    refusing = screening.model_copy(update={"platform": screening.platform.model_copy(
        update={"allowed_overrides": ["prompt", "first_message", "text_only"]})})
    server = local_backend(agents=served(dataset, refusing))
    found = not_ok(findings_of(dataset, server, screening_ids(dataset)))
    override = found[("overrides", "language")]
    assert override.verdict == "blocking" and override.setting == "override agent.language"
    assert override.has == "not allowed" and "Security > Overrides" in override.fix
    # the German calls would start in English: the language rows say so too
    assert found[("language", "de")].verdict == "blocking" and "not allowed" in found[("language", "de")].has
    assert set(found) == {("overrides", "language"), ("language", "de")}


def test_the_sdks_own_text_only_override_blocks_locally_and_warns_on_the_hosted_platform(dataset, local_backend,
                                                                                         monkeypatch):
    chargeback = dataset.agents["chargeback"]
    strict = chargeback.model_copy(update={"platform": chargeback.platform.model_copy(
        update={"allowed_overrides": []})})
    local_server = local_backend(agents=served(dataset, strict))
    hosted_server = local_backend(agents=served(dataset, strict), require_key=KEY)  # playing the hosted platform
    monkeypatch.setenv("ELEVENLABS_API_KEY", KEY)
    monkeypatch.setenv("ELEVENLABS_BASE_URL", hosted_server.base_url)
    monkeypatch.setenv("ELEVENLABS_AGENT_ID", "chargeback")
    local = not_ok(findings_of(dataset, local_server, chargeback_ids(dataset)))
    hosted = not_ok(run_preflight(dataset, chargeback_ids(dataset), backend="elevenlabs", mode="text").findings)
    assert set(local) == set(hosted) == {("overrides", "text_only")}
    assert local[("overrides", "text_only")].verdict == "blocking"
    assert hosted[("overrides", "text_only")].verdict == "warning"
    voice = run_preflight(dataset, chargeback_ids(dataset), backend="elevenlabs", mode="voice")
    assert not_ok(voice.findings) == {}  # a voice call sends no override at all


def test_a_variable_a_persona_does_not_give_blocks_naming_that_persona(dataset, backend):
    anna = dataset.personas["anna-double-charge"]
    forgetful = anna.model_copy(update={"variables": {k: v for k, v in anna.variables.items() if k != "first_name"}})
    changed = with_changes(dataset, forgetful)
    found = not_ok(findings_of(changed, backend, chargeback_ids(dataset)))
    assert set(found) == {("variables", "first_name")}
    missing = found[("variables", "first_name")]
    assert missing.verdict == "blocking" and missing.personas == ("anna-double-charge",)
    assert "used in prompt, first message" in missing.has and "anna-double-charge" in missing.fix


def test_a_variable_with_a_placeholder_on_the_agent_is_a_warning(dataset, local_backend):
    anna = dataset.personas["anna-double-charge"]
    forgetful = anna.model_copy(update={"variables": {k: v for k, v in anna.variables.items() if k != "first_name"}})
    chargeback = dataset.agents["chargeback"]
    with_placeholder = chargeback.model_copy(update={"platform": chargeback.platform.model_copy(
        update={"placeholders": {"first_name": "there"}})})
    server = local_backend(agents=served(dataset, with_placeholder))
    found = not_ok(findings_of(with_changes(dataset, forgetful), server, ["anna-double-charge", "kevin-in-a-hurry"]))
    assert set(found) == {("variables", "first_name")}
    stand_in = found[("variables", "first_name")]
    assert stand_in.verdict == "warning" and "'there'" in stand_in.has


def test_a_variable_only_the_platforms_prompt_uses_blocks_for_every_persona(dataset, local_backend):
    chargeback = dataset.agents["chargeback"]
    drifted = chargeback.model_copy(update={"prompt": chargeback.prompt + "\nThe caller's tier: {{account_tier}}. "
                                                                          "Now: {{system__time}}."})
    server = local_backend(agents=served(dataset, drifted))
    found = not_ok(findings_of(dataset, server, chargeback_ids(dataset)))
    assert set(found) == {("variables", "account_tier")}  # system__ variables are the platform's own
    assert found[("variables", "account_tier")].personas == tuple(sorted(chargeback_ids(dataset)))


def test_a_client_tool_no_persona_answers_blocks(dataset, local_backend):
    chargeback = dataset.agents["chargeback"]
    more_tools = chargeback.model_copy(update={"tools": [*chargeback.tools, Tool(name="verify_identity")]})
    server = local_backend(agents=served(dataset, more_tools))  # the platform's agent has a tool the file lacks
    found = not_ok(findings_of(dataset, server, chargeback_ids(dataset)))
    assert set(found) == {("tools", "verify_identity")}
    assert found[("tools", "verify_identity")].verdict == "blocking"
    assert "default_mock" in found[("tools", "verify_identity")].fix


def test_a_client_tool_some_personas_leave_unanswered_is_a_warning_naming_them(dataset, local_backend):
    chargeback = dataset.agents["chargeback"]
    no_default = chargeback.model_copy(update={"tools": [
        t.model_copy(update={"default_mock": None}) if t.name == "confirm_dispute" else t for t in chargeback.tools]})
    kevin = dataset.personas["kevin-in-a-hurry"]
    answering = kevin.model_copy(update={"tools": {"confirm_dispute": ToolMock(result={"recorded": True})}})
    changed = with_changes(dataset, answering, agents=[no_default])
    server = local_backend(agents=changed.agents)
    found = not_ok(findings_of(changed, server, ["kevin-in-a-hurry", "olga-credit-question", "zofia-has-to-go"]))
    assert set(found) == {("tools", "confirm_dispute")}
    assert found[("tools", "confirm_dispute")].verdict == "warning"
    assert found[("tools", "confirm_dispute")].personas == ("olga-credit-question", "zofia-has-to-go")
    only_unanswered = not_ok(findings_of(changed, server, ["olga-credit-question"]))
    assert only_unanswered[("tools", "confirm_dispute")].verdict == "blocking"


def test_an_expected_tool_the_agent_lacks_blocks_and_a_never_called_one_warns(dataset, local_backend):
    chargeback = dataset.agents["chargeback"]
    no_transfer = chargeback.model_copy(update={"tools": [t for t in chargeback.tools
                                                          if t.name != "transfer_to_number"]})
    server = local_backend(agents=served(dataset, no_transfer))
    found = not_ok(findings_of(dataset, server, ["jan-wants-a-person", "anna-double-charge", "olga-credit-question"]))
    assert set(found) == {("expected", "transfer_to_number")}
    missing = found[("expected", "transfer_to_number")]
    assert missing.verdict == "blocking" and missing.personas == ("jan-wants-a-person",)
    assert "agent_calls of jan-wants-a-person" in missing.needs and "agent_never_calls of anna" in missing.needs
    vacuous = not_ok(findings_of(dataset, server, ["anna-double-charge", "olga-credit-question"]))
    assert vacuous[("expected", "transfer_to_number")].verdict == "warning"
    assert vacuous[("expected", "transfer_to_number")].personas == ("anna-double-charge",)


def test_a_language_the_personas_start_in_that_the_agent_lacks_blocks(dataset, local_backend):
    german = dataset.agents["chargeback"].model_copy(update={"language": "de"})
    server = local_backend(agents=served(dataset, german))
    found = not_ok(findings_of(dataset, server, chargeback_ids(dataset)))
    assert set(found) == {("language", "en")}
    assert found[("language", "en")].verdict == "blocking" and "override not sent" in found[("language", "en")].has


def test_a_caller_who_switches_language_needs_language_detection(dataset, local_backend):
    screening = dataset.agents["applicant-screening"]
    no_detection = screening.model_copy(update={"tools": [t for t in screening.tools
                                                          if t.name != "language_detection"]})
    server = local_backend(agents=served(dataset, no_detection))
    found = not_ok(findings_of(dataset, server, ["greta-de-antwortet-deutsch", "sofia-books-tuesday"]))
    assert found[("language", "de")].verdict == "warning" and found[("language", "de")].setting == \
        "language de (caller speaks)"
    assert found[("expected", "language_detection")].verdict == "blocking"  # greta's agent_calls
    assert found[("expected", "language_detection")].personas == ("greta-de-antwortet-deutsch",)


def test_voice_mode_needs_an_agent_that_speaks_16_khz_pcm_and_sends_its_turns(dataset, local_backend):
    chargeback = dataset.agents["chargeback"]
    mute = chargeback.model_copy(update={"platform": chargeback.platform.model_copy(
        update={"text_only": True, "client_events": ["audio", "user_transcript"]})})
    server = local_backend(agents=served(dataset, mute))
    voice = not_ok(findings_of(dataset, server, ["anna-double-charge"], mode="voice"))
    assert set(voice) == {("audio", "text_only"), ("audio", "agent_response")}
    assert all(f.verdict == "blocking" for f in voice.values())
    text = not_ok(findings_of(dataset, server, ["anna-double-charge"], mode="text"))
    assert set(text) == {("audio", "agent_response")}  # a text run needs no audio, but still the agent's turns


class TelephonyBackend(LocalBackend):
    """The local backend, reporting the audio formats of a telephony agent."""

    def agent_body(self, agent):
        body = super().agent_body(agent)
        body["conversation_config"]["tts"]["agent_output_audio_format"] = "ulaw_8000"
        body["conversation_config"]["asr"]["user_input_audio_format"] = "pcm_8000"
        return body


def test_voice_mode_blocks_on_audio_formats_other_than_the_sdks(dataset):
    with TelephonyBackend(dataset.agents) as server:
        voice = not_ok(findings_of(dataset, server, ["anna-double-charge"], mode="voice"))
        text = not_ok(findings_of(dataset, server, ["anna-double-charge"], mode="text"))
    assert set(voice) == {("audio", "asr.user_input_audio_format"), ("audio", "tts.agent_output_audio_format")}
    assert voice[("audio", "tts.agent_output_audio_format")].has == "ulaw_8000"
    assert text == {}


def test_the_hosted_agent_is_read_by_its_platform_id(dataset, local_backend, monkeypatch):
    """elevenlabs_agent_id wins over ELEVENLABS_AGENT_ID, as in a call; the table names it."""
    chargeback = dataset.agents["chargeback"]
    platform_copy = chargeback.model_copy(update={"id": "agent_northbank_7", "language": "fr"})
    server = local_backend(agents=served(dataset, platform_copy), require_key=KEY)
    monkeypatch.setenv("ELEVENLABS_API_KEY", KEY)
    monkeypatch.setenv("ELEVENLABS_BASE_URL", server.base_url)
    monkeypatch.setenv("ELEVENLABS_AGENT_ID", "chargeback")
    pointed = with_changes(dataset, agents=[chargeback.model_copy(update={"elevenlabs_agent_id": "agent_northbank_7"})])
    result = run_preflight(pointed, ["anna-double-charge"], backend="elevenlabs")
    assert result.agents == {"chargeback": "agent_northbank_7"}
    assert set(not_ok(result.findings)) == {("language", "en")}
    assert "platform agent agent_northbank_7" in result.summary()


# --------------------------------------------------------------------------- the hosted body's shapes (pure)


def test_a_hosted_body_names_built_in_tools_presets_and_tools_by_platform_id(dataset):
    spec = dataset.agents["applicant-screening"]
    spec = spec.model_copy(update={"tools": [t.model_copy(update={"platform_id": f"tool_{t.name}"})
                                             if t.type == "client" else t for t in spec.tools]})
    body = {"agent_id": "agent_1", "conversation_config": {
        "agent": {"language": "en", "first_message": "Hi {{first_name}}",
                  "prompt": {"prompt": "Screen {{first_name}} {{last_name}} for {{position}}.",
                             "tool_ids": ["tool_check_interview_slots", "tool_book_interview", "tool_unknown"],
                             "built_in_tools": {"end_call": {"name": "end_call"}, "language_detection": {},
                                                "transfer_to_number": None}}},
        "language_presets": {"de": {"overrides": {"agent": {"first_message": "Hallo {{first_name}}"}}}}},
        "platform_settings": {"overrides": {"conversation_config_override": {"agent": {"language": True},
                                                                              "conversation": {"text_only": True}}}}}
    s = agent_settings(body, spec)
    assert s.tools == {"check_interview_slots": "client", "book_interview": "client", "end_call": "system"}
    assert s.unnamed_tool_ids == ("tool_unknown",)
    assert s.presets == {"de"} and s.allowed_overrides == {"language", "text_only"}
    result = check(dataset, screening_ids(dataset), {"applicant-screening": body})
    found = not_ok(result.findings)
    # language_detection is configured off (an empty config): greta's expected call may be among the tool by id
    assert found[("expected", "language_detection")].verdict == "warning"
    assert found[("language", "de")].verdict == "warning"  # greta speaks de: no language_detection
    assert ("language", "en") not in found and not result.blocking
    no_presets = {**body, "conversation_config": {**body["conversation_config"], "language_presets": {}}}
    blocked = not_ok(check(dataset, screening_ids(dataset), {"applicant-screening": no_presets}).findings)
    lacking = blocked[("language", "de")]
    assert lacking.verdict == "blocking" and "additional languages" in lacking.fix


# --------------------------------------------------------------------------- the command line


def cli(*args: str, env: dict | None = None, cwd: Path = ROOT, timeout: float = 120) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("ELEVENLABS_")}
    return subprocess.run([sys.executable, "-m", "voicelab", *args], capture_output=True, text=True, cwd=cwd,
                          env={**base, "NO_PROXY": "127.0.0.1,localhost", **(env or {})}, timeout=timeout)


def test_the_bundled_dataset_passes_through_the_real_cli(tmp_path: Path):
    got = cli("preflight")
    assert got.returncode == 0, got.stderr
    assert "agent chargeback (the local backend), 15 personas, text mode" in got.stdout
    assert "0 warnings, 0 blocking" in got.stdout and got.stderr == ""
    as_json = cli("preflight", "--agent", "applicant-screening", "--mode", "voice", "--json")
    assert as_json.returncode == 0, as_json.stderr
    data = json.loads(as_json.stdout)
    assert data["ok"] and data["blocking"] == 0 and data["mode"] == "voice"
    assert {f["check"] for f in data["findings"]} >= {"overrides", "variables", "tools", "language", "audio"}


def refusing_agents(tmp_path: Path) -> Path:
    """A copy of the bundled agents whose screening agent allows no language override."""
    agents = tmp_path / "agents"
    shutil.copytree(AGENTS, agents)
    spec = agents / "applicant-screening.yaml"
    spec.write_text(spec.read_text(encoding="utf-8") + "platform:\n  allowed_overrides: [first_message, text_only]\n",
                    encoding="utf-8")
    return agents


def test_a_blocking_finding_exits_2_with_one_line_naming_it_and_the_fix(tmp_path: Path):
    agents = refusing_agents(tmp_path)
    got = cli("preflight", "--agents", str(agents), "--personas", str(PERSONAS))
    assert got.returncode == 2
    lines = got.stderr.splitlines()
    assert len(lines) == 1, got.stderr
    assert "agent 'applicant-screening', override agent.language" in lines[0]
    assert "Fix: allow 'language' under Security > Overrides" in lines[0]
    assert "(1 more blocking finding in the table above)" in lines[0]
    assert "blocking" in got.stdout and "2 blocking" in got.stdout
    as_json = cli("preflight", "--agents", str(agents), "--agent", "applicant-screening", "--json")
    assert as_json.returncode == 2 and len(as_json.stderr.splitlines()) == 1
    assert json.loads(as_json.stdout)["findings"][0]["verdict"] == "blocking"


def test_help_says_what_it_checks_with_examples():
    got = cli("preflight", "--help")
    assert got.returncode == 0
    for word in ("overrides", "variables", "client tools", "agent_calls", "language", "pcm_16000", "examples:",
                 "voicelab preflight --backend elevenlabs", "exit status"):
        assert word in got.stdout


def test_run_on_the_hosted_platform_refuses_before_placing_anything(dataset, local_backend, tmp_path: Path):
    screening = dataset.agents["applicant-screening"]
    refusing = screening.model_copy(update={"platform": screening.platform.model_copy(
        update={"allowed_overrides": ["first_message", "text_only"]})})
    server = local_backend(agents=served(dataset, refusing), require_key=KEY)
    env = {"ELEVENLABS_API_KEY": KEY, "ELEVENLABS_BASE_URL": server.base_url, "ELEVENLABS_REQUIRES_AUTH": "true",
           "ELEVENLABS_AGENT_ID": "applicant-screening"}
    runs = tmp_path / "runs"
    got = cli("run", "--backend", "elevenlabs", "--agent", "applicant-screening", "--runs", str(runs),
              "--no-report", env=env)
    assert got.returncode == 2, got.stdout + got.stderr
    lines = got.stderr.splitlines()
    assert len(lines) == 1 and "preflight: agent 'applicant-screening'" in lines[0]
    assert "override agent.language" in lines[0] and "Fix: allow 'language'" in lines[0]
    assert "voicelab preflight --backend elevenlabs" in lines[0]
    assert len(server.history) == 0  # no conversation was placed
    assert not runs.exists() or not any(runs.iterdir())  # and no run was created


def test_run_on_the_hosted_platform_goes_on_when_nothing_blocks(dataset, local_backend, tmp_path: Path):
    server = local_backend(require_key=KEY)
    env = {"ELEVENLABS_API_KEY": KEY, "ELEVENLABS_BASE_URL": server.base_url, "ELEVENLABS_REQUIRES_AUTH": "true",
           "ELEVENLABS_AGENT_ID": "chargeback"}
    got = cli("run", "--backend", "elevenlabs", "--persona", "anna-double-charge", "--runs", str(tmp_path / "runs"),
              "--run-id", "hosted-ok", "--no-report", env=env)
    assert got.returncode == 0, got.stdout + got.stderr
    assert "preflight" not in got.stderr
    assert len(server.history) == 1


# --------------------------------------------------------------------------- the rules as properties

NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,7}", fullmatch=True)
PERSONA_IDS = st.lists(st.from_regex(r"p[0-9]{1,2}", fullmatch=True), min_size=1, max_size=5, unique=True)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_exactly_the_missing_variables_are_found(data):
    used = data.draw(st.sets(NAMES, max_size=8), label="used")
    personas = data.draw(PERSONA_IDS, label="personas")
    some_of_used = st.sets(st.sampled_from(sorted(used))) if used else st.just(set())
    given_ = {p: data.draw(some_of_used, label=f"given {p}") | data.draw(st.sets(NAMES, max_size=2),
                                                                         label=f"extra {p}")
              for p in personas}
    placeholders = {v: "x" for v in data.draw(some_of_used, label="placeholders")}
    findings = variable_findings("a", {v: ["prompt"] for v in used}, given_, placeholders)
    assert [f.subject for f in findings] == sorted(used)  # one row per variable used
    for f in findings:
        missing = tuple(sorted(p for p in personas if f.subject not in given_[p]))
        assert f.personas == missing
        expected = "ok" if not missing else ("warning" if f.subject in placeholders else "blocking")
        assert f.verdict == expected


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_exactly_the_unanswered_client_tools_are_found(data):
    tools = data.draw(st.sets(NAMES, min_size=1, max_size=6), label="tools")
    personas = data.draw(PERSONA_IDS, label="personas")
    answered = {p: data.draw(st.sets(st.sampled_from(sorted(tools))), label=f"answers {p}") for p in personas}
    findings = client_tool_findings("a", tools, answered)
    by_tool = {f.subject: f for f in findings}
    assert set(by_tool) == tools
    for tool, f in by_tool.items():
        missing = {p for p in personas if tool not in answered[p]}
        assert set(f.personas) == missing
        assert f.verdict == ("ok" if not missing else "blocking" if missing == set(personas) else "warning")


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_exactly_the_expected_tools_the_agent_lacks_are_found(data):
    universe = sorted(data.draw(st.sets(NAMES, min_size=1, max_size=8), label="universe"))
    has = data.draw(st.sets(st.sampled_from(universe)), label="agent has")
    personas = data.draw(PERSONA_IDS, label="personas")
    calls = {p: data.draw(st.sets(st.sampled_from(universe), max_size=3), label=f"calls {p}") for p in personas}
    never = {p: data.draw(st.sets(st.sampled_from(universe), max_size=3), label=f"never {p}") for p in personas}
    unnamed = data.draw(st.integers(0, 2), label="unnamed")
    findings = expected_tool_findings("a", has, calls, never, unnamed=unnamed)
    called = set().union(*calls.values())
    avoided = set().union(*never.values())
    assert {f.subject for f in findings} == called | avoided
    assert {f.subject for f in findings if f.verdict != "ok"} == (called | avoided) - has
    assert {f.subject for f in findings if f.verdict == "blocking"} == (set() if unnamed else called - has)
    for f in findings:
        if f.verdict != "ok":
            expected_personas = {p for p in personas if f.subject in calls[p]} or \
                                {p for p in personas if f.subject in never[p]}
            assert set(f.personas) == expected_personas


@settings(max_examples=100, deadline=None)
@given(st.sets(st.sampled_from(["prompt", "first_message", "language", "text_only"])),
       st.sets(st.sampled_from(["prompt", "first_message", "language", "text_only", "llm", "voice_id"])),
       st.sampled_from(["local", "elevenlabs"]))
def test_exactly_the_refused_overrides_are_found(sent, allowed, backend):
    findings = override_findings("a", sorted(sent), allowed, backend=backend)
    assert {f.subject for f in findings} == sent
    refused = {f.subject: f.verdict for f in findings if f.verdict != "ok"}
    assert set(refused) == sent - allowed
    for name, verdict in refused.items():
        assert verdict == ("warning" if name == "text_only" and backend == "elevenlabs" else "blocking")
