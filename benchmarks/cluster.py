"""A run on a Dask cluster against the same run in-process (issue 32, item 5).

    .venv/bin/python benchmarks/cluster.py                 # in-process, local:1, local:2 (~2 minutes)
    .venv/bin/python benchmarks/cluster.py local:2         # one placement: in-process, local:N or an address
    .venv/bin/python benchmarks/cluster.py client-cost     # the single writer's CPU per call (~30 s)

The same small voice-mode batch each time: 6 real-time voice calls of 4 timed agent turns (a
3-question cut of the benchmark agent, 1500 ms injected response latency), at --concurrency 2:
in this process, then on a LocalCluster of 1 and of 2 worker processes (2 calls at once per
worker, so local:2 has twice the capacity). Each placement runs in a process of its own, so its
figures are its own:

- calls per minute over the placing session (run.json's session start to end) and over the
  whole command (with the cluster's start and stop);
- real-time misses: agent turns whose measured response latency is off the injected 1500 ms by
  more than 30 ms (the voice benchmark's criterion: a call that fell behind real time shows
  there first);
- the client's CPU seconds and peak memory (max RSS) and its child processes' CPU (the Dask
  workers, and the speech recognition pools, which an in-process run starts as children too).
  A LocalCluster's scheduler and nannies live in the client process: on a real cluster the
  scheduler's share of that CPU is on its own machine;
- that every recording came back from the workers into runs/<id>/audio/.

`client-cost` is the figure the N-machine model in benchmarks/README.md needs: the client's
CPU per call (submitting the task, the scheduler's share, receiving, parsing and storing the
result) over 600 short text calls on local:2, less the same for 20 calls (the fixed cost of
starting the cluster).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CALLS, CONCURRENCY, LATENCY_MS = 6, 2, 1500
PLACEMENTS = ["in-process", "local:1", "local:2"]
os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")

AGENT = """\
id: bench-short
name: Short benchmark agent
first_message: "Question 1?"
prompt: Ask three questions.
flow:
  start: q1
  silence: {after_s: 30}
  steps:
    q1: {intents: [{when: [answer], goto: q2}], on_no_match: q2, max_reprompts: 0}
    q2: {say: "Question 2?", intents: [{when: [answer], goto: q3}], on_no_match: q3, max_reprompts: 0}
    q3: {say: "Question 3?", intents: [{when: [answer], goto: done}], on_no_match: done, max_reprompts: 0}
    done: {say: "Thanks, goodbye.", end_call: true, outcome: success}
"""
PERSONAS = """\
personas:
  - id: short-caller
    name: Short benchmark caller
    summary: Answers each of the three questions at once.
    agent: bench-short
    caller:
      style: cooperative
      replies:
        - when: ["question"]
          say: "Answer."
      hang_up_after_turns: 10
    expect:
      agent_says: ["Question 3"]
      ended_by: agent
"""


def _seconds(start: str, end: str) -> float:
    parse = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00"))  # noqa: E731
    return (parse(end) - parse(start)).total_seconds()


def one(placement: str) -> dict:
    """Place the batch once (`placement`: in-process, local:N or a scheduler address); its figures."""
    from voicelab.lab.batch import run_batch

    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder)
        (data / "agents").mkdir()
        (data / "agents" / "bench-short.yaml").write_text(AGENT, encoding="utf-8")
        (data / "personas.yaml").write_text(PERSONAS, encoding="utf-8")
        before = resource.getrusage(resource.RUSAGE_SELF)
        start = time.perf_counter()
        outcome = run_batch(str(data / "personas.yaml"), str(data / "agents"), persona_ids=["short-caller"],
                            repeats=CALLS, concurrency=CONCURRENCY, mode="voice", latency_ms=LATENCY_MS,
                            runs_root=str(data / "runs"), run_id="bench", progress=False,
                            cluster=None if placement == "in-process" else placement)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_SELF)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)  # workers and ASR pools, once ended
        session = outcome.run.manifest.sessions[-1]
        results = outcome.results
        latencies = [ms for r in results for ms in r.metrics.response_latency_ms]
        recordings = sum(bool(r.audio_path) and Path(r.audio_path).is_file() for r in results)
        placing = _seconds(session.started_at, session.ended_at or session.started_at)
    return {
        "placement": placement, "calls": len(results), "succeeded": sum(r.success for r in results),
        "placing_s": round(placing, 1), "wall_s": round(wall, 1),
        "calls_per_min": round(len(results) / placing * 60, 1) if placing else None,
        "calls_per_min_wall": round(len(results) / wall * 60, 1),
        "turns": len(latencies), "realtime_misses": sum(abs(ms - LATENCY_MS) > 30 for ms in latencies),
        "max_latency_error_ms": round(max((abs(ms - LATENCY_MS) for ms in latencies), default=0.0), 1),
        "client_cpu_s": round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 1),
        "client_max_rss_mb": round(after.ru_maxrss / 1024),
        "children_cpu_s": round(children.ru_utime + children.ru_stime, 1),
        "recordings": f"{recordings}/{len(results)}",
        "workers": len(Counter(r.worker for r in results if r.worker)),
    }


def client_cost(calls: int) -> dict:
    """The client's CPU seconds for `calls` text calls of the benchmark agent on local:2."""
    from voicelab.lab.batch import run_batch

    with tempfile.TemporaryDirectory() as folder:
        before = resource.getrusage(resource.RUSAGE_SELF)
        outcome = run_batch(str(HERE / "data" / "personas.yaml"), str(HERE / "data" / "agents"),
                            persona_ids=["bench-caller"], repeats=calls, concurrency=8, runs_root=folder,
                            run_id="cost", progress=False, cluster="local:2")
        after = resource.getrusage(resource.RUSAGE_SELF)
        return {"calls": len(outcome.results), "succeeded": sum(r.success for r in outcome.results),
                "client_cpu_s": after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime}


def _in_process(*args: str) -> dict:
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, cwd=ROOT, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)}: failed ({done.returncode})\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str]) -> None:
    if argv[:1] == ["--one"]:
        print(json.dumps(one(argv[1])), flush=True)
        return
    if argv[:1] == ["--cost"]:
        print(json.dumps(client_cost(int(argv[1]))), flush=True)
        return
    if argv == ["client-cost"]:
        small, large = _in_process("--cost", "20"), _in_process("--cost", "600")
        per_call = (large["client_cpu_s"] - small["client_cpu_s"]) / (large["calls"] - small["calls"])
        print(json.dumps({"small": small, "large": large, "client_cpu_ms_per_call": round(per_call * 1000, 2)}))
        return
    rows = []
    for placement in argv or PLACEMENTS:
        done = subprocess.run([sys.executable, __file__, "--one", placement], capture_output=True, text=True,
                              cwd=ROOT, timeout=600)
        if done.returncode != 0:
            print(f"{placement}: failed ({done.returncode})\n{done.stderr[-2000:]}", file=sys.stderr)
            continue
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    keys = ["placement", "succeeded", "placing_s", "calls_per_min", "wall_s", "calls_per_min_wall",
            "realtime_misses", "max_latency_error_ms", "client_cpu_s", "client_max_rss_mb", "children_cpu_s",
            "recordings", "workers"]
    print("\n| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
    for row in rows:
        print("| " + " | ".join(str(row[k]) for k in keys) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
