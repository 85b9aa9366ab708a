"""The scripted caller: a persona's reply rules played in one of five styles.

Deterministic on purpose: the same persona against the same agent gives the same conversation,
so a changed verdict means the agent changed, not the caller.

- cooperative: answers by its rules, says goodbye after `hang_up_after_turns`.
- impatient: answers with the first sentence only, and hangs up after at most 3 turns.
- confused: asks what the agent means before answering each new question.
- silent: never says anything (the agent's re-prompts and the call's timeout show).
- interrupting: answers at once and cuts in with its next line before the agent has answered.
"""

from __future__ import annotations

import re

from ..models import Persona
from . import Action

GOODBYES = ("goodbye", "good bye", "auf wiedersehen", "auf wiederhören", "tschüss")
IMPATIENT_TURNS = 3
LINES = {
    "en": {"bye": "Thanks, that's all. Goodbye.", "rushed": "Sorry, I have no time for this. Goodbye.",
           "confused": "Sorry, what do you mean?"},
    "de": {"bye": "Danke, das war alles. Auf Wiederhören.",
           "rushed": "Tut mir leid, ich habe keine Zeit. Auf Wiederhören.",
           "confused": "Entschuldigung, wie meinen Sie das?"},
}


def first_sentence(text: str) -> str:
    match = re.match(r"(.+?[.!?])(\s|$)", text.strip())
    return match.group(1) if match else text.strip()


class ScriptedCaller:
    def __init__(self, persona: Persona) -> None:
        self.persona = persona
        self.spec = persona.caller
        self.style = persona.caller.style
        self.lines = LINES.get(persona.language, LINES["en"])
        self.turns = 0
        self.confused_about: str | None = None

    def _rule(self, agent_text: str) -> int | None:
        lowered = agent_text.lower()
        for index, rule in enumerate(self.spec.replies):
            if any(phrase.lower() in lowered for phrase in rule.when):
                return index
        return None

    def _answer(self, agent_text: str) -> tuple[str, int | None]:
        index = self._rule(agent_text)
        return (self.spec.replies[index].say if index is not None else self.spec.fallback), index

    def on_agent_turn(self, text: str) -> Action:
        """What the caller says (or does) after the agent's turn `text`."""
        if self.style == "silent":
            return Action()
        if any(word in text.lower() for word in GOODBYES):
            return Action()  # the agent is closing; wait for it to hang up
        limit = self.spec.hang_up_after_turns
        if self.style == "impatient":
            limit = min(limit, IMPATIENT_TURNS)
        if self.turns >= limit:
            self.turns += 1
            line = self.lines["rushed" if self.style == "impatient" else "bye"]
            return Action(say=[line], hang_up=True)
        self.turns += 1

        if self.style == "confused":
            if self.confused_about is None:
                self.confused_about = text
                return Action(say=[self.lines["confused"]])
            text, self.confused_about = f"{self.confused_about} {text}", None

        reply, index = self._answer(text)
        if self.style == "impatient":
            return Action(say=[first_sentence(reply)])
        if self.style == "interrupting" and index is not None and index + 1 < len(self.spec.replies):
            return Action(say=[reply, self.spec.replies[index + 1].say])
        return Action(say=[reply])
