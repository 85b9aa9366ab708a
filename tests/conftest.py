"""Shared fixtures: a real local backend on loopback, the bundled datasets, a clean environment.

Nothing here fakes the SDK: tests talk to the local backend through the unchanged `elevenlabs`
package over real sockets.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from voicelab.local import LocalBackend
from voicelab.spec.datasets import load_dataset

from . import contracts
from .tool_world import cases, crm, world  # noqa: F401 - the tool tests' fixtures (tests/tool_world.py)

ROOT = Path(__file__).resolve().parent.parent
PERSONAS = ROOT / "datasets" / "personas"
AGENTS = ROOT / "datasets" / "agents"
ARTIFACTS = ROOT / "test-artifacts"

# Property tests judge what the code answers, never how fast: on a loaded 2-core machine (the
# suite's workers, real-time calls) a draw or an example may take a second, which is no bug.
settings.register_profile("voicelab", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("voicelab")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No developer key or .env leaks into a test; loopback never goes through a proxy."""
    for name in ("ELEVENLABS_API_KEY", "ELEVENLABS_AGENT_ID", "ELEVENLABS_BASE_URL", "ELEVENLABS_REQUIRES_AUTH",
                 "VOICELAB_LOCAL_URL", "VOICELAB_API_KEY", "ELEVENLABS_PHONE_NUMBER_ID", "ELEVENLABS_PHONE_PROVIDER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setattr("voicelab.harness.settings._dotenv", lambda path=None: {})


@pytest.fixture(scope="session")
def dataset():
    return load_dataset(PERSONAS, AGENTS)


@pytest.fixture(scope="session")
def backend(dataset):
    """One local backend shared by the session (bundled agents and personas, no injected latency).
    Tests that change its settings or arm faults take `local_backend` instead."""
    with LocalBackend(dataset.agents, personas=dataset.personas, ping_interval_s=0.5) as server:
        yield server


@pytest.fixture()
def local_backend(dataset):
    """A factory of backends of the test's own, stopped after the test:
    `local_backend(latency_s=2.0)`, `local_backend(require_key=KEY)`."""
    started: list[LocalBackend] = []

    def start(**settings) -> LocalBackend:
        settings.setdefault("personas", dataset.personas)
        settings.setdefault("ping_interval_s", 0.5)
        server = LocalBackend(settings.pop("agents", dataset.agents), **settings)
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture()
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
    if not hasattr(config, "workerinput") and not contracts.keep_recordings():  # a new run: a new recording
        shutil.rmtree(contracts.RECORDINGS, ignore_errors=True)
    contracts.install(_RECORDER.setdefault("recorder", contracts.Recorder()))


def pytest_sessionfinish(session: pytest.Session) -> None:
    recorder = _RECORDER.get("recorder")
    if recorder is not None and (recorder.ws or recorder.rest):
        recorder.dump(contracts.worker_name())


#: This process's contract recorder (tests/contracts.py): every frame and REST body of the run.
_RECORDER: dict[str, contracts.Recorder] = {}


@pytest.fixture(autouse=True)
def contract_check():
    """Fail the test during which the local backend sent, or an official client sent it, a frame
    (or the backend answered a REST body) that the published contract does not allow."""
    recorder = _RECORDER["recorder"]
    before = len(recorder.failures)
    yield
    new = recorder.failures[before:]
    if new:
        pytest.fail("not what the published contract allows (tests/contracts.py):\n" + "\n".join(
            f"- {f['what']}: {f['error']}\n    {f['frame'][:300]}" for f in new[:5]), pytrace=False)


#: What a raw websocket client answers the bundled agents' client tools with (their default mocks'
#: shapes): a client that implements its tools, as the SDKs' ClientTools do.
TOOL_RESULTS = {"lookup_dispute": {"status": "open"}, "confirm_dispute": {"recorded": True},
                "check_interview_slots": {"slots": "Tuesday at 10:00 or Thursday at 14:00"},
                "book_interview": {"booked": True}}


def tool_result_for(frame: dict) -> str | None:
    """The `client_tool_result` frame answering a `client_tool_call` frame (None for any other)."""
    import json

    if frame.get("type") != "client_tool_call":
        return None
    call = frame["client_tool_call"]
    return json.dumps({"type": "client_tool_result", "tool_call_id": call["tool_call_id"],
                       "result": TOOL_RESULTS.get(call["tool_name"], "ok"), "is_error": False})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A real-time voice call is slow by nature: every `realtime` test is also `slow`, so the
    quick loop (`-m "not slow"`) never waits on real-time audio."""
    for item in items:
        if item.get_closest_marker("realtime") is not None and item.get_closest_marker("slow") is None:
            item.add_marker(pytest.mark.slow)
