"""Agent-caller and barge-in benchmarks (issue: callers that sound like people, item 6). Offline, real time.

    .venv/bin/python benchmarks/agent_caller.py              # both parts, ~4 minutes
    .venv/bin/python benchmarks/agent_caller.py concurrency  # one part

concurrency  how many bridged agent-caller voice calls this machine keeps in real time at once: two
             conversations per call (agent under test, caller agent), both sides speaking with
             espeak-ng and hearing with pocketsphinx on the local backend, joined by the persona's
             20 ms pump, which sends the caller's frame to one and the agent's to the other on every
             tick. A call is in real time when no tick fell a frame behind (both directions on time);
             target: at least 4 at once on 2 cores. Also reported: calls that reached the agent's
             goodbye, and the caller agent's answer time as the agent under test measured it.
barge        stop latency against the injected barge-in reaction time: calls interrupt the agent's
             second turn 800 ms in; the agent is served with a 300 ms reaction time; every measured
             interruption (onset -> `interruption` event, onset -> agent audio stopped) should be
             within +-30 ms of it.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile

os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
PERSONA = "anna-double-charge"


def _requests(n: int, **update):  # noqa: ANN003
    from voicelab.spec.datasets import load_dataset

    ds = load_dataset()
    folder = tempfile.mkdtemp()
    return ds, [ds.request(PERSONA, mode="voice", max_duration_s=120).model_copy(
        update={"audio_dir": folder, "call_id": f"bench#{i}", **update}) for i in range(n)]


async def _place(requests: list, base_url: str) -> list:
    from voicelab.harness.call import Call

    calls = [Call(r, base_url=base_url) for r in requests]
    results = await asyncio.gather(*(c.arun() for c in calls))
    return [(r, c.voice_stats.late_frames) for r, c in zip(results, calls, strict=True)]


def concurrency(levels: tuple[int, ...] = (2, 4, 6)) -> list[dict]:
    from voicelab.local import LocalBackend

    rows = []
    for n in levels:
        ds, requests = _requests(n, caller="agent")
        with LocalBackend(ds.agents) as backend:
            placed = asyncio.run(_place(requests, backend.base_url))
        late = [late for _, late in placed]
        answers = [ms for r, _ in placed for ms in r.metrics.response_latency_ms]
        rows.append({"calls": n, "late_ticks_max": max(late), "in_real_time": all(x == 0 for x in late),
                     "reached_goodbye": sum(r.end_reason == "agent_ended" for r, _ in placed),
                     "succeeded": sum(r.success for r, _ in placed),
                     "caller_answer_p50_ms": round(statistics.median(answers), 1) if answers else None,
                     "duration_s_max": max(r.duration_seconds for r, _ in placed)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def barge(n: int = 6, injected_ms: float = 300.0) -> dict:
    from voicelab.local import LocalBackend
    from voicelab.spec.models import Interrupt

    ds, requests = _requests(n)
    interrupt = Interrupt(after_ms=800, say="Sorry, one question.", agent_turn=2)
    requests = [r.model_copy(update={"persona": r.persona.model_copy(update={
        "caller": r.persona.caller.model_copy(update={"interrupt": interrupt})})}) for r in requests]
    with LocalBackend(ds.agents, barge_in_s=injected_ms / 1000) as backend:
        placed = asyncio.run(_place(requests, backend.base_url))
    barges = [b for r, _ in placed for b in r.metrics.barge_ins]
    errors = [ms - injected_ms for b in barges for ms in (b.interruption_ms, b.audio_stop_ms) if ms is not None]
    return {"calls": n, "injected_ms": injected_ms, "measured": len(errors),
            "mean_error_ms": round(statistics.mean(errors), 1), "max_abs_error_ms": round(max(map(abs, errors)), 1),
            "within_30ms": f"{sum(abs(e) <= 30 for e in errors)}/{len(errors)}",
            "corrected": sum(b.corrected for b in barges), "answered": sum(b.answered for b in barges)}


def main() -> None:
    parts = sys.argv[1:] or ["concurrency", "barge"]
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}")
    if "concurrency" in parts:
        print("concurrency:", json.dumps(concurrency()))
    if "barge" in parts:
        print("barge:", json.dumps(barge()))


if __name__ == "__main__":
    main()
