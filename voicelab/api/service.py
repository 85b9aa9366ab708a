"""What the REST service does, without HTTP: place a call for a request and store it, keep track
of calls placed in the background and of runs started over HTTP. `app.py` only maps it to routes.

One service start is one run in the run store (`api-<UTC time>`, kind `service`), so `voicelab
report` and `load_runs` see every call the service placed. A call goes through the same runner
as any other: on the local backend voicelab's scripted caller plays the callee over the
conversation websocket; on the hosted platform the platform dials the number (the phone runner).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__, heap, runners, sdk, settings
from ..backends import backend_url
from ..batch import new_batch, persona_info, place_run
from ..datasets import Dataset, load_dataset, time_limit
from ..errors import ConfigError, InvalidField, RunNotFound, RunStoreError, UsageError
from ..models import (
    CallerSpec,
    CallRequest,
    CallResult,
    Expectations,
    Persona,
    ReplyRule,
    RunManifest,
    RunSession,
    utc_now_iso,
)
from ..store import Run, RunStore, new_run_id
from .schemas import (
    CallbackStatus,
    ConversationResponse,
    ConversationStartRequest,
    ConversationStatus,
    RunCounts,
    RunCreate,
    RunStatus,
    TranscriptTurn,
)

log = logging.getLogger("voicelab.api")

#: The agent the original contract calls.
DEFAULT_AGENT = "chargeback"
#: The persona id of the callee built from a request.
CALLEE_ID = "api-callee"
#: Conversations kept in memory for `GET /api/conversations/{id}` (older ones are read from the store).
KEPT_JOBS = 10_000


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
    #: Calls placed at once; more wait their turn.
    max_concurrent_calls: int = 32
    #: The local backend's response latency (ms).
    latency_ms: float = 0.0
    callback_attempts: int = 3
    callback_backoff_s: float = 1.0
    #: Bearer key every /api request must carry (VOICELAB_API_KEY); never shown or logged.
    api_key: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, **given: Any) -> ServiceSettings:
        """Settings from the environment (and .env), overridden by `given` (the CLI's options)."""
        env: dict[str, Any] = {}
        for name, kind in (("backend", str), ("personas", str), ("agents", str), ("runs_root", str),
                           ("reports_dir", str), ("max_call_s", float), ("max_body_bytes", int),
                           ("max_concurrent_calls", int), ("latency_ms", float), ("callback_attempts", int),
                           ("callback_backoff_s", float)):
            key = "VOICELAB_API_" + name.upper()
            value = settings.get(key)
            if value is not None:
                try:
                    env[name] = kind(value)
                except ValueError:
                    raise ConfigError(f"{key}={value!r} is not a {kind.__name__}: fix or unset it") from None
        made = cls(**{**env, **{k: v for k, v in given.items() if v is not None}},
                   api_key=settings.get("VOICELAB_API_KEY"))
        made.check()
        return made

    def check(self) -> None:
        if self.backend not in ("local", "elevenlabs"):
            raise ConfigError(f"backend {self.backend!r}: use local or elevenlabs (VOICELAB_API_BACKEND / --backend)")
        for name in ("max_call_s", "max_body_bytes", "max_concurrent_calls", "callback_attempts"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be above 0 (VOICELAB_API_{name.upper()})")


def callee(body: ConversationStartRequest, agent_id: str) -> Persona:
    """Who answers a call on the local backend when the request names no persona: the card holder,
    cooperative, who confirms who they are and keeps the dispute. Its checks: the agent states
    the product and the reason it was given."""
    user, charge = body.user_info, body.chargeback_info
    return Persona(
        id=CALLEE_ID, name=f"{user.first_name} {user.last_name}", agent=agent_id,
        summary="The card holder from the service request: confirms who they are and keeps the dispute.",
        variables=variables_of(body),
        caller=CallerSpec(style="cooperative", hang_up_after_turns=10, replies=[
            ReplyRule(when=["am i speaking", "speaking with", "confirm your name", "is this"],
                      say=f"Yes, this is {user.first_name}."),
            ReplyRule(when=["still want", "go ahead", "dispute this charge"], say="Yes, please go ahead."),
            ReplyRule(when=["anything else"], say="No, that's all, thank you.")]),
        expect=Expectations(agent_says=[charge.product_name, charge.reason]))


def variables_of(body: ConversationStartRequest) -> dict[str, str]:
    """The dynamic variables the original service sent with the call."""
    return {"first_name": body.user_info.first_name, "last_name": body.user_info.last_name,
            "phone_number": body.user_info.phone_number, "product_name": body.chargeback_info.product_name,
            "chargeback_reason": body.chargeback_info.reason}


def response_of(result: CallResult, limit_s: float) -> ConversationResponse:
    """The original contract's answer for a stored call. A call cut off by the service's limit
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
        success=result.success and not timed_out)


@dataclass
class ConversationJob:
    """A call placed in the background (`POST /api/conversations`)."""

    id: str
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
    thread: threading.Thread | None = None
    counts: tuple[int, int, int] = (0, 0, 0)  # done, failed, running: this session's
    error: str | None = None


class Service:
    def __init__(self, config: ServiceSettings) -> None:
        self.config = config
        self.dataset: Dataset | None = None
        self.base_url: str | None = None
        self.run: Run | None = None
        self.jobs: OrderedDict[str, ConversationJob] = OrderedDict()
        self.runs: dict[str, RunJob] = {}
        self._stack = contextlib.ExitStack()
        self._lock = threading.Lock()
        self._slots: asyncio.Semaphore | None = None
        self._report_locks: dict[str, threading.Lock] = {}

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Load the datasets and start the local backend (blocking; run it off the loop)."""
        self.dataset = load_dataset(self.config.personas, self.config.agents)
        self.base_url = self._stack.enter_context(
            backend_url(self.config.backend, self.dataset, latency_ms=self.config.latency_ms))
        heap.settle()  # everything loaded: collections from now on scan only calls in flight

    def close(self) -> None:
        """Cancel the runs still being placed (what they finished is kept) and stop the backend."""
        for job in self.runs.values():
            job.cancel.set()
        for job in self.runs.values():
            if job.thread is not None:
                job.thread.join(timeout=60)
        if self.run is not None:
            m = self.run.manifest
            m.state = m.sessions[-1].state = "finished"
            m.ended_at = m.sessions[-1].ended_at = utc_now_iso()
            m.sessions[-1].calls_stored = self.run.appended
            self.run.save_manifest()
        self._stack.close()

    # ------------------------------------------------------------------ conversations

    def request_for(self, body: ConversationStartRequest, *, persona_id: str | None = None,
                    agent_id: str | None = None) -> CallRequest:
        """The call a request asks for: InvalidField for an unknown persona or agent, ConfigError
        when the service has no chargeback agent to call by default."""
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
        limit = self.config.max_call_s
        hosted = self.config.backend != "local"
        return CallRequest(persona=persona, agent=self.dataset.agents[agent_id], backend=self.config.backend,
                           caller="phone" if hosted else "scripted", mode="voice" if hosted else "text",
                           max_duration_s=min(time_limit(persona, limit), limit))

    def preflight(self, request: CallRequest) -> None:
        """Every setting the call needs (API key, agent id, phone number id): ConfigError
        before anything is placed or stored. Blocking (the hosted check is a request)."""
        runners.preflight([request])

    async def place(self, request: CallRequest, call_id: str | None = None) -> CallResult:
        """Place one call, store it in the service's run, and return it."""
        run = self._service_run(request)
        request = request.model_copy(update={"run_id": run.run_id, "call_id": call_id or new_call_id()})
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.config.max_concurrent_calls)

        async def store(result: CallResult) -> None:  # before anything else, a cancelled call too
            await asyncio.get_running_loop().run_in_executor(None, run.append, result.model_dump_json())

        async with self._slots:
            return await runners.place_one(request, self.base_url, store)

    def _service_run(self, request: CallRequest) -> Run:
        """The run of this service start (made at its first call), with the request's persona listed."""
        with self._lock:
            if self.run is None:
                manifest = RunManifest(
                    run_id="api-" + new_run_id().removeprefix("run-"), personas=[], backend=self.config.backend,
                    caller=request.caller, mode=request.mode, concurrency=self.config.max_concurrent_calls,
                    max_duration_s=self.config.max_call_s, latency_ms=self.config.latency_ms, kind="service",
                    personas_path=self.config.personas, agents_path=self.config.agents,
                    voicelab_version=__version__, sdk_version=sdk.sdk_version(), sessions=[RunSession()])
                self.run = RunStore(self.config.runs_root).create_new(manifest)
            m = self.run.manifest
            if request.persona.id not in m.personas:
                m.personas.append(request.persona.id)
                info = persona_info(request.persona, request.agent)
                if request.persona.id == CALLEE_ID:
                    info["name"] = "callee built from each request"
                m.persona_info[request.persona.id] = info
                self.run.save_manifest()
            return self.run

    def submit(self, request: CallRequest, callback_url: str | None) -> ConversationJob:
        """Place a call in the background; its job answers `GET /api/conversations/{id}`."""
        job = ConversationJob(id=new_call_id(), callback=CallbackStatus(url=callback_url) if callback_url else None)
        self.jobs[job.id] = job
        while len(self.jobs) > KEPT_JOBS:
            self.jobs.popitem(last=False)
        job.task = asyncio.get_running_loop().create_task(self._background(job, request))
        return job

    async def _background(self, job: ConversationJob, request: CallRequest) -> None:
        job.state = "running"
        try:
            result = await self.place(request, call_id=job.id)
        except Exception as exc:  # never lose a job to a bug: it ends failed, with the reason
            log.exception("call %s could not be placed", job.id)
            job.response = ConversationResponse(conversation_id=None, transcript=[], status="failed",
                                                duration_seconds=0.0, call_id=job.id, end_reason="error",
                                                error=f"the call could not be placed: {exc}", success=False)
        else:
            job.response = response_of(result, self.config.max_call_s)
        job.state = "done"
        if job.callback is not None:
            await self._deliver(job)

    async def _deliver(self, job: ConversationJob) -> None:
        """POST the finished call to the callback URL; retried with growing waits, every attempt
        counted, the last failure kept in `callback` (visible in GET)."""
        import aiohttp

        assert job.callback is not None
        body = job.status().model_dump(mode="json")
        del body["callback"]  # the receiver gets the call, not our delivery bookkeeping
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            for attempt in range(1, self.config.callback_attempts + 1):
                job.callback.attempts = attempt
                try:
                    async with session.post(job.callback.url, json=body) as answer:
                        job.callback.last_status = answer.status
                        if 200 <= answer.status < 300:
                            job.callback.state, job.callback.error = "delivered", None
                            return
                        job.callback.error = f"the callback answered HTTP {answer.status}"
                except (aiohttp.ClientError, TimeoutError) as exc:
                    job.callback.last_status = None
                    job.callback.error = f"the callback could not be reached: {exc.__class__.__name__} {exc}".strip()
                if attempt < self.config.callback_attempts:
                    await asyncio.sleep(self.config.callback_backoff_s * 2 ** (attempt - 1))
        job.callback.state = "failed"
        log.warning("callback for %s failed after %d attempts: %s", job.id, job.callback.attempts, job.callback.error)

    def conversation(self, call_id: str) -> ConversationStatus | None:
        """A background call's state; one no longer in memory is read back from the store."""
        job = self.jobs.get(call_id)
        if job is not None:
            return job.status()
        if self.run is not None:
            for result in self.run.results():
                if result.call_id == call_id:
                    done = response_of(result, self.config.max_call_s).model_dump()
                    return ConversationStatus(id=call_id, state="done", **done)
        return None

    async def cancel_calls(self) -> None:
        """At shutdown: end the calls in flight (each is stored as cancelled)."""
        tasks = [j.task for j in self.jobs.values() if j.task is not None and not j.task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # ------------------------------------------------------------------ runs

    def start_run(self, body: RunCreate) -> RunJob:
        """Check the options, create the run and start placing it in a thread (blocking until
        the run exists: bad options raise here, before anything is stored)."""
        from ..experiment import new_experiment

        c = self.config
        if body.experiment is not None:
            given = [name for name in ("personas", "agent", "run_id") if getattr(body, name) is not None]
            given += [name for name, default in (("caller", "scripted"), ("mode", "text"), ("max_duration_s", 60.0),
                                                 ("latency_ms", 0.0)) if getattr(body, name) != default]
            if given:
                raise UsageError(f"{given[0]}: an experiment file sets its own personas, agent, caller and mode; "
                                 "drop it, or change the experiment file")
            run, dataset = new_experiment(self._inside(body.experiment, "experiment"), runs_root=c.runs_root,
                                          repeats=body.repeats, concurrency=body.concurrency)
        else:
            unknown = [p for p in body.personas or [] if self.dataset is not None and p not in self.dataset.personas]
            if unknown:
                raise InvalidField("personas", f"no persona '{unknown[0]}' in {c.personas} (GET /api/personas "
                                   "lists them)")
            run, dataset = new_batch(c.personas, c.agents, persona_ids=body.personas, agent=body.agent,
                                     repeats=body.repeats or 1, concurrency=body.concurrency or 4, backend=c.backend,
                                     caller=body.caller, mode=body.mode, run_id=body.run_id,
                                     latency_ms=body.latency_ms, max_duration_s=body.max_duration_s,
                                     runs_root=c.runs_root)
        job = RunJob(run=run, cancel=threading.Event(), fail_under=body.fail_under)

        def place() -> None:
            def observe(done: int, failed: int, running: int) -> None:
                job.counts = (done, failed, running)

            try:
                place_run(run, dataset, progress=False, cancel_event=job.cancel, observer=observe)
            except Exception as exc:  # the run stays resumable; GET shows why it stopped
                log.exception("run %s stopped", run.run_id)
                job.error = str(exc)

        job.thread = threading.Thread(target=place, name=f"voicelab-run-{run.run_id}", daemon=True)
        self.runs[run.run_id] = job
        job.thread.start()
        return job

    @staticmethod
    def _inside(path: str, name: str) -> str:
        """A file named in a request must be inside the service's folder (no absolute paths, no ..)."""
        here = Path.cwd().resolve()
        resolved = (here / path).resolve()
        if Path(path).is_absolute() or not resolved.is_relative_to(here):
            raise UsageError(f"{name}: {path!r} is outside the service's folder; give a path relative to it, "
                             "like experiments/chargeback-reason.yaml")
        return str(Path(path))

    def open_run(self, run_id: str) -> Run:
        """A stored run (RunNotFound names recent ones)."""
        if "/" in run_id or run_id.startswith("."):
            raise RunNotFound(f"no run '{run_id}'")
        return RunStore(self.config.runs_root).open(run_id)

    def run_status(self, run_id: str) -> RunStatus:
        """Progress and summary of a stored run (counts of a run this service is placing are live)."""
        from ..junit import gate_failures
        from ..tables import load_runs

        run = self.open_run(run_id)
        m = run.manifest
        job = self.runs.get(run_id)
        alive = job is not None and job.thread is not None and job.thread.is_alive()
        tables = load_runs(run_id, root=self.config.runs_root)
        results = [r for r in tables.results if r.end_reason != "cancelled"]
        planned = len(m.personas) * m.repeats * max(1, len(m.variants)) if m.kind != "service" else len(results)
        state = m.state
        if alive and job is not None and job.cancel.is_set():
            state = "cancelling"
        elif alive:
            state = "running"
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
            counts=RunCounts(planned=planned, done=len(results), passed=sum(r.success for r in results),
                             failed=sum(r.status == "failed" for r in results),
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
            raise RunStoreError(f"run '{run.run_id}' is not being placed by this service (it is "
                             f"{run.manifest.state}): nothing to cancel")
        job.cancel.set()
        job.thread.join(timeout=wait_s)
        return self.run_status(run.run_id)

    def report(self, run_id: str) -> Path:
        """The run's HTML report, built now unless the one on disk is newer than its results."""
        from ..report import build_report

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


__all__ = ["Service", "ServiceSettings", "callee", "loopback", "response_of", "variables_of"]
