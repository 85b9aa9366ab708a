"""A run's life, written once for the three places that put calls into a run: a batch or
experiment (`batch.place_run`), the call console (`surfaces/console.ConsoleSession`) and the REST
service's own run of single calls (`surfaces/api/service.Service`).

    manifest = new_manifest(run_id="...", personas=[...], ...)   # stamped with the versions
    sitting = Sitting(run)
    sitting.hold()                     # the run's lock: one placing process (RunStoreError if taken)
    sitting.begin(calls_planned=n)     # a session in run.json, the run `running`
    sitting.list_persona(persona, agent)
    stopped_by = place_in_thread(lambda: runner.run(plan, ...), cancel_event)   # None, or what stopped it
    sitting.end(stopped_by)            # finished, or interrupted by what; run.json saved; lock released

Why one place: a run's state is read by every later command (resume, reports, the service's
GET, crash repair in store.py). A session that is never ended, or ended with a count that is
not what the store holds, shows a run as `running` forever or loses its resume hint.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

from voicelab.harness import sdk
from voicelab.lab import signals
from voicelab.lab.plan import persona_info
from voicelab.lab.store import Run
from voicelab.spec.models import AgentSpec, Persona, RunManifest, RunSession, utc_now_iso
from voicelab.spec.version import __version__


def new_manifest(**fields: Any) -> RunManifest:
    """A run's manifest, stamped with the voicelab and SDK versions that placed it."""
    return RunManifest(voicelab_version=__version__, sdk_version=sdk.sdk_version(), **fields)


class Sitting:
    """One session of placing calls into a run: held under the run's lock from `hold` (or
    `begin`) to `end`."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.session: RunSession | None = None
        self._held = contextlib.ExitStack()
        self._holding = False

    def hold(self) -> None:
        """Take the run's lock, so no second process places it and no reader "repairs" it as the
        record of a dead process (RunStoreError naming the holder when it is taken)."""
        if not self._holding:
            self._held.enter_context(self.run.placing())
            self._holding = True

    def begin(self, *, calls_planned: int = 0, resumed: bool = False, cluster: str | None = None) -> RunSession:
        """Record a new session, the run `running`, in run.json (StoreNotWritable when it cannot be);
        `cluster`: the Dask cluster placing it, if any (voicelab/lab/cluster.py)."""
        self.hold()
        m = self.run.manifest
        self.session = RunSession(resumed=resumed, calls_planned=calls_planned, cluster=cluster)
        m.sessions.append(self.session)
        m.state, m.ended_at = "running", None
        self.run.save_manifest()
        return self.session

    def list_persona(self, persona: Persona, agent: AgentSpec | None, *, name: str | None = None,
                     every_call: bool = False) -> None:
        """Name a persona in the manifest (what tables and reports read instead of the persona
        files): once, or once per call (`every_call`: the console numbers its calls by it)."""
        m = self.run.manifest
        if every_call or persona.id not in m.personas:
            m.personas.append(persona.id)
        info = persona_info(persona, agent)
        if name is not None:
            info["name"] = name
        m.persona_info[persona.id] = info
        self.run.save_manifest()

    def end(self, stopped_by: str | None = None) -> None:
        """End the session: `finished`, or `interrupted` with what stopped it ("Ctrl+C",
        "SIGTERM", "cancel", "error: ..."), the results this process stored counted; then release
        the lock. StoreNotWritable when run.json cannot be saved (the lock is released anyway)."""
        try:
            if self.session is not None:
                m, session = self.run.manifest, self.session
                m.state = session.state = "interrupted" if stopped_by else "finished"
                session.stopped_by = stopped_by
                session.calls_stored = self.run.appended
                m.ended_at = session.ended_at = utc_now_iso()
                self.session = None
                self.run.save_manifest()
        finally:
            self.release()

    def release(self) -> None:
        """Release the lock (a session begun and not ended is then repaired as a crash's)."""
        self._held.close()
        self._holding = False

    def never_placed(self, stopped_by: str) -> None:
        """Record a session that stopped before placing anything (a queued run cancelled)."""
        m = self.run.manifest
        m.sessions.append(RunSession(state="interrupted", stopped_by=stopped_by, ended_at=utc_now_iso()))
        m.state, m.ended_at = "interrupted", utc_now_iso()
        self.run.save_manifest()


def place_in_thread(coro_factory, cancel_event: threading.Event) -> str | None:  # noqa: ANN001
    """Run a run's placing loop in a private worker thread (so the same code works in a terminal
    and in a Jupyter kernel, which already runs a loop; the calling thread stays free to turn
    Ctrl+C, SIGTERM and SIGHUP into cancelling). Returns None when it completed, else what stopped
    it: "Ctrl+C", "SIGTERM", "SIGHUP" (see signals.py) or "cancel" (`cancel_event`). The calls in
    flight are cancelled and recorded before this returns; a second signal while they are being
    recorded returns at once (they are placed again on resume)."""
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
            _finish_tasks(loop)
            loop.close()
            finished.set()

    # An Event, not Thread.join: a join interrupted by a signal can leave the thread's lock taken,
    # and the next join then returns at once while the calls are still being recorded.
    ready, finished = threading.Event(), threading.Event()
    thread = threading.Thread(target=worker, name="voicelab-batch", daemon=True)
    thread.start()
    ready.wait()
    stopped_by = None
    try:
        while not finished.wait(0.05):  # a timed wait stays interruptible by Ctrl+C and signals
            if cancel_event.is_set():
                raise KeyboardInterrupt("cancel")
    except KeyboardInterrupt as exc:
        stopped_by = "cancel" if exc.args == ("cancel",) else signals.name(signals.exit_code(exc))
        state["loop"].call_soon_threadsafe(state["task"].cancel)
        try:
            while not finished.wait(0.05):
                pass
        except KeyboardInterrupt:  # a second signal: stop now; unrecorded calls run again on resume
            return stopped_by
    if "error" in state:
        raise state["error"]
    return stopped_by or ("cancel" if state.get("interrupted") else None)


def _finish_tasks(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what is still pending (SDK receive tasks, turns) and let it finish, so closing the
    loop destroys no pending task (no "Task was destroyed but it is pending!")."""
    pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.run_until_complete(loop.shutdown_asyncgens())
    # results of cancelled calls may still be being written by the executor: wait for them, so
    # the session's record that follows counts them
    loop.run_until_complete(loop.shutdown_default_executor())
