"""Placing a run's calls on a Dask cluster (`--cluster`): one more way to place a run's calls,
not a second kind of batch. The run is made, planned, locked, recorded and resumed exactly as
any run (batch.place_run, lifecycle.Sitting); only where its calls run changes.

    with connect("tcp://scheduler.example.org:8786") as cluster:   # or "local:4"
        place_run(run, dataset, placement=cluster)                 # see batch.run_batch(cluster=...)

- **One store, one writer.** Workers place calls and send back `CallResult`s (as JSON, with
  their recordings as bytes); only this process writes `runs/<id>/calls.jsonl`, as the results
  arrive (`as_completed`), under the run's lock, each call id once.
- **A killed worker costs the calls it held.** Every call is a Dask task; the scheduler places
  a lost worker's tasks again on another (`retries=` covers a task that raised). A call whose
  workers died `distributed.scheduler.allowed-failures` times is stored as an `error` result
  that says so. Calls the cluster never finished are simply missing: `--resume` places them.
- **Stopping** (Ctrl+C, SIGTERM, SIGHUP, `cancel_event`) asks every worker to end this session's
  calls in progress as `cancelled` (they are stored, as an in-process run stores them), waits a
  few seconds for them, and cancels the rest.
- **Each worker is self-contained**: it runs its own embedded local backend per run session,
  started once and reused (voicelab/lab/cluster_worker.py). Bad input is refused before
  anything is submitted, as always; a scheduler that cannot be reached, or a worker with
  another voicelab, is a one-line UsageError (exit 2) before the run exists.

Dask is an optional extra (`pip install 'voicelab[cluster]'`): this module imports it only when
a cluster is asked for.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import re
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from voicelab.lab import signals
from voicelab.spec.errors import UsageError

if TYPE_CHECKING:
    from voicelab.lab.store import Run
    from voicelab.spec.datasets import Dataset
    from voicelab.spec.models import CallRequest

log = logging.getLogger(__name__)

INSTALL = "pip install 'voicelab[cluster]'"
LOCAL = re.compile(r"local:(\d+)")
ADDRESS = re.compile(r"(tcp|tls|ws|wss)://\S+|[A-Za-z0-9._\-\[\]:]+:\d+")
MAX_LOCAL_WORKERS = 64
#: How long a scheduler may take to answer before it counts as unreachable.
CONNECT_TIMEOUT_S = 10.0
#: How long a scheduler without workers is given for one to join.
WORKERS_TIMEOUT_S = 60.0
#: Dask retries of a task that raised (a call that fails is a result, not an exception: this
#: covers a backend that could not start, a worker's disk that was full for a moment).
RETRIES = 2
#: After a stop: how long the calls in progress get to come back as `cancelled`.
STOP_GRACE_S = 5.0


def address_problem(text: str) -> str | None:
    """Why `text` is not a --cluster value, or None (syntax only: nothing is imported or reached)."""
    if text.startswith("local"):
        match = LOCAL.fullmatch(text)
        if not match or not 1 <= int(match[1]) <= MAX_LOCAL_WORKERS:
            return f"{text!r}: use local:N, N from 1 to {MAX_LOCAL_WORKERS} worker processes on this machine"
        return None
    if not ADDRESS.fullmatch(text):
        return (f"{text!r} is not a Dask scheduler address: give tcp://HOST:PORT (e.g. "
                "tcp://scheduler.example.org:8786) or local:N")
    return None


def _distributed() -> Any:
    """dask.distributed, or the one line that says how to install it."""
    try:
        import distributed
    except ImportError:
        raise UsageError(f"--cluster needs Dask, which is not installed: {INSTALL}") from None
    return distributed


@contextlib.contextmanager
def _quiet_dask(level: int = logging.CRITICAL) -> Iterator[None]:
    """Dask's own log at `level` for the block: each failed connection attempt is said by the one
    line voicelab prints instead, and a local cluster's scheduler and nannies log every start and
    close at INFO, which would bury the run's own output (a lost worker still shows: WARNING)."""
    logger = logging.getLogger("distributed")
    before = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(before)


@contextlib.contextmanager
def connect(address: str, *, out: TextIO | None = None) -> Iterator[Cluster]:
    """A connected `Cluster` for `address` ("local:N" starts a LocalCluster of N worker processes
    on 127.0.0.1, closed again at the end), with every worker checked; UsageError (exit 2, one
    line naming the address) when it cannot be reached or has no usable worker."""
    problem = address_problem(address)
    if problem:
        raise UsageError(problem)
    distributed = _distributed()
    out = out or sys.stderr
    with contextlib.ExitStack() as stack:
        stack.enter_context(_quiet_dask(logging.WARNING))
        local = LOCAL.fullmatch(address)
        if local:
            workers = int(local[1])
            # a free port: a shared machine may run other clusters on Dask's default 8787
            cluster = stack.enter_context(distributed.LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR))
            client = stack.enter_context(distributed.Client(cluster))
            from voicelab.lab.cluster_worker import IgnoreInterrupts

            client.register_plugin(IgnoreInterrupts())  # Ctrl+C is the client's to handle
        else:
            workers = 1
            try:
                with _quiet_dask():
                    client = distributed.Client(address, timeout=CONNECT_TIMEOUT_S)
            except (OSError, TimeoutError) as exc:
                reason = (f"no answer within {CONNECT_TIMEOUT_S:.0f} s" if "timed out" in str(exc).lower()
                          else f"{exc.__class__.__name__}: {str(exc)[:120]}")
                raise UsageError(f"cannot reach the Dask scheduler at {address} ({reason}): start one there with "
                                 "`dask scheduler`, check the address and port, or use --cluster local:N") from None
            except Exception as exc:  # noqa: BLE001 - something else answered there (e.g. an HTTP server)
                raise UsageError(f"what answers at {address} is not a Dask scheduler ({exc.__class__.__name__}): "
                                 "check the address and port (the scheduler's, 8786 by default, not its "
                                 "dashboard's)") from None
            stack.enter_context(client)
        placement = Cluster(address, client)
        placement.check_workers(workers, out)
        n = placement.worker_count()
        served = "dashboard" in client.scheduler_info().get("services", {})
        dashboard_text = f"; dashboard {client.dashboard_link}" if served and (
            not local or importlib.util.find_spec("bokeh")) else ""  # without bokeh it shows nothing
        print(f"dask: {n} worker{'s' if n != 1 else ''} at {client.scheduler.address} ({address}){dashboard_text}",
              file=out, flush=True)
        yield placement


class Cluster:
    """A Dask client that places runs' calls: `place` is what `batch.place_run` calls instead of
    starting a local backend and a private event loop."""

    def __init__(self, address: str, client: Any) -> None:
        #: As given: `local:N` or the scheduler's address (what run.json records).
        self.address = address
        self.client = client

    def worker_count(self) -> int:
        """The workers the scheduler has now (newer Dask lists only 5 unless asked for all)."""
        try:
            return len(self.client.scheduler_info(n_workers=-1)["workers"])
        except TypeError:  # Dask before 2025: every worker, always
            return len(self.client.scheduler_info()["workers"])

    def check_workers(self, count: int, out: TextIO | None = None) -> None:
        """At least `count` workers, each running this voicelab version (a worker without voicelab, or
        with another one, would fail every call, or place calls that mean something else)."""
        from voicelab.lab.cluster_worker import worker_info
        from voicelab.spec.version import __version__

        if self.worker_count() < count:
            print(f"dask: waiting up to {WORKERS_TIMEOUT_S:.0f} s for a worker of {self.address}",
                  file=out or sys.stderr, flush=True)
        try:
            self.client.wait_for_workers(count, timeout=WORKERS_TIMEOUT_S)
        except TimeoutError:
            raise UsageError(f"no Dask worker joined the scheduler at {self.address} within {WORKERS_TIMEOUT_S:.0f} s: "
                             f"start one with `dask worker {self.address}` on a machine with voicelab installed") \
                from None
        for worker, info in self.client.run(worker_info, on_error="return").items():
            if isinstance(info, BaseException):
                raise UsageError(f"Dask worker {worker} of {self.address} cannot run voicelab "
                                 f"({info.__class__.__name__}: {info}): install voicelab {__version__} there "
                                 f"({INSTALL})")
            if info.get("voicelab") != __version__:
                raise UsageError(f"Dask worker {worker} of {self.address} runs voicelab {info.get('voicelab')}, this "
                                 f"process {__version__}: install the same version on every worker")

    def place(self, run: Run, plan: list[CallRequest], dataset: Dataset, sink: Any, *,
              cancel_event: threading.Event, local_url: str | None = None) -> str | None:
        """Place `plan` on the cluster, storing each result through `sink` (batch._Progress) as it
        arrives. Returns None when every call came back (or the store failed: `sink.store_error`),
        else what stopped it ("Ctrl+C", "SIGTERM", "SIGHUP", "cancel")."""
        from distributed import as_completed

        from voicelab.lab.cluster_worker import ServeAgents, place_call

        m = run.manifest
        run_key = f"{m.run_id}-{uuid.uuid4().hex[:8]}"  # this session: its backend, slots and stop
        plugin = None
        if m.backend == "local" and not local_url:
            plugin = ServeAgents(run_key, dataset.agents, dataset.personas, m.latency_ms)
            self.client.register_plugin(plugin)
            target: tuple[str, str | None] = ("served", run_key)
        else:  # a running `voicelab serve` every worker can reach, or the hosted platform
            target = ("url", local_url if m.backend == "local" else None)
        requests: dict[str, CallRequest] = {}
        pending: set[Any] = set()
        stored: set[str] = set()
        try:
            try:
                futures = []
                for i, request in enumerate(plan):  # in plan order: Dask runs earlier submissions first
                    future = self.client.submit(place_call, request.model_dump_json(), target, run_key,
                                                m.concurrency, key=f"voicelab-call-{run_key}-{i}", pure=False,
                                                retries=RETRIES)
                    requests[future.key] = request
                    futures.append(future)
                    pending.add(future)  # a stop while submitting cancels what was submitted
                sink.running = len(pending)
                arrived = as_completed(futures)
                while pending:
                    if cancel_event.is_set():
                        raise KeyboardInterrupt("cancel")
                    batch = arrived.next_batch(block=False)
                    if not batch:
                        time.sleep(0.05)
                        continue
                    for future in batch:
                        pending.discard(future)
                        sink.running = len(pending)
                        self._arrived(future, requests[future.key], sink, stored)
                    if sink.store_error is not None:  # place_run reports it: take no more calls, and keep
                        self._stop(run_key, pending, requests, sink, stored)  # those in progress outside
                        return None
                return None
            except KeyboardInterrupt as exc:
                stopped_by = "cancel" if exc.args == ("cancel",) else signals.name(signals.exit_code(exc))
                try:
                    self._stop(run_key, pending, requests, sink, stored)
                except KeyboardInterrupt:  # a second signal: stop now; the calls not stored run again on resume
                    pass
                return stopped_by
        finally:
            with contextlib.suppress(Exception):
                self.client.cancel(list(pending))
            if plugin is not None:  # the workers stop this session's backends
                with contextlib.suppress(Exception):
                    self.client.unregister_worker_plugin(plugin.name)

    def _stop(self, run_key: str, pending: set[Any], requests: dict[str, CallRequest], sink: Any,
              stored: set[str]) -> None:
        """After a stop: the workers end this session's calls in progress (stored as `cancelled`)
        and start no more; whatever comes back within STOP_GRACE_S is stored."""
        from voicelab.lab.cluster_worker import stop_run

        if not pending:
            return
        with contextlib.suppress(Exception):
            self.client.run(stop_run, run_key, on_error="ignore")
        deadline = time.monotonic() + STOP_GRACE_S
        while pending and time.monotonic() < deadline:
            done = [f for f in pending if f.done()]
            for future in done:
                pending.discard(future)
                with contextlib.suppress(Exception):
                    self._arrived(future, requests[future.key], sink, stored)
            if not done:
                time.sleep(0.05)

    def _arrived(self, future: Any, request: CallRequest, sink: Any, stored: set[str]) -> None:
        """Store one finished task's result (once per call id), its recording into runs/<id>/audio/."""
        from distributed import KilledWorker
        from distributed.client import FutureCancelledError

        from voicelab.spec.checks import finished_result
        from voicelab.spec.models import CallResult, utc_now_iso

        audio, audio_name = None, None
        try:
            reply = future.result()
        except KilledWorker as exc:  # the call took its worker down, more than once: a finding to keep
            result = finished_result(request, [], end_reason="error", duration_s=0.0, started_at=utc_now_iso(),
                                     error=f"the Dask workers placing this call died while it ran ({exc})")
        except FutureCancelledError:  # the cluster dropped it: not placed, a resume places it
            return
        else:
            if reply["result"] is None:  # stopped before it began
                return
            result = CallResult.model_validate_json(reply["result"])
            audio, audio_name = reply.get("audio"), reply.get("audio_name")
        if result.call_id in stored:  # a task the scheduler ran twice: the first result stands
            return
        if audio is not None and audio_name and request.audio_dir:
            result = result.model_copy(update={"audio_path": _file_recording(Path(request.audio_dir), audio_name,
                                                                             audio)})
        sink.store(result.model_dump_json())
        if result.call_id:
            stored.add(result.call_id)
        sink.counted(result)


def _file_recording(folder: Path, name: str, data: bytes) -> str | None:
    """Write a worker's recording under `folder`, never over another one (as a call placed here
    names it); None, with a warning, when it cannot be written: the call's result is kept."""
    path = folder / name
    try:
        folder.mkdir(parents=True, exist_ok=True)
        stem, n = path.stem, 2
        while path.exists():
            path, n = folder / f"{stem}-{n}.wav", n + 1
        path.write_bytes(data)
    except OSError as exc:
        log.warning("%s: the recording was not written (%s); the call's result is kept", path, exc.strerror or exc)
        return None
    return str(path)
