"""The local backend's caller agent (`voicelab-caller`): the persona of a `caller: agent` call.

On the hosted platform an LLM reads the persona's prompt (spec/prose.caller_prompt) and plays
the caller. Here the prompt is followed to the letter: its hints are the persona's reply rules,
played in order as a flow (spec/script.PersonaFlow), with the scripted caller's fallback, styles
and turn limit, so the same bridge and the same client code are tested offline, deterministically.
Hanging up is the platform's way too: the goodbye, then `end_call`.
"""

from __future__ import annotations

from voicelab.local.flow import FlowEngine, Reply
from voicelab.spec.models import AgentSpec, Flow, FlowStep, PlatformSettings, Silence
from voicelab.spec.prose import CALLER_AGENT_ID, parse_caller_prompt
from voicelab.spec.script import PersonaFlow

#: A caller waits for the agent rather than re-prompting it; this long without a word it asks.
SILENCE_S = 20.0


def caller_agent_spec() -> AgentSpec:
    """The built-in caller agent: its prompt and first words come from the client, as overrides."""
    return AgentSpec(
        id=CALLER_AGENT_ID, name="voicelab caller agent (plays a persona)", first_message="",
        prompt="You are a caller. (voicelab sends the persona's prompt as an override.)",
        flow=Flow(start="listen", steps={"listen": FlowStep()},
                  silence=Silence(after_s=SILENCE_S, say="Hello? Are you still there?")),
        platform=PlatformSettings(allowed_overrides=["prompt", "first_message", "language", "text_only"]))


class PersonaEngine(FlowEngine):
    """A flow engine whose turns are the scripted caller's answers to the persona's prompt."""

    def __init__(self, agent: AgentSpec, variables: dict[str, str], language: str | None,
                 first_message: str | None, prompt: str | None) -> None:
        super().__init__(agent, variables, language=language, first_message=first_message)
        self.persona = parse_caller_prompt(prompt or "", self.language)
        self.caller = PersonaFlow(self.persona)
        from voicelab.audio.speech import voice_for  # its module is the audio side (numpy): voice calls' own

        #: The persona's own voice, not the agents' one.
        self.voice = voice_for(self.persona.name, self.language)

    def first_message(self) -> Reply:
        return self._speak(self._first_message_override or "")

    def on_user(self, text: str) -> Reply:
        action = self.caller.on_agent_turn(text)
        if action.hang_up:
            self.outcome = "success"
        return self._speak(" ".join(action.say), end_call=action.hang_up)

    def on_silence(self) -> Reply:
        return Reply(text="") if self.persona.caller.style == "silent" else super().on_silence()

    def on_tool_result(self, ok: bool, result: object = None) -> Reply | None:
        return None


def engine_for(agent: AgentSpec, variables: dict[str, str], language: str | None, first_message: str | None,
               prompt: str | None) -> FlowEngine:
    """The dialogue engine of a conversation: the caller agent's, or the agent spec's flow."""
    if agent.id == CALLER_AGENT_ID:
        return PersonaEngine(agent, variables, language, first_message, prompt)
    return FlowEngine(agent, variables, language=language, first_message=first_message)


__all__ = ["CALLER_AGENT_ID", "PersonaEngine", "caller_agent_spec", "engine_for"]
