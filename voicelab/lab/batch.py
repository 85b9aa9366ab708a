"""Batches: personas x repeats, placed by the caller's runner (voicelab/harness/runners/), resumable.

The batch's event loop runs in a worker thread, so the same code works from the CLI and from a
notebook (whose kernel already runs a loop); the calling thread waits and turns Ctrl+C (or a
notebook interrupt) into cancelling the batch, which ends in-flight calls as `cancelled` and
records them. Every finished call is on disk before the next one is started in its slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from voicelab.harness import runners
from voicelab.lab import heap, signals
from voicelab.lab.backends import backend_url
from voicelab.lab.lifecycle import Sitting, new_manifest, place_in_thread
from voicelab.lab.plan import apply_variant, persona_info, plan_calls, with_variants
from voicelab.lab.store import Run, RunStore, new_run_id
from voicelab.spec.datasets import Dataset, load_dataset
from voicelab.spec.errors import StoreNotWritable, UsageError
from voicelab.spec.models import (
    CallRequest,
    CallResult,
    Variant,
)

if TYPE_CHECKING:
    from voicelab.lab.cluster import Cluster


@dataclass
class BatchOutcome:
    run: Run
    interrupted: bool
    #: What interrupted it: "Ctrl+C", "SIGTERM", "SIGHUP", "cancel", or None.
    stopped_by: str | None = None

    @property
    def results(self) -> list[CallResult]:
        return self.run.results()


class _Progress:
    """The runners' sink: stores each result (before its slot is reused) and shows tqdm (the
    notebook widget inside Jupyter) with done / failed / running counts. When the store cannot be
    written it takes no more calls, lets those in flight finish, and keeps their results outside
    the store (`Run.keep_unsaved`); `store_error` then says what happened."""

    def __init__(self, run: Run, total: int, enabled: bool,
                 observer: Callable[[int, int, int], None] | None = None) -> None:
        from tqdm.auto import tqdm

        self.run = run
        self.observer = observer
        self.bar = tqdm(total=total, unit="call", desc="calls", disable=not enabled, dynamic_ncols=True)
        self.done = self.failed = self.running = 0
        self.store_error: StoreNotWritable | None = None
        self.unsaved = 0

    def started(self, request: CallRequest) -> bool:
        if self.store_error is not None:
            return False
        self.running += 1
        self._show()
        return True

    async def finished(self, result: CallResult) -> None:
        # fsync runs off the loop so the other calls' turns are not held up by the disk; the
        # JSON is made here, since a thread holding the GIL for it would hold up the loop anyway
        # (for up to the 5 ms switch interval at a time)
        line = result.model_dump_json()
        await asyncio.get_running_loop().run_in_executor(None, self.store, line)
        self.running -= 1
        self.counted(result)

    def store(self, line: str) -> None:
        """Append one result's line; a store that refuses it keeps it outside (`store_error` says so)."""
        try:
            self.run.append(line)
        except StoreNotWritable as exc:
            kept = self.run.keep_unsaved(line)
            self.unsaved += 1
            self.store_error = StoreNotWritable(str(exc), path=exc.path, kept=kept)

    def counted(self, result: CallResult) -> None:
        """Count a stored result on the bar (the cluster's placement stores and counts as results
        arrive from its workers, without `started`: it cannot see a call start on a worker)."""
        self.done += 1
        self.failed += result.status == "failed"
        self.bar.update(1)
        self._show()

    def _show(self) -> None:
        # drawn now: a bar redrawn only when a call ends would show no call running through a
        # batch's first minute of long calls (one write per call start and end: nothing at any scale)
        self.bar.set_postfix(failed=self.failed, running=self.running, refresh=True)
        if self.observer is not None:
            self.observer(self.done, self.failed, self.running)

    def close(self) -> None:
        self.bar.close()


def run_batch(
    personas: str = "datasets/personas",
    agents: str = "datasets/agents",
    *,
    progress: bool = True,
    cancel_event: threading.Event | None = None,
    local_url: str | None = None,
    cluster: str | None = None,
    **options: Any,
) -> BatchOutcome:
    """Start a new run of personas x repeats and place its calls (`options`: those of
    `new_batch`); `cluster`: on a Dask cluster ("local:N" or a scheduler's address, see
    voicelab/lab/cluster.py) instead of in this process. See also `resume_batch`."""
    with on_cluster(cluster) as on:  # reached (or refused) before the run exists
        run, dataset = new_batch(personas, agents, local_url=local_url, **options)
        return place_run(run, dataset, progress=progress, cancel_event=cancel_event, local_url=local_url,
                         placement=on)


@contextlib.contextmanager
def on_cluster(cluster: str | None) -> Iterator[Cluster | None]:
    """Where a run's calls go: None (this process), or a connected Dask cluster for the block.
    Dask is imported only when a cluster is given."""
    if cluster is None:
        yield None
        return
    from voicelab.lab.cluster import connect

    with connect(cluster) as on:
        yield on


def new_batch(
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
    local_url: str | None = None,
) -> tuple[Run, Dataset]:
    """Check the options and create the run (nothing placed yet): what `run_batch` does before
    `place_run`, and what the REST service does before it answers 202."""
    if repeats < 1 or concurrency < 1:
        raise UsageError("repeats and concurrency must be at least 1")
    if mode not in ("text", "voice"):
        raise UsageError(f"mode must be text or voice, not {mode!r}")
    dataset = load_dataset(personas, agents)
    chosen = list(persona_ids) if persona_ids else [
        p.id for p in dataset.personas.values() if agent is None or p.agent == agent]
    if not chosen:
        raise UsageError(f"no personas call agent '{agent}': check --agent (agents: {', '.join(dataset.agents)})"
                         if agent else "no personas to call: the persona files define none")
    run = new_run(dataset, chosen, personas_path=str(personas), agents_path=str(agents), agent=agent,
                  repeats=repeats, concurrency=concurrency, backend=backend, caller=caller, mode=mode,
                  run_id=run_id or new_run_id(), unique_id=run_id is None, latency_ms=latency_ms,
                  max_duration_s=max_duration_s, runs_root=runs_root, local_url=local_url)
    return run, dataset


def start_run(dataset: Dataset, chosen: list[str], *, progress: bool = True,
              cancel_event: threading.Event | None = None, local_url: str | None = None,
              cluster: str | None = None, **options: Any) -> BatchOutcome:
    """Create a run (`new_run`'s options) and place its calls (`cluster`: as in `run_batch`)."""
    with on_cluster(cluster) as on:
        run = new_run(dataset, chosen, local_url=local_url, **options)
        return place_run(run, dataset, progress=progress, cancel_event=cancel_event, local_url=local_url,
                         placement=on)


def new_run(dataset: Dataset, chosen: list[str], *, personas_path: str, agents_path: str, run_id: str,
            unique_id: bool, repeats: int, concurrency: int, backend: str, caller: str, mode: str,
            agent: str | None = None, latency_ms: float = 0.0, max_duration_s: float = 60.0,
            variants: list[Variant] | None = None, experiment: str | None = None, kind: str = "batch",
            runs_root: str = "runs", local_url: str | None = None) -> Run:
    """Create a run (batch, experiment or mutation run) for `chosen` personas, after checking every
    setting its calls need. `unique_id`: the id was made up, so take the next free one rather
    than refuse a taken one."""
    variants = variants or []
    if variants and local_url:
        raise UsageError("an experiment serves its variants' agents itself: drop --local-url")
    if not runners.runner(caller).batch:
        raise UsageError(f"caller '{caller}' cannot run in a batch: use {' or '.join(runners.names(batch=True))} "
                         f"(a {caller} caller uses the call console)")
    # settings every call would trip over (API key, agent id, phone number id), checked before
    # the run exists, so a typo leaves no empty run behind
    served = with_variants(dataset, variants)
    probes = [served.request(pid, backend=backend, caller=caller, mode=mode) for pid in chosen]
    runners.preflight([apply_variant(r, v, served) for r in probes for v in variants] or probes)
    info = {pid: persona_info(dataset.personas[pid], dataset.agents.get(agent or dataset.personas[pid].agent))
            for pid in chosen}
    manifest = new_manifest(
        run_id=run_id, personas=chosen, persona_info=info, agent=agent, backend=backend,
        caller=caller, mode=mode, repeats=repeats, concurrency=concurrency, max_duration_s=max_duration_s,
        latency_ms=latency_ms, personas_path=personas_path, agents_path=agents_path,
        variants=variants, experiment=experiment,
        kind=kind, pass_thresholds={pid: dataset.personas[pid].pass_threshold for pid in chosen})
    store = RunStore(runs_root)
    return store.create_new(manifest) if unique_id else store.create(manifest)


def resume_batch(run_id: str, *, runs_root: str = "runs", progress: bool = True,
                 cancel_event: threading.Event | None = None, local_url: str | None = None,
                 cluster: str | None = None) -> BatchOutcome:
    """Place only the calls of `run_id` that have no result yet (or were cancelled); `cluster`:
    as in `run_batch` (any run resumes on a cluster or without one, whatever placed it before)."""
    run = RunStore(runs_root).open(run_id)
    m = run.manifest
    dataset = load_dataset(m.personas_path or "datasets/personas", m.agents_path or "datasets/agents")
    missing = sorted(set(m.personas) - set(dataset.personas))
    if missing:
        raise UsageError(f"run '{run_id}' calls persona '{missing[0]}', which {m.personas_path} no longer defines: "
                         "restore it, or start a new run")
    for variant in m.variants:
        if variant.agent_file and not Path(variant.agent_file).is_file():
            raise UsageError(f"run '{run_id}' serves variant '{variant.id}' from {variant.agent_file}, which no "
                             "longer exists: restore it, or start a new run")
    served = with_variants(dataset, m.variants)
    probes = [served.request(pid, backend=m.backend, caller=m.caller, mode=m.mode) for pid in m.personas]
    runners.preflight([apply_variant(r, v, served) for r in probes for v in m.variants] or probes)
    with on_cluster(cluster) as on:
        return place_run(run, dataset, progress=progress, cancel_event=cancel_event, local_url=local_url,
                         resumed=True, placement=on)


def place_run(run: Run, dataset: Dataset, *, progress: bool = True, cancel_event: threading.Event | None = None,
              local_url: str | None = None, resumed: bool = False,
              observer: Callable[[int, int, int], None] | None = None,
              placement: Cluster | None = None) -> BatchOutcome:
    """Place the run's calls that have no result yet (blocking; `cancel_event` or Ctrl+C stops it,
    keeping what finished). `observer(done, failed, running)` hears every change of the counts.
    `placement`: a connected Dask cluster (`on_cluster(...)`) that places them instead of this
    process; everything else (lock, sessions, store, resume) is the same."""
    run.check_writable()  # a read-only or full store refuses the run before anything is placed
    sitting = Sitting(run)
    sitting.hold()  # one writer per run: a second process is refused here, before anything
    try:
        run.take_unsaved()  # results a full store could not take last time: stored now, not placed again
        m = run.manifest
        dataset = with_variants(dataset, m.variants)  # the variants' agents, served beside the originals
        plan = plan_calls(run, dataset)
        sitting.begin(calls_planned=len(plan), resumed=resumed,
                      cluster=placement.address if placement is not None else None)
        sink = _Progress(run, len(plan), progress, observer)
        place = runners.runner(m.caller).run
        stopped_by: str | None = "error"  # until the batch returns (an exception also leaves it resumable)
        try:
            if placement is not None:  # the cluster's workers place the calls; this process stores them
                stopped_by = placement.place(run, plan, dataset, sink, cancel_event=cancel_event or threading.Event(),
                                             local_url=local_url)
            else:
                with backend_url(m.backend, dataset, latency_ms=m.latency_ms, local_url=local_url) as base_url:
                    with heap.frozen():  # loaded and started: collections now scan only the calls
                        stopped_by = place_in_thread(lambda: place(plan, base_url, m.concurrency, sink),
                                                    cancel_event or threading.Event())
        except KeyboardInterrupt as exc:  # while the backend started or stopped: stopped like any
            stopped_by = signals.name(signals.exit_code(exc))  # interrupt, so the summary and resume hint follow
        except BaseException as exc:
            stopped_by = f"error: {exc}"
            raise
        finally:
            sink.close()
            if sink.store_error is not None and stopped_by is None:
                stopped_by = f"error: {sink.store_error}"
            try:
                sitting.end(stopped_by)
            except StoreNotWritable:
                if stopped_by is None:
                    raise
                # else the store's failure, or the exception in flight, is what the user must read
        if sink.store_error is not None:
            error, n = sink.store_error, sink.unsaved
            kept = (f"; the run stopped, and the {n} result{'s' if n != 1 else ''} it could not store "
                    f"{'are' if n != 1 else 'is'} kept in {error.kept} (a resume stores "
                    f"{'them' if n != 1 else 'it'} first)") if error.kept else "; the run stopped"
            raise StoreNotWritable(f"{error}{kept}", path=error.path, kept=error.kept)
    finally:
        sitting.release()  # the lock, whatever happened
    return BatchOutcome(run=run, interrupted=stopped_by is not None, stopped_by=stopped_by)
