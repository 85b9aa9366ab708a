"""The local backend's hosted-platform endpoints: agent-testing, simulate-conversation and
outbound phone calls.

Each runs a whole conversation on the server's side (local/simulate.py): the agent's flow against
voicelab's scripted caller. For agent-testing and simulate-conversation that caller is the one the
client's scenario describes and the verdict comes from the client's success conditions
(local/scenario.py), never from voicelab's own checks; for an outbound call it is the persona
whose `phone_number` was dialled (`Callers`).
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from aiohttp import web

from voicelab.local.agent_config import applied, checked_body
from voicelab.local.handshake import missing_variables, variable_text
from voicelab.local.history import ConversationRecord, History, dump, new_conversation_id, system_variables
from voicelab.local.messages import TooDeep, load_json
from voicelab.local.rest import Unprocessable, error_response, field, read_json
from voicelab.local.scenario import judge, judge_response, judge_tool_test, overall, simulated_user
from voicelab.local.sdk_models import sdk_model
from voicelab.local.session import TRANSFER_REASON
from voicelab.local.simulate import next_turn, simulate
from voicelab.spec.datasets import SYSTEM_PREFIX
from voicelab.spec.models import E164_PATTERN, AgentSpec, Persona, ToolMock

#: Real seconds a simulated run stays pending / a phone call stays in progress, so that
#: clients really poll (as they must against the hosted platform).
PENDING_S = 0.3


def _tool_mocks(raw: Any) -> dict[str, ToolMock]:
    """agent-testing's `tool_mock_overrides` ({tool: [{mock_result, is_error, parameter_conditions}]})
    as the simulation's mocks: the first unconditional mock of each tool (a JSON text result is
    parsed); 422 naming the field for anything else."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise Unprocessable("body", "tool_mock_overrides", "must be an object of tool name -> list of mocks")
    mocks = {}
    for name, items in raw.items():
        if not isinstance(items, list) or not all(isinstance(i, dict) and isinstance(i.get("mock_result"), str)
                                                  for i in items):
            raise Unprocessable("body", "tool_mock_overrides", f"{name}: each mock needs mock_result (a string)")
        plain = [i for i in items if not i.get("parameter_conditions")] or items
        if plain:
            text = plain[0]["mock_result"]
            try:
                value = load_json(text)
            except TooDeep as exc:
                raise Unprocessable("body", "tool_mock_overrides", f"{name}: mock_result is {exc}") from None
            except ValueError:
                value = text
            mocks[str(name)] = ToolMock(error=text) if plain[0].get("is_error") else ToolMock(result=value)
    return mocks


def _variables(raw: Any, where: str) -> dict[str, str]:
    """Dynamic variables from a REST body: strings, numbers or booleans, none `system__*`."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise Unprocessable("body", where, "must be an object")
    out = {}
    for name, value in raw.items():
        if str(name).startswith(SYSTEM_PREFIX):
            raise Unprocessable("body", where, f"dynamic variable '{name}' uses the reserved prefix '{SYSTEM_PREFIX}'")
        text = variable_text(value)
        if text is None:
            raise Unprocessable("body", where, f"dynamic variable '{name}' must be a string, number or boolean")
        out[str(name)] = text
    return out


def _chat_history(raw: Any) -> None:
    """A test's `chat_history`: turns with a role (user or agent) and a message or tool items."""
    if raw is None:
        return
    if not isinstance(raw, list) or not all(isinstance(t, dict) and t.get("role") in ("user", "agent")
                                            and isinstance(t.get("message"), str | None)
                                            and isinstance(t.get("time_in_call_secs"), int) for t in raw):
        raise Unprocessable("body", "chat_history",
                            "must be a list of {role: user|agent, message: text, time_in_call_secs: int}")


def _tool_call_parameters(raw: dict) -> None:
    """A tool test's `tool_call_parameters`: the referenced tool and the parameter evaluations."""
    ref = raw.get("referenced_tool")
    if not isinstance(ref, dict) or not isinstance(ref.get("id"), str):
        raise Unprocessable("body", "tool_call_parameters", "needs referenced_tool: {id, type}")
    for param in raw.get("parameters") or []:
        rule = param.get("eval") if isinstance(param, dict) else None
        if not isinstance(param.get("path") if isinstance(param, dict) else None, str) or not isinstance(rule, dict) \
                or rule.get("type") not in ("exact", "regex", "anything", "llm"):
            raise Unprocessable("body", "tool_call_parameters",
                                "each parameter needs path and eval: {type: exact|regex|anything|llm}")
        if rule["type"] == "regex":
            try:
                re.compile(str(rule.get("pattern")))
            except re.error as exc:
                raise Unprocessable("body", "tool_call_parameters", f"{param['path']}: bad regex ({exc})") from None


def validate_test(body: dict[str, Any], default_type: str = "llm") -> str:
    """A test's create or update body, as the platform checks it; returns its type. The local
    backend runs all three kinds; an llm test's condition is judged as scenario.judge_response says."""
    field(body, "name", str, required=True)
    kind = field(body, "type", str, default=default_type)
    _variables(body.get("dynamic_variables"), "dynamic_variables")
    if kind == "tool":
        _chat_history(body.get("chat_history"))
        _tool_call_parameters(field(body, "tool_call_parameters", dict, required=True))
        field(body, "check_any_tool_matches", bool)
    elif kind == "simulation":
        field(body, "simulation_scenario", str, required=True)
        conditions = field(body, "success_conditions", list, default=[])
        if not all(isinstance(c, str) for c in conditions):
            raise Unprocessable("body", "success_conditions", "must be a list of strings")
        field(body, "simulation_max_turns", int)
        field(body, "tool_mock_config", dict)
        _tool_mocks(body.get("tool_mock_overrides"))
    elif kind == "llm":
        _chat_history(body.get("chat_history"))
        field(body, "success_condition", str)
        for key, const in (("success_examples", "success"), ("failure_examples", "failure")):
            examples = field(body, key, list, default=[])
            if len(examples) > 5 or not all(isinstance(e, dict) and isinstance(e.get("response"), str)
                                            and e.get("type", const) == const for e in examples):
                raise Unprocessable("body", key, f'at most 5 of {{"response": "...", "type": "{const}"}}')
    else:
        raise Unprocessable("body", "type", f"{kind!r} is not a test type: llm, tool or simulation")
    return kind


class Callers(Protocol):
    """Who picks up an outbound call: the persona whose number is dialled."""

    def by_number(self, number: str, agent_id: str) -> Persona | None: ...


class PersonaCallers:
    """`Callers` from a set of personas (what `voicelab serve --personas` loads)."""

    def __init__(self, personas: Mapping[str, Persona]) -> None:
        self.personas = personas

    def by_number(self, number: str, agent_id: str) -> Persona | None:
        return next((p for p in self.personas.values()  # an experiment's copy is `<agent>--<variant>`
                     if p.variables.get("phone_number") == number
                     and (agent_id == p.agent or agent_id.startswith(p.agent + "--"))), None)


class Platform:
    def __init__(self, agents: Mapping[str, AgentSpec], history: History, callers: Callers, *,
                 latency_s: Callable[[], float] = lambda: 0.0) -> None:
        self.agents = agents
        self.history = history
        self.callers = callers
        self.latency_s = latency_s
        self.tests: dict[str, dict[str, Any]] = {}
        #: Each test's (created, last updated) unix seconds.
        self.test_times: dict[str, tuple[int, int]] = {}
        self.invocations: dict[str, dict[str, Any]] = {}
        #: The agent a run plays against when its request overrode the agent's config
        #: (`agent_config_override`), by test_run_id.
        self.run_agents: dict[str, AgentSpec] = {}
        #: How often each run was (re)started: a resubmitted run's earlier task gives up.
        self.run_starts: dict[str, int] = {}
        self._tasks: set[asyncio.Task] = set()

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/convai/agent-testing/create", self.create_test)
        app.router.add_get("/v1/convai/agent-testing/{test_id}", self.get_test)
        app.router.add_post("/v1/convai/agents/{agent_id}/run-tests", self.run_tests)
        app.router.add_get("/v1/convai/test-invocations/{invocation_id}", self.get_invocation)
        app.router.add_post("/v1/convai/test-invocations/{invocation_id}/cancel", self.cancel_invocation)
        app.router.add_post("/v1/convai/twilio/outbound-call", self.twilio_call)
        app.router.add_post("/v1/convai/sip-trunk/outbound-call", self.sip_call)
        app.router.add_post("/v1/convai/agents/{agent_id}/simulate-conversation", self.simulate_conversation)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ agent-testing

    async def create_test(self, request: web.Request) -> web.Response:
        body = await read_json(request)
        validate_test(body)
        test_id = "test_" + secrets.token_hex(10)
        self.tests[test_id] = {**body, "id": test_id}
        now = int(time.time())
        self.test_times[test_id] = (now, now)
        return web.json_response({"id": test_id})

    async def get_test(self, request: web.Request) -> web.Response:
        test = self.tests.get(request.match_info["test_id"])
        if test is None:
            return error_response(404, "test_not_found", "Test not found")
        return web.json_response(test)

    async def run_tests(self, request: web.Request) -> web.Response:
        agent_id = request.match_info["agent_id"]
        if agent_id not in self.agents:
            return error_response(404, "agent_not_found", "Agent not found")
        body = await read_json(request)
        repeat = field(body, "repeat_count", int, default=1)
        if not 1 <= repeat <= 50:
            raise Unprocessable("body", "repeat_count", "must be between 1 and 50")
        tests = field(body, "tests", list, required=True)
        if not tests or not all(isinstance(t, dict) and isinstance(t.get("test_id"), str) for t in tests):
            raise Unprocessable("body", "tests", "must be a non-empty list of {\"test_id\": \"...\"}")
        test_ids = [t["test_id"] for t in tests]
        unknown = [t for t in test_ids if t not in self.tests]
        if unknown:
            return error_response(404, "test_not_found", f"Test not found: {', '.join(unknown)}")
        override = self.agent_with_override(agent_id, body.get("agent_config_override"))
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
            self.start_run(run, agent_id, override)
        return web.json_response(self._dump_invocation(invocation))

    def agent_with_override(self, agent_id: str, override: Any) -> AgentSpec | None:
        """The agent a test run plays against when the request has an `agent_config_override`:
        the agent with its conversation_config and platform_settings applied, as agents PATCH
        takes them; None without one (the run plays against the agent as it is then)."""
        if override is None:
            return None
        if not isinstance(override, dict):
            raise Unprocessable("body", "agent_config_override", "must be an object", "model_attributes_type")
        for key in ("conversation_config", "platform_settings"):
            if not isinstance(override.get(key), dict):
                raise Unprocessable("body", f"agent_config_override.{key}", "field required", "missing")
        try:
            pushed = checked_body(override, create=True)
        except Unprocessable as exc:  # the same fields, under agent_config_override
            for item in exc.detail:
                item["loc"] = [item["loc"][0], "agent_config_override", *item["loc"][1:]]
            raise
        return applied(self.agents[agent_id], pushed)

    def start_run(self, run: dict[str, Any], agent_id: str, override: AgentSpec | None = None) -> None:
        """(Re)start one test run against the agent (`override`: that agent with a request's
        config applied): pending, then played (see _run_test)."""
        run_id = run["test_run_id"]
        if override is None:
            self.run_agents.pop(run_id, None)
        else:
            self.run_agents[run_id] = override
        self.run_starts[run_id] = start = self.run_starts.get(run_id, 0) + 1
        run.update(status="pending", agent_id=agent_id, agent_responses=[], last_updated_at_unix=int(time.time()))
        run.pop("condition_result", None)
        self._spawn(self._run_test(run, start))

    async def _run_test(self, run: dict[str, Any], start: int = 1) -> None:
        """The test's scenario played against the agent, judged by the test's own conditions."""
        await asyncio.sleep(PENDING_S)
        if run["status"] != "pending" or self.run_starts.get(run["test_run_id"]) != start:
            return  # cancelled or resubmitted meanwhile
        test = self.tests.get(run["test_id"])
        agent = self.run_agents.get(run["test_run_id"]) or self.agents.get(run["agent_id"])
        if test is None or agent is None:
            missing = "test" if test is None else "agent"
            run.update(status="failed", last_updated_at_unix=int(time.time()),
                       condition_result={"result": "failure", "rationale": {
                           "summary": f"The {missing} was deleted before the run started", "messages": []}})
            return
        missing = missing_variables(agent, {**agent.platform.placeholders,
                                            **_variables(test.get("dynamic_variables"), "dynamic_variables")})
        if missing:  # the platform's refusal of the conversation: the test cannot run
            run.update(status="failed", last_updated_at_unix=int(time.time()), condition_result={
                "result": "failure", "rationale": {
                    "summary": f"{missing} (give them in the test's dynamic_variables or as the agent's "
                               "placeholders)", "messages": []}})
            return
        if test.get("type") == "tool":
            self._run_tool_test(run, test, agent)
            return
        if test.get("type", "llm") == "llm":
            self._run_response_test(run, test, agent)
            return
        max_turns = int(test.get("simulation_max_turns") or 40)
        variables = {**agent.platform.placeholders, **_variables(test.get("dynamic_variables"), "dynamic_variables")}
        user = simulated_user(str(test["simulation_scenario"]), variables, max_turns)
        strategy = (test.get("tool_mock_config") or {}).get("mocking_strategy", "all")
        mocks = _tool_mocks(test.get("tool_mock_overrides")) if strategy != "none" else {}
        named = {t.platform_id: t.name for t in agent.tools if t.platform_id}
        mocks = {named.get(tool, tool): mock for tool, mock in mocks.items()}  # keyed by id or name
        sim = simulate(agent, user, latency_s=self.latency_s(), max_turns=max_turns, mocks=mocks,
                       language=user.call_language)
        verdicts = judge(list(test.get("success_conditions") or []), sim.transcript, sim.ended_by)
        passed, rationale = overall(verdicts)
        run.update(status="passed" if passed else "failed", agent_responses=sim.transcript,
                   last_updated_at_unix=int(time.time()),
                   condition_result={"result": "success" if passed else "failure",
                                     "rationale": {"summary": rationale,
                                                   "messages": [f"{v.condition}: {v.result} ({v.rationale})"
                                                                for v in verdicts]}})

    def _run_tool_test(self, run: dict[str, Any], test: dict[str, Any], agent: AgentSpec) -> None:
        """A tool-call unit test: the agent's next turn after the test's chat history, judged by
        which tool it calls and with what."""
        variables = {**agent.platform.placeholders, **_variables(test.get("dynamic_variables"), "dynamic_variables")}
        history = list(test.get("chat_history") or [])
        text, calls = next_turn(agent, variables, history)
        ids = {t.name: t.name for t in agent.tools} | {t.platform_id: t.name for t in agent.tools if t.platform_id}
        passed, rationale = judge_tool_test(test["tool_call_parameters"], calls, ids,
                                            bool(test.get("check_any_tool_matches")))
        at = int(history[-1].get("time_in_call_secs") or 0) if history else 0
        responses = [{"role": "agent", "message": None, "time_in_call_secs": at, "tool_calls": [
            {"type": (agent.tool(name).type if agent.tool(name) else "system"), "request_id": f"toolu_{i}",
             "tool_name": name, "params_as_json": json.dumps(args), "tool_has_been_called": False}]}
            for i, (name, args) in enumerate(calls)]
        if text:
            responses.insert(0, {"role": "agent", "message": text, "time_in_call_secs": at})
        run.update(status="passed" if passed else "failed", agent_responses=responses,
                   last_updated_at_unix=int(time.time()),
                   condition_result={"result": "success" if passed else "failure",
                                     "rationale": {"summary": rationale, "messages": [rationale]}})

    def _run_response_test(self, run: dict[str, Any], test: dict[str, Any], agent: AgentSpec) -> None:
        """An llm (response) unit test: the agent's next turn after the chat history, judged on
        what it says (scenario.judge_response)."""
        variables = {**agent.platform.placeholders, **_variables(test.get("dynamic_variables"), "dynamic_variables")}
        history = list(test.get("chat_history") or [])
        text, _ = next_turn(agent, variables, history)
        passed, rationale = judge_response(test, text)
        at = int(history[-1].get("time_in_call_secs") or 0) if history else 0
        run.update(status="passed" if passed else "failed",
                   agent_responses=[{"role": "agent", "message": text, "time_in_call_secs": at}],
                   last_updated_at_unix=int(time.time()),
                   condition_result={"result": "success" if passed else "failure",
                                     "rationale": {"summary": rationale, "messages": [rationale]}})

    async def simulate_conversation(self, request: web.Request) -> web.Response:
        """Deprecated on the platform (agent-testing replaces it) but still served: the simulated
        user's prompt is the scenario, the extra evaluation criteria are the conditions."""
        agent = self.agents.get(request.match_info["agent_id"])
        if agent is None:
            return error_response(404, "agent_not_found", "Agent not found")
        body = await read_json(request)
        spec = field(body, "simulation_specification", dict, required=True)
        user_config = field(spec, "simulated_user_config", dict, required=True)
        prompt = field(user_config, "prompt", dict, default={})
        scenario = field(prompt, "prompt", str, default="")
        criteria = field(body, "extra_evaluation_criteria", list, default=[])
        if not all(isinstance(c, dict) and isinstance(c.get("id"), str)
                   and isinstance(c.get("conversation_goal_prompt"), str) for c in criteria):
            raise Unprocessable("body", "extra_evaluation_criteria",
                                "each criterion needs id and conversation_goal_prompt (strings)")
        limit = field(body, "new_turns_limit", int, default=40)
        variables = {**agent.platform.placeholders, **_variables(spec.get("dynamic_variables"), "dynamic_variables")}
        user = simulated_user(scenario, variables, limit)
        sim = simulate(agent, user, latency_s=self.latency_s(), max_turns=limit)
        verdicts = judge([c["conversation_goal_prompt"] for c in criteria], sim.transcript, sim.ended_by)
        results = {c["id"]: {"criteria_id": c["id"], "result": v.result, "rationale": v.rationale}
                   for c, v in zip(criteria, verdicts, strict=True)}
        successful = {None: "unknown", "success": "success", "failure": "failure"}[sim.outcome]
        body_out = {"simulated_conversation": sim.transcript,
                    "analysis": {"call_successful": successful, "evaluation_criteria_results": results,
                                 "transcript_summary": f"Simulated {agent.name} call: {len(sim.transcript)} turns, "
                                                       f"ended by the {sim.ended_by}."}}
        return web.json_response(dump(sdk_model("AgentSimulatedChatTestResponseModel").model_validate(body_out)))

    def _dump_invocation(self, invocation: dict[str, Any]) -> dict:
        return dump(sdk_model("GetTestSuiteInvocationResponseModel").model_validate(invocation))

    async def get_invocation(self, request: web.Request) -> web.Response:
        invocation = self.invocations.get(request.match_info["invocation_id"])
        if invocation is None:
            return error_response(404, "invocation_not_found", "Test invocation not found")
        return web.json_response(self._dump_invocation(invocation))

    async def cancel_invocation(self, request: web.Request) -> web.Response:
        invocation = self.invocations.get(request.match_info["invocation_id"])
        if invocation is None:
            return error_response(404, "invocation_not_found", "Test invocation not found")
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
        body = await read_json(request)
        agent = self.agents.get(field(body, "agent_id", str, required=True))
        if agent is None:
            return error_response(404, "agent_not_found", "Agent not found")
        phone_number_id = field(body, "agent_phone_number_id", str, required=True)
        number = field(body, "to_number", str, required=True)
        if not E164_PATTERN.match(number):
            raise Unprocessable("body", "to_number", f"{number!r} is not an E.164 phone number")
        client_data = field(body, "conversation_initiation_client_data", dict, default={})
        variables = {**agent.platform.placeholders,
                     **_variables(client_data.get("dynamic_variables"),
                                  "conversation_initiation_client_data.dynamic_variables")}
        persona = self.callers.by_number(number, agent.id)
        conversation_id = new_conversation_id()
        call_sid = ("CA" if kind == "twilio" else "sip_") + secrets.token_hex(16)
        phone = {"type": kind, "direction": "outbound", "phone_number_id": phone_number_id,
                 "agent_number": "+15550000000", "external_number": number, "call_sid": call_sid,
                 "stream_sid": "MZ" + secrets.token_hex(16)}
        variables |= system_variables(conversation_id, agent.id, phone)
        record = ConversationRecord(conversation_id=conversation_id, agent_id=agent.id, agent_name=agent.name,
                                    text_only=False, dynamic_variables=variables,
                                    client_data={**client_data, "language": agent.language},
                                    source="twilio" if kind == "twilio" else "sip_trunk")
        record.phone_call = phone
        record.status = "initiated"
        self.history.add(record)
        self._spawn(self._phone_conversation(record, agent, persona, variables))
        if kind == "twilio":
            return web.json_response(dump(sdk_model("TwilioOutboundCallResponse").model_validate(
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
        sim = simulate(agent, persona, latency_s=self.latency_s(), mocks=dict(persona.tools))
        record.transcript = [{**t, "source_medium": "audio"} if t.get("message") is not None else t
                             for t in sim.transcript]
        record.outcome = sim.outcome
        record.started = time.time() - sim.duration_s
        reason = {"agent": "end_call tool was called.", "caller": "Remote party ended the call.",
                  "limit": "Maximum duration exceeded"}[sim.ended_by]
        if sim.transferred:
            reason = TRANSFER_REASON
        record.finish(reason)
