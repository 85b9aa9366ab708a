"""The service's work is bounded: runs and calls share one cap on calls in flight, and work past
the documented limits is refused (422 for one run too big, 429 when too much is pending), never
run unbounded. Through a real uvicorn server; concurrency is measured from the stored calls'
own start times and durations."""

from __future__ import annotations

from datetime import datetime

import httpx

from voicelab.lab.store import RunStore

from .test_api import ANNA, serving, wait_done, wait_run


def most_at_once(results) -> int:  # noqa: ANN001
    """The largest number of calls whose [start, end] overlap (an end before a start at a tie)."""
    edges = []
    for r in results:
        start = datetime.fromisoformat(r.started_at.replace("Z", "+00:00")).timestamp()
        edges += [(start, 1), (start + r.duration_seconds, -1)]
    now = peak = 0
    for _, step in sorted(edges, key=lambda e: (e[0], e[1])):
        now += step
        peak = max(peak, now)
    return peak


def test_runs_and_calls_share_one_cap_on_calls_in_flight(tmp_path) -> None:
    with serving(tmp_path, max_concurrent_calls=3, latency_ms=150) as url:
        started = httpx.post(f"{url}/api/runs", json={"personas": ["anna-double-charge", "sven-wrong-person"],
                                                      "repeats": 3, "concurrency": 8, "run_id": "capped"})
        assert started.status_code == 202, started.text
        ids = [httpx.post(f"{url}/api/conversations", json=ANNA).json()["id"] for _ in range(6)]
        for call_id in ids:
            wait_done(url, call_id)
        wait_run(url, "capped", lambda s: s["state"] == "finished")
        health = httpx.get(f"{url}/health").json()
    store = RunStore(tmp_path / "runs")
    run = store.open("capped")
    concurrency = run.manifest.concurrency
    (service,) = [store.open(i) for i in store.list() if i.startswith("api-")]
    calls = run.results() + service.results()
    assert len(calls) == 12 and all(c.status == "completed" for c in calls)
    assert most_at_once(calls) <= 3
    assert concurrency == 3  # asked for 8: at most the service's cap
    assert health["calls"] == {"in_flight": 0, "waiting": 0, "max_in_flight": 3, "pending": 0, "max_pending": 20_000}


def test_work_past_the_limits_is_refused_and_nothing_is_started(tmp_path) -> None:
    with serving(tmp_path, max_run_calls=30, max_pending_calls=40, max_concurrent_calls=4, latency_ms=400) as url:
        big = httpx.post(f"{url}/api/runs", json={"personas": ["anna-double-charge", "sven-wrong-person"],
                                                  "repeats": 16, "run_id": "too-big"})
        assert big.status_code == 422 and big.json()["fields"][0]["field"] == "repeats"
        assert "32 calls" in big.json()["detail"] and "30" in big.json()["detail"]
        first = httpx.post(f"{url}/api/runs", json={"personas": ["anna-double-charge", "sven-wrong-person"],
                                                    "repeats": 15, "run_id": "first", "latency_ms": 30_000})
        # 30 s before any reply: none of its 30 calls can end (and stop being pending) while this test
        # counts, and the 4 in flight hold every slot, so the calls below wait (pending) and none ends
        assert first.status_code == 202, first.text
        wait_run(url, "first", lambda s: s["counts"]["running"] == 4)
        second = httpx.post(f"{url}/api/runs", json={"personas": ["anna-double-charge"], "repeats": 15,
                                                     "run_id": "second"})
        assert second.status_code == 429, second.text
        error = second.json()
        assert set(error) == {"status", "error", "detail", "fields"} and error["status"] == 429
        assert error["error"] == "too_many_requests" and int(second.headers["Retry-After"]) >= 1
        assert "40" in error["detail"]
        calls = [httpx.post(f"{url}/api/conversations", json=ANNA) for _ in range(12)]
        assert [c.status_code for c in calls].count(202) == 10 and calls[-1].status_code == 429
        assert httpx.delete(f"{url}/api/runs/first", timeout=90).status_code == 200
        for c in calls[:10]:
            wait_done(url, c.json()["id"])
        assert httpx.post(f"{url}/api/conversations", json=ANNA).status_code == 202  # room again
    assert not (tmp_path / "runs" / "too-big").exists() and not (tmp_path / "runs" / "second").exists()


def test_a_run_waits_for_room_under_the_cap_and_can_be_cancelled_while_it_waits(tmp_path) -> None:
    with serving(tmp_path, max_concurrent_calls=1) as url:
        silent = httpx.post(f"{url}/api/conversations", json={**ANNA, "persona_id": "silent-line-chargeback"})
        wait_done(url, silent.json()["id"], until=lambda s: s["state"] == "running")  # it holds the one slot
        started = httpx.post(f"{url}/api/runs", json={"personas": ["anna-double-charge"], "run_id": "waits"})
        assert started.status_code == 202 and started.json()["state"] == "queued"
        assert httpx.get(f"{url}/health").json()["calls"]["waiting"] == 1
        stopped = httpx.delete(f"{url}/api/runs/waits", timeout=30).json()
        assert stopped["state"] == "interrupted" and stopped["stopped_by"] == "cancel"
        assert stopped["counts"]["done"] == 0 and httpx.get(f"{url}/health").json()["calls"]["waiting"] == 0
    assert RunStore(tmp_path / "runs").open("waits").results() == []  # nothing was placed
