"""`caller: platform`: the platform's own simulated user plays each persona, through the
agent-testing API (the replacement of the retired simulate-conversation endpoint).

Each persona becomes a simulation test (scenario from its summary, style, variables and reply
rules, written by voicelab/spec/prose.py; success conditions from its expectations, written by
the check registry in voicelab/spec/checks.py; a turn limit); the tests run with `run_tests` and
a repeat count, are polled until done, and every test run becomes a CallResult with the
platform's verdict and rationale in `analysis`. Cancelling cancels the invocation.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from voicelab.harness import hosted
from voicelab.harness.connection import connect
from voicelab.harness.kinds import KINDS
from voicelab.spec.checks import finished_result, success_conditions
from voicelab.spec.errors import BackendError
from voicelab.spec.models import (
    SYSTEM_TOOLS,
    CallRequest,
    CallResult,
    EndReason,
    Persona,
    PlatformTestRun,
    PlatformToolTest,
    TranscriptEntry,
    utc_now_iso,
)
from voicelab.spec.prose import scenario
from voicelab.spec.tool_calls import as_records, from_history

if TYPE_CHECKING:
    from voicelab.harness.runners.base import Sink

POLL_S = 0.5
#: Tool-call tests per simulated conversation, at most (each is an LLM call on the platform).
MAX_TOOL_TESTS = 12


def test_name(persona: Persona) -> str:
    """The local backend finds the persona by this name; on the platform it is just a name."""
    return f"voicelab/{persona.id}"


def tool_mocks(request: CallRequest) -> dict[str, list[dict[str, Any]]]:
    """agent-testing's `tool_mock_overrides` (keyed by the tool's platform id, else its name): the
    persona's mocks, else the agent spec's default mocks, for its client and webhook tools (nobody
    runs a client tool in a simulation)."""
    out = {}
    for tool in request.agent.tools:
        mock = request.persona.tools.get(tool.name) or tool.default_mock
        if tool.type == "system" or mock is None:
            continue
        text = mock.error if mock.error is not None else (
            mock.result if isinstance(mock.result, str) else json.dumps(mock.result))
        out[tool.platform_id or tool.name] = [{"mock_result": text, "is_error": mock.error is not None}]
    return out


def _history_item(item: Any) -> dict[str, Any]:
    """A simulated transcript item as a test's chat history turn (words and tool items only)."""
    raw = item.model_dump(mode="json", exclude_none=True) if hasattr(item, "model_dump") else dict(item)
    return {k: v for k, v in raw.items() if k in ("role", "message", "time_in_call_secs", "tool_calls", "tool_results")}


def tool_test_plan(request: CallRequest, responses: list[Any]) -> list[tuple[PlatformToolTest, Any]]:
    """Tool-call tests made from a simulated conversation, for the persona's tool expectations.

    `agent_calls`: the history up to the caller's turn before the agent first called the tool;
    the test wants the next turn to call it with the expected arguments (case-insensitive exact
    regexes: the persona's subset match). `agent_never_calls`: absence at every point where the
    agent answered the caller (the start and after each caller turn). At most MAX_TOOL_TESTS; a
    tool the conversation never called has nowhere to test it and is listed as not run."""
    items = [_history_item(i) for i in responses]
    user_at = [i for i, t in enumerate(items) if t.get("role") == "user" and t.get("message")]
    out: list[tuple[PlatformToolTest, Any]] = []

    def ref(tool: str) -> dict[str, str]:
        declared = request.agent.tool(tool)
        kind = declared.type if declared else "system" if tool in SYSTEM_TOOLS else "client"
        return {"id": (declared.platform_id if declared else None) or tool, "type": kind}

    from elevenlabs.conversational_ai.tests.types import TestsCreateRequestBody_Tool  # see _run_agent_tests

    def add(tool: str, expect: str, cut: int, parameters: dict[str, Any]) -> None:
        body = TestsCreateRequestBody_Tool(
            name=f"{test_name(request.persona)}/{tool}-{expect}-{cut}", chat_history=items[:cut],
            dynamic_variables=dict(request.persona.variables), tool_call_parameters=parameters)
        out.append((PlatformToolTest(tool=tool, expect=expect, history_turns=cut, status="pending"), body))

    for wanted in request.persona.expect.agent_calls:
        first = next((i for i, t in enumerate(items)
                      if any(c.get("tool_name") == wanted.tool for c in t.get("tool_calls") or [])), None)
        if first is None:
            out.append((PlatformToolTest(tool=wanted.tool, expect="called", history_turns=0, status="not_run",
                                         rationale="the simulated conversation never called it, so there is "
                                                   "no point in it to test"), None))
            continue
        cut = max((i + 1 for i in user_at if i < first), default=0)
        params = [{"path": k, "eval": {"type": "regex", "pattern": "(?i)^" + re.escape(str(v)) + "$"}}
                  for k, v in wanted.args.items()]
        add(wanted.tool, "called", cut, {"referenced_tool": ref(wanted.tool), "parameters": params})
    for tool in request.persona.expect.agent_never_calls:
        for cut in [0] + [i + 1 for i in user_at]:
            add(tool, "not_called", cut, {"referenced_tool": ref(tool), "verify_absence": True})
    if len(out) > MAX_TOOL_TESTS:
        dropped = out[MAX_TOOL_TESTS:]
        out = out[:MAX_TOOL_TESTS] + [(t.model_copy(update={"status": "not_run", "rationale": (
            f"more than {MAX_TOOL_TESTS} tool-call tests for one conversation")}), None) for t, _ in dropped]
    return out


def result_of(request: CallRequest, run: Any, started: str, retries: list[dict],
              tool_tests: list[PlatformToolTest] | None = None) -> CallResult:
    """One finished (or cancelled) test run as a CallResult; its tool calls from the simulated
    transcript, so the persona's agent_calls checks are judged by voicelab too."""
    calls = as_records(from_history(run.agent_responses or []))
    turns = [t for t in (run.agent_responses or []) if t.role in ("agent", "user") and t.message is not None]
    transcript = [TranscriptEntry(speaker=t.role, text=t.message or "", timestamp=t.time_in_call_secs) for t in turns]
    verdict = run.condition_result
    rationale = getattr(getattr(verdict, "rationale", None), "summary", None) if verdict else None
    analysis = PlatformTestRun(test_run_id=run.test_run_id, test_id=run.test_id, status=run.status,
                               call_successful=getattr(verdict, "result", None), rationale=rationale,
                               transcript=[t.model_dump(mode="json", exclude_none=True) for t in turns],
                               tool_tests=tool_tests or [])
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
    name = KINDS["platform"].name
    help = KINDS["platform"].help
    modes = KINDS["platform"].modes
    batch = KINDS["platform"].batch
    console = KINDS["platform"].console


    def preflight(self, request: CallRequest) -> None:
        if request.backend != "local":
            connect(request)

    async def run(self, plan: list[CallRequest], base_url: str | None, concurrency: int, sink: Sink) -> None:
        """Create a test per persona, run each agent's tests with repeats, poll, report every run.
        The platform runs them; `concurrency` is its business."""
        accepted = [request for request in plan if sink.started(request)]
        by_agent: dict[str, list[CallRequest]] = {}
        for request in accepted:
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

    # the agent-testing request models load only for `caller: platform` (~60 ms that every other
    # run would pay at start-up)
    from elevenlabs.conversational_ai.tests.types import TestsCreateRequestBody_Simulation
    from elevenlabs.types import SingleTestRunRequestModel

    def rest(what: str, fn: Callable[[], Any]) -> Awaitable[Any]:
        """A REST call off the event loop, with visible retries."""
        return loop.run_in_executor(None, lambda: hosted.with_retries(fn, what=what, log=retries))

    def create(request: CallRequest) -> Any:
        persona = request.persona
        mocks = tool_mocks(request)
        body = TestsCreateRequestBody_Simulation(
            name=test_name(persona), simulation_scenario=scenario(persona),
            success_conditions=success_conditions(persona.expect), dynamic_variables=dict(persona.variables),
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
        posting = rest("running agent tests", lambda: api.agents.run_tests(
            connection.agent_id, tests=tests, repeat_count=repeat, request_options=hosted.NO_SDK_RETRIES))
        try:
            invocation = await asyncio.shield(posting)
        except asyncio.CancelledError:
            # interrupted while the request was on its way: once it has landed, the invocation it
            # made is cancelled and its calls reported, never left running on the platform unseen
            with contextlib.suppress(Exception):
                landed = await posting
                await loop.run_in_executor(None, lambda: api.tests.invocations.cancel(landed.id))
            for request in requests:
                await on_result(finished_result(
                    request, [], end_reason="cancelled", duration_s=0, started_at=started, retries=retries,
                    error="the run was interrupted; the platform's test invocation was cancelled"))
            raise
    except BackendError as exc:
        for request in requests:
            await on_result(finished_result(request, [], end_reason="error", duration_s=0, started_at=started,
                                            error=str(exc), retries=retries))
        return
    async def finish(request: CallRequest, run: Any) -> None:
        """Report a finished simulation once the tool-call tests made from it have run."""
        plan = tool_test_plan(request, run.agent_responses or []) if run.status in ("passed", "failed") else []
        tests = [t for t, _ in plan]
        try:
            tests = await _run_tool_tests(plan, rest, api, connection.agent_id)
        except BackendError as exc:
            tests = [t.model_copy(update={"status": "error", "rationale": str(exc)}) for t in tests]
        except asyncio.CancelledError:
            tests = [t.model_copy(update={"status": "cancelled"}) for t in tests]
            await on_result(result_of(request, run, started, retries, tests))
            raise
        await on_result(result_of(request, run, started, retries, tests))

    reported: set[str] = set()
    invocation_id = invocation.id
    async with asyncio.TaskGroup() as finishing:
        try:
            while True:
                for run in invocation.test_runs:
                    if run.status == "pending" or run.test_run_id in reported:
                        continue
                    reported.add(run.test_run_id)
                    calls = waiting.get(run.test_id) or []
                    if calls:
                        finishing.create_task(finish(calls.pop(0), run))
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


async def _run_tool_tests(plan: list[tuple[PlatformToolTest, Any]],
                          rest: Callable[[str, Callable[[], Any]], Awaitable[Any]], api: Any,
                          agent_id: str) -> list[PlatformToolTest]:
    """Create and run a conversation's tool-call tests as one invocation; each test's verdict
    (in plan order). Cancelling cancels the invocation on the platform."""
    from elevenlabs.types import SingleTestRunRequestModel  # see _run_agent_tests

    todo = [(i, body) for i, (_, body) in enumerate(plan) if body is not None]
    out = [t for t, _ in plan]
    if not todo:
        return out
    ids = {}
    for i, body in todo:
        created = await rest("creating a tool-call test", lambda b=body: api.tests.create(
            request=b, request_options=hosted.NO_SDK_RETRIES))
        ids[created.id] = i
    invocation = await rest("running tool-call tests", lambda: api.agents.run_tests(
        agent_id, tests=[SingleTestRunRequestModel(test_id=t) for t in ids], repeat_count=1,
        request_options=hosted.NO_SDK_RETRIES))
    invocation_id = invocation.id
    try:
        while any(r.status == "pending" for r in invocation.test_runs):
            await asyncio.sleep(POLL_S)
            invocation = await rest("polling tool-call tests", lambda: api.tests.invocations.get(
                invocation_id, request_options=hosted.NO_SDK_RETRIES))
    except asyncio.CancelledError:
        await asyncio.get_running_loop().run_in_executor(None, lambda: api.tests.invocations.cancel(invocation_id))
        raise
    for run in invocation.test_runs:
        i = ids.get(run.test_id)
        if i is None:
            continue
        verdict = run.condition_result
        why = getattr(getattr(verdict, "rationale", None), "summary", None) if verdict else None
        out[i] = out[i].model_copy(update={"status": run.status if run.status in ("passed", "failed") else "error",
                                           "rationale": why, "test_id": run.test_id,
                                           "test_run_id": run.test_run_id})
    return out
