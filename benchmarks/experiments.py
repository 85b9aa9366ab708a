"""Experiment overhead and mutation cost (issue: experiments, item 9).

    .venv/bin/python benchmarks/experiments.py            # both parts, ~8 minutes on 2 cores
    .venv/bin/python benchmarks/experiments.py a          # one part: a or b

(a) An experiment of 2 variants (the chargeback agent as written, and the copy that forgets the
    reason) x every bundled persona x 10 repeats on the local backend, with its report, against
    the same calls as two separate `voicelab run`s (one per agent version) with their reports.
    Target: experiment wall <= 1.2x the two runs' wall together. Same concurrency everywhere.
(b) `voicelab mutate --agent A` for each bundled agent: mutants, calls placed, wall time, score.

Every command is the real CLI in its own process, as a user runs it. Figures are printed; record
them in benchmarks/README.md with the machine.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VOICELAB = [sys.executable, "-m", "voicelab"]
REPEATS, CONCURRENCY = 10, 16


def timed(args: list[str], cwd: Path) -> tuple[float, subprocess.CompletedProcess]:
    started = time.monotonic()
    done = subprocess.run(VOICELAB + args, cwd=cwd, capture_output=True, text=True)
    return time.monotonic() - started, done


def part_a(work: Path) -> None:
    agents_b = work / "agents-forgets"
    agents_b.mkdir()
    shutil.copy(ROOT / "datasets" / "agents" / "applicant-screening.yaml", agents_b)
    shutil.copy(ROOT / "experiments" / "agents" / "chargeback-forgets-reason.yaml", agents_b / "chargeback.yaml")
    experiment = work / "all.yaml"
    experiment.write_text(json.dumps({
        "id": "bench", "repeats": REPEATS, "concurrency": CONCURRENCY,
        "personas_path": str(ROOT / "datasets" / "personas"), "agents_path": str(ROOT / "datasets" / "agents"),
        "variants": [{"id": "as-written"},
                     {"id": "forgets-reason",
                      "agent_file": str(ROOT / "experiments" / "agents" / "chargeback-forgets-reason.yaml")}]}))
    common = ["--runs", str(work / "runs"), "--reports", str(work / "reports")]
    run_a, done_a = timed(["run", "--repeats", str(REPEATS), "--concurrency", str(CONCURRENCY), "--run-id", "a",
                           "--personas", str(ROOT / "datasets" / "personas"),
                           "--agents", str(ROOT / "datasets" / "agents"), *common], work)
    run_b, done_b = timed(["run", "--repeats", str(REPEATS), "--concurrency", str(CONCURRENCY), "--run-id", "b",
                           "--personas", str(ROOT / "datasets" / "personas"), "--agents", str(agents_b), *common],
                          work)
    exp, done_e = timed(["experiment", str(experiment), "--run-id", "e", *common], work)
    calls = {name: sum(1 for _ in (work / "runs" / name / "calls.jsonl").open()) for name in ("a", "b", "e")}
    print(f"(a) {REPEATS} repeats, concurrency {CONCURRENCY}, with reports")
    print(f"    run as-written      {run_a:7.1f} s  {calls['a']} calls  exit {done_a.returncode}")
    print(f"    run forgets-reason  {run_b:7.1f} s  {calls['b']} calls  exit {done_b.returncode}")
    print(f"    experiment          {exp:7.1f} s  {calls['e']} calls  exit {done_e.returncode}")
    print(f"    experiment / (run + run) = {exp / (run_a + run_b):.2f}x (target <= 1.2x)")
    for line in done_e.stdout.splitlines():
        if " vs " in line or "Fisher" in line:
            print(f"    {line.strip()}")


def part_b(work: Path) -> None:
    print("(b) mutation runs (concurrency 16)")
    for agent in ("chargeback", "applicant-screening"):
        wall, done = timed(["mutate", "--agent", agent, "--concurrency", "16", "--json", "--runs", str(work / "runs"),
                            "--reports", str(work / "reports")], work)
        figures = json.loads(done.stdout)
        print(f"    {agent:20} {figures['mutants']} mutants, {figures['calls']} calls, {wall:.0f} s wall "
              f"({figures['wall_s']:.0f} s placing calls), score {figures['score']:.2f}, "
              f"survivors: {', '.join(s['id'] for s in figures['survivors']) or 'none'}")


def main() -> None:
    parts = sys.argv[1:] or ["a", "b"]
    with tempfile.TemporaryDirectory(prefix="voicelab-bench-") as tmp:
        for part in parts:
            work = Path(tmp) / part
            work.mkdir()
            {"a": part_a, "b": part_b}[part](work)


if __name__ == "__main__":
    main()
