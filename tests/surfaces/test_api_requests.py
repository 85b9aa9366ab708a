"""What the service takes from a request: each agent's own variables (checked before anything
is placed), callers from the runner registry, ids that can never become paths or overlong file
names, and its bearer key. Through a real uvicorn server and the real `voicelab api` command."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from voicelab.spec.errors import ConfigError
from voicelab.surfaces.api import ServiceSettings

from .test_api import ANNA, serving, voicelab, wait_done, wait_run, with_


@pytest.fixture(scope="module")
def api(tmp_path_factory) -> Iterator[tuple[str, Path]]:
    root = tmp_path_factory.mktemp("api-requests")
    with serving(root) as url:
        yield url, root


APPLICANT = {"user_info": {"first_name": "Priya", "last_name": "Raman", "phone_number": "+4915112345678"},
             "agent_id": "applicant-screening",
             "variables": {"position": "Backend Developer", "years_experience": 6, "current_employer": "Acme"}}


def test_a_background_call_needs_only_its_agents_own_variables(api) -> None:
    url, _ = api
    accepted = httpx.post(f"{url}/api/conversations", json=APPLICANT)
    assert accepted.status_code == 202, accepted.text  # no chargeback_info for an applicant screening
    state = wait_done(url, accepted.json()["id"])
    assert state["status"] == "completed", state
    said = " ".join(t["text"] for t in state["transcript"] if t["speaker"] == "agent")
    assert "Priya" in said and "Backend Developer" in said


@pytest.mark.parametrize(("body", "field"), [
    (with_(APPLICANT, "variables.position", ...), "variables.position"),
    ({**APPLICANT, "variables": {}}, "variables.current_employer"),
    (with_(ANNA, "chargeback_info", ...), "chargeback_info"),
    ({**APPLICANT, "variables": {**APPLICANT["variables"], "position": {"nested": 1}}}, "variables.position"),
    ({**APPLICANT, "variables": {**APPLICANT["variables"], "bad name": "x"}}, "variables.bad name"),
])
def test_a_missing_variable_is_refused_before_anything_is_placed(api, body, field) -> None:
    url, root = api
    before = httpx.get(f"{url}/health").json()
    answer = httpx.post(f"{url}/api/conversations", json=body)
    assert answer.status_code == 422, answer.text  # not 202 and a failed call later
    assert answer.json()["fields"][0]["field"] == field, answer.json()
    assert httpx.get(f"{url}/health").json()["calls"]["pending"] == before["calls"]["pending"]


def test_a_persona_brings_its_own_variables(api) -> None:
    url, _ = api
    body = {"user_info": APPLICANT["user_info"], "persona_id": "sofia-books-tuesday"}
    accepted = httpx.post(f"{url}/api/conversations", json=body)
    assert accepted.status_code == 202, accepted.text
    assert wait_done(url, accepted.json()["id"])["status"] == "completed"


def test_results_and_callbacks_carry_checks_and_tool_calls(api) -> None:
    url, _ = api
    body = httpx.post(f"{url}/api/conversation/start", json=ANNA, timeout=60).json()
    assert {c["name"] for c in body["checks"]} >= {"agent_says: Premium Gym Membership"}, body["checks"]
    assert all(c["passed"] for c in body["checks"])
    assert body["tool_calls"][0]["tool"] == "lookup_dispute"
    assert body["tool_calls"][0]["args"] == {"phone_number": "+48601234567"}


def test_a_run_takes_every_batch_caller_of_the_registry(api) -> None:
    url, root = api
    started = httpx.post(f"{url}/api/runs", json={"personas": ["anna-double-charge"], "caller": "agent",
                                                  "run_id": "by-agent"})
    assert started.status_code == 202, started.text
    status = wait_run(url, "by-agent", lambda s: s["state"] == "finished")
    assert status["counts"]["done"] == 1
    (line,) = httpx.get(f"{url}/api/runs/by-agent/calls").text.splitlines()
    assert json.loads(line)["caller"] == "agent"
    human = httpx.post(f"{url}/api/runs", json={"personas": ["anna-double-charge"], "caller": "human"})
    assert human.status_code == 422 and "scripted" in human.json()["detail"]


@pytest.mark.parametrize("run_id", ["..", ".", "../x", "a/b", "-x", "é", "a" * 129])
def test_a_run_id_that_is_no_plain_name_is_refused_naming_it(api, run_id) -> None:
    url, root = api
    answer = httpx.post(f"{url}/api/runs", json={"personas": ["anna-double-charge"], "run_id": run_id})
    assert answer.status_code == 422, answer.text
    assert answer.json()["fields"][0]["field"] == "run_id"


@pytest.mark.parametrize(("path", "field"), [
    ("/api/runs/" + "a" * 300, "run_id"),
    ("/api/runs/" + "é" * 200, "run_id"),
    ("/api/runs/" + "a" * 300 + "/calls", "run_id"),
    ("/api/runs/" + "a" * 300 + "/report", "run_id"),
    ("/api/conversations/" + "c" * 300, "call_id"),
])
def test_an_overlong_id_in_a_path_is_refused_naming_it(api, path, field) -> None:
    url, _ = api
    answer = httpx.get(url + path)
    assert answer.status_code == 422, answer.text
    assert answer.json()["fields"][0]["field"] == field
    assert httpx.delete(f"{url}/api/runs/{'a' * 300}").status_code == 422


def test_an_empty_key_is_an_error_at_start() -> None:
    proc = voicelab("api", "--port", "8998", env={"VOICELAB_API_KEY": "  "})
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "VOICELAB_API_KEY" in err and "empty" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_a_key_with_trailing_whitespace_matches(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("VOICELAB_API_KEY", "vk_test_spaces\n ")
    config = ServiceSettings.from_env(runs_root=str(tmp_path / "runs"), reports_dir=str(tmp_path / "reports"))
    assert config.api_key == "vk_test_spaces"
    with serving(tmp_path, api_key=config.api_key) as url:
        answer = httpx.get(f"{url}/api/runs", headers={"Authorization": "Bearer vk_test_spaces"})
        assert answer.status_code == 200
    with pytest.raises(ConfigError, match="empty"):
        ServiceSettings(api_key=" ").check()


@pytest.mark.parametrize(("body", "field"), [
    ({"experiment": "a" * 280}, "experiment"),
    ({"experiment": "experiments/" + "é" * 140 + ".yaml"}, "experiment"),
    ({"personas": ["a" * 300]}, "personas.0"),
])
def test_an_overlong_name_in_a_run_is_refused_naming_it(api, body, field) -> None:
    url, _ = api
    answer = httpx.post(f"{url}/api/runs", json=body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["fields"][0]["field"] == field
