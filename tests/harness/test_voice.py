"""Voice calls on a real audio path: espeak-ng speech, the backend's energy end-of-turn and
pocketsphinx ASR, the SDK's audio events, and (with PulseAudio) the sounddevice microphone and
speaker. These take real time, like the calls they test."""

from __future__ import annotations

import builtins
import json
from pathlib import Path

import numpy as np
import pytest

from voicelab.audio.pulse import PersonaAtMicrophone, record_speaker, start_pulse, stop_pulse
from voicelab.audio.speech import word_error_rate
from voicelab.audio.wav import channel_rms
from voicelab.harness.call import Call
from voicelab.lab.batch import run_batch
from voicelab.lab.tables import load_runs
from voicelab.report.build import build_report
from voicelab.spec.errors import ConfigError, MissingDependency

from ..conftest import AGENTS, PERSONAS

pytestmark = pytest.mark.slow
#: Real-time voice calls: their own group, beside the rest (scripts/test.sh); the text twins,
#: the device listing and the unit tests here run with the rest.
realtime = pytest.mark.realtime
BOTH_MODES = pytest.mark.parametrize("mode", ["text", pytest.param("voice", marks=realtime)])
LATENCY_S = 2.0


@realtime
def test_synthetic_voice_batch_and_report(local_backend, tmp_path: Path):
    """A polite and an interrupting persona, as a voice batch against a backend that hears and
    speaks, then the report with the voice columns."""
    backend = local_backend(latency_s=LATENCY_S)
    outcome = run_batch(str(PERSONAS), str(AGENTS), persona_ids=["anna-double-charge", "leo-talks-over"],
                        mode="voice", concurrency=2, runs_root=str(tmp_path), run_id="v", progress=False,
                        local_url=backend.base_url)
    results = {r.persona_id: r for r in outcome.results}
    anna, leo = results["anna-double-charge"], results["leo-talks-over"]
    anna_record = backend.history.get(anna.conversation_id)
    leo_record = backend.history.get(leo.conversation_id)

    assert anna.success and anna.mode == "voice" and anna.end_reason == "agent_ended", anna.checks
    # both sides of the transcript: what the persona said, and what the agent heard
    assert [e.speaker for e in anna.transcript] == ["agent", "user"] * 3 + ["agent"]
    heard = [t["message"] for t in anna_record.transcript if t["role"] == "user"]
    assert len(heard) == 3 and all(t.get("source_medium") == "audio" for t in anna_record.transcript
                                   if t["role"] == "user")
    assert word_error_rate("Yes, please go ahead with the dispute.", heard[1]) < 0.8
    # each caller turn keeps what the persona said; its text is what the agent's recognition heard
    user = [e for e in anna.transcript if e.speaker == "user"]
    assert [e.text for e in user] == heard and user[1].said == "Yes, please go ahead with the dispute."
    assert all(e.said and e.said != e.text for e in user), "espeak and pocketsphinx never agree to the letter"
    assert anna.metrics.wer is not None and 0 <= anna.metrics.wer <= 1
    assert len(anna.metrics.response_latency_ms) == 3 and min(anna.metrics.response_latency_ms) > 0
    assert anna.metrics.talk_ratio and 0 < anna.metrics.talk_ratio < 1
    assert Path(anna.audio_path).parent == tmp_path / "v" / "audio"
    caller_rms, agent_rms = channel_rms(anna.audio_path)
    assert caller_rms > 100 and agent_rms > 100, "both channels of the recording carry speech"
    assert not anna_record.text_only

    # the interrupting persona talks over the agent: the agent stops and corrects its turn
    assert leo.metrics.interruptions >= 1
    cut = [t for t in leo_record.transcript if t.get("interrupted")]
    assert cut and all(len(t["message"]) < len(t["original_message"]) for t in cut)
    marked = [e for e in leo.transcript if e.interrupted]  # and so does the stored result
    assert [(e.text, e.original_text) for e in marked] == [(t["message"], t["original_message"]) for t in cut]
    stored = [json.loads(line) for line in (tmp_path / "v" / "calls.jsonl").read_text().splitlines()]
    assert {"said", "interrupted"} <= set(stored[0]["transcript"][1])

    calls = load_runs("v", root=tmp_path).calls
    assert calls["wer"].notna().all() and calls["talk_ratio"].notna().all()
    report = build_report("v", runs_root=tmp_path, reports_dir=tmp_path / "reports")
    page = report.read_text()
    header = page.split('id="vl-calls"', 1)[1].split("</tr>", 1)[0]
    assert "wer" in header and "interruptions" in header and "talk_ratio" in header
    assert page.count("data:audio/ogg;codecs=opus;base64,") == 2 and "Recordings of 2 voice calls" in page
    assert "Voice: word error rate and talk ratio" in page
    listen_offline(report, tmp_path)

    linked = build_report("v", runs_root=tmp_path, reports_dir=tmp_path / "linked", audio="link").read_text()
    assert 'src="../v/audio/anna-double-charge-1.wav"' in linked and "data:audio" not in linked


def listen_offline(report: Path, tmp_path: Path) -> None:
    """The report in headless Chromium with the network off: a recording plays (its duration is
    read from the embedded data), and no table runs off the page."""
    from playwright.sync_api import sync_playwright

    from ..report.test_reports import CHROMIUM

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--autoplay-policy=no-user-gesture-required"])
        page = browser.new_context(offline=True, viewport={"width": 1000, "height": 900}).new_page()
        page.goto(report.as_uri())
        page.click("details.vl-persona:has-text('anna-double-charge') > summary")
        duration = page.eval_on_selector("#call-anna-double-charge\\#1 audio", """async el => {
            if (el.readyState < 1) await new Promise(r => el.addEventListener('loadedmetadata', r, {once: true}));
            await el.play(); await new Promise(r => setTimeout(r, 300)); el.pause();
            return [el.duration, el.currentTime, el.error && el.error.code];
        }""")
        assert duration[0] > 3 and duration[1] > 0 and duration[2] is None, duration
        width = page.evaluate("window.innerWidth")
        overflow = page.evaluate("""() => [document.documentElement.scrollWidth,
            ...[...document.querySelectorAll('.vl-scroll, .vl-call, .vl-kpis')]
                .map(e => e.getBoundingClientRect().right)]""")
        assert max(overflow) <= width, (overflow, width)
        page.screenshot(path=str(tmp_path / "voice-report.png"), full_page=True)
        browser.close()


@realtime
def test_silence_is_reprompted_in_voice_mode(dataset, local_backend):
    """A silent caller's microphone still sends silent frames every 20 ms; they are not activity,
    so the agent's silence re-prompt comes as in text mode (3 s after its ~5 s first message)."""
    backend = local_backend()
    req = dataset.request("silent-line-chargeback", mode="voice").model_copy(update={"max_duration_s": 12})
    result = Call(req, base_url=backend.base_url).run()
    assert result.mode == "voice" and result.end_reason == "timeout"
    assert any("still there" in e.text for e in result.transcript if e.speaker == "agent"), result.transcript


@realtime
def test_sounddevice_path_through_pulseaudio(dataset, local_backend, tmp_path: Path, monkeypatch):
    """A human voice call where the 'human' is the persona's speech played into a virtual
    microphone, and the agent is heard on a virtual speaker."""
    env = start_pulse(tmp_path / "pulse")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    speaker = record_speaker(tmp_path / "speaker.raw", env)
    try:
        from voicelab.audio.sounddevice import SoundDeviceAudio

        # PortAudio may have started (in a test that ran earlier in this process) before this
        # PulseAudio server existed: a device it does not know makes voicelab rescan
        persona = dataset.persona("anna-double-charge")
        audio = SoundDeviceAudio("pulse", "pulse")
        on_entry = PersonaAtMicrophone(persona, audio, env)
        backend = local_backend(latency_s=LATENCY_S)
        request = dataset.request(persona.id, mode="voice", caller="human", max_duration_s=90,
                                  audio_dir=str(tmp_path))
        result = Call(request, base_url=backend.base_url, audio=audio, on_entry=on_entry).run()
    finally:
        speaker.terminate()
        speaker.wait()
        stop_pulse(env)

    agent_turns = [e for e in result.transcript if e.speaker == "agent"]
    user_turns = [e for e in result.transcript if e.speaker == "user"]
    assert len(agent_turns) >= 3 and len(user_turns) >= 2 and on_entry.said, result.transcript
    assert all(e.text for e in user_turns), "the agent transcribed what the microphone heard"
    assert result.metrics.response_latency_ms, "latency measured from the microphone's end of speech"
    caller_rms, agent_rms = channel_rms(result.audio_path)
    assert caller_rms > 50 and agent_rms > 50
    played = np.frombuffer((tmp_path / "speaker.raw").read_bytes(), dtype=np.int16).astype(np.float32)
    assert len(played) > 16000 and float(np.sqrt(np.mean(played ** 2))) > 50, "the agent was heard on the speaker"


def test_missing_portaudio_and_devices_are_clear_errors(monkeypatch):
    from voicelab.audio import sounddevice as sd_module

    real_import = builtins.__import__

    def no_portaudio(name, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        if name == "sounddevice":
            raise OSError("PortAudio library not found")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_portaudio)
    with pytest.raises(MissingDependency, match="apt-get install libportaudio2"):
        sd_module.load_sounddevice()
    monkeypatch.setattr(builtins, "__import__", real_import)
    with pytest.raises(ConfigError, match="--input-device"):
        sd_module.resolve("no-such-microphone", "input")


@BOTH_MODES
def test_silence_ends_the_call_in_both_modes(dataset, local_backend, mode):
    """The bundled agent ends a silent line itself, as a good agent does: two re-prompts, then a
    polite goodbye and end_call; the same in voice mode (silent frames keep arriving) as in text
    mode (nothing arrives). The silent persona's checks pass without the call's time limit."""
    backend = local_backend()
    result = Call(dataset.request("silent-line-chargeback", mode=mode), base_url=backend.base_url).run()
    agent_turns = [e.text for e in result.transcript if e.speaker == "agent"]
    assert result.end_reason == "agent_ended" and result.success, (result.end_reason, result.checks, agent_turns)
    assert len(agent_turns) == 4 and all("still there" in t for t in agent_turns[1:3]), agent_turns
    assert "Goodbye" in agent_turns[-1]


@BOTH_MODES
def test_a_silent_caller_hangs_up_after_its_turns_in_both_modes(dataset, local_backend, mode):
    """Against an agent that re-prompts forever, the silent caller hangs up (without a word) once
    `hang_up_after_turns` agent turns have passed, rather than running into the time limit."""
    agent = dataset.agents["chargeback"]
    silence = agent.flow.silence.model_copy(update={"end_after": None, "after_s": 1.0})
    patient = agent.model_copy(update={"flow": agent.flow.model_copy(update={"silence": silence})})
    backend = local_backend(agents={"chargeback": patient})
    request = dataset.request("silent-line-chargeback", mode=mode)
    persona = request.persona.model_copy(update={"caller": request.persona.caller.model_copy(
        update={"hang_up_after_turns": 2})})
    result = Call(request.model_copy(update={"persona": persona}), base_url=backend.base_url).run()
    assert result.end_reason == "caller_ended", (result.end_reason, result.transcript)
    assert [e.speaker for e in result.transcript] == ["agent"] * 3  # first message, two re-prompts, no word


def test_recordings_never_overwrite_each_other(dataset, tmp_path: Path):
    """Two single voice calls of one persona (no call id), and a call placed again on resume
    (same call id): every recording keeps its own file."""
    from types import SimpleNamespace

    from voicelab.audio.wav import StereoRecorder
    from voicelab.harness.transcript import TranscriptRecorder
    from voicelab.harness.voice_call import VoiceSide

    def record(call_id: str | None) -> str:
        request = dataset.request("anna-double-charge", mode="voice", audio_dir=str(tmp_path), call_id=call_id)
        side = VoiceSide(request, TranscriptRecorder(), SimpleNamespace())
        assert isinstance(side.wav, StereoRecorder)
        side.save(request)
        assert side.audio_path is not None
        return side.audio_path

    single = [record(None), record(None)]
    batch = [record("anna-double-charge#1"), record("anna-double-charge#1")]
    assert len(set(single + batch)) == 4 and all(Path(p).exists() for p in single + batch)
    assert Path(batch[0]).name == "anna-double-charge-1.wav" and Path(batch[1]).name == "anna-double-charge-1-2.wav"
    assert all(Path(p).name.startswith("anna-double-charge-20") for p in single)


def test_devices_lists_virtual_devices_or_says_what_to_do(tmp_path: Path):
    import os
    import subprocess
    import sys

    clean = {k: v for k, v in os.environ.items() if not k.startswith("PULSE")}
    none = subprocess.run([sys.executable, "-m", "voicelab", "devices"], env=clean, capture_output=True,
                          text=True, timeout=60)
    if none.returncode == 0:
        pytest.skip("this machine has audio devices of its own")
    assert none.returncode == 1 and "PortAudio finds no audio devices" in none.stderr
    assert "pulseaudio" in none.stderr and "audio` group" in none.stderr and "Traceback" not in none.stderr

    env = start_pulse(tmp_path / "pulse")
    try:
        found = subprocess.run([sys.executable, "-m", "voicelab", "devices"], env={**clean, **env},
                               capture_output=True, text=True, timeout=60)
    finally:
        stop_pulse(env)
    assert found.returncode == 0, found.stderr
    assert "pulse" in found.stdout and "(default input)" in found.stdout
