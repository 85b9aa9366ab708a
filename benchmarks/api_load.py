"""The REST service under load, and what it adds to a call (issue: a REST service, item 6).

    .venv/bin/python benchmarks/api_load.py          # both parts, ~1 minute

(a) throughput: `voicelab api` in its own process (local backend, no injected latency); 300
    `POST /api/conversation/start` from 100 concurrent clients; calls per second, request p50 /
    p95, every answer checked and every call found once in the run store.
(b) added latency: 50 calls one after another through the service, against the same 50 calls
    placed in-process through the same runner and a local backend (what the service does inside
    each request); the difference of the medians is what HTTP, validation and storing add.

Figures are printed; record them in benchmarks/README.md with the machine.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
BODY = {"user_info": {"first_name": "Anna", "last_name": "Kowalska", "phone_number": "+48601234567"},
        "chargeback_info": {"product_name": "Premium Gym Membership", "reason": "duplicate charge"}}
TOTAL, CLIENTS, SEQUENTIAL = 300, 100, 50


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_service(runs: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "voicelab", "api", "--port", str(port), "--runs", runs,
                             "--quiet", "--max-concurrent-calls", "100"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health").status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.2)
    raise SystemExit("the service did not start")


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else values[0]


async def load(url: str) -> dict:
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    slots = asyncio.Semaphore(CLIENTS)
    took: list[float] = []

    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=300) as client:
        async def one(i: int) -> dict:
            async with slots:
                body = json.loads(json.dumps(BODY))
                body["user_info"]["first_name"] = f"Caller{i}"
                start = time.perf_counter()
                answer = await client.post("/api/conversation/start", json=body)
                took.append(time.perf_counter() - start)
                assert answer.status_code == 200, answer.text
                return answer.json()

        start = time.perf_counter()
        bodies = await asyncio.gather(*(one(i) for i in range(TOTAL)))
        wall = time.perf_counter() - start
    ok = sum(b["status"] == "completed" and f"Caller{i} " in b["transcript"][0]["text"] for i, b in enumerate(bodies))
    return {"bodies": bodies, "calls": TOTAL, "clients": CLIENTS, "answered_ok": ok, "wall_s": round(wall, 2),
            "calls_per_s": round(TOTAL / wall, 1), "request_p50_ms": round(pct(took, 50) * 1000, 1),
            "request_p95_ms": round(pct(took, 95) * 1000, 1)}


def part_a() -> dict:
    with tempfile.TemporaryDirectory() as runs:
        proc, url = start_service(runs)
        try:
            out = asyncio.run(load(url))
        finally:
            proc.terminate()
            proc.wait(60)
        bodies = out.pop("bodies")
        lines = (Path(runs) / bodies[0]["run_id"] / "calls.jsonl").read_text().splitlines()
        ids = [json.loads(line)["call_id"] for line in lines]
        out["stored"] = len(ids)
        out["stored_once_each"] = sorted(ids) == sorted(b["call_id"] for b in bodies)
    return out


def part_b() -> dict:
    from voicelab.local import LocalBackend
    from voicelab.spec.datasets import load_dataset
    from voicelab.spec.models import CallRequest
    from voicelab.surfaces.api.schemas import ConversationStartRequest
    from voicelab.surfaces.api.service import Service, ServiceSettings

    with tempfile.TemporaryDirectory() as runs:
        proc, url = start_service(runs)
        try:
            via_http = []
            with httpx.Client(base_url=url, timeout=60) as client:
                for _ in range(SEQUENTIAL):
                    start = time.perf_counter()
                    assert client.post("/api/conversation/start", json=BODY).status_code == 200
                    via_http.append(time.perf_counter() - start)
        finally:
            proc.terminate()
            proc.wait(60)

        ds = load_dataset(ROOT / "datasets" / "personas", ROOT / "datasets" / "agents")
        service = Service(ServiceSettings(runs_root=runs))
        service.dataset = ds
        request: CallRequest = service.request_for(ConversationStartRequest.model_validate(BODY))
        direct = []
        with LocalBackend(ds.agents) as local:

            async def place_all() -> None:
                from voicelab.harness.runners import place_one

                for _ in range(SEQUENTIAL):
                    start = time.perf_counter()
                    result = await place_one(request, local.base_url)
                    direct.append(time.perf_counter() - start)
                    assert result.status == "completed"

            asyncio.run(place_all())
    http_ms, direct_ms = statistics.median(via_http) * 1000, statistics.median(direct) * 1000
    return {"calls": SEQUENTIAL, "via_service_p50_ms": round(http_ms, 1), "direct_p50_ms": round(direct_ms, 1),
            "added_p50_ms": round(http_ms - direct_ms, 1), "ratio": round(http_ms / direct_ms, 2)}


if __name__ == "__main__":
    parts = sys.argv[1:] or ["a", "b"]
    print(f"machine: {os.cpu_count()} cores; python {sys.version.split()[0]}")
    if "a" in parts:
        print("(a) throughput:", json.dumps(part_a()))
    if "b" in parts:
        print("(b) added latency:", json.dumps(part_b()))
