"""What runs inside a Dask worker process when a run is placed with `--cluster` (the client's
side is voicelab/lab/cluster.py).

Each call is one Dask task, `place_call`. A worker keeps, for its whole life:

- one private event loop thread, where its calls run exactly as a batch runs them in-process
  (`runners.place_one`, the path of a batch of one), so a call on a worker is the same call;
- per run session, the embedded local backend serving that session's agents (`ServeAgents`, a
  WorkerPlugin: the scheduler hands it to every worker, also to one that joins or is restarted
  mid-run), started by the first call that needs it and reused by every later one;
- per run session, a semaphore of `--concurrency` slots: a task holds a worker thread only while
  it waits for a slot, then `secede`s, so the worker takes the next task. That makes
  `--concurrency` mean "calls at once per worker" whatever `--nthreads` the worker was started
  with, and the scheduler keeps every call it has not started in its own queue, where a worker
  that dies cannot take it along.

Results go back as JSON strings (`CallResult.model_dump_json`), recordings as bytes: the worker
writes nothing the client must read from its disk, which may be another machine's.

This module imports `distributed` at the top: only a cluster run (and its workers) load it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import shutil
import signal
import tempfile
import threading
from pathlib import Path
from typing import Any

from distributed import get_worker, secede
from distributed.diagnostics.plugin import WorkerPlugin

from voicelab.spec.models import AgentSpec, CallRequest, CallResult, Persona

_LOCK = threading.Lock()
_LOOP: asyncio.AbstractEventLoop | None = None
#: Run session key -> the agents it serves (and their backend, once started).
_SERVED: dict[str, _Served] = {}
#: Run session key -> its slots, its calls in progress, and whether it was stopped
#: (touched only on the worker's call loop).
_SLOTS: dict[str, asyncio.Semaphore] = {}
_RUNNING: dict[str, set[asyncio.Task]] = {}
_STOPPED: set[str] = set()


def worker_info() -> dict[str, str]:
    """What the client checks on every worker before it submits anything: the same voicelab
    (a worker with another version could place calls that mean something else)."""
    from voicelab.spec.version import __version__

    return {"voicelab": __version__}


class _Served:
    """A run session's agents and personas on this worker, and the local backend serving them
    (started lazily, once, by the first call that needs it)."""

    def __init__(self, agents: dict[str, AgentSpec], personas: dict[str, Persona], latency_ms: float) -> None:
        self.agents, self.personas, self.latency_ms = agents, personas, latency_ms
        self.backend: Any = None
        self._lock = threading.Lock()

    def url(self) -> str:
        with self._lock:
            if self.backend is None:
                from voicelab.local import LocalBackend

                backend = LocalBackend(self.agents, latency_s=self.latency_ms / 1000, personas=self.personas)
                backend.start()
                self.backend = backend
            return self.backend.base_url

    def stop(self) -> None:
        with self._lock:
            if self.backend is not None:
                with contextlib.suppress(Exception):  # a worker closing must not fail on it
                    self.backend.stop()
                self.backend = None


class ServeAgents(WorkerPlugin):
    """A run session's served agents on every worker (one that joins later gets it too); removed
    (its backend stopped) when the client unregisters it at the end of the session."""

    def __init__(self, run_key: str, agents: dict[str, AgentSpec], personas: dict[str, Persona],
                 latency_ms: float) -> None:
        self.name = f"voicelab-{run_key}"
        self.run_key, self.agents, self.personas, self.latency_ms = run_key, agents, personas, latency_ms

    def setup(self, worker: Any) -> None:
        with _LOCK:
            _SERVED.setdefault(self.run_key, _Served(self.agents, self.personas, self.latency_ms))

    def teardown(self, worker: Any) -> None:
        with _LOCK:
            served = _SERVED.pop(self.run_key, None)
        if served is not None:
            served.stop()
        if _LOOP is not None:
            _LOOP.call_soon_threadsafe(_forget, self.run_key)


class IgnoreInterrupts(WorkerPlugin):
    """`--cluster local:N` only: the worker processes ignore SIGINT. A terminal's Ctrl+C reaches
    every process of its group, and a worker killed by it would lose its calls in progress (and
    print a traceback) instead of ending them as `cancelled` when the client, which decides what
    a stop means, asks it to. Workers a user started with `dask worker` keep their own Ctrl+C."""

    name = "voicelab-ignore-interrupts"

    def setup(self, worker: Any) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)


def _forget(run_key: str) -> None:
    _SLOTS.pop(run_key, None)
    _RUNNING.pop(run_key, None)
    _STOPPED.discard(run_key)


def _loop() -> asyncio.AbstractEventLoop:
    """The worker's call loop: one thread for all its calls (as one batch process has), apart
    from Dask's own event loop, so a busy call never delays the worker's heartbeats."""
    global _LOOP
    with _LOCK:
        if _LOOP is None:
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="voicelab-worker-calls", daemon=True).start()
            _LOOP = loop
        return _LOOP


def stop_run(run_key: str) -> int:
    """Run by the client on every worker (`Client.run`) when it is stopped: the session's calls in
    progress end as `cancelled` (and come back as such), and its calls not started yet return at
    once without placing anything. Returns how many calls were in progress here."""
    if _LOOP is None:
        return 0

    def stop() -> int:
        _STOPPED.add(run_key)
        running = list(_RUNNING.get(run_key, ()))
        for task in running:
            task.cancel()
        return len(running)

    future: concurrent.futures.Future = concurrent.futures.Future()
    _LOOP.call_soon_threadsafe(lambda: future.set_result(stop()))
    return future.result(timeout=5)


async def _place(request: CallRequest, base_url: str | None, run_key: str, concurrency: int,
                 holding: threading.Event) -> CallResult | None:
    """One call in one of the session's slots; None when the session was stopped before it began."""
    slots = _SLOTS.setdefault(run_key, asyncio.Semaphore(concurrency))
    try:
        async with slots:
            holding.set()
            if run_key in _STOPPED:
                return None
            from voicelab.harness import runners

            task = asyncio.current_task()
            running = _RUNNING.setdefault(run_key, set())
            if task is not None:
                running.add(task)
            got: list[CallResult] = []

            async def keep(result: CallResult) -> None:
                got.append(result)

            try:
                return await runners.place_one(request, base_url, keep)
            except asyncio.CancelledError:
                if got:  # the call ended as `cancelled` and was recorded: that is its result
                    return got[0]
                raise
            finally:
                running.discard(task)
    finally:
        holding.set()


def place_call(request_json: str, target: tuple[str, str | None], run_key: str, concurrency: int) -> dict:
    """The Dask task of one call: {"result": CallResult JSON or None (stopped before it began),
    "worker": this worker's address, "audio": the recording's bytes or None, "audio_name"}.
    `target`: ("served", run key) for this worker's own local backend, or ("url", URL or None)
    for a backend given by URL (`--local-url`) or the hosted platform (None)."""
    worker = get_worker().address
    request = CallRequest.model_validate_json(request_json)
    folder = tempfile.mkdtemp(prefix="voicelab-call-") if request.mode == "voice" else None
    if folder is not None:  # recorded here, sent back with the result, filed by the client
        request = request.model_copy(update={"audio_dir": folder})
    try:
        kind, value = target
        if kind == "served":
            with _LOCK:
                served = _SERVED.get(run_key)
            if served is None:
                raise RuntimeError(f"worker {worker} has no agents for run session {run_key} (its plugin is missing)")
            base_url: str | None = served.url()
        else:
            base_url = value
        holding = threading.Event()
        future = asyncio.run_coroutine_threadsafe(_place(request, base_url, run_key, concurrency, holding), _loop())
        while not holding.wait(0.5) and not future.done():
            pass
        if not future.done():
            secede()  # the call has its slot: the thread no longer counts against the worker's threads
        try:
            result = future.result()
        except concurrent.futures.CancelledError:
            result = None
        if result is None:
            return {"result": None, "worker": worker, "audio": None, "audio_name": None}
        audio, audio_name = None, None
        if result.audio_path and folder is not None:
            path = Path(result.audio_path)
            with contextlib.suppress(OSError):  # a lost recording never loses the call's result
                audio, audio_name = path.read_bytes(), path.name
            result = result.model_copy(update={"audio_path": None})
        result = result.model_copy(update={"worker": worker})
        return {"result": result.model_dump_json(), "worker": worker, "audio": audio, "audio_name": audio_name}
    finally:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
