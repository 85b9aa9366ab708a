"""The local backend's hosted-platform endpoints: agent-testing and outbound phone calls.

Both run a whole conversation on the server's side (local/simulate.py): the agent's flow against
voicelab's scripted caller, which stands in for the platform's simulated user and for the person
who picks up. What they need is injected: `Callers` finds the persona by the test's name
(`voicelab/<persona id>`) or by the number dialled (the persona's `phone_number`), and `judge`
gives the platform-style verdict of a simulated conversation.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from aiohttp import web
from elevenlabs.types import GetTestSuiteInvocationResponseModel, TwilioOutboundCallResponse

from ..models import E164_PATTERN, AgentSpec, Persona
from .history import ConversationRecord, History, dump, new_conversation_id
from .history import error_response as _error
from .simulate import Judge, simulate, voicelab_judge

TEST_NAME = re.compile(r"^voicelab/([a-z0-9-]+)")
#: Real seconds a simulated run stays pending / a phone call stays in progress, so that
#: clients really poll (as they must against the hosted platform).
PENDING_S = 0.3


def _unprocessable(field: str, message: str) -> web.Response:
    return web.json_response({"detail": [{"loc": ["body", field], "msg": message, "type": "value_error"}]},
                             status=422)


class Callers(Protocol):
    """Who answers the simulations: the persona a test is named after, or whose number is dialled."""

    def by_test_name(self, name: str) -> Persona | None: ...

    def by_number(self, number: str, agent_id: str) -> Persona | None: ...


class PersonaCallers:
    """`Callers` from a set of personas (what `voicelab serve --personas` loads)."""

    def __init__(self, personas: Mapping[str, Persona]) -> None:
        self.personas = personas

    def by_test_name(self, name: str) -> Persona | None:
        match = TEST_NAME.match(name)
        return self.personas.get(match.group(1)) if match else None

    def by_number(self, number: str, agent_id: str) -> Persona | None:
        return next((p for p in self.personas.values()
                     if p.variables.get("phone_number") == number and p.agent == agent_id), None)


class Platform:
    def __init__(self, agents: Mapping[str, AgentSpec], history: History, callers: Callers, *,
                 latency_s: Callable[[], float] = lambda: 0.0, judge: Judge = voicelab_judge) -> None:
        self.agents = agents
        self.history = history
        self.callers = callers
        self.latency_s = latency_s
        self.judge = judge
        self.tests: dict[str, dict[str, Any]] = {}
        self.invocations: dict[str, dict[str, Any]] = {}
        self._tasks: set[asyncio.Task] = set()

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/convai/agent-testing/create", self.create_test)
        app.router.add_get("/v1/convai/agent-testing/{test_id}", self.get_test)
        app.router.add_post("/v1/convai/agents/{agent_id}/run-tests", self.run_tests)
        app.router.add_get("/v1/convai/test-invocations/{invocation_id}", self.get_invocation)
        app.router.add_post("/v1/convai/test-invocations/{invocation_id}/cancel", self.cancel_invocation)
        app.router.add_post("/v1/convai/twilio/outbound-call", self.twilio_call)
        app.router.add_post("/v1/convai/sip-trunk/outbound-call", self.sip_call)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ agent-testing

    async def create_test(self, request: web.Request) -> web.Response:
        body = await request.json()
        if not isinstance(body, dict) or not body.get("name"):
            return _unprocessable("name", "field required")
        if body.get("type", "llm") != "simulation":
            return _unprocessable("type", "the local backend runs simulation tests only")
        test_id = "test_" + secrets.token_hex(10)
        self.tests[test_id] = {**body, "id": test_id}
        return web.json_response({"id": test_id})

    async def get_test(self, request: web.Request) -> web.Response:
        test = self.tests.get(request.match_info["test_id"])
        if test is None:
            return _error(404, "test_not_found", "Test not found")
        return web.json_response(test)

    async def run_tests(self, request: web.Request) -> web.Response:
        agent_id = request.match_info["agent_id"]
        if agent_id not in self.agents:
            return _error(404, "agent_not_found", "Agent not found")
        body = await request.json()
        repeat = int(body.get("repeat_count") or 1)
        test_ids = [t.get("test_id") for t in body.get("tests") or []]
        unknown = [t for t in test_ids if t not in self.tests]
        if not test_ids or unknown:
            return _unprocessable("tests", f"unknown test ids: {unknown}" if unknown else "no tests given")
        invocation_id = "inv_" + secrets.token_hex(10)
        runs = []
        for test_id in test_ids:
            for _ in range(repeat):
                runs.append({"test_run_id": "run_" + secrets.token_hex(10), "test_invocation_id": invocation_id,
                             "agent_id": agent_id, "status": "pending", "test_id": test_id,
                             "test_name": self.tests[test_id]["name"], "agent_responses": [],
                             "last_updated_at_unix": int(time.time())})
        invocation = {"id": invocation_id, "name": body.get("name"), "agent_id": agent_id,
                      "created_at": int(time.time()), "repeat_count": repeat, "cancelled": False, "test_runs": runs}
        self.invocations[invocation_id] = invocation
        for run in runs:
            self._spawn(self._run_test(run))
        return web.json_response(self._dump_invocation(invocation))

    async def _run_test(self, run: dict[str, Any]) -> None:
        await asyncio.sleep(PENDING_S)
        if run["status"] != "pending":
            return  # cancelled meanwhile
        test = self.tests[run["test_id"]]
        agent = self.agents[run["agent_id"]]
        persona = self.callers.by_test_name(str(test["name"]))
        if persona is None:
            run.update(status="failed", condition_result={"result": "failure", "rationale": {"summary": (
                f"The local backend has no persona for test '{test['name']}': name tests voicelab/<persona id> "
                "and start the backend with the personas.")}})
            return
        variables = {**persona.variables, **{k: str(v) for k, v in (test.get("dynamic_variables") or {}).items()}}
        persona = persona.model_copy(update={"variables": variables})
        sim = simulate(agent, persona, latency_s=self.latency_s(),
                       max_turns=int(test.get("simulation_max_turns") or 40))
        passed, rationale = self.judge(persona, sim)
        run.update(status="passed" if passed else "failed", agent_responses=sim.transcript,
                   last_updated_at_unix=int(time.time()),
                   condition_result={"result": "success" if passed else "failure",
                                     "rationale": {"summary": rationale, "messages": [rationale]}})

    def _dump_invocation(self, invocation: dict[str, Any]) -> dict:
        return dump(GetTestSuiteInvocationResponseModel.model_validate(invocation))

    async def get_invocation(self, request: web.Request) -> web.Response:
        invocation = self.invocations.get(request.match_info["invocation_id"])
        if invocation is None:
            return _error(404, "invocation_not_found", "Test invocation not found")
        return web.json_response(self._dump_invocation(invocation))

    async def cancel_invocation(self, request: web.Request) -> web.Response:
        invocation = self.invocations.get(request.match_info["invocation_id"])
        if invocation is None:
            return _error(404, "invocation_not_found", "Test invocation not found")
        invocation["cancelled"] = True
        for run in invocation["test_runs"]:
            if run["status"] == "pending":
                run["status"] = "cancelled"
        return web.json_response({})

    # ------------------------------------------------------------------ outbound calls

    async def twilio_call(self, request: web.Request) -> web.Response:
        return await self._outbound(request, "twilio")

    async def sip_call(self, request: web.Request) -> web.Response:
        return await self._outbound(request, "sip_trunking")

    async def _outbound(self, request: web.Request, kind: str) -> web.Response:
        body = await request.json()
        agent = self.agents.get(str(body.get("agent_id")))
        if agent is None:
            return _error(404, "agent_not_found", "Agent not found")
        if not body.get("agent_phone_number_id"):
            return _unprocessable("agent_phone_number_id", "field required")
        number = str(body.get("to_number") or "")
        if not E164_PATTERN.match(number):
            return _unprocessable("to_number", f"{number!r} is not an E.164 phone number")
        persona = self.callers.by_number(number, agent.id)
        client_data = body.get("conversation_initiation_client_data") or {}
        variables = {k: str(v) for k, v in (client_data.get("dynamic_variables") or {}).items()}
        record = ConversationRecord(conversation_id=new_conversation_id(), agent_id=agent.id, agent_name=agent.name,
                                    text_only=False, dynamic_variables=variables, client_data=client_data,
                                    source="twilio" if kind == "twilio" else "sip_trunk")
        call_sid = ("CA" if kind == "twilio" else "sip_") + secrets.token_hex(16)
        record.phone_call = {"type": kind, "direction": "outbound", "phone_number_id": body["agent_phone_number_id"],
                             "agent_number": "+15550000000", "external_number": number, "call_sid": call_sid,
                             "stream_sid": "MZ" + secrets.token_hex(16)}
        record.status = "initiated"
        self.history.add(record)
        self._spawn(self._phone_conversation(record, agent, persona, variables))
        if kind == "twilio":
            return web.json_response(dump(TwilioOutboundCallResponse.model_validate(
                {"success": True, "message": "Success", "conversation_id": record.conversation_id,
                 "callSid": call_sid})))
        return web.json_response({"success": True, "message": "Success", "conversation_id": record.conversation_id,
                                  "sip_call_id": call_sid})

    async def _phone_conversation(self, record: ConversationRecord, agent: Any, persona: Persona | None,
                                  variables: dict[str, str]) -> None:
        await asyncio.sleep(PENDING_S / 2)
        record.status = "in-progress"
        await asyncio.sleep(PENDING_S / 2)
        if persona is None:
            record.finish("Call was not answered (no persona has this phone number)", failed=True, code=1002)
            return
        persona = persona.model_copy(update={"variables": {**persona.variables, **variables}})
        sim = simulate(agent, persona, latency_s=self.latency_s())
        record.transcript = [{**t, "source_medium": "audio"} for t in sim.transcript]
        record.outcome = sim.outcome
        record.started = time.time() - sim.duration_s
        reason = {"agent": "end_call tool was called.", "caller": "Remote party ended the call.",
                  "limit": "Maximum duration exceeded"}[sim.ended_by]
        record.finish(reason)
