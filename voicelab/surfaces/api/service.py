"""What the REST service does, without HTTP: place a call for a request and store it, keep track
of calls placed in the background and of runs started over HTTP. `routes.py` only maps it to routes.

One service start is one run in the run store (`api-<UTC time>`, kind `service`), so `voicelab
report` and `load_runs` see every call the service placed. A call goes through the same runner
as any other: on the local backend voicelab's scripted caller plays the callee over the
conversation websocket; on the hosted platform the platform dials the number (the phone runner).

A placed call is never lost or misreported. Its result is stored before anyone is told of it;
when the store cannot take it (a full or read-only disk) the caller still gets the result, with
`stored: false` and why, the service keeps it (in memory and outside the store, `Run.keep_unsaved`)
and stores it once it can, and `/health` says the store is not writable. Background calls are in
the journal (journal.py) before their 202, so a restarted service answers for each of them and
delivers the callbacks it still owes. Everything the service places shares one cap on calls in
flight (limits.py), and work past the documented limits is refused rather than queued for ever.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voicelab.harness import runners, settings
from voicelab.lab import heap
from voicelab.lab.backends import backend_url
from voicelab.lab.batch import new_batch, place_run
from voicelab.lab.lifecycle import Sitting, new_manifest
from voicelab.lab.store import MIN_FREE_BYTES, Run, RunStore, new_run_id, not_writable, run_id_problem
from voicelab.spec.datasets import Dataset, load_dataset, required_variables, time_limit
from voicelab.spec.errors import ConfigError, InvalidField, RunStoreError, StoreNotWritable
from voicelab.spec.models import (
    CallerSpec,
    CallRequest,
    CallResult,
    Expectations,
    Persona,
    ReplyRule,
    utc_now_iso,
)
from voicelab.surfaces.api.journal import Accepted, Journal, ResultIndex
from voicelab.surfaces.api.limits import Slots
from voicelab.surfaces.api.schemas import (
    CallbackStatus,
    ConversationCreate,
    ConversationResponse,
    ConversationStartRequest,
    ConversationStatus,
    RunCounts,
    RunCreate,
    RunStatus,
    TranscriptTurn,
)

log = logging.getLogger("voicelab.surfaces.api")

#: The agent the original contract calls.
DEFAULT_AGENT = "chargeback"
#: The persona id of the callee built from a request.
CALLEE_ID = "api-callee"
#: Conversations kept in memory, and in the journal across restarts, for `GET /api/conversations/{id}`
#: (older ones are still found in the run store).
KEPT_JOBS = 10_000
#: Seconds a client refused for being over a limit is told to wait (Retry-After).
RETRY_AFTER_S = 5
#: Said of a background call the service stopped before it ended.
INTERRUPTED = ("the service stopped before this call ended (shut down, restarted or killed); it was not placed "
               "again, since that would call the person a second time: place it again if it is still needed")


class Busy(Exception):
    """The service has no room for more work now (its pending-calls limit): answered 429 with
    Retry-After. Not a VoiceLabError: nothing is wrong with the request, and it never leaves
    the service."""

    def __init__(self, message: str, retry_after_s: int = RETRY_AFTER_S) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass
class ServiceSettings:
    """How the service runs; `from_env` reads the VOICELAB_API_* settings."""

    backend: str = "local"
    personas: str = "datasets/personas"
    agents: str = "datasets/agents"
    runs_root: str = "runs"
    reports_dir: str = "reports"
    #: A call that lasts longer is ended and answered as failed with end_reason `timeout`.
    max_call_s: float = 300.0
    #: Requests with larger bodies are refused (413).
    max_body_bytes: int = 64 * 1024
    #: Calls in flight at once, for everything the service places (calls and runs); more wait their turn.
    max_concurrent_calls: int = 32
    #: Calls one run may plan (personas x repeats x variants); a bigger run is refused (422).
    max_run_calls: int = 10_000
    #: Calls accepted and not yet finished (waiting or in flight, calls and runs' remaining
    #: calls); past it new work is refused with 429.
    max_pending_calls: int = 20_000
    #: The local backend's response latency (ms).
    latency_ms: float = 0.0
    callback_attempts: int = 3
    callback_backoff_s: float = 1.0
    #: How often results the store could not take are tried again (s).
    store_retry_s: float = 5.0
    #: Bearer key every /api request must carry (VOICELAB_API_KEY, surrounding whitespace
    #: dropped); never shown or logged. Set but empty is an error, not "no key".
    api_key: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, **given: Any) -> ServiceSettings:
        """Settings from the environment (and .env), overridden by `given` (the CLI's options)."""
        env: dict[str, Any] = {}
        for name, kind in (("backend", str), ("personas", str), ("agents", str), ("runs_root", str),
                           ("reports_dir", str), ("max_call_s", float), ("max_body_bytes", int),
                           ("max_concurrent_calls", int), ("max_run_calls", int), ("max_pending_calls", int),
                           ("latency_ms", float), ("callback_attempts", int), ("callback_backoff_s", float),
                           ("store_retry_s", float)):
            key = "VOICELAB_API_" + name.upper()
            value = settings.get(key)
            if value is not None:
                try:
                    env[name] = kind(value)
                except ValueError:
                    raise ConfigError(f"{key}={value!r} is not a {kind.__name__}: fix or unset it") from None
        # settings.get counts an empty value as unset; an empty key must not silently mean "no key"
        key = settings.given("VOICELAB_API_KEY")
        made = cls(**{**env, **{k: v for k, v in given.items() if v is not None}}, api_key=key)
        made.check()
        return made

    def check(self) -> None:
        if self.backend not in ("local", "elevenlabs"):
            raise ConfigError(f"backend {self.backend!r}: use local or elevenlabs (VOICELAB_API_BACKEND / --backend)")
        for name in ("max_call_s", "max_body_bytes", "max_concurrent_calls", "max_run_calls", "max_pending_calls",
                     "callback_attempts", "store_retry_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be above 0 (VOICELAB_API_{name.upper()})")
        if self.api_key is not None:
            self.api_key = self.api_key.strip()
            if not self.api_key:
                raise ConfigError("VOICELAB_API_KEY is set but empty: set it to the key clients must send, or unset "
                                  "it to serve without a key (loopback only)")


def callee(body: ConversationStartRequest | ConversationCreate, agent_id: str) -> Persona:
    """Who answers a call on the local backend when the request names no persona: the person
    called, cooperative, who confirms who they are (and keeps the dispute). Its checks: the
    agent states the product and the reason it was given, when it was given them."""
    user, charge = body.user_info, body.chargeback_info
    return Persona(
        id=CALLEE_ID, name=f"{user.first_name} {user.last_name}", agent=agent_id,
        summary="The person from the service request: confirms who they are and keeps the dispute.",
        variables=variables_of(body),
        caller=CallerSpec(style="cooperative", hang_up_after_turns=10, replies=[
            ReplyRule(when=["am i speaking", "speaking with", "confirm your name", "is this"],
                      say=f"Yes, this is {user.first_name}."),
            ReplyRule(when=["still want", "go ahead", "dispute this charge"], say="Yes, please go ahead."),
            ReplyRule(when=["anything else"], say="No, that's all, thank you.")]),
        expect=Expectations(agent_says=[charge.product_name, charge.reason] if charge else []))


def variables_of(body: ConversationStartRequest | ConversationCreate) -> dict[str, str]:
    """The dynamic variables a request gives: the original service's (the person, the charge),
    then any others it names (`variables`, winning)."""
    out = {"first_name": body.user_info.first_name, "last_name": body.user_info.last_name,
           "phone_number": body.user_info.phone_number}
    if body.chargeback_info is not None:
        out |= {"product_name": body.chargeback_info.product_name, "chargeback_reason": body.chargeback_info.reason}
    return out | dict(getattr(body, "variables", {}))


def response_of(result: CallResult, limit_s: float, store_error: str | None = None) -> ConversationResponse:
    """The original contract's answer for a placed call. A call cut off by the service's limit
    is `failed` here (the store keeps the core's view: completed, ended by timeout)."""
    timed_out = result.end_reason == "timeout"
    error = result.error
    if timed_out and not error:
        error = f"the call went past the service's limit of {limit_s:g} s (VOICELAB_API_MAX_CALL_S)"
    return ConversationResponse(
        conversation_id=result.conversation_id,
        transcript=[TranscriptTurn(speaker=t.speaker, text=t.text, timestamp=round(t.timestamp, 3))
                    for t in result.transcript],
        status="failed" if timed_out else result.status, duration_seconds=round(result.duration_seconds, 3),
        call_id=result.call_id, run_id=result.run_id, end_reason=result.end_reason, error=error,
        success=result.success and not timed_out, checks=result.checks, tool_calls=result.tool_calls,
        stored=store_error is None, store_error=store_error)


def interrupted(call_id: str, result: CallResult | None, limit_s: float) -> ConversationStatus:
    """A background call the service stopped before it ended: what was stored of it, if anything."""
    done = response_of(result, limit_s).model_dump() if result is not None else {"call_id": call_id}
    return ConversationStatus(**{**done, "id": call_id, "state": "interrupted", "status": "interrupted",
                                 "error": INTERRUPTED, "success": False})


@dataclass
class ConversationJob:
    """A call placed in the background (`POST /api/conversations`)."""

    id: str
    run_id: str
    state: str = "queued"
    response: ConversationResponse | None = None
    callback: CallbackStatus | None = None
    task: asyncio.Task | None = None

    def status(self) -> ConversationStatus:
        done = self.response.model_dump() if self.response is not None else {}
        return ConversationStatus(id=self.id, state=self.state, callback=self.callback, **done)


@dataclass
class RunJob:
    """A run this service is placing, in its own thread (as `voicelab run` would)."""

    run: Run
    cancel: threading.Event
    fail_under: float | None
    #: Calls this session plans (they count as pending until done).
    planned: int = 0
    thread: threading.Thread | None = None
    #: queued (waiting for its slots under the cap) | placing | over
    state: str = "queued"
    counts: tuple[int, int, int] = (0, 0, 0)  # done, failed, running: this session's
    error: str | None = None


@dataclass
class _Unstored:
    """A result the store refused, kept until it takes it."""

    run: Run
    line: str
    call_id: str | None
    #: Also written outside the store (Run.keep_unsaved), so a restart does not lose it.
    kept: bool


class Service:
    def __init__(self, config: ServiceSettings) -> None:
        self.config = config
        self.dataset: Dataset | None = None
        self.base_url: str | None = None
        self.run: Run | None = None
        self._sitting: Sitting | None = None
        self.jobs: OrderedDict[str, ConversationJob] = OrderedDict()
        self.runs: dict[str, RunJob] = {}
        #: Background calls in the journal (earlier starts' and this one's), newest last.
        self.accepted: OrderedDict[str, Accepted] = OrderedDict()
        self.slots = Slots(config.max_concurrent_calls)
        self.journal = Journal(config.runs_root)
        self.index = ResultIndex(config.runs_root)
        self.unstored: list[_Unstored] = []
        #: The last failure to write the store (journal or results), until a write succeeds again.
        self.store_error: str | None = None
        self._pending = 0
        self._owed: list[Accepted] = []
        self._callbacks: dict[str, CallbackStatus] = {}
        self._journal_events = 0
        self._tasks: set[asyncio.Task] = set()
        self._stack = contextlib.ExitStack()
        self._lock = threading.Lock()
        self._store_lock = threading.Lock()
        self._report_locks: dict[str, threading.Lock] = {}

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Load the datasets, start the local backend and read back what earlier starts still
        owe (blocking; run it off the loop)."""
        self.dataset = load_dataset(self.config.personas, self.config.agents)
        self.base_url = self._stack.enter_context(
            backend_url(self.config.backend, self.dataset, latency_ms=self.config.latency_ms))
        self._recover()
        heap.settle()  # everything loaded: collections from now on scan only calls in flight

    def _recover(self) -> None:
        """The journal of earlier starts: the calls to answer for (the newest KEPT_JOBS), the
        callbacks still owed; and results earlier starts kept outside a full store, stored now."""
        calls = list(self.journal.load().values())[-KEPT_JOBS:]
        self.accepted = OrderedDict((c.id, c) for c in calls)
        self._owed = [c for c in calls if c.owes_callback]
        if calls:
            self._compact()
        store = RunStore(self.config.runs_root)
        for run_id in {c.run_id for c in calls} | {r for r in store.list() if r.startswith("api-")}:
            with contextlib.suppress(RunStoreError, OSError):
                run = store.open(run_id)
                if run.manifest.kind == "service" and run.unsaved_path.exists():
                    run.take_unsaved()

    def _compact(self) -> None:
        """Rewrite the journal with only the calls still answered for (blocking)."""
        try:
            self.journal.rewrite(self._answered_for)
            self._journal_events = sum(1 + (c.callback is not None) for c in self.accepted.values())
        except StoreNotWritable as exc:
            self.store_error = str(exc)
            log.warning("the journal could not be compacted: %s", exc)

    def _journal(self, event: dict[str, Any]) -> None:
        """Record an event (StoreNotWritable when it cannot be); compact now and then (blocking)."""
        self.journal.record(event)
        self._journal_events += 1
        if self._journal_events > 3 * KEPT_JOBS:
            self._compact()

    def close(self) -> None:
        """Cancel the runs still being placed (what they finished is kept), make a last attempt
        to store what the store refused, close the service's run and stop the backend."""
        for job in self.runs.values():
            job.cancel.set()
        for job in self.runs.values():
            if job.thread is not None:
                job.thread.join(timeout=60)
        self.retry_store()
        for left in self.unstored:
            where = f"kept in {left.run.unsaved_path}" if left.kept else "written to stderr"
            log.error("call %s could not be stored in %s (%s)", left.call_id, left.run.calls_path, where)
        if self._sitting is not None:
            try:
                self._sitting.end()
            except StoreNotWritable as exc:
                log.error("%s", exc)
        self._stack.close()

    # ------------------------------------------------------------------ the store

    def _service_run(self, request: CallRequest) -> Run:
        """The run of this service start (made at its first call, held locked while the service
        runs), with the request's persona listed. StoreNotWritable before anything is placed."""
        with self._lock:
            if self.run is None:
                manifest = new_manifest(
                    run_id="api-" + new_run_id().removeprefix("run-"), personas=[], backend=self.config.backend,
                    caller=request.caller, mode=request.mode, concurrency=self.config.max_concurrent_calls,
                    max_duration_s=self.config.max_call_s, latency_ms=self.config.latency_ms, kind="service",
                    personas_path=self.config.personas, agents_path=self.config.agents)
                run = RunStore(self.config.runs_root).create_new(manifest)
                sitting = Sitting(run)
                sitting.begin()  # held while the service runs, so no reader "repairs" it while it is live
                self.run, self._sitting = run, sitting
            assert self._sitting is not None
            if request.persona.id not in self.run.manifest.personas:
                self._sitting.list_persona(request.persona, request.agent, name="callee built from each request"
                                           if request.persona.id == CALLEE_ID else None)
            return self.run

    def _check_store(self, run: Run) -> None:
        """Refuse a new call (StoreNotWritable) while the store is known not to take results."""
        if self.store_error is not None:
            run.check_writable()

    def _keep(self, run: Run, line: str, call_id: str | None, exc: Exception) -> str:
        """Keep a result the store refused; the sentence the client gets about it."""
        error = exc if isinstance(exc, StoreNotWritable) else not_writable(
            run.calls_path, exc if isinstance(exc, OSError) else OSError(errno.EIO, str(exc)))
        with self._store_lock:
            kept = run.keep_unsaved(line)
            self.unstored.append(_Unstored(run, line, call_id, kept is not None))
            self.store_error = str(error)
        log.error("call %s could not be stored: %s", call_id, error)
        return (f"{error}; the service keeps the result and stores it once it can"
                + (f" (meanwhile in {kept})" if kept else ""))

    def retry_store(self) -> bool:
        """Store what the store refused, oldest first; True when nothing is left (blocking)."""
        with self._store_lock:
            while self.unstored:
                left = self.unstored[0]
                try:
                    if left.kept:
                        left.run.take_unsaved()  # every result kept for this run, then its file goes
                        done = [u for u in self.unstored if u.run is left.run and u.kept]
                    else:
                        left.run.append(left.line)
                        done = [left]
                except (StoreNotWritable, OSError) as exc:
                    self.store_error = str(exc)
                    return False
                for stored in done:
                    self.unstored.remove(stored)
                    job = self.jobs.get(stored.call_id or "")
                    if job is not None and job.response is not None:
                        job.response = job.response.model_copy(update={"stored": True, "store_error": None})
            self.store_error = None if self.store_error is None else self._probe()
            return True

    def _probe(self) -> str | None:
        """Why the store cannot be written now, or None: a real write where the service writes."""
        if self.run is not None:
            try:
                self.run.check_writable()
                return None
            except StoreNotWritable as exc:
                return str(exc)
        root = Path(self.config.runs_root)
        here = root
        while not here.exists() and here != here.parent:
            here = here.parent
        try:
            if not here.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, "not a folder")
            if not os.access(here, os.W_OK):
                raise PermissionError(errno.EACCES, "permission denied")
            stat = os.statvfs(here)
            if stat.f_bavail * stat.f_frsize < MIN_FREE_BYTES:
                raise OSError(errno.ENOSPC, "no space left on device")
        except OSError as exc:
            return str(not_writable(root if here == root else here, exc))
        return None

    def store_health(self) -> dict[str, Any]:
        """The store as /health shows it (a probe write, blocking)."""
        with self._store_lock:
            unstored = len(self.unstored)
            error = self.store_error if unstored else None
        error = error or self._probe()
        if error is None and self.store_error is not None and not unstored:
            self.store_error = None  # it takes writes again
        return {"path": str(self.config.runs_root), "writable": error is None, "error": error,
                "unstored": unstored}

    async def keep_storing(self) -> None:
        """Try the refused results again every `store_retry_s` while there are any (a task)."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.config.store_retry_s)
            if self.unstored:
                await loop.run_in_executor(None, self.retry_store)

    def calls_health(self) -> dict[str, int]:
        return {"in_flight": self.slots.used, "waiting": self.slots.waiting,
                "max_in_flight": self.slots.capacity, "pending": self._pending,
                "max_pending": self.config.max_pending_calls}

    # ------------------------------------------------------------------ limits

    def _admit(self, calls: int) -> None:
        """Count `calls` as pending, or Busy (429) when that would pass `max_pending_calls`."""
        with self._lock:
            if self._pending + calls > self.config.max_pending_calls:
                raise Busy(f"the service has {self._pending} calls waiting or in flight and takes at most "
                           f"{self.config.max_pending_calls} (VOICELAB_API_MAX_PENDING_CALLS): try again later")
            self._pending += calls

    def _finished(self, calls: int) -> None:
        with self._lock:
            self._pending -= calls

    # ------------------------------------------------------------------ conversations

    def request_for(self, body: ConversationStartRequest | ConversationCreate, *, persona_id: str | None = None,
                    agent_id: str | None = None) -> CallRequest:
        """The call a request asks for: InvalidField for an unknown persona or agent, or a
        variable the agent needs that nobody gives; ConfigError when the service has no
        chargeback agent to call by default."""
        assert self.dataset is not None, "the service is not started"
        if persona_id is not None:
            if persona_id not in self.dataset.personas:
                raise InvalidField("persona_id", f"no persona '{persona_id}' in {self.config.personas} (GET "
                                   "/api/personas lists them)")
            known = self.dataset.personas[persona_id]
            persona = known.model_copy(update={"variables": {**known.variables, **variables_of(body)}})
        else:
            persona = callee(body, agent_id or DEFAULT_AGENT)
        agent_id = agent_id or persona.agent
        if agent_id not in self.dataset.agents:
            if persona_id is None and agent_id == DEFAULT_AGENT:
                raise ConfigError(f"the service's agents ({self.config.agents}) have no '{DEFAULT_AGENT}' agent: "
                                  "start it with --agents pointing at a folder that has one")
            raise InvalidField("agent_id", f"no agent '{agent_id}' in {self.config.agents} (agents: "
                               f"{', '.join(sorted(self.dataset.agents))})")
        agent = self.dataset.agents[agent_id]
        missing = sorted(required_variables(agent) - set(persona.variables))
        if missing:
            charge = {"product_name", "chargeback_reason"}
            if set(missing) <= charge and body.chargeback_info is None:
                raise InvalidField("chargeback_info", f"agent '{agent_id}' needs product_name and chargeback_reason: "
                                   "send chargeback_info {product_name, reason} (or them in variables)")
            raise InvalidField(f"variables.{missing[0]}", f"agent '{agent_id}' uses {{{{{missing[0]}}}}}: add it "
                               "to variables" + (f" (it also needs: {', '.join(missing[1:])})" if missing[1:] else ""))
        limit = self.config.max_call_s
        hosted = self.config.backend != "local"
        return CallRequest(persona=persona, agent=agent, backend=self.config.backend,
                           caller="phone" if hosted else "scripted", mode="voice" if hosted else "text",
                           max_duration_s=min(time_limit(persona, limit), limit))

    def preflight(self, request: CallRequest) -> None:
        """Every setting the call needs (API key, agent id, phone number id): ConfigError
        before anything is placed or stored. Blocking (the hosted check is a request)."""
        runners.preflight([request])

    async def call(self, request: CallRequest) -> ConversationResponse:
        """Place one call and wait for it (`POST /api/conversation/start`)."""
        run = self._service_run(request)
        self._check_store(run)
        self._admit(1)
        try:
            result, store_error = await self.place(run, request, new_call_id())
        finally:
            self._finished(1)
        return response_of(result, self.config.max_call_s, store_error)

    async def place(self, run: Run, request: CallRequest, call_id: str,
                    on_start: Any = None) -> tuple[CallResult, str | None]:  # noqa: ANN401
        """Place one call when a slot under the cap is free, store it in the service's run, and
        return it with why it could not be stored (None when it was)."""
        request = request.model_copy(update={"run_id": run.run_id, "call_id": call_id})
        store_error: str | None = None

        async def store(result: CallResult) -> None:  # before anything else, a cancelled call too
            nonlocal store_error
            line = result.model_dump_json()
            try:
                await asyncio.get_running_loop().run_in_executor(None, run.append, line)
            except Exception as exc:  # a full or read-only disk: the result is kept, never lost
                store_error = self._keep(run, line, result.call_id, exc)

        taken = await self.slots.acquire(1)
        try:
            if on_start is not None:
                on_start()
            result = await runners.place_one(request, self.base_url, store)
        finally:
            self.slots.release(taken)
        return result, store_error

    async def submit(self, request: CallRequest, callback_url: str | None) -> ConversationJob:
        """Accept a call for the background: in the journal first (StoreNotWritable: nothing
        accepted), then placed; its job answers `GET /api/conversations/{id}`."""
        run = self._service_run(request)
        self._check_store(run)
        self._admit(1)
        job = ConversationJob(id=new_call_id(), run_id=run.run_id,
                              callback=CallbackStatus(url=callback_url) if callback_url else None)
        entry = Accepted(id=job.id, run_id=run.run_id, at=utc_now_iso(), callback_url=callback_url)
        self._remember(entry)  # before it is recorded, so a compaction meanwhile keeps it
        try:
            await asyncio.get_running_loop().run_in_executor(None, self._journal, entry.events()[0])
        except BaseException:
            with self._lock:
                self.accepted.pop(entry.id, None)
            self._finished(1)
            raise
        self.jobs[job.id] = job
        while len(self.jobs) > KEPT_JOBS:
            self.jobs.popitem(last=False)
        job.task = self.spawn(self._background(job, run, request))
        return job

    def _remember(self, entry: Accepted) -> None:
        with self._lock:
            self.accepted[entry.id] = entry
            while len(self.accepted) > KEPT_JOBS:
                self.accepted.popitem(last=False)

    def _answered_for(self) -> list[Accepted]:
        with self._lock:
            return list(self.accepted.values())

    def spawn(self, coro: Any) -> asyncio.Task:  # noqa: ANN401 - a coroutine
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _background(self, job: ConversationJob, run: Run, request: CallRequest) -> None:
        try:
            result, store_error = await self.place(run, request, job.id, on_start=lambda: setattr(job, "state",
                                                                                                  "running"))
        except asyncio.CancelledError:
            raise  # the service is stopping: a restarted one answers `interrupted`
        except Exception as exc:  # never lose a job to a bug: it ends failed, with the reason
            log.exception("call %s could not be placed", job.id)
            job.response = ConversationResponse(conversation_id=None, transcript=[], status="failed",
                                                duration_seconds=0.0, call_id=job.id, end_reason="error",
                                                error=f"the call could not be placed: {exc}", success=False)
        else:
            job.response = response_of(result, self.config.max_call_s, store_error)
        finally:
            self._finished(1)
        job.state = "done"
        if job.callback is not None:
            body = job.status().model_dump(mode="json")
            del body["callback"]  # the receiver gets the call, not our delivery bookkeeping
            await self._deliver(job.id, job.callback, body)

    async def deliver_owed(self) -> None:
        """Deliver the callbacks earlier starts owed (their calls' results, or `interrupted`)."""
        loop = asyncio.get_running_loop()
        owed, self._owed = self._owed, []
        for entry in owed:
            found = await loop.run_in_executor(None, self.conversation, entry.id)
            if found is None or entry.callback_url is None:
                continue
            body = found.model_dump(mode="json")
            del body["callback"]
            self.spawn(self._deliver(entry.id, CallbackStatus(url=entry.callback_url), body))

    async def _deliver(self, call_id: str, callback: CallbackStatus, body: dict[str, Any]) -> None:
        """POST the finished call to the callback URL; retried with growing waits, every attempt
        counted, the last failure kept in `callback` (visible in GET). Once settled, the
        journal says so (until then a restarted service delivers it: at least once)."""
        import aiohttp

        self._callbacks[call_id] = callback  # GET shows its attempts live
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            for attempt in range(1, self.config.callback_attempts + 1):
                callback.attempts = attempt
                try:
                    async with session.post(callback.url, json=body) as answer:
                        callback.last_status = answer.status
                        if 200 <= answer.status < 300:
                            callback.state, callback.error = "delivered", None
                            break
                        callback.error = f"the callback answered HTTP {answer.status}"
                except (aiohttp.ClientError, TimeoutError) as exc:
                    callback.last_status = None
                    callback.error = f"the callback could not be reached: {exc.__class__.__name__} {exc}".strip()
                if attempt < self.config.callback_attempts:
                    await asyncio.sleep(self.config.callback_backoff_s * 2 ** (attempt - 1))
            else:
                callback.state = "failed"
                log.warning("callback for %s failed after %d attempts: %s", call_id, callback.attempts,
                            callback.error)
        settled = {"state": callback.state, "attempts": callback.attempts, "last_status": callback.last_status,
                   "error": callback.error}
        entry = self.accepted.get(call_id)
        if entry is not None:
            entry.callback = settled
        self._callbacks.pop(call_id, None)
        try:
            await asyncio.get_running_loop().run_in_executor(
                None, self._journal, {"event": "callback", "id": call_id, **settled})
        except StoreNotWritable as exc:  # delivered again after a restart: at least once
            self.store_error = str(exc)
            log.error("callback for %s is settled but the journal could not say so: %s", call_id, exc)

    def conversation(self, call_id: str) -> ConversationStatus | None:
        """A call's state: from memory, else (an earlier start's, or one no longer in memory)
        from the journal and the run store (blocking)."""
        job = self.jobs.get(call_id)
        if job is not None:
            return job.status()
        entry = self.accepted.get(call_id)
        if entry is not None:
            result = self.index.find(call_id, entry.run_id)
            callback = self._callbacks.get(call_id)
            if callback is None and entry.callback_url is not None:
                callback = CallbackStatus(url=entry.callback_url, **(entry.callback or {}))
            if result is None or result.end_reason == "cancelled":
                found = interrupted(call_id, result, self.config.max_call_s)
            else:
                found = ConversationStatus(id=call_id, state="done",
                                           **response_of(result, self.config.max_call_s).model_dump())
            return found.model_copy(update={"callback": callback})
        result = self.index.find(call_id)
        if result is None:
            return None
        if result.end_reason == "cancelled":
            return interrupted(result.call_id or call_id, result, self.config.max_call_s)
        done = response_of(result, self.config.max_call_s).model_dump()
        return ConversationStatus(**{**done, "id": result.call_id or call_id, "state": "done"})

    async def cancel_calls(self) -> None:
        """At shutdown: end the calls in flight (each is stored as cancelled) and the callbacks
        being delivered (owed still: the journal has them)."""
        tasks = [t for t in self._tasks if not t.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # ------------------------------------------------------------------ runs

    def start_run(self, body: RunCreate) -> RunJob:
        """Check the options and the limits, create the run and start placing it in a thread
        once the cap has room (blocking until the run exists: bad options raise here, before
        anything is stored)."""
        from voicelab.lab.experiment import choose_personas, load_experiment, new_experiment

        c = self.config
        cap = c.max_concurrent_calls
        if body.experiment is not None:
            given = [name for name in ("personas", "agent") if getattr(body, name) is not None]
            given += [name for name, default in (("caller", "scripted"), ("mode", "text"), ("max_duration_s", 60.0),
                                                 ("latency_ms", 0.0)) if getattr(body, name) != default]
            if given:
                raise InvalidField(given[0], "an experiment file sets its own personas, agent, caller, mode, time "
                                   "limit and latency: drop it, or change the experiment file")
            path = self._inside(body.experiment, "experiment")
            try:
                experiment = load_experiment(path)
            except OSError as exc:
                raise InvalidField("experiment", f"{path} cannot be read ({exc.strerror or exc})") from None
            personas = experiment.personas_path or "datasets/personas"
            chosen = choose_personas(experiment, load_dataset(personas, experiment.agents_path or "datasets/agents"))
            planned = len(chosen) * (body.repeats or experiment.repeats) * len(experiment.variants)
            self._check_size(planned, f"{len(chosen)} personas x {body.repeats or experiment.repeats} repeats x "
                             f"{len(experiment.variants)} variants")
            self._admit(planned)
            try:
                run, dataset = new_experiment(path, run_id=body.run_id, runs_root=c.runs_root, repeats=body.repeats,
                                              concurrency=min(body.concurrency or experiment.concurrency, cap))
            except BaseException:
                self._finished(planned)
                raise
        else:
            assert self.dataset is not None
            unknown = [p for p in body.personas or [] if p not in self.dataset.personas]
            if unknown:
                raise InvalidField("personas", f"no persona '{unknown[0]}' in {c.personas} (GET /api/personas "
                                   "lists them)")
            chosen = list(body.personas or [p.id for p in self.dataset.personas.values()
                                            if body.agent is None or p.agent == body.agent])
            repeats = body.repeats or 1
            self._check_size(len(chosen) * repeats, f"{len(chosen)} personas x {repeats} repeats")
            self._admit(len(chosen) * repeats)
            try:
                run, dataset = new_batch(c.personas, c.agents, persona_ids=body.personas, agent=body.agent,
                                         repeats=repeats, concurrency=min(body.concurrency or 4, cap),
                                         backend=c.backend, caller=body.caller, mode=body.mode, run_id=body.run_id,
                                         latency_ms=body.latency_ms, max_duration_s=body.max_duration_s,
                                         runs_root=c.runs_root)
            except BaseException:
                self._finished(len(chosen) * repeats)
                raise
            planned = len(chosen) * repeats
        job = RunJob(run=run, cancel=threading.Event(), fail_under=body.fail_under, planned=planned)
        job.thread = threading.Thread(target=self._place_run, args=(job, dataset), name=f"voicelab-run-{run.run_id}",
                                      daemon=True)
        self.runs[run.run_id] = job
        job.thread.start()
        return job

    def _check_size(self, planned: int, how: str) -> None:
        if planned > self.config.max_run_calls:
            raise InvalidField("repeats", f"{planned} calls ({how}) is more than the service places in one run "
                               f"({self.config.max_run_calls}, VOICELAB_API_MAX_RUN_CALLS): ask for fewer repeats "
                               "or personas, or split the run")

    def _place_run(self, job: RunJob, dataset: Dataset) -> None:
        """The run's thread: wait for its concurrency's slots under the cap, then place it."""
        run = job.run
        counted = 0  # calls no longer pending

        def observe(done: int, failed: int, running: int) -> None:
            nonlocal counted
            job.counts = (done, failed, running)
            if done > counted:
                self._finished(done - counted)
                counted = done

        try:
            taken = self.slots.acquire_blocking(run.manifest.concurrency, job.cancel)
            if not taken:  # cancelled while it waited: nothing was placed
                with contextlib.suppress(StoreNotWritable):
                    Sitting(run).never_placed("cancel")
                return
            job.state = "placing"
            try:
                place_run(run, dataset, progress=False, cancel_event=job.cancel, observer=observe)
            finally:
                self.slots.release(taken)
        except Exception as exc:  # the run stays resumable; GET shows why it stopped
            log.exception("run %s stopped", run.run_id)
            job.error = str(exc)
        finally:
            job.state = "over"
            self._finished(job.planned - counted)

    @staticmethod
    def _inside(path: str, name: str) -> str:
        """A file named in a request must be inside the service's folder (no absolute paths, no ..)."""
        if any(len(part.encode()) > 255 for part in Path(path).parts):
            raise InvalidField(name, "a name in this path is longer than the 255 bytes a file name may have")
        here = Path.cwd().resolve()
        resolved = (here / path).resolve()
        if Path(path).is_absolute() or not resolved.is_relative_to(here):
            raise InvalidField(name, f"{path!r} is outside the service's folder; give a path relative to it, "
                               "like experiments/chargeback-reason.yaml")
        return str(Path(path))

    def open_run(self, run_id: str) -> Run:
        """A stored run, repaired if its placing process died (RunNotFound names recent ones)."""
        problem = run_id_problem(run_id)
        if problem:
            raise InvalidField("run_id", problem)
        return RunStore(self.config.runs_root).open(run_id)

    def run_status(self, run_id: str) -> RunStatus:
        """Progress and summary of a stored run (counts of a run this service is placing are live)."""
        from voicelab.lab.junit import gate_failures
        from voicelab.lab.tables import load_runs

        run = self.open_run(run_id)
        m = run.manifest
        job = self.runs.get(run_id)
        alive = job is not None and job.thread is not None and job.thread.is_alive()
        tables = load_runs(run_id, root=self.config.runs_root)
        calls = tables.calls  # counted from the columns: no result is parsed into a model
        results = calls[calls["end_reason"] != "cancelled"] if len(calls) else calls
        planned = len(m.personas) * m.repeats * max(1, len(m.variants)) if m.kind != "service" else len(results)
        state = m.state
        if alive and job is not None and job.cancel.is_set():
            state = "cancelling"
        elif alive and job is not None and job.state == "queued":
            state = "queued"
        elif alive:
            state = "running"
        elif state == "running" and not m.sessions and not run.lock_held():
            state = "interrupted"  # made, but its placer stopped before it began
        gate = None
        if state == "finished" and m.kind != "service":
            reasons = gate_failures(tables, job.fail_under if job else None)
            gate = {"passed": not reasons, "reasons": reasons, "fail_under": job.fail_under if job else None}
        summary = {k: (None if isinstance(v, float) and v != v else v) for k, v in tables.kpis().items()}
        stopped_by = m.sessions[-1].stopped_by if m.sessions and state == "interrupted" else None
        if job is not None and job.error:
            stopped_by = f"error: {job.error}"
        return RunStatus(
            run_id=run.run_id, kind=m.kind, state=state, stopped_by=stopped_by,
            counts=RunCounts(planned=planned, done=len(results),
                             passed=int(results["success"].fillna(False).astype(bool).sum()) if len(results) else 0,
                             failed=int((results["status"] == "failed").sum()) if len(results) else 0,
                             running=job.counts[2] if alive and job is not None else 0),
            summary=summary, gate=gate,
            links={"self": f"/api/runs/{run.run_id}", "report": f"/api/runs/{run.run_id}/report",
                   "calls": f"/api/runs/{run.run_id}/calls"})

    def cancel_run(self, run_id: str, wait_s: float = 60.0) -> RunStatus:
        """Stop a run this service is placing, as Ctrl+C would: calls in flight end as cancelled
        and are stored, and the run can be resumed. Blocking until it has stopped."""
        run = self.open_run(run_id)
        job = self.runs.get(run.run_id)
        if job is None or job.thread is None or not job.thread.is_alive():
            state = self.run_status(run_id).state
            hint = f": continue it with `voicelab run --resume {run.run_id}`" if state == "interrupted" else ""
            raise RunStoreError(f"run '{run.run_id}' is not being placed by this service (it is {state}): nothing "
                                f"to cancel{hint}")
        job.cancel.set()
        job.thread.join(timeout=wait_s)
        return self.run_status(run.run_id)

    def report(self, run_id: str) -> Path:
        """The run's HTML report, built now unless the one on disk is newer than its results."""
        from voicelab.report.build import build_report

        run = self.open_run(run_id)
        with self._lock:
            lock = self._report_locks.setdefault(run.run_id, threading.Lock())
        with lock:
            path = Path(self.config.reports_dir) / f"{run.run_id}.html"
            sources = [p for p in (run.calls_path, run.path / "run.json") if p.exists()]
            if path.exists() and all(path.stat().st_mtime >= p.stat().st_mtime for p in sources):
                return path
            return build_report(run.run_id, runs_root=self.config.runs_root, reports_dir=self.config.reports_dir)

    def call_lines(self, run_id: str) -> list[str]:
        """The run's results as JSON lines (the newest result of each call; unreadable lines skipped)."""
        return [r.model_dump_json() + "\n" for r in self.open_run(run_id).results()]


def new_call_id() -> str:
    return "call-" + secrets.token_hex(6)


def loopback(host: str) -> bool:
    return host in ("127.0.0.1", "::1", "localhost") or host.startswith("127.")


__all__ = ["Busy", "Service", "ServiceSettings", "callee", "interrupted", "loopback", "response_of", "variables_of"]
