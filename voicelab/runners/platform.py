"""`caller: platform`: the platform's own simulated user plays each persona, through the
agent-testing API (the replacement of the retired simulate-conversation endpoint).

Each persona becomes a simulation test (scenario from its summary, style, variables and reply
rules; success conditions from its expectations; a turn limit); the tests run with `run_tests`
and a repeat count, are polled until done, and every test run becomes a CallResult with the
platform's verdict and rationale in `analysis`. Cancelling cancels the invocation.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from elevenlabs.conversational_ai.tests.types import TestsCreateRequestBody_Simulation
from elevenlabs.types import SingleTestRunRequestModel

from .. import hosted
from ..connection import connect
from ..errors import BackendError, UsageError
from ..evaluate import finished_result
from ..models import (
    CallRequest,
    CallResult,
    EndReason,
    Persona,
    PlatformTestRun,
    TranscriptEntry,
    utc_now_iso,
)
from ..tool_calls import as_records, from_history

if TYPE_CHECKING:
    from . import Sink

STYLE_TEXT = {
    "cooperative": "You are cooperative and answer every question directly.",
    "impatient": "You are in a hurry: answer in as few words as possible and end the call after about 3 answers.",
    "confused": "You are easily confused: before answering each new question, ask what the agent means.",
    "silent": "You do not say anything at all.",
    "interrupting": "You answer before the agent finishes and often add your next answer right away.",
}
POLL_S = 0.5


def test_name(persona: Persona) -> str:
    """The local backend finds the persona by this name; on the platform it is just a name."""
    return f"voicelab/{persona.id}"


def scenario(persona: Persona) -> str:
    facts = ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in persona.variables.items())
    rules = " ".join(f"If asked about {' / '.join(r.when)}, say: \"{r.say}\"" for r in persona.caller.replies)
    def name(code: str) -> str:
        return {"de": "German", "en": "English"}.get(code, code)

    starts = f" The call starts in {name(persona.call_language)}." if persona.call_language != persona.language else ""
    return (f"You are {persona.name}. {persona.summary} {STYLE_TEXT[persona.caller.style]} "
            f"Speak {name(persona.language)}.{starts} What you know: {facts}. {rules}").strip()


def success_conditions(persona: Persona) -> list[str]:
    e = persona.expect
    out = [f"The agent says \"{p}\"." for p in e.agent_says]
    out += [f"The agent never says \"{p}\"." for p in e.agent_never_says]
    if e.min_turns:
        out.append(f"The conversation has at least {e.min_turns} turns.")
    if e.ended_by in ("agent", "caller"):
        out.append(f"The {'agent' if e.ended_by == 'agent' else 'caller'} ends the call.")
    for call in e.agent_calls:
        args = ", ".join(f'{k}={json.dumps(str(v))}' for k, v in call.args.items())
        out.append(f"The agent calls the tool {call.tool}" + (f" with {args}." if args else "."))
    out += [f"The agent never calls the tool {tool}." for tool in e.agent_never_calls]
    return out or ["The agent handles the caller politely and ends the call properly."]


def tool_mocks(request: CallRequest) -> dict[str, list[dict[str, Any]]]:
    """agent-testing's `tool_mock_overrides`: the persona's mocks, else the agent spec's default
    mocks, for its client and webhook tools (nobody runs a client tool in a simulation)."""
    out = {}
    for tool in request.agent.tools:
        mock = request.persona.tools.get(tool.name) or tool.default_mock
        if tool.type == "system" or mock is None:
            continue
        text = mock.error if mock.error is not None else (
            mock.result if isinstance(mock.result, str) else json.dumps(mock.result))
        out[tool.name] = [{"mock_result": text, "is_error": mock.error is not None}]
    return out


def result_of(request: CallRequest, run: Any, started: str, retries: list[dict]) -> CallResult:
    """One finished (or cancelled) test run as a CallResult; its tool calls from the simulated
    transcript, so the persona's agent_calls checks are judged by voicelab too."""
    calls = as_records(from_history(run.agent_responses or []))
    turns = [t for t in (run.agent_responses or []) if t.role in ("agent", "user") and t.message is not None]
    transcript = [TranscriptEntry(speaker=t.role, text=t.message or "", timestamp=t.time_in_call_secs) for t in turns]
    verdict = run.condition_result
    rationale = getattr(getattr(verdict, "rationale", None), "summary", None) if verdict else None
    analysis = PlatformTestRun(test_run_id=run.test_run_id, test_id=run.test_id, status=run.status,
                               call_successful=getattr(verdict, "result", None), rationale=rationale,
                               transcript=[t.model_dump(mode="json", exclude_none=True) for t in turns])
    if run.status == "cancelled":
        reason: EndReason = "cancelled"
    elif run.status not in ("passed", "failed"):
        reason = "error"
    else:
        reason = "agent_ended" if transcript and transcript[-1].speaker == "agent" else "caller_ended"
    duration = float(transcript[-1].timestamp) if transcript else 0.0
    error = {"cancelled": "the test run was cancelled", "error": f"test run ended as {run.status}"}.get(
        reason if reason in ("cancelled", "error") else "", None)
    return finished_result(request, transcript, end_reason=reason, duration_s=duration, started_at=started,
                           error=error, analysis=analysis, retries=retries, tool_calls=calls)


class PlatformRunner:
    name = "platform"
    help = "the platform's simulated user plays the persona, through the agent-testing API (text)"
    modes = ("text",)
    batch = True
    console = False

    def turn_policy(self, request: CallRequest) -> None:
        raise UsageError("the platform's simulated user is not a websocket conversation: run it with "
                         "run_batch(caller='platform') or `voicelab call --caller platform`")

    def preflight(self, request: CallRequest) -> None:
        if request.backend != "local":
            connect(request)

    async def run(self, plan: list[CallRequest], base_url: str | None, concurrency: int, sink: Sink) -> None:
        """Create a test per persona, run each agent's tests with repeats, poll, report every run.
        The platform runs them; `concurrency` is its business."""
        for request in plan:
            sink.started(request)
        by_agent: dict[str, list[CallRequest]] = {}
        for request in plan:
            by_agent.setdefault(request.agent.id, []).append(request)
        for requests in by_agent.values():
            await _run_agent_tests(requests, base_url, sink.finished)


async def _run_agent_tests(requests: list[CallRequest], base_url: str | None,
                           on_result: Callable[[CallResult], Awaitable[None]]) -> None:
    loop = asyncio.get_running_loop()
    connection = connect(requests[0], base_url)
    api = connection.client.conversational_ai
    retries: list[dict] = []
    started = utc_now_iso()

    def rest(what: str, fn: Callable[[], Any]) -> Awaitable[Any]:
        """A REST call off the event loop, with visible retries."""
        return loop.run_in_executor(None, lambda: hosted.with_retries(fn, what=what, log=retries))

    def create(request: CallRequest) -> Any:
        persona = request.persona
        mocks = tool_mocks(request)
        body = TestsCreateRequestBody_Simulation(
            name=test_name(persona), simulation_scenario=scenario(persona),
            success_conditions=success_conditions(persona), dynamic_variables=dict(persona.variables),
            simulation_max_turns=min(40, persona.caller.hang_up_after_turns * 2 + 2),
            tool_mock_config={"mocking_strategy": "all", "fallback_strategy": "raise_error"} if mocks else None,
            tool_mock_overrides=mocks or None)
        return api.tests.create(request=body, request_options=hosted.NO_SDK_RETRIES)

    waiting: dict[str, list[CallRequest]] = {}  # test id -> calls still without a result
    try:
        for first in {r.persona.id: r for r in requests}.values():
            created = await rest("creating an agent test", lambda r=first: create(r))
            waiting[created.id] = [r for r in requests if r.persona.id == first.persona.id]
        tests = [SingleTestRunRequestModel(test_id=t) for t in waiting]
        repeat = max(len(calls) for calls in waiting.values())
        invocation = await rest("running agent tests", lambda: api.agents.run_tests(
            connection.agent_id, tests=tests, repeat_count=repeat, request_options=hosted.NO_SDK_RETRIES))
    except BackendError as exc:
        for request in requests:
            await on_result(finished_result(request, [], end_reason="error", duration_s=0, started_at=started,
                                            error=str(exc), retries=retries))
        return
    reported: set[str] = set()
    invocation_id = invocation.id
    try:
        while True:
            for run in invocation.test_runs:
                if run.status == "pending" or run.test_run_id in reported:
                    continue
                reported.add(run.test_run_id)
                calls = waiting.get(run.test_id) or []
                if calls:
                    await on_result(result_of(calls.pop(0), run, started, retries))
            if not any(waiting.values()) or all(r.status != "pending" for r in invocation.test_runs):
                return
            await asyncio.sleep(POLL_S)
            invocation = await rest("polling the test invocation", lambda: api.tests.invocations.get(
                invocation_id, request_options=hosted.NO_SDK_RETRIES))
    except asyncio.CancelledError:
        await loop.run_in_executor(None, lambda: api.tests.invocations.cancel(invocation_id))
        for calls in waiting.values():
            for request in calls:
                await on_result(finished_result(
                    request, [], end_reason="cancelled", duration_s=0, started_at=started, retries=retries,
                    error="the run was interrupted; the platform's test invocation was cancelled"))
        raise
