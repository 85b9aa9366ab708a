"""CPU cost of each audio condition, per second of caller audio (issue 14, item 6).

    .venv/bin/python benchmarks/conditions.py        # ~20 s

60 s of a persona's speech (espeak-ng, with the pauses a call has) go through a `Conditioner`
frame by frame, as a call sends them; CPU seconds (process time) per second of audio, and how
many calls' worth of conditioning one core could keep up with in real time. The noise beds are
made once per process (babble: six espeak-ng voices) and counted separately.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

from voicelab.audio.conditions import FRAME, Conditioner, noise_bed
from voicelab.audio.speech import speak
from voicelab.spec.models import AudioCondition

SECONDS = 60
CONDITIONS = {
    "clean (no condition)": None,
    "white 10 dB": {"noise": "white", "snr_db": 10},
    "pink 10 dB": {"noise": "pink", "snr_db": 10},
    "babble 10 dB": {"noise": "babble", "snr_db": 10},
    "street 10 dB": {"noise": "street", "snr_db": 10},
    "phone": {"channel": "phone"},
    "loss 5%": {"loss": 0.05},
    "volume -6 dB": {"volume_db": -6},
    "street 10 dB, phone, loss 5%": {"noise": "street", "snr_db": 10, "channel": "phone", "loss": 0.05},
}


def frames() -> list[bytes]:
    line = speak("Yes, please go ahead with the dispute. No, that's all, thank you.", "en-us+f3")
    pause = b"\0" * (FRAME * 2 * 40)  # 0.8 s of the caller listening
    audio = b""
    while len(audio) < SECONDS * 32000:
        audio += line + pause
    audio = audio[: SECONDS * 32000]
    return [audio[i:i + FRAME * 2] for i in range(0, len(audio), FRAME * 2)]


def main() -> None:
    print(f"machine: {os.cpu_count()} cores; python {sys.version.split()[0]}")
    for kind in ("white", "pink", "babble", "street"):
        start = time.process_time()
        noise_bed(kind, 0)
        print(f"noise bed {kind}: {(time.process_time() - start) * 1000:.0f} ms CPU, once per process")
    audio = frames()
    silent = {i for i, f in enumerate(audio) if not any(f)}
    print(f"{'condition':32} {'CPU ms per s of audio':>22} {'real-time calls per core':>25}")
    for name, given in CONDITIONS.items():
        conditioner = Conditioner(AudioCondition(**given), "bench") if given else None
        start = time.process_time()
        for i, frame in enumerate(audio):
            if conditioner is not None and (i not in silent or not conditioner.passthrough):
                conditioner(None if i in silent else frame)
        cpu = time.process_time() - start
        per_s = cpu / SECONDS * 1000
        print(f"{name:32} {per_s:>22.2f} {1000 / per_s if per_s else float('inf'):>25.0f}")


if __name__ == "__main__":
    np.random.seed(0)
    main()
