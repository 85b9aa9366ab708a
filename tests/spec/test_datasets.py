"""Persona and agent files: the bundled ones are complete and valid; every kind of bad file
fails with one error naming the file, the persona and the field, and the CLI shows it without a
traceback."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from voicelab.spec.datasets import load_agent_file, load_dataset, validate_agent
from voicelab.spec.errors import DatasetError
from voicelab.spec.models import STYLES

from ..conftest import AGENTS, PERSONAS


def test_bundled_datasets_cover_both_agents_and_every_style(dataset):
    assert set(dataset.agents) >= {"chargeback", "applicant-screening"}
    for agent_id in ("chargeback", "applicant-screening"):
        personas = [p for p in dataset.personas.values() if p.agent == agent_id]
        assert len(personas) >= 8, agent_id
        # every style a persona file plays; `replay` personas come from recorded calls (voicelab import-calls)
        assert {p.caller.style for p in personas} == set(STYLES) - {"replay"}, agent_id
        assert all(p.expect.agent_says for p in personas), "every persona expects something of the agent"
    german = [p for p in dataset.personas.values() if p.agent == "applicant-screening" and p.language == "de"]
    assert len(german) >= 2


def test_chargeback_variables_and_screening_context(dataset):
    for p in dataset.personas.values():
        if p.agent == "chargeback":
            assert {"first_name", "last_name", "phone_number", "product_name", "chargeback_reason"} <= set(p.variables)
    screening = dataset.agents["applicant-screening"]
    assert screening.context and "{{years_experience}}" in screening.context
    assert set(screening.first_message) == {"en", "de"}


GOOD = """
personas:
  - id: pat
    name: Pat
    summary: A test caller.
    agent: chargeback
    variables: {first_name: Pat, last_name: Lee, phone_number: "+15551234567", product_name: X, chargeback_reason: Y}
"""

BAD = {
    "unknown key": (GOOD.replace("    name: Pat\n", "    name: Pat\n    nmae: typo\n"), "nmae", "unknown key"),
    "nested unknown key": (GOOD + "    caller: {style: cooperative, hangup: 3}\n", "caller.hangup", "unknown key"),
    "missing required field": (GOOD.replace("    summary: A test caller.\n", ""), "summary", "required field"),
    "unknown agent": (GOOD.replace("agent: chargeback", "agent: chargebak"), "agent", "unknown agent id 'chargebak'"),
    "malformed phone": (GOOD.replace('"+15551234567"', '"555-1234"'), "variables", "E.164"),
    "missing variable": (GOOD.replace(", product_name: X", ""), "variables.product_name", "{{product_name}}"),
    "bad style": (GOOD + "    caller: {style: grumpy}\n", "caller.style", "cooperative"),
    "duplicate id": (GOOD + textwrap.indent(GOOD.split("personas:\n", 1)[1], ""), "id", "duplicate persona id"),
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_persona_file_names_file_persona_and_field(tmp_path: Path, kind: str):
    text, field, words = BAD[kind]
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(DatasetError) as err:
        load_dataset(path, AGENTS)
    message = str(err.value)
    assert str(path) in message
    assert "persona 'pat'" in message
    assert f"field '{field}'" in message
    assert words in message


def test_bad_yaml_names_the_line(tmp_path: Path):
    path = tmp_path / "broken.yaml"
    path.write_text("personas:\n  - id: pat\n    name: [unclosed\n")
    with pytest.raises(DatasetError, match=r"broken.yaml: is not valid YAML at line \d+"):
        load_dataset(path, AGENTS)


def test_duplicate_ids_across_files_name_both_files(tmp_path: Path):
    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / "b.yaml").write_text(GOOD)
    with pytest.raises(DatasetError, match=r"b.yaml.*duplicate persona id, also defined in .*a.yaml"):
        load_dataset(tmp_path, AGENTS)


def test_bad_agent_file_names_the_agent_and_field(tmp_path: Path):
    agents = tmp_path / "agents"
    shutil.copytree(AGENTS, agents)
    spec = agents / "chargeback.yaml"
    spec.write_text(spec.read_text().replace("goto: record_keep", "goto: nowhere", 1))
    with pytest.raises(DatasetError, match=r"agent 'chargeback'.*goto names unknown step 'nowhere'"):
        load_dataset(PERSONAS, agents)


def test_cli_reports_bad_file_without_traceback(tmp_path: Path):
    path = tmp_path / "bad.yaml"
    path.write_text(BAD["malformed phone"][0])
    proc = subprocess.run([sys.executable, "-m", "voicelab", "personas", "--personas", str(path),
                           "--agents", str(AGENTS)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "persona 'pat'" in proc.stderr and "E.164" in proc.stderr


def test_cli_lists_valid_personas():
    proc = subprocess.run([sys.executable, "-m", "voicelab", "personas", "--personas", str(PERSONAS),
                           "--agents", str(AGENTS)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "all valid" in proc.stdout and "anna-double-charge" in proc.stdout


# ---- a flow variable used before the flow sets it: one behaviour, refused at load


def agents_with(tmp_path: Path, *changes: tuple[str, str]) -> Path:
    """A copy of the bundled agents whose chargeback agent saves the case id its lookups return
    (`case_ref`), with the given text replacements."""
    agents = tmp_path / "agents"
    shutil.copytree(AGENTS, agents, dirs_exist_ok=True)
    spec = agents / "chargeback.yaml"
    branches = "        branches:\n          - {field: status, equals: closed, goto: already_closed}\n"
    text = spec.read_text().replace(branches, "        save: {case_ref: case_id}\n" + branches)
    assert text.count("save: {case_ref: case_id}") == 2  # lookup and lookup_again
    for old, new in changes:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    spec.write_text(text)
    return agents


SAYS_CASE_IN_STATE = ("        Thank you, {{first_name}}. I'm calling about your dispute",
                      "        Thank you, {{first_name}}. I'm calling about case {{case_ref}}, your dispute")


def test_a_variable_used_after_the_save_that_sets_it_is_fine(tmp_path: Path):
    dataset = load_dataset(PERSONAS, agents_with(tmp_path, SAYS_CASE_IN_STATE))
    assert "{{case_ref}}" in dataset.agents["chargeback"].flow.steps["state_dispute"].say


@pytest.mark.parametrize(("change", "field"), [
    (("  Hello, this is Nora from Northbank's card disputes team.", "  Hello, this is Nora about case {{case_ref}}."),
     "first_message"),
    (("    say: \"Hello? Are you still there, {{first_name}}?\"", "    say: \"Still there about {{case_ref}}?\""),
     "flow.silence.say"),
    # lookup_failed is reached only when both lookups failed: no case id was ever saved
    (("        I'm sorry, {{first_name}}, I can't pull up your dispute right now.",
      "        I'm sorry, {{first_name}}, I can't pull up case {{case_ref}} right now."),
     "flow.steps.lookup_failed.say"),
    (("      reprompt: \"Just to be sure: am I speaking with {{first_name}} {{last_name}}?\"",
      "      reprompt: \"Just to be sure, about {{case_ref}}: am I speaking with {{first_name}}?\""),
     "flow.steps.identify.reprompt"),
])
def test_a_variable_used_before_the_flow_sets_it_is_refused_at_load(tmp_path: Path, change, field):
    """`{{case_ref}}` said before the save that sets it would be spoken literally: the agent file is
    refused when it is loaded, naming the file, the agent, the text's field and the fix."""
    agents = agents_with(tmp_path, change)
    with pytest.raises(DatasetError) as err:
        load_dataset(PERSONAS, agents)
    message = str(err.value)
    assert str(agents / "chargeback.yaml") in message and "agent 'chargeback'" in message
    assert f"field '{field}'" in message and "{{case_ref}} before the flow sets it" in message
    assert "the save of step 'lookup'" in message and "platform.placeholders" in message
    assert "\n" not in message


def test_a_placeholder_default_makes_an_early_use_fine(tmp_path: Path):
    agents = agents_with(tmp_path, ("  Hello, this is Nora from Northbank's card disputes team.",
                                    "  Hello, this is Nora about case {{case_ref}}."))
    spec = agents / "chargeback.yaml"
    spec.write_text(spec.read_text() + "platform:\n  placeholders: {case_ref: unknown}\n")
    assert load_agent_file(spec).platform.placeholders == {"case_ref": "unknown"}


def test_a_variable_set_by_a_callers_answer_is_set_only_after_that_answer(dataset, tmp_path: Path):
    """The screening agent books the slot an answer `set`; saying {{slot}} in the first message (a
    variable swap a mutant makes) is the same mistake, refused by the same check the loader runs,
    which a spec made in code gets through `validate_agent`."""
    agent = dataset.agents["applicant-screening"]
    assert validate_agent(agent, "screening.yaml") is agent
    early = agent.model_copy(update={"first_message": {**agent.first_message,
                                                       "en": agent.first_message["en"] + " Is {{slot}} fine?"}})
    with pytest.raises(DatasetError, match=r"screening.yaml, agent 'applicant-screening', field 'first_message.en'"
                                           r".*\{\{slot\}\} before the flow sets it \(an intent's set in step "
                                           r"'offer_slots'\)"):
        validate_agent(early, "screening.yaml")


def test_personas_command_refuses_an_early_variable_in_one_line(tmp_path: Path):
    agents = agents_with(tmp_path, ("  Hello, this is Nora from Northbank's card disputes team.",
                                    "  Hello, this is Nora about case {{case_ref}}."))
    proc = subprocess.run([sys.executable, "-m", "voicelab", "personas", "--personas", str(PERSONAS),
                           "--agents", str(agents)], capture_output=True, text=True)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "agent 'chargeback'" in lines[0] and "field 'first_message'" in lines[0] and "{{case_ref}}" in lines[0]


# ---- a caller in another language than the agent's default: the call must not silently stay in it

SPANISH = """
personas:
  - id: lucia
    name: Lucía García
    summary: A Spanish applicant.
    language: es
    agent: applicant-screening
    variables: {first_name: Lucía, last_name: García, phone_number: "+34600123456", position: Diseñadora,
                years_experience: "4", current_employer: Estudio Sol}
"""


def spanish_world(tmp_path: Path, overrides: str) -> tuple[Path, Path]:
    """The screening agent with a Spanish first message, sending `overrides`, and a Spanish caller."""
    agents = tmp_path / "agents"
    shutil.copytree(AGENTS, agents, dirs_exist_ok=True)
    spec = agents / "applicant-screening.yaml"
    text = spec.read_text().replace("overrides: [language]\n", f"overrides: {overrides}\n")
    text = text.replace("first_message:\n", "first_message:\n  es: Hola {{first_name}}, soy Sam de Brightpath.\n", 1)
    spec.write_text(text)
    personas = tmp_path / "spanish.yaml"
    personas.write_text(SPANISH)
    return personas, agents


def test_a_caller_whose_call_would_stay_in_the_agents_default_language_is_refused(tmp_path: Path):
    """The platform switches a conversation's language only for a `language` override the agent
    allows; an agent that sends none keeps every call in English, so a Spanish caller's call would
    silently be English: refused at load, naming the persona, the agent, the field and the fix."""
    personas, agents = spanish_world(tmp_path, "[]")
    with pytest.raises(DatasetError) as err:
        load_dataset(personas, agents)
    message = str(err.value)
    assert str(personas) in message and "persona 'lucia'" in message and "field 'language'" in message
    assert "agent 'applicant-screening'" in message and "stays in its default 'en'" in message
    assert "add `language` to the `overrides` of agent 'applicant-screening'" in message
    assert "start_language: en" in message
    proc = subprocess.run([sys.executable, "-m", "voicelab", "personas", "--personas", str(personas),
                           "--agents", str(agents)], capture_output=True, text=True)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "persona 'lucia'" in proc.stderr


def test_a_caller_in_another_language_gets_the_override_when_the_agent_sends_it(tmp_path: Path):
    from voicelab.harness.connection import initiation_data

    personas, agents = spanish_world(tmp_path, "[language]")
    dataset = load_dataset(personas, agents)
    sent = initiation_data(dataset.request("lucia")).conversation_config_override
    assert sent["agent"]["language"] == "es"
    # a caller who answers the agent's default language needs no override
    answers_english = tmp_path / "answers-english.yaml"
    answers_english.write_text(SPANISH.replace("    language: es\n", "    language: es\n    start_language: en\n"))
    _, strict = spanish_world(tmp_path / "strict", "[]")
    assert load_dataset(answers_english, strict).personas["lucia"].call_language == "en"
