"""Virtual audio devices for headless machines (tests, CI, benchmarks): a private PulseAudio
server with two null sinks, `vl_mic` (play into it; its monitor is the virtual microphone) and
`vl_speaker` (the virtual speaker; its monitor is what a listener would hear). PortAudio reaches
it through ALSA's pulse plugin; PULSE_SOURCE / PULSE_SINK pick the sinks."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from voicelab.spec.errors import MissingDependency


def start_pulse(runtime: Path) -> dict[str, str]:
    """Start the server; return the environment clients need."""
    if shutil.which("pulseaudio") is None:
        raise MissingDependency("pulseaudio is not installed: apt-get install pulseaudio pulseaudio-utils "
                                "libasound2-plugins (scripts/setup.sh does it)")
    runtime.mkdir(parents=True, exist_ok=True)
    socket = runtime / "native"
    env = {**os.environ, "PULSE_RUNTIME_PATH": str(runtime), "HOME": str(runtime)}
    subprocess.run(["pulseaudio", "--daemonize=yes", "--exit-idle-time=-1", "--disallow-exit", "-n",
                    f"--load=module-native-protocol-unix socket={socket} auth-anonymous=1",
                    "--load=module-null-sink sink_name=vl_mic", "--load=module-null-sink sink_name=vl_speaker",
                    f"--log-target=file:{runtime / 'log'}"], env=env, check=True, capture_output=True)
    server = f"unix:{socket}"
    for _ in range(50):
        if subprocess.run(["pactl", "info"], env={**env, "PULSE_SERVER": server}, capture_output=True).returncode == 0:
            break
        time.sleep(0.1)
    return {"PULSE_SERVER": server, "PULSE_RUNTIME_PATH": str(runtime), "PULSE_SOURCE": "vl_mic.monitor",
            "PULSE_SINK": "vl_speaker"}


def stop_pulse(env: dict[str, str]) -> None:
    subprocess.run(["pulseaudio", "--kill"], env={**os.environ, **env}, capture_output=True)


def play_into_mic(pcm: bytes, env: dict[str, str]) -> None:
    """Play 16 kHz mono PCM into the virtual microphone, blocking until it has been played."""
    subprocess.run(["pacat", "--playback", "-d", "vl_mic", "--format=s16le", "--rate=16000", "--channels=1",
                    "--latency-msec=20"], input=pcm, env={**os.environ, **env}, check=True, capture_output=True)


def record_speaker(path: Path, env: dict[str, str]) -> subprocess.Popen:
    """Record what the virtual speaker plays (its monitor) to a raw 16 kHz mono file until killed."""
    out = open(path, "wb")  # noqa: SIM115 - closed when the process ends
    return subprocess.Popen(["parec", "-d", "vl_speaker.monitor", "--format=s16le", "--rate=16000",
                             "--channels=1"], stdout=out, env={**os.environ, **env})


class PersonaAtMicrophone:
    """A transcript hook that plays a persona into the virtual microphone: whenever the agent has
    spoken (and its audio has played out on `audio`'s speaker), the scripted caller's reply is
    spoken with espeak-ng into `vl_mic`. It stands in for the human in human-caller voice calls."""

    def __init__(self, persona: Any, audio: Any, env: dict[str, str]) -> None:
        from voicelab.spec.script import ScriptedCaller

        self.persona, self.audio, self.env = persona, audio, env
        self.scripted = ScriptedCaller(persona)
        self.said: list[str] = []

    def _answer(self, text: str) -> None:
        from voicelab.audio.speech import speak, voice_for

        lines = self.scripted.on_agent_turn(text).say
        if not lines:
            return
        time.sleep(0.3)
        while self.audio.playing:  # a person waits for the end of the agent's sentence
            time.sleep(0.05)
        self.said.append(" ".join(lines))
        pcm = speak(" ".join(lines), voice_for(self.persona.id, self.persona.language))
        play_into_mic(pcm + b"\0" * 16000, self.env)

    def __call__(self, entry: Any) -> None:
        if entry.speaker == "agent":
            threading.Thread(target=self._answer, args=(entry.text,), daemon=True).start()
