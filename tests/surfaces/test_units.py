"""The command line in a process: signal handlers left as found, and a backgrounded run that
inherited SIGINT as ignored still stops."""

from __future__ import annotations

from voicelab.harness.transcript import TranscriptRecorder
from voicelab.spec.models import TranscriptEntry


def entry(speaker: str, text: str, t: float, latency: float | None = None) -> TranscriptEntry:
    return TranscriptEntry(speaker=speaker, text=text, timestamp=t, latency_ms=latency)


TRANSCRIPT = [entry("agent", "Hello, is this Anna?", 0), entry("user", "Yes.", 1),
              entry("agent", "Your Premium Gym Membership was charged twice.", 1.3, 300),
              entry("user", "Right.", 2), entry("agent", "Goodbye.", 2.2, 200)]


#: The languages personas are written in that the scripted caller must speak (issue: a Spanish
#: caller said "Thanks, that's all. Goodbye." and did not hear "Adiós").
CALLER_LANGUAGES = ["en", "de", "es", "fr", "it", "pt", "nl", "pl"]


def persona_speaking(dataset, language: str, **caller) -> object:
    persona = dataset.persona("anna-double-charge")
    spec = persona.caller.model_copy(update=caller)
    return persona.model_copy(update={"language": language, "caller": spec})


def voice_side(dataset):
    """A voice call's audio side over a fake audio source (the alignment of what was said and
    what was heard is pure bookkeeping)."""
    from types import SimpleNamespace

    from voicelab.harness.voice_call import VoiceSide

    request = dataset.request("anna-double-charge", mode="voice")
    recorder = TranscriptRecorder()
    audio = SimpleNamespace(interruptions=0, caller_speech_s=0.0, agent_audio_s=0.0)
    return VoiceSide(request, recorder, audio), recorder


def test_the_cli_called_in_process_leaves_the_callers_signal_handlers():
    """A notebook or script may call voicelab.surfaces.cli.main.main(); its own Ctrl+C / SIGTERM handling must
    survive (the command's SIGTERM-as-Ctrl+C, and ignoring signals on exit, are the process's)."""
    import signal

    from voicelab.surfaces.cli import main as cli

    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    assert cli.main(["personas"]) == 0
    assert {s: signal.getsignal(s) for s in before} == before


def test_kill_int_stops_a_backgrounded_run_that_inherited_sigint_as_ignored(tmp_path):
    """`voicelab run ... &` from a script starts with SIGINT ignored (a non-interactive shell does
    that to background jobs); `kill -INT` must still stop it as Ctrl+C does: exit 130, the calls
    finished so far stored, the run interrupted and resumable."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    from voicelab.lab.store import RunStore

    from ..conftest import AGENTS, PERSONAS

    def ignore_sigint() -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    brisk = ["anna-double-charge", "tomasz-merchant-refunded", "olga-credit-question", "sven-wrong-person"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "voicelab", "run", "--personas", str(PERSONAS), "--agents", str(AGENTS),
         "--persona", *brisk, "--repeats", "5", "--concurrency", "2", "--latency-ms", "200", "--run-id", "bg",
         "--runs", str(tmp_path), "--no-report"],
        env={**os.environ, "NO_PROXY": "127.0.0.1,localhost"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, preexec_fn=ignore_sigint)  # noqa: PLW1509 - the point: a child that starts with SIGINT ignored
    calls = tmp_path / "bg" / "calls.jsonl"
    deadline = time.time() + 60
    while time.time() < deadline and (not calls.exists() or len(calls.read_bytes().splitlines()) < 2):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, (out, err)
    assert "interrupted (Ctrl+C)" in out, out
    stored = [json.loads(line) for line in calls.read_bytes().splitlines() if line.strip()]
    assert 2 <= len({r["call_id"] for r in stored}) < 20
    run = RunStore(tmp_path).open("bg")
    assert run.manifest.state == "interrupted" and run.manifest.sessions[0].stopped_by == "Ctrl+C"
