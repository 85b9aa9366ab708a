"""The local backend's dialogue engine: an agent spec's `flow` as a small state machine.

Pure: it takes caller turns and silence, and returns what the agent says next. No clock, no I/O,
so the server decides timing (injected latency, silence timeouts) and tests can drive it alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from voicelab.local.messages import load_json
from voicelab.spec.datasets import render
from voicelab.spec.models import AgentSpec, Intent, LocalText, pick_language


def result_field(result: Any, path: str) -> Any:
    """The value at a dotted `path` of a tool's result (a JSON text is parsed first); None when
    the result has no such field."""
    if isinstance(result, str):
        try:
            result = load_json(result)
        except ValueError:  # plain text, or nested too deeply to read
            return None
    for key in path.split("."):
        if isinstance(result, dict) and key in result:
            result = result[key]
        elif isinstance(result, list) and key.isdigit() and int(key) < len(result):
            result = result[int(key)]
        else:
            return None
    return result


def as_text(value: Any) -> str:
    """A result value as a dynamic variable (JSON for mappings and lists, true/false for booleans)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return "" if value is None else str(value)


@dataclass
class Reply:
    text: str
    end_call: bool = False
    #: A client tool to call once the text is said, with its arguments (variables filled in);
    #: the session reports the outcome through `FlowEngine.on_tool_result`.
    tool: str | None = None
    args: dict[str, str] = field(default_factory=dict)
    #: Extra thinking time before it is said (the step's `delay_ms`).
    delay_s: float = 0.0


class FlowEngine:
    def __init__(self, agent: AgentSpec, variables: dict[str, str], language: str | None = None,
                 first_message: str | None = None) -> None:
        self.agent = agent
        self.flow = agent.flow
        self.variables = dict(variables)
        self.language = language or agent.language
        self._first_message_override = first_message
        self.step_name = self.flow.start
        self.last_said = ""
        self.unmatched = 0
        self.silences = 0
        self.ended = False
        self.outcome: str | None = None

    def _say(self, text: LocalText) -> str:
        return render(pick_language(text, self.language), self.variables).strip()

    def first_message(self) -> Reply:
        """The agent's opening turn: its first message and the start step's words and call; none
        at all for a client's empty first message (the platform's agent then waits for the user)."""
        if self._first_message_override == "":
            return Reply(text="")
        text = self._first_message_override or self._say(self.agent.first_message)
        text = render(text, self.variables)
        step = self.flow.steps[self.step_name]
        if step.say:
            text = f"{text} {self._say(step.say)}".strip()
        return self._with_call(self._speak(text, step.end_call), self.step_name)

    def _speak(self, text: str, end_call: bool = False) -> Reply:
        if text:  # a step that only calls a tool says nothing: "say that again" repeats the last words
            self.last_said = text
        if end_call:
            self.ended = True
        return Reply(text=text, end_call=end_call)

    def _goto(self, name: str) -> Reply:
        self.step_name, self.unmatched = name, 0
        step = self.flow.steps[name]
        if step.outcome:
            self.outcome = step.outcome
        return self._with_call(self._speak(self._say(step.say), step.end_call), name)

    def _with_call(self, reply: Reply, step_name: str) -> Reply:
        reply.delay_s = self.flow.steps[step_name].delay_ms / 1000
        call = self.flow.steps[step_name].call
        if call is not None:
            reply.tool = call.tool
            reply.args = {key: render(value, self.variables) for key, value in call.args.items()}
        return reply

    def on_tool_result(self, ok: bool, result: Any = None) -> Reply | None:
        """The tool of the current step answered (ok, with `result`), or failed or timed out: keep
        what the step saves, then move on by its branches and outcomes, or stay (None) when the
        step names no step for that outcome."""
        call = self.flow.steps[self.step_name].call
        if call is None:
            return None
        target = call.on_error
        if ok:
            for variable, path in call.save.items():
                value = result_field(result, path)
                if value is not None:
                    self.variables[variable] = as_text(value)
            target = next((b.goto for b in call.branches
                           if as_text(result_field(result, b.field)).lower() == as_text(b.equals).lower()),
                          call.on_success)
        return self._goto(target) if target else None

    def _match(self, intents: list[Intent], text: str) -> Intent | None:
        lowered = text.lower()
        for intent in intents:
            if intent.language is not None and intent.language != self.language:
                continue
            if any(phrase.lower() in lowered for phrase in intent.when):
                return intent
        return None

    def on_user(self, text: str) -> Reply:
        """The caller said `text`: move through the flow and answer."""
        self.silences = 0
        step = self.flow.steps[self.step_name]
        intent = self._match(step.intents, text) or self._match(self.flow.any, text)
        if intent is not None:
            self.variables.update({key: render(value, self.variables) for key, value in intent.set.items()})
        if intent is not None and intent.repeat:
            return self._speak(self.last_said)
        if intent is not None and intent.goto:
            return self._goto(intent.goto)
        self.unmatched += 1
        if step.on_no_match and self.unmatched > step.max_reprompts:
            return self._goto(step.on_no_match)
        reprompt = self._say(step.reprompt) if step.reprompt else self._say(self.flow.reprompt)
        return self._speak(reprompt)

    def on_silence(self) -> Reply:
        """The caller said nothing for `flow.silence.after_s`: re-prompt, or give up."""
        silence = self.flow.silence
        self.silences += 1
        if silence.end_after is not None and self.silences > silence.end_after:
            self.outcome = self.outcome or "failure"
            return self._speak(self._say(silence.goodbye), end_call=True)
        text = self._say(silence.say)
        return Reply(text=text)
