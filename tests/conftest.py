"""Shared fixtures: a real local backend on loopback, the bundled datasets, a clean environment.

Nothing here fakes the SDK: tests talk to the local backend through the unchanged `elevenlabs`
package over real sockets.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from voicelab.datasets import load_dataset
from voicelab.local import LocalBackend

ROOT = Path(__file__).resolve().parent.parent
PERSONAS = ROOT / "datasets" / "personas"
AGENTS = ROOT / "datasets" / "agents"
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No developer key or .env leaks into a test; loopback never goes through a proxy."""
    for name in ("ELEVENLABS_API_KEY", "ELEVENLABS_AGENT_ID", "ELEVENLABS_BASE_URL", "ELEVENLABS_REQUIRES_AUTH",
                 "VOICELAB_LOCAL_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setattr("voicelab.settings._dotenv", lambda path=None: {})


@pytest.fixture(scope="session")
def dataset():
    return load_dataset(PERSONAS, AGENTS)


@pytest.fixture(scope="session")
def backend(dataset):
    """One local backend for the session (agents from datasets/agents, no injected latency)."""
    with LocalBackend(dataset.agents, ping_interval_s=0.5) as server:
        yield server


@pytest.fixture()
def fresh_backend(dataset):
    """A backend of the test's own, for tests that change latency or arm faults."""
    with LocalBackend(dataset.agents, ping_interval_s=0.5) as server:
        yield server


@pytest.fixture()
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
