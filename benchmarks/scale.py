"""A batch against the naive peer at 64 and 256 calls at once (issue 29, items 3 and 4).

    .venv/bin/python benchmarks/scale.py                 # both sizes, 2 rounds each (~3 minutes)
    .venv/bin/python benchmarks/scale.py --rounds 3 --profile

For each size, 200 calls at 64 at once and 1,000 at 256 (the benchmark agent: 8 timed turns,
17 messages a call, 300 ms injected response time), against one `voicelab serve --latency-ms 300`
in its own process, alternating in each round:

- voicelab: `voicelab run --persona bench-caller --repeats N --concurrency C --local-url URL
  --no-report`, timed as a whole process (start-up, storing every result, the gate);
- the naive peer: benchmarks/naive_peer.py, one bare SDK `Conversation` per thread.

Printed per run: whole-process wall, its ratio to the naive peer's in the same round and to the
floor (ceil(N / C) waves x 8 turns x 300 ms = 9.6 s for both sizes), the agent response latency
p50 / p95 (voicelab's from the stored results; the peer's as it measured it), the client's CPU per
call (the whole process's user + system time / calls) and the backend's CPU per conversation
(the server process's time over the run / calls). `--profile` samples the backend with py-spy
(`pip install py-spy`) during the last 256 run and prints where its time goes (own time per
function, the top 15).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
PERSONAS, AGENTS = HERE / "data" / "personas.yaml", HERE / "data" / "agents"
BIN = Path(sys.executable).parent
TURNS, LATENCY_MS = 8, 300
SIZES = ((200, 64), (1000, 256))
os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")


def serve() -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([str(BIN / "voicelab"), "serve", "--agents", str(AGENTS), "--latency-ms", str(LATENCY_MS)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    return proc, proc.stdout.readline().split(" at ", 1)[1].split()[0]


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def timed(cmd: list[str], server: subprocess.Popen) -> tuple[float, float, float, subprocess.CompletedProcess]:
    """Wall, client CPU and backend CPU of one whole process."""
    cpu, backend, start = children_cpu(), cpu_s(server.pid), time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    return time.perf_counter() - start, children_cpu() - cpu, cpu_s(server.pid) - backend, done


def voicelab(url: str, server: subprocess.Popen, calls: int, concurrency: int) -> dict:
    runs = Path(tempfile.mkdtemp(prefix="scale-runs-"))
    try:
        wall, client, backend, done = timed(
            [str(BIN / "voicelab"), "run", "--personas", str(PERSONAS), "--agents", str(AGENTS), "--persona",
             "bench-caller", "--repeats", str(calls), "--concurrency", str(concurrency), "--local-url", url,
             "--runs", str(runs), "--run-id", "scale", "--no-report"], server)
        if done.returncode != 0:
            raise SystemExit(f"voicelab run exited {done.returncode}:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
        results = [json.loads(line) for line in (runs / "scale" / "calls.jsonl").read_text().splitlines() if line]
        latencies = [x for r in results for x in r["metrics"]["response_latency_ms"]]
        return {"ok": sum(r["success"] for r in results), "wall_s": wall, "client_cpu_ms": client * 1000 / calls,
                "backend_cpu_ms": backend * 1000 / calls, "p50_ms": pct(latencies, 50), "p95_ms": pct(latencies, 95)}
    finally:
        shutil.rmtree(runs, ignore_errors=True)


def naive(url: str, server: subprocess.Popen, calls: int, concurrency: int) -> dict:
    wall, client, backend, done = timed([sys.executable, str(HERE / "naive_peer.py"), url, str(calls),
                                         str(concurrency)], server)
    if done.returncode != 0:
        raise SystemExit(f"naive_peer.py exited {done.returncode}:\n{done.stderr[-2000:]}")
    got = json.loads(done.stdout.strip().splitlines()[-1])
    return {"ok": got["ended"], "wall_s": wall, "client_cpu_ms": client * 1000 / calls,
            "backend_cpu_ms": backend * 1000 / calls, "p50_ms": got["p50_ms"], "p95_ms": got["p95_ms"]}


def profile(pid: int, seconds: int, out: Path) -> subprocess.Popen | None:
    spy = shutil.which("py-spy") or (str(BIN / "py-spy") if (BIN / "py-spy").exists() else None)
    if spy is None:
        print("--profile: py-spy not found (pip install py-spy); no profile")
        return None
    return subprocess.Popen([spy, "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "200",
                             "--format", "raw", "--output", str(out), "--nonblocking"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def top_own_time(collapsed: Path, n: int = 15) -> list[tuple[str, float]]:
    own: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        leaf = stack.split(";")[-1]
        own[leaf] += int(count)
        total += int(count)
    return [(name, 100 * c / total) for name, c in own.most_common(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--profile", action="store_true", help="sample the backend with py-spy in the last 256 run")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}, load {os.getloadavg()[0]:.2f}")
    for calls, concurrency in SIZES:
        floor = math.ceil(calls / concurrency) * TURNS * LATENCY_MS / 1000
        print(f"\n{calls} calls, {concurrency} at once (floor {floor:.1f} s)")
        print(f"{'':10} {'wall s':>7} {'/naive':>7} {'/floor':>7} {'ok':>5} {'p50 ms':>7} {'p95 ms':>7} "
              f"{'client CPU ms/call':>19} {'backend CPU ms/call':>20}")
        server, url = serve()
        try:
            for round_ in range(args.rounds):
                spy = None
                last = round_ == args.rounds - 1 and concurrency == SIZES[-1][1] and args.profile
                if last:
                    raw = Path(tempfile.mkdtemp()) / "backend.txt"
                    spy = profile(server.pid, 10, raw)  # 10 s of the run's ~13
                ours = voicelab(url, server, calls, concurrency)
                if spy is not None:
                    spy.wait()
                peer = naive(url, server, calls, concurrency)
                for name, row in (("voicelab", ours), ("naive", peer)):
                    print(f"{name:10} {row['wall_s']:7.2f} {row['wall_s'] / peer['wall_s']:7.3f} "
                          f"{row['wall_s'] / floor:7.3f} {row['ok']:5d} {row['p50_ms']:7.1f} {row['p95_ms']:7.1f} "
                          f"{row['client_cpu_ms']:19.1f} {row['backend_cpu_ms']:20.1f}")
                if last and spy is not None and raw.exists() and raw.stat().st_size:
                    print("backend own time during the voicelab run (py-spy, % of samples):")
                    for name, share in top_own_time(raw):
                        print(f"  {share:5.1f}%  {name}")
        finally:
            server.terminate()
            server.wait()


if __name__ == "__main__":
    main()
