"""A call console without a UI: the local backend's lifecycle, one run per session, call
numbering, placing a call and storing its result. `widgets.CallConsole` binds ipywidgets to it;
`voicelab call --caller human` uses it from the terminal.

    session = ConsoleSession(load_dataset())
    call = session.place("anna-double-charge")          # text: call.send("..."), call.stop()
    result = session.finish(call)                        # waits, stores in runs/console-*/
    session.close()                                      # stops the backend it started
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from voicelab.harness import runners
from voicelab.harness.call import Call
from voicelab.lab.backends import backend_url
from voicelab.lab.lifecycle import Sitting, new_manifest
from voicelab.lab.store import Run, RunStore, new_run_id
from voicelab.spec.datasets import Dataset
from voicelab.spec.errors import StoreNotWritable
from voicelab.spec.models import CallResult, TranscriptEntry

log = logging.getLogger(__name__)

#: A person may talk for a while: the console's time limit (the persona's own limits still apply).
CONSOLE_TIME_LIMIT_S = 600.0


class ConsoleSession:
    def __init__(self, dataset: Dataset, *, runs_root: str | Path = "runs", latency_ms: float = 0.0,
                 local_url: str | None = None) -> None:
        self.dataset = dataset
        self.runs_root = Path(runs_root)
        self.latency_ms = latency_ms
        self.local_url = local_url
        self.run: Run | None = None
        self._sitting: Sitting | None = None
        self._backends: dict[str, str | None] = {}
        self._stack = contextlib.ExitStack()
        self._lock = threading.Lock()

    @staticmethod
    def callers() -> list[str]:
        """The kinds of caller a console offers (from the runner registry)."""
        return runners.names(console=True)

    def base_url(self, backend: str) -> str | None:
        """Calls to `backend` go here; a local backend is started once, on first use."""
        if backend not in self._backends:
            self._backends[backend] = self._stack.enter_context(
                backend_url(backend, self.dataset, latency_ms=self.latency_ms, local_url=self.local_url))
        return self._backends[backend]

    def _store(self, backend: str) -> Run:
        if self.run is None:
            manifest = new_manifest(run_id="console-" + new_run_id().removeprefix("run-"), personas=[],
                                    caller="human", backend=backend, concurrency=1)
            run = RunStore(self.runs_root).create(manifest)
            self.run = run
        if self._sitting is None:  # held until the console closes; then the run is finished
            sitting = Sitting(self.run)
            sitting.begin(resumed=bool(self.run.manifest.sessions))  # used again after close(): a new session
            self._sitting = sitting
        return self.run

    def place(self, persona_id: str, *, agent_id: str | None = None, backend: str = "local", mode: str = "text",
              caller: str = "human", audio: Any = None,
              on_entry: Callable[[TranscriptEntry], None] | None = None) -> Call:
        """Start a call (returns once connected); ConfigError / UsageError before anything is stored."""
        persona = self.dataset.persona(persona_id)
        probe = self.dataset.request(persona_id, agent_id=agent_id, backend=backend, caller=caller, mode=mode)
        runners.preflight([probe])
        base_url = self.base_url(backend)
        with self._lock:
            run = self._store(backend)
            number = run.manifest.personas.count(persona.id) + 1
            request = probe.model_copy(update={
                "run_id": run.run_id, "call_id": f"{persona.id}#{number}", "audio_dir": str(run.path / "audio"),
                "max_duration_s": max(probe.max_duration_s, CONSOLE_TIME_LIMIT_S)})
            call = Call(request, base_url=base_url, audio=audio, on_entry=on_entry)
            call.start()
            assert self._sitting is not None
            self._sitting.list_persona(persona, request.agent, every_call=True)
        return call

    def finish(self, call: Call, timeout: float | None = None) -> CallResult:
        """Wait for the call to end and store its result in the session's run."""
        result = call.wait(timeout)
        if self.run is not None and result.run_id == self.run.run_id:
            self.run.append(result)
        return result

    def close(self) -> None:
        """End the session's run (finished: every call it placed is stored) and stop what the
        session started (its local backend)."""
        with self._lock:
            sitting, self._sitting = self._sitting, None
        try:
            if sitting is not None:
                sitting.end()
        except StoreNotWritable as exc:  # the results are stored; only the run's record is behind
            log.warning("%s", exc)
        finally:
            self._stack.close()
        self._backends.clear()

    def __enter__(self) -> ConsoleSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
