"""Batch throughput, client cost and report time (issue: the main job, item 7).

    .venv/bin/python benchmarks/batch_throughput.py            # all parts, ~2 minutes
    .venv/bin/python benchmarks/batch_throughput.py a          # one part: a, b or c

(a) 200 calls of 8 timed agent turns each, 300 ms injected latency per turn, at concurrency 16
    and 64: wall time against the ideal calls / concurrency x turns x latency (target <= 1.15x),
    and against the wave-quantised ideal ceil(calls / concurrency) x turns x latency.
(b) the same 200 calls with no injected latency, against a local backend in its own process so
    only the client is measured: calls per second and client CPU ms per call, voicelab's async
    batch beside a naive script (one plain SDK `Conversation` per thread).
(c) `voicelab report` on a stored run of 1,000 calls (target <= 15 s).

Each part runs in its own process; peak memory (max RSS) is that process's, plus the notebook
kernel's for (c). Figures are printed; record them in benchmarks/README.md with the machine.
"""

from __future__ import annotations

import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PERSONAS = HERE / "data" / "personas.yaml"
AGENTS = HERE / "data" / "agents"
CALLS, TURNS, LATENCY_S = 200, 8, 0.3
os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")


def max_rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024


def part_a() -> dict:
    from voicelab.lab.batch import run_batch

    out = {}
    for concurrency in (16, 64):
        with tempfile.TemporaryDirectory() as runs:
            start = time.perf_counter()
            outcome = run_batch(str(PERSONAS), str(AGENTS), persona_ids=["bench-caller"], repeats=CALLS,
                                concurrency=concurrency, latency_ms=LATENCY_S * 1000, runs_root=runs,
                                run_id="a", progress=False)
            wall = time.perf_counter() - start
            results = outcome.results
        ok = sum(r.success for r in results)
        ideal = CALLS / concurrency * TURNS * LATENCY_S
        waves = math.ceil(CALLS / concurrency) * TURNS * LATENCY_S
        out[f"c{concurrency}"] = {"calls": len(results), "succeeded": ok, "wall_s": round(wall, 2),
                                  "ideal_s": round(ideal, 2), "ratio_to_ideal": round(wall / ideal, 3),
                                  "wave_ideal_s": round(waves, 2), "ratio_to_wave_ideal": round(wall / waves, 3)}
    out["peak_rss_mb"] = round(max_rss_mb(), 1)
    return out


def _serve() -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "voicelab", "serve", "--agents", str(AGENTS)],
                            stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    return proc, line.split(" at ", 1)[1].split()[0]


def _naive(url: str, calls: int, threads: int) -> int:
    """What a quick script does: a sync SDK Conversation per call, one thread per call."""
    from elevenlabs import ElevenLabs
    from elevenlabs.conversational_ai.conversation import Conversation

    client = ElevenLabs(base_url=url, api_key=None)

    def one(_: int) -> bool:
        ended = threading.Event()
        box: dict = {}

        def on_agent(text: str) -> None:
            if "goodbye" not in text.lower():
                box["conv"].send_user_message("Answer.")

        conv = Conversation(client, "bench", requires_auth=False, callback_agent_response=on_agent,
                            callback_disconnect=lambda d: ended.set())
        box["conv"] = conv
        conv.start_session()
        done = ended.wait(60)
        conv.wait_for_session_end()
        return done

    with ThreadPoolExecutor(threads) as pool:
        return sum(pool.map(one, range(calls)))


def part_b() -> dict:
    from voicelab.lab.batch import run_batch

    server, url = _serve()
    try:
        out = {}
        with tempfile.TemporaryDirectory() as runs:
            cpu, start = time.process_time(), time.perf_counter()
            outcome = run_batch(str(PERSONAS), str(AGENTS), persona_ids=["bench-caller"], repeats=CALLS,
                                concurrency=16, runs_root=runs, run_id="b", progress=False, local_url=url)
            wall, cpu = time.perf_counter() - start, time.process_time() - cpu
            ok = sum(r.success for r in outcome.results)
        out["voicelab_async_c16"] = {"succeeded": ok, "wall_s": round(wall, 2), "calls_per_s": round(CALLS / wall, 1),
                                     "client_cpu_ms_per_call": round(cpu * 1000 / CALLS, 1)}
        cpu, start = time.process_time(), time.perf_counter()
        ok = _naive(url, CALLS, 16)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        out["naive_sdk_threads_16"] = {"succeeded": ok, "wall_s": round(wall, 2), "calls_per_s": round(CALLS / wall, 1),
                                       "client_cpu_ms_per_call": round(cpu * 1000 / CALLS, 1)}
        out["peak_rss_mb"] = round(max_rss_mb(), 1)
        return out
    finally:
        server.terminate()
        server.wait()


def part_c() -> dict:
    """Store 1,000 calls (60 real ones, replicated with new ids), then time `voicelab report`."""
    from voicelab.lab.batch import run_batch

    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(tmp) / "runs"
        quick = ["anna-double-charge", "olga-credit-question", "kevin-in-a-hurry", "maria-confused-subscription",
                 "priya-backend-developer", "jonas-de-entwickler", "lena-de-unsicher", "carlos-jumps-ahead",
                 "mike-not-now", "sven-wrong-person"]
        outcome = run_batch(str(ROOT / "datasets" / "personas"), str(ROOT / "datasets" / "agents"),
                            persona_ids=quick, repeats=6, concurrency=16, runs_root=str(runs), run_id="c",
                            progress=False)
        lines = (outcome.run.path / "calls.jsonl").read_text().splitlines()
        copies = []
        for i in range(1000):
            record = json.loads(lines[i % len(lines)])
            record["call_id"] = f"{record['persona_id']}#{i + 1}"
            copies.append(json.dumps(record))
        (outcome.run.path / "calls.jsonl").write_text("\n".join(copies) + "\n")
        manifest = json.loads((outcome.run.path / "run.json").read_text())
        manifest["repeats"] = 100
        (outcome.run.path / "run.json").write_text(json.dumps(manifest))
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "voicelab", "report", "c", "--runs", str(runs), "--reports",
                               str(Path(tmp) / "reports")], capture_output=True, text=True)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(proc.stderr)
        size = (Path(tmp) / "reports" / "c.html").stat().st_size
    return {"calls": 1000, "report_s": round(wall, 2), "html_mb": round(size / 1e6, 2),
            "peak_rss_mb_report_processes": round(max_rss_mb(resource.RUSAGE_CHILDREN), 1)}


PARTS = {"a": part_a, "b": part_b, "c": part_c}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in PARTS and os.environ.get("VOICELAB_BENCH_CHILD"):
        print(json.dumps(PARTS[sys.argv[1]]()))
        return
    wanted = sys.argv[1:] or list(PARTS)
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}")
    for name in wanted:
        env = {**os.environ, "VOICELAB_BENCH_CHILD": "1"}
        proc = subprocess.run([sys.executable, __file__, name], capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            print(f"part {name} failed:\n{proc.stderr[-3000:]}")
            continue
        print(f"({name}) " + json.dumps(json.loads(proc.stdout.strip().splitlines()[-1]), indent=2))


if __name__ == "__main__":
    main()
