"""Batches: personas x repeats with bounded concurrency on the async SDK, resumable.

The batch's event loop runs in a worker thread, so the same code works from the CLI and from a
notebook (whose kernel already runs a loop); the calling thread waits and turns Ctrl+C (or a
notebook interrupt) into cancelling the batch, which ends in-flight calls as `cancelled` and
records them. Every finished call is on disk before the next one is started in its slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import version

from . import __version__
from .call import Call
from .datasets import Dataset, load_dataset
from .errors import ConfigError
from .models import CallRequest, CallResult, RunManifest, utc_now_iso
from .store import Run, RunStore, new_run_id


@dataclass
class BatchOutcome:
    run: Run
    interrupted: bool

    @property
    def results(self) -> list[CallResult]:
        return self.run.results()


def plan_calls(run: Run, dataset: Dataset) -> list[CallRequest]:
    """Every call the run asks for that has no result yet, in a stable order."""
    m = run.manifest
    done = run.finished_call_ids()
    plan = []
    for repeat in range(1, m.repeats + 1):
        for persona_id in m.personas:
            call_id = f"{persona_id}#{repeat}"
            if call_id in done:
                continue
            persona = dataset.persona(persona_id)
            plan.append(CallRequest(persona=persona, agent=dataset.agent_for(persona), backend=m.backend,
                                    caller=m.caller, mode=m.mode, run_id=m.run_id, call_id=call_id,
                                    max_duration_s=persona.caller.timeout_s or m.max_duration_s,
                                    audio_dir=str(run.path / "audio") if m.mode == "voice" else None))
    return plan


@contextlib.contextmanager
def backend_url(backend: str, dataset: Dataset, latency_ms: float, local_url: str | None = None
                ) -> Iterator[str | None]:
    """The base URL calls go to: None (hosted), a running local backend, or one started here."""
    if backend != "local":
        yield None
        return
    if local_url:
        yield local_url
        return
    from .local import LocalBackend

    with LocalBackend(dataset.agents, latency_s=latency_ms / 1000, personas=dataset.personas) as local:
        yield local.base_url


class _Progress:
    """tqdm (the notebook widget inside Jupyter) with done / failed / running counts."""

    def __init__(self, total: int, enabled: bool) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, unit="call", desc="calls", disable=not enabled, dynamic_ncols=True)
        self.failed = self.running = 0

    def started(self) -> None:
        self.running += 1
        self._show()

    def finished(self, result: CallResult) -> None:
        self.running -= 1
        self.failed += result.status == "failed"
        self.bar.update(1)
        self._show()

    def _show(self) -> None:
        self.bar.set_postfix(failed=self.failed, running=self.running, refresh=False)

    def close(self) -> None:
        self.bar.close()


async def _run_calls(plan: list[CallRequest], run: Run, base_url: str | None, concurrency: int,
                     progress: _Progress) -> None:
    loop = asyncio.get_running_loop()

    async def record(result: CallResult) -> None:
        # On disk before the slot is given to the next call; fsync runs off the loop so the
        # other calls' turns are not held up by the disk.
        await loop.run_in_executor(None, run.append, result)
        progress.finished(result)

    if plan and plan[0].caller == "platform":  # the platform runs the calls; we create, poll, record
        from .callers.platform import run_platform_tests

        for _ in plan:
            progress.started()
        await run_platform_tests(plan, base_url, record)
        return

    slots = asyncio.Semaphore(concurrency)

    async def one(request: CallRequest) -> None:
        async with slots:
            progress.started()
            if request.caller == "phone":
                from .callers.phone import aplace_phone_call

                result = await aplace_phone_call(request, base_url)
            else:
                result = await Call(request, base_url=base_url).arun()
            await record(result)

    tasks = [asyncio.create_task(one(r)) for r in plan]
    try:
        await asyncio.gather(*tasks)
    except asyncio.CancelledError:
        # In-flight calls end as `cancelled` and are recorded; queued ones simply never start.
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def _run_in_thread(coro_factory, cancel_event: threading.Event) -> bool:  # noqa: ANN001
    """Run the batch loop in a worker thread; return True if it was interrupted."""
    state: dict = {}

    def worker() -> None:
        loop = asyncio.new_event_loop()
        state["loop"] = loop
        main = loop.create_task(coro_factory())
        state["task"] = main
        ready.set()
        try:
            loop.run_until_complete(main)
        except asyncio.CancelledError:
            state["interrupted"] = True
        except BaseException as exc:  # surfaced in the calling thread
            state["error"] = exc
        finally:
            loop.close()

    ready = threading.Event()
    thread = threading.Thread(target=worker, name="voicelab-batch", daemon=True)
    thread.start()
    ready.wait()
    try:
        while thread.is_alive():
            thread.join(0.05)  # a timed join stays interruptible by Ctrl+C
            if cancel_event.is_set():
                raise KeyboardInterrupt
    except KeyboardInterrupt:
        state["loop"].call_soon_threadsafe(state["task"].cancel)
        thread.join()
        state["interrupted"] = True
    if "error" in state:
        raise state["error"]
    return bool(state.get("interrupted"))


def run_batch(
    personas: str = "datasets/personas",
    agents: str = "datasets/agents",
    *,
    persona_ids: list[str] | None = None,
    agent: str | None = None,
    repeats: int = 1,
    concurrency: int = 4,
    backend: str = "local",
    caller: str = "scripted",
    mode: str = "text",
    run_id: str | None = None,
    latency_ms: float = 0.0,
    max_duration_s: float = 60.0,
    runs_root: str = "runs",
    progress: bool = True,
    cancel_event: threading.Event | None = None,
    local_url: str | None = None,
) -> BatchOutcome:
    """Start a new run of personas x repeats and place its calls. See also `resume_batch`."""
    if repeats < 1 or concurrency < 1:
        raise ConfigError("repeats and concurrency must be at least 1")
    if mode not in ("text", "voice"):
        raise ConfigError(f"mode must be text or voice, not {mode!r}")
    if mode == "voice" and caller != "scripted":
        raise ConfigError("voice batches are played by the scripted caller's synthetic voice; use caller scripted")
    if caller not in ("scripted", "platform", "phone"):
        raise ConfigError(f"caller '{caller}' cannot run in a batch: use scripted, platform or phone "
                          "(a human caller uses the notebook console)")
    dataset = load_dataset(personas, agents)
    chosen = list(persona_ids) if persona_ids else [
        p.id for p in dataset.personas.values() if agent is None or p.agent == agent]
    for pid in chosen:
        dataset.persona(pid)  # a clear error for an unknown id, before the run exists
    if not chosen:
        raise ConfigError(f"no personas call agent '{agent}'; check --agent or --persona")
    _preflight(dataset, chosen, backend, caller)
    info = {pid: {"name": dataset.personas[pid].name, "agent": dataset.personas[pid].agent,
                  "style": dataset.personas[pid].caller.style, "language": dataset.personas[pid].language}
            for pid in chosen}
    manifest = RunManifest(
        run_id=run_id or new_run_id(), personas=chosen, persona_info=info, agent=agent, backend=backend,
        caller=caller, mode=mode, repeats=repeats, concurrency=concurrency, max_duration_s=max_duration_s,
        latency_ms=latency_ms, personas_path=str(personas), agents_path=str(agents),
        voicelab_version=__version__, sdk_version=version("elevenlabs"))
    run = RunStore(runs_root).create(manifest)
    return _execute(run, dataset, progress=progress, cancel_event=cancel_event, local_url=local_url)


def _preflight(dataset: Dataset, persona_ids: list[str], backend: str, caller: str) -> None:
    """Settings every call would trip over (API key, agent id, phone number id), checked before
    the run exists, so a typo leaves no empty run behind. Same checks the calls themselves make."""
    from .call import connect

    for pid in persona_ids:
        persona = dataset.persona(pid)
        request = CallRequest(persona=persona, agent=dataset.agent_for(persona), backend=backend, caller=caller)
        if backend != "local":
            connect(request)
        if caller == "phone":
            from .callers.phone import phone_settings

            phone_settings(request)


def resume_batch(run_id: str, *, runs_root: str = "runs", progress: bool = True,
                 cancel_event: threading.Event | None = None, local_url: str | None = None) -> BatchOutcome:
    """Place only the calls of `run_id` that have no result yet (or were cancelled)."""
    run = RunStore(runs_root).open(run_id)
    m = run.manifest
    dataset = load_dataset(m.personas_path or "datasets/personas", m.agents_path or "datasets/agents")
    return _execute(run, dataset, progress=progress, cancel_event=cancel_event, local_url=local_url)


def _execute(run: Run, dataset: Dataset, *, progress: bool, cancel_event: threading.Event | None,
             local_url: str | None) -> BatchOutcome:
    m = run.manifest
    plan = plan_calls(run, dataset)
    m.state, m.ended_at = "running", None
    run.save_manifest()
    bar = _Progress(len(plan), progress)
    interrupted = True  # until the batch returns normally (an exception also leaves it resumable)
    try:
        with backend_url(m.backend, dataset, m.latency_ms, local_url) as base_url:
            interrupted = _run_in_thread(lambda: _run_calls(plan, run, base_url, m.concurrency, bar),
                                         cancel_event or threading.Event())
    finally:
        bar.close()
        m.state = "interrupted" if interrupted else "finished"
        m.ended_at = utc_now_iso()
        run.save_manifest()
    return BatchOutcome(run=run, interrupted=interrupted)
