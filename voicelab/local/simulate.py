"""Conversations the local backend runs on its own side: the agent's flow against voicelab's
scripted caller, standing in for the platform's simulated user (agent-testing) and for the
person who picks up the phone (outbound calls).

Time is virtual: each turn advances a clock by the agent's latency plus speaking time, so a
simulated two-minute call is answered in milliseconds and `time_in_call_secs` still looks real.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..callers.scripted import ScriptedCaller
from ..models import AgentSpec, Persona
from .flow import FlowEngine

WORDS_PER_S = 2.5


def _speak_s(text: str) -> float:
    return max(0.5, len(text.split()) / WORDS_PER_S)


@dataclass
class Simulated:
    transcript: list[dict] = field(default_factory=list)  # role, message, time_in_call_secs
    outcome: str | None = None
    ended_by: str = "agent"  # agent | caller | limit
    duration_s: float = 0.0


def simulate(agent: AgentSpec, persona: Persona, *, latency_s: float = 0.0, max_turns: int = 40,
             language: str | None = None) -> Simulated:
    """Play one whole conversation between the agent's flow and the persona's scripted caller."""
    engine = FlowEngine(agent, persona.variables, language=language or persona.language)
    caller = ScriptedCaller(persona)
    sim = Simulated()
    clock = 0.0
    limit = persona.caller.timeout_s or 120.0

    def add(role: str, text: str) -> None:
        sim.transcript.append({"role": role, "message": text, "time_in_call_secs": int(clock)})

    reply = engine.first_message()
    add("agent", reply.text)
    clock += _speak_s(reply.text)
    while len(sim.transcript) < max_turns:
        if reply.end_call:
            sim.ended_by = "agent"
            break
        action = caller.on_agent_turn(reply.text)
        if not action.say:
            clock += engine.flow.silence.after_s
            if clock >= limit:
                sim.ended_by = "limit"
                break
            reply = engine.on_silence()
            add("agent", reply.text)
            clock += _speak_s(reply.text)
            continue
        for line in action.say:
            add("user", line)
            clock += _speak_s(line)
        if action.hang_up:
            sim.ended_by = "caller"
            break
        clock += latency_s
        reply = engine.on_user(" ".join(action.say))
        add("agent", reply.text)
        clock += _speak_s(reply.text)
    else:
        sim.ended_by = "limit"
    sim.outcome = engine.outcome
    sim.duration_s = clock
    return sim
