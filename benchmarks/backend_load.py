"""The local backend under load, and what it holds in memory (issue: the local backend, items 3, 8).

    .venv/bin/python benchmarks/backend_load.py            # all parts, ~4 minutes
    .venv/bin/python benchmarks/backend_load.py latency    # one part: latency, memory or deaf

latency  1,000 text calls of 8 timed agent turns at concurrency 256 from one voicelab client,
         300 ms injected, backend in its own process (`voicelab serve --latency-ms 300`): the
         agent response latency voicelab measures, p50/p95/max, against the injected 300 ms
         (target: p95 within +-10 ms).
memory   10,000 text calls with the backend in-process (the default), results streamed to the
         run folder: peak memory of the process, and the served history's size at the end.
deaf     a client that never reads, asking the agent to repeat a 1 MB turn 300 times, against
         `voicelab serve`: the server's memory before, while it is stuck, and after it is dropped.

Figures are printed as JSON; record them in benchmarks/README.md with the machine.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PERSONAS = HERE / "data" / "personas.yaml"
AGENTS = HERE / "data" / "agents"
os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
sys.path.insert(0, str(ROOT))


def serve(*args: str, agents: Path = AGENTS) -> tuple[subprocess.Popen, str]:
    exe = Path(sys.executable).parent / "voicelab"
    proc = subprocess.Popen([str(exe), "serve", "--agents", str(agents), *args], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    return proc, line.split(" at ", 1)[1].split()[0]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def part_latency(calls: int = 1000, concurrency: int = 256, latency_ms: float = 300) -> dict:
    from voicelab.lab.batch import run_batch

    server, url = serve("--latency-ms", f"{latency_ms:g}")
    try:
        with tempfile.TemporaryDirectory() as runs:
            start = time.perf_counter()
            outcome = run_batch(str(PERSONAS), str(AGENTS), persona_ids=["bench-caller"], repeats=calls,
                                concurrency=concurrency, runs_root=runs, run_id="lat", progress=False, local_url=url)
            wall = time.perf_counter() - start
            results = outcome.results
        latencies = [x for r in results for x in r.metrics.response_latency_ms]
        p50, p95 = percentile(latencies, 50), percentile(latencies, 95)
        return {"calls": len(results), "succeeded": sum(r.success for r in results), "turns": len(latencies),
                "concurrency": concurrency, "injected_ms": latency_ms, "wall_s": round(wall, 1),
                "p50_ms": round(p50, 1), "p95_ms": round(p95, 1), "max_ms": round(max(latencies), 1),
                "p95_minus_injected_ms": round(p95 - latency_ms, 1),
                "server_peak_rss_mb": round(rss_mb(server.pid), 1)}
    finally:
        server.terminate()
        server.wait()


def part_memory(calls: int = 10_000) -> dict:
    from voicelab.lab.batch import run_batch
    from voicelab.local import LocalBackend
    from voicelab.spec.datasets import load_dataset

    dataset = load_dataset(PERSONAS, AGENTS)
    with tempfile.TemporaryDirectory() as runs, LocalBackend(dataset.agents) as backend:
        start = time.perf_counter()
        outcome = run_batch(str(PERSONAS), str(AGENTS), persona_ids=["bench-caller"], repeats=calls,
                            concurrency=16, runs_root=runs, run_id="mem", progress=False, local_url=backend.base_url)
        wall = time.perf_counter() - start
        ok = sum(r.success for r in outcome.results)
        kept = len(backend.history)
    return {"calls": calls, "succeeded": ok, "wall_s": round(wall, 1), "history_kept": kept,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def part_deaf(messages: int = 300) -> dict:
    sys.path.insert(0, str(ROOT))
    from tests.local.test_hostile import DeafClient  # the same client the test uses
    from tests.wire import init

    server, url = serve(agents=ROOT / "datasets" / "agents")
    try:
        time.sleep(0.5)
        before = rss_mb(server.pid)
        client = DeafClient(url, "/v1/convai/conversation?agent_id=chargeback")
        huge = "Hello {{first_name}}, " + "this is a very long greeting. " * 30_000
        client.send(init(conversation_config_override={"text_only": True, "agent": {"first_message": huge}}))
        sent, peak = 0, before
        for _ in range(messages):
            try:
                client.send(json.dumps({"type": "user_message", "text": "Sorry, can you repeat that?"}))
            except OSError:
                break  # dropped by the server
            sent += 1
            peak = max(peak, rss_mb(server.pid))
            time.sleep(0.01)
        dropped_after = None
        start = time.perf_counter()
        while time.perf_counter() - start < 30:
            peak = max(peak, rss_mb(server.pid))
            try:
                client.send(json.dumps({"type": "user_activity"}))
            except OSError:
                dropped_after = round(time.perf_counter() - start, 1)
                break
            time.sleep(0.5)
        client.close()
        time.sleep(2)
        return {"messages_sent": sent, "rss_before_mb": round(before, 1), "rss_peak_mb": round(peak, 1),
                "rss_after_drop_mb": round(rss_mb(server.pid), 1), "dropped_within_s_of_last_message": dropped_after}
    finally:
        server.terminate()
        server.wait()


PARTS = {"latency": part_latency, "memory": part_memory, "deaf": part_deaf}

if __name__ == "__main__":
    chosen = sys.argv[1:] or list(PARTS)
    if len(chosen) == 1:
        print(json.dumps({chosen[0]: PARTS[chosen[0]]()}, indent=2))
    else:
        for name in chosen:  # each part in its own process, so peak memory is its own
            subprocess.run([sys.executable, __file__, name], check=True)
