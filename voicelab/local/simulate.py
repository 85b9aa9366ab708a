"""Conversations the local backend runs on its own side: the agent's flow against voicelab's
scripted caller, standing in for the platform's simulated user (agent-testing) and for the
person who picks up the phone (outbound calls).

Time is virtual: each turn advances a clock by the agent's latency plus speaking time, so a
simulated two-minute call is answered in milliseconds and `time_in_call_secs` still looks real.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from voicelab.local.flow import FlowEngine, Reply
from voicelab.spec.models import SYSTEM_TOOLS, AgentSpec, Persona, ToolMock
from voicelab.spec.script import ScriptedCaller

WORDS_PER_S = 2.5


def _speak_s(text: str) -> float:
    return max(0.5, len(text.split()) / WORDS_PER_S)


@dataclass
class Simulated:
    transcript: list[dict] = field(default_factory=list)  # role, message, time_in_call_secs
    outcome: str | None = None
    ended_by: str = "agent"  # agent | caller | limit
    #: The agent ended the call by transferring it (transfer_to_number).
    transferred: bool = False
    duration_s: float = 0.0


def mocked(agent: AgentSpec, name: str, mocks: dict[str, ToolMock]) -> tuple[bool, Any]:
    """A tool's answer in a simulation, where nothing real runs: the test's mock, else the agent
    spec's default mock, else an error (system tools always succeed)."""
    tool = agent.tool(name)
    if name in SYSTEM_TOOLS and (tool is None or tool.type == "system"):
        return True, {"status": "success"}
    mock = mocks.get(name) or (tool.default_mock if tool is not None else None)
    if mock is None:
        return False, f"Tool '{name}' is not mocked in this simulation"
    return (False, mock.error) if mock.error is not None else (True, mock.result)


def simulate(agent: AgentSpec, persona: Persona, *, latency_s: float = 0.0, max_turns: int = 40,
             language: str | None = None, mocks: dict[str, ToolMock] | None = None) -> Simulated:
    """Play one whole conversation between the agent's flow and the persona's scripted caller;
    the flow's tool calls are answered by `mocks` (see `mocked`) and kept in the transcript as
    the platform keeps them."""
    engine = FlowEngine(agent, persona.variables, language=language or persona.language)
    latency_s += agent.platform.latency_ms / 1000
    caller = ScriptedCaller(persona)
    sim = Simulated()
    clock = 0.0
    limit = persona.caller.timeout_s or 120.0
    transferred = False

    def add(role: str, text: str) -> None:
        if text:  # a step that only calls a tool says nothing
            sim.transcript.append({"role": role, "message": text, "time_in_call_secs": int(clock)})

    def tools(reply: Reply) -> Reply:
        """Run the reply's tool call(s) and return the reply the agent ends up saying."""
        nonlocal transferred, clock
        while reply.tool is not None and not transferred:
            call_id = "toolu_" + secrets.token_hex(12)
            ok, result = mocked(agent, reply.tool, mocks or {})
            declared = agent.tool(reply.tool)
            kind = declared.type if declared else "system" if reply.tool in SYSTEM_TOOLS else "client"
            at = int(clock)
            sim.transcript.append({"role": "agent", "message": None, "time_in_call_secs": at, "tool_calls": [
                {"type": kind, "request_id": call_id, "tool_name": reply.tool, "params_as_json": json.dumps(reply.args),
                 "tool_has_been_called": True}]})
            sim.transcript.append({"role": "agent", "message": None, "time_in_call_secs": at, "tool_results": [
                {"type": kind, "request_id": call_id, "tool_name": reply.tool, "is_error": not ok,
                 "tool_has_been_called": True,
                 "result_value": result if isinstance(result, str) else json.dumps(result)}]})
            if reply.tool == "language_detection" and ok:
                engine.language = reply.args.get("language") or engine.language
            if reply.tool == "end_call":
                return Reply(text="", end_call=True)
            if reply.tool == "transfer_to_number" and ok:
                transferred = True
                return Reply(text="", end_call=True)
            following = engine.on_tool_result(ok, result)
            if following is None:
                return Reply(text="")
            clock += following.delay_s
            add("agent", following.text)
            clock += _speak_s(following.text) if following.text else 0.0
            reply = following
        return reply

    reply = engine.first_message()
    add("agent", reply.text)
    clock += _speak_s(reply.text)
    reply = tools(reply)
    while len(sim.transcript) < max_turns:
        if reply.end_call:
            sim.ended_by = "agent"
            if not transferred:  # the agent hangs up with the end_call system tool
                tools(Reply(text="", tool="end_call"))
            break
        action = caller.on_agent_turn(reply.text)
        if action.hang_up and not action.say:  # a silent caller who has let enough turns pass
            sim.ended_by = "caller"
            break
        if not action.say:
            clock += engine.flow.silence.after_s
            if clock >= limit:
                sim.ended_by = "limit"
                break
            reply = engine.on_silence()
            add("agent", reply.text)
            clock += _speak_s(reply.text)
            reply = tools(reply)
            continue
        for line in action.say:
            add("user", line)
            clock += _speak_s(line)
        if action.hang_up:
            sim.ended_by = "caller"
            break
        reply = engine.on_user(" ".join(action.say))
        clock += latency_s + reply.delay_s
        add("agent", reply.text)
        clock += _speak_s(reply.text)
        reply = tools(reply)
    else:
        sim.ended_by = "limit"
    sim.outcome = engine.outcome
    sim.transferred = transferred
    sim.duration_s = clock
    return sim


def next_turn(agent: AgentSpec, variables: dict[str, str], history: list[dict],
              language: str | None = None) -> tuple[str, list[tuple[str, dict[str, str]]]]:
    """The agent's next turn after a test's `chat_history`: what it says and the tool it calls
    (agent-testing's tool-call and LLM tests judge "a single next step in the conversation").

    The history is replayed through the flow: the caller's messages as turns, tool results as the
    results of the flow's calls; the agent's own words in it are taken as said. Only the first
    tool of the turn is known: the next would depend on that tool's result."""
    engine = FlowEngine(agent, variables, language=language)
    reply = engine.first_message()
    for item in history:
        if item.get("role") == "user" and item.get("message"):
            reply = engine.on_user(str(item["message"]))
        for result in item.get("tool_results") or []:
            if reply.tool is None or result.get("tool_name") != reply.tool:
                continue  # a result of a call this flow did not make here
            value: Any = result.get("result_value")
            try:
                value = json.loads(value) if isinstance(value, str) else value
            except ValueError:
                pass
            ok = not result.get("is_error")
            if reply.tool == "language_detection" and ok:
                engine.language = reply.args.get("language") or engine.language
            reply = engine.on_tool_result(ok, value) or Reply(text="")
    if reply.tool is not None:
        return reply.text, [(reply.tool, reply.args)]
    return reply.text, [("end_call", {})] if reply.end_call else []
