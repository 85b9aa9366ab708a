"""The console's error paths, on the real widget objects (no browser needed): each problem is
a readable line in the console's status, never a traceback."""

from __future__ import annotations

import html
import time
from pathlib import Path

from voicelab.lab.store import RunStore
from voicelab.surfaces.widgets import CallConsole

from ..conftest import AGENTS, PERSONAS


def status(console: CallConsole) -> str:
    return html.unescape(console.status.value)


def test_invalid_persona_files_are_reported(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("personas:\n  - id: x\n")
    console = CallConsole(str(bad), str(AGENTS), runs_root=str(tmp_path / "runs"))
    assert "Persona files are invalid" in status(console) and "field 'name'" in status(console)
    assert console.start_button.disabled


def test_hosted_backend_without_key_is_reported(tmp_path: Path):
    console = CallConsole(str(PERSONAS), str(AGENTS), runs_root=str(tmp_path / "runs"))
    console.backend_picker.value = "elevenlabs"
    console.start()
    assert "ELEVENLABS_API_KEY is not set" in status(console) and "vl-error" in status(console)
    assert console.call is None and not console.start_button.disabled, "nothing started; ready to try again"


def test_no_audio_device_is_reported(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("PULSE_SERVER", "unix:/nonexistent")
    console = CallConsole(str(PERSONAS), str(AGENTS), runs_root=str(tmp_path / "runs"))
    console.mode_picker.value = "voice"
    console.input_picker.options = [("no such microphone", "no-such-microphone")]
    console.input_picker.value = "no-such-microphone"
    console.start()
    assert "--input-device" in status(console) or "PortAudio" in status(console)


def test_unreachable_backend_is_reported_before_a_call_is_placed(tmp_path: Path, monkeypatch):
    """The hosted key and agent are checked with one request before a call starts (as for a
    batch): an unreachable platform is an error in the console, and no call is stored."""
    monkeypatch.setenv("ELEVENLABS_API_KEY", "sk_fake")
    monkeypatch.setenv("ELEVENLABS_AGENT_ID", "chargeback")
    monkeypatch.setenv("ELEVENLABS_BASE_URL", "http://127.0.0.1:9")
    console = CallConsole(str(PERSONAS), str(AGENTS), runs_root=str(tmp_path / "runs"))
    console.persona_picker.value = "anna-double-charge"
    console.backend_picker.value = "elevenlabs"
    console.start()
    assert console.call is None and console.result is None
    assert "Error:" in status(console) and "cannot reach the backend" in status(console)
    assert "sk_fake" not in status(console) and "Traceback" not in status(console)
    assert not (tmp_path / "runs").exists()


def wait_until(condition, seconds: float = 20) -> bool:  # noqa: ANN001
    deadline = time.time() + seconds
    while not condition() and time.time() < deadline:
        time.sleep(0.05)
    return condition()


def agent_lines(console: CallConsole) -> int:
    return console.transcript.value.count("vl-line vl-agent")


def test_text_call_from_python_lands_in_a_console_run(tmp_path: Path):
    console = CallConsole(str(PERSONAS), str(AGENTS), runs_root=str(tmp_path / "runs"))
    console.persona_picker.value = "tomasz-merchant-refunded"
    assert console.caller_picker.value == "human", "in the console, you play the persona by default"
    console.start()
    assert wait_until(lambda: agent_lines(console) == 1), "the agent's first message shows"
    console.message.value = "Speaking, yes."
    console.send()
    assert wait_until(lambda: agent_lines(console) == 2)
    console.message.value = "No, it's resolved."
    console.send()
    assert wait_until(lambda: console.result is not None)
    assert console.result.end_reason == "agent_ended" and console.result.success
    assert "withdraw" in console.transcript.value
    assert console.run is not None and console.run.results()[0].call_id == "tomasz-merchant-refunded#1"
    assert console.run.manifest.persona_info["tomasz-merchant-refunded"]["style"] == "cooperative"


def test_the_scripted_caller_can_be_watched_in_the_console(tmp_path: Path):
    console = CallConsole(str(PERSONAS), str(AGENTS), runs_root=str(tmp_path / "runs"))
    console.persona_picker.value = "anna-double-charge"
    console.caller_picker.value = "scripted"
    console.start()
    assert console.message.disabled, "nothing to type: the scripted caller talks"
    assert wait_until(lambda: console.result is not None)
    assert console.result.success and console.result.caller == "scripted"
    assert "vl-user" in console.transcript.value and "PASS" in console.verdict.value
    assert [r.call_id for r in console.run.results()] == ["anna-double-charge#1"]
    assert RunStore(tmp_path / "runs").open(console.run.run_id).manifest.state == "running"
    assert console.run.lock_held(), "while the console is open its run is being placed"
    console.close()
    closed = RunStore(tmp_path / "runs").open(console.run.run_id).manifest
    assert closed.state == "finished", "a closed console's run is not shown as running forever"
    assert [(s.state, s.calls_stored) for s in closed.sessions] == [("finished", 1)]
