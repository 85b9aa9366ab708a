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

from voicelab.datasets import load_dataset
from voicelab.errors import DatasetError
from voicelab.models import STYLES

from .conftest import AGENTS, PERSONAS


def test_bundled_datasets_cover_both_agents_and_every_style(dataset):
    assert set(dataset.agents) >= {"chargeback", "applicant-screening"}
    for agent_id in ("chargeback", "applicant-screening"):
        personas = [p for p in dataset.personas.values() if p.agent == agent_id]
        assert len(personas) >= 8, agent_id
        assert {p.caller.style for p in personas} == set(STYLES), agent_id
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
    proc = subprocess.run([sys.executable, "-m", "voicelab.cli", "personas", "--personas", str(path),
                           "--agents", str(AGENTS)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "persona 'pat'" in proc.stderr and "E.164" in proc.stderr


def test_cli_lists_valid_personas():
    proc = subprocess.run([sys.executable, "-m", "voicelab.cli", "personas", "--personas", str(PERSONAS),
                           "--agents", str(AGENTS)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "all valid" in proc.stdout and "anna-double-charge" in proc.stdout
