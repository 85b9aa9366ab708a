"""A run starts at once (issue "Scale on one machine", item 2): how long `voicelab --help` and a
one-call `voicelab run --no-report` take as fresh processes, and where their imports go.

    .venv/bin/python benchmarks/startup.py              # 7 of each (~15 s)
    .venv/bin/python benchmarks/startup.py --repeat 15

Each command is started the way a user starts it (the `voicelab` script beside this Python, in
the repository, so the bundled datasets are used) and timed from spawn to exit: wall (median and
best of the repeats), CPU (user + system of the process and its children, from wait4) and peak
RSS. The one-call run is `run --persona anna-double-charge --no-report` into a fresh temporary
store each time (the local backend started in-process, the call, the summary and the gate).
Then one more run under `python -X importtime` names the largest imports (cumulative, the top
of each import tree; a lazy import inside a function is the top of its own tree).
Targets: --help <= 0.3 s, the one-call run <= 1 s of wall. The load average is printed beside
the figures: on a busy machine they are not the machine's. Record them in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {"help_wall_s": 0.3, "run_wall_s": 1.0}
SCRIPT = Path(sys.executable).parent / "voicelab"
COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "voicelab"]
RUN_ARGS = ["run", "--personas", "datasets/personas", "--agents", "datasets/agents",
            "--persona", "anna-double-charge", "--no-report"]
IMPORT_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)")


def timed(args: list[str], env: dict[str, str] | None = None) -> dict[str, float]:
    """Wall, CPU and peak RSS of one process (and its children), spawned to exit."""
    with tempfile.TemporaryFile() as err:  # a file, not a pipe: nothing the child writes can block it
        started = time.perf_counter()
        proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = code = os.waitstatus_to_exitcode(status)
        if code != 0:
            err.seek(0)
            raise SystemExit(f"{' '.join(args)} exited {code}:\n{err.read().decode()[-2000:]}")
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_mb": usage.ru_maxrss / 1024}


def summarise(samples: list[dict[str, float]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for key in samples[0]:
        values = [s[key] for s in samples]
        out[f"{key.removesuffix('_s').removesuffix('_mb')}_median"] = round(statistics.median(values), 3)
        out[f"{key.removesuffix('_s').removesuffix('_mb')}_best"] = round(min(values), 3)
    return out


def import_costs(args: list[str], top: int = 12) -> list[tuple[str, float]]:
    """The largest import trees of one run (seconds, cumulative), from `python -X importtime`."""
    with tempfile.TemporaryDirectory() as runs:
        proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "voicelab", *args, "--runs", runs],
                              cwd=ROOT, capture_output=True, text=True, check=True)
    trees = []
    for line in proc.stderr.splitlines():
        match = IMPORT_LINE.match(line)
        if match and not match.group(3):  # the top of a tree
            trees.append((match.group(4), int(match.group(2)) / 1e6))
    return sorted(trees, key=lambda t: -t[1])[:top]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7, help="runs of each command (default: 7)")
    args = parser.parse_args()
    timed([*COMMAND, "--help"])  # warm the file cache and the bytecode
    help_samples = [timed([*COMMAND, "--help"]) for _ in range(args.repeat)]
    run_samples = []
    for _ in range(args.repeat + 1):
        with tempfile.TemporaryDirectory() as runs:
            run_samples.append(timed([*COMMAND, *RUN_ARGS, "--runs", runs]))
    run_samples = run_samples[1:]  # the first also wrote bytecode for what --help does not import
    figures = {
        "machine": {"cpus": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 2),
                    "python": sys.version.split()[0]},
        "help": summarise(help_samples),
        "one_call_run": summarise(run_samples),
        "targets": TARGETS,
    }
    figures["met"] = {"help": figures["help"]["wall_median"] <= TARGETS["help_wall_s"],
                      "one_call_run": figures["one_call_run"]["wall_median"] <= TARGETS["run_wall_s"]}
    print(json.dumps(figures, indent=2))
    print("\nlargest imports of the one-call run (cumulative s, the top of each import tree):")
    for name, seconds in import_costs(RUN_ARGS):
        print(f"  {seconds:6.3f}  {name}")


if __name__ == "__main__":
    main()
