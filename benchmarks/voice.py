"""Voice benchmarks (issue: voice, item 7). Real time, real audio path, offline.

    .venv/bin/python benchmarks/voice.py            # all parts, ~5 minutes
    .venv/bin/python benchmarks/voice.py agreement  # one part: agreement, concurrency or harness

agreement    measured response latency against the injected value, over 64 turns (8 calls x 8 turns
             at 2 calls at once; injected 2000 ms): target within +-30 ms.
concurrency  how many synthetic-voice calls this machine keeps in real time at once: a call is in
             real time when its 20 ms audio clock never falls a frame behind (no underrun) and its
             latency still agrees with the injected value; target at least 4.
harness      what voicelab adds on the audio path of a real device (PulseAudio virtual mic and
             speaker through sounddevice): microphone callback -> websocket send, and websocket
             audio (sent by the backend) -> output buffer; target p95 <= 5 ms.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PERSONAS = HERE / "data" / "personas.yaml"
AGENTS = HERE / "data" / "agents"
INJECTED_S = 2.0
os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")


def p95(values: list[float]) -> float:
    return sorted(values)[int(0.95 * (len(values) - 1))] if values else float("nan")


async def _voice_calls(n: int, backend_url: str, dataset) -> list:  # noqa: ANN001
    from voicelab.harness.call import Call

    calls = [Call(dataset.request("bench-caller", mode="voice", max_duration_s=120, audio_dir=tempfile.mkdtemp(),
                                  call_id=f"bench#{i}"), base_url=backend_url) for i in range(n)]
    results = await asyncio.gather(*(c.arun() for c in calls))
    return [(r, c.voice_stats.late_frames) for r, c in zip(results, calls, strict=True)]


def agreement() -> dict:
    from voicelab.local import LocalBackend
    from voicelab.spec.datasets import load_dataset

    ds = load_dataset(PERSONAS, AGENTS)
    errors: list[float] = []
    with LocalBackend(ds.agents, latency_s=INJECTED_S) as backend:
        for _ in range(4):  # 4 rounds of 2 concurrent calls
            for result, _late in asyncio.run(_voice_calls(2, backend.base_url, ds)):
                errors += [ms - INJECTED_S * 1000 for ms in result.metrics.response_latency_ms]
    within = sum(abs(e) <= 30 for e in errors)
    return {"turns": len(errors), "injected_ms": INJECTED_S * 1000, "mean_error_ms": round(statistics.mean(errors), 1),
            "max_abs_error_ms": round(max(abs(e) for e in errors), 1), "within_30ms": f"{within}/{len(errors)}"}


def concurrency() -> dict:
    from voicelab.local import LocalBackend
    from voicelab.spec.datasets import load_dataset

    ds = load_dataset(PERSONAS, AGENTS)
    out = {}
    with LocalBackend(ds.agents, latency_s=INJECTED_S) as backend:
        for n in (2, 4, 6, 8):
            start = time.perf_counter()
            runs = asyncio.run(_voice_calls(n, backend.base_url, ds))
            errors = [abs(ms - INJECTED_S * 1000) for r, _ in runs for ms in r.metrics.response_latency_ms]
            late = sum(late for _, late in runs)
            ok = sum(r.success for r, _ in runs)
            out[f"{n}_calls"] = {"succeeded": ok, "late_frames": late, "max_latency_error_ms": round(max(errors), 1),
                                 "wall_s": round(time.perf_counter() - start, 1),
                                 "real_time": late == 0 and max(errors) <= 30 and ok == n}
    return out


def harness() -> dict:
    from voicelab.audio.pulse import PersonaAtMicrophone, start_pulse, stop_pulse
    from voicelab.audio.sounddevice import SoundDeviceAudio
    from voicelab.harness.call import Call
    from voicelab.local import LocalBackend
    from voicelab.spec.datasets import load_dataset

    ds = load_dataset()
    env = start_pulse(Path(tempfile.mkdtemp()) / "pulse")
    os.environ.update(env)
    try:
        persona = ds.persona("anna-double-charge")
        audio = SoundDeviceAudio("pulse", "pulse")
        on_entry = PersonaAtMicrophone(persona, audio, env)

        with LocalBackend(ds.agents, latency_s=INJECTED_S) as backend:
            request = ds.request(persona.id, mode="voice", caller="human", max_duration_s=90,
                                 audio_dir=tempfile.mkdtemp())
            sent: list[float] = []
            backend.on_agent_audio = sent.append  # the send time of every agent audio chunk
            result = Call(request, base_url=backend.base_url, audio=audio, on_entry=on_entry).run()
    finally:
        stop_pulse(env)
    mic = [d * 1000 for d in audio.input_delays]
    out = [(o - s) * 1000 for s, o in zip(sent, audio.output_at, strict=False)]
    return {"call_succeeded": result.success, "mic_blocks": len(mic),
            "mic_to_websocket_p50_ms": round(statistics.median(mic), 2), "mic_to_websocket_p95_ms": round(p95(mic), 2),
            "agent_chunks": len(out), "websocket_to_output_p50_ms": round(statistics.median(out), 2),
            "websocket_to_output_p95_ms": round(p95(out), 2), "output_underruns": audio.underruns}


PARTS = {"agreement": agreement, "concurrency": concurrency, "harness": harness}


def main() -> None:
    wanted = sys.argv[1:] or list(PARTS)
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}", flush=True)
    for name in wanted:
        start = time.perf_counter()
        print(f"({name}) " + json.dumps(PARTS[name](), indent=2) + f"  [{time.perf_counter() - start:.0f} s]",
              flush=True)


if __name__ == "__main__":
    main()
