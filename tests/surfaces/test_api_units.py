"""The service's parts without a server: the shared cap (threads and event loops), the journal
(torn lines, compaction) and the index of stored results."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest

from voicelab.lab.store import RunStore
from voicelab.spec.models import CallResult, RunManifest
from voicelab.surfaces.api.journal import Accepted, Journal, ResultIndex
from voicelab.surfaces.api.limits import Slots


def test_the_cap_is_shared_by_threads_and_loops_and_never_passed() -> None:
    slots = Slots(3)
    peak, lock = [0], threading.Lock()

    def note() -> None:
        with lock:
            peak[0] = max(peak[0], slots.used)
        assert slots.used <= 3

    async def call() -> None:
        taken = await slots.acquire(1)
        note()
        await asyncio.sleep(0.01)
        slots.release(taken)

    def run(size: int) -> None:
        taken = slots.acquire_blocking(size, threading.Event())
        note()
        time.sleep(0.02)
        slots.release(taken)

    threads = [threading.Thread(target=run, args=(n,)) for n in (2, 5, 1, 2)]  # 5 is clamped to 3
    for t in threads:
        t.start()

    async def calls() -> None:
        await asyncio.gather(*(call() for _ in range(20)))

    asyncio.run(calls())
    for t in threads:
        t.join()
    assert slots.used == 0 and slots.waiting == 0 and peak[0] <= 3


def test_waiters_are_served_in_order_and_a_cancelled_one_takes_nothing() -> None:
    slots = Slots(2)
    assert slots.acquire_blocking(2, threading.Event()) == 2
    cancel = threading.Event()
    got: list[int] = []
    big = threading.Thread(target=lambda: got.append(slots.acquire_blocking(2, cancel)))
    big.start()
    while slots.waiting < 2:
        time.sleep(0.01)

    async def small() -> str:
        waiter = asyncio.ensure_future(slots.acquire(1))
        await asyncio.sleep(0.05)
        assert not waiter.done()  # behind the run that came first, although one slot would do
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        return "cancelled"

    assert asyncio.run(small()) == "cancelled"
    cancel.set()
    big.join()
    assert got == [0] and slots.waiting == 0 and slots.used == 2
    slots.release(2)
    assert slots.used == 0


def test_the_journal_survives_a_torn_line_and_is_compacted(tmp_path) -> None:
    journal = Journal(tmp_path / "runs")
    for n in range(5):
        journal.record(Accepted(id=f"call-{n}", run_id="api-1", at="t", callback_url="http://h/x").events()[0])
    journal.record({"event": "callback", "id": "call-1", "state": "delivered", "attempts": 2, "last_status": 204,
                    "error": None})
    with open(journal.path, "ab") as f:
        f.write(b'{"event": "accepted", "id": "call-torn", "ru')  # killed mid-write
    calls = journal.load()
    assert list(calls) == [f"call-{n}" for n in range(5)]
    assert calls["call-1"].callback == {"state": "delivered", "attempts": 2, "last_status": 204, "error": None}
    assert [c.id for c in calls.values() if c.owes_callback] == ["call-0", "call-2", "call-3", "call-4"]
    journal.rewrite(lambda: [calls["call-1"], calls["call-4"]])
    again = journal.load()
    assert list(again) == ["call-1", "call-4"] and again["call-1"].callback["state"] == "delivered"
    assert not journal.path.with_suffix(".tmp").exists()


def result(call_id: str, conversation_id: str, status: str = "completed") -> CallResult:
    return CallResult(conversation_id=conversation_id, status=status, duration_seconds=1.0, transcript=[],
                      call_id=call_id, persona_id="api-callee", agent_id="chargeback", backend="local",
                      caller="scripted", mode="text", started_at="2026-01-01T00:00:00Z", end_reason="agent_ended")


def test_the_index_finds_stored_calls_of_service_runs_only_and_reads_appends(tmp_path) -> None:
    store = RunStore(tmp_path / "runs")
    service = store.create(RunManifest(run_id="api-20260101-000000", personas=[], kind="service"))
    batch = store.create(RunManifest(run_id="api-looks-like-one", personas=[], kind="batch"))
    service.append(result("call-a", "conv_a"))
    batch.append(result("call-b", "conv_b"))
    index = ResultIndex(tmp_path / "runs")
    assert index.find("call-a").conversation_id == "conv_a"
    assert index.find("conv_a").call_id == "call-a"
    assert index.find("call-b") is None  # not the service's
    with open(service.calls_path, "ab") as f:
        f.write(b'{"conversation_id": "conv_c", "call_id": "call-c"')  # torn: waits for its newline
    assert index.find("call-c") is None
    service.append(result("call-d", "conv_d", status="failed"))
    assert index.find("call-d").status == "failed" and index.find("call-a") is not None
    assert index.find("call-d", run_id="api-20260101-000000") is not None
    assert json.loads(service.calls_path.read_text().splitlines()[-1])["call_id"] == "call-d"
