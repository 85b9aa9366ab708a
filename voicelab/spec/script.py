"""The scripted caller's behaviour: a persona's reply rules played in one of five styles, as a
pure engine (agent turn in, `Action` out) that depends on the persona's models only.

Every simulated caller runs it: the harness's scripted turn policy (harness/callers/scripted.py),
the local backend's stand-in for the platform's simulated user (local/simulate.py) and its caller
agent (`PersonaFlow`, local/caller_agent.py), and the person at the virtual microphone
(audio/pulse.py).

Deterministic on purpose: the same persona against the same agent gives the same conversation,
so a changed verdict means the agent changed, not the caller.

- cooperative: answers by its rules, says goodbye after `hang_up_after_turns`.
- impatient: answers with the first sentence only, and hangs up after at most 3 turns.
- confused: asks what the agent means before answering each new question.
- silent: never says anything, and hangs up without a word after `hang_up_after_turns` agent
  turns (a good agent re-prompts, then ends the call itself first).
- interrupting: answers at once and cuts in with its next line before the agent has answered.
- replay: says a recorded call's caller turns (`caller.turns`) in order, each after as many agent
  turns as the recording shows, and hangs up where the recorded caller did; its reply rules are
  not used. After its last turn it waits for the agent to end the call, and hangs up after
  `hang_up_after_turns` more agent turns when the agent does not.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from voicelab.spec.models import Persona


@dataclass
class Action:
    say: list[str] = field(default_factory=list)
    hang_up: bool = False


IMPATIENT_TURNS = 3


@dataclass(frozen=True)
class Lines:
    """The scripted caller's own words in one language: its closing lines, its confused question,
    and the words that tell it the agent is saying goodbye."""

    bye: str
    rushed: str
    confused: str
    goodbyes: tuple[str, ...]


#: The one table of the caller's own words, by language (the persona's `language`, region
#: ignored: pt-BR speaks pt). A language not here speaks English.
LINES: dict[str, Lines] = {
    "en": Lines("Thanks, that's all. Goodbye.", "Sorry, I have no time for this. Goodbye.",
                "Sorry, what do you mean?", ("goodbye", "good bye", "bye-bye", "bye bye")),
    "de": Lines("Danke, das war alles. Auf Wiederhören.", "Tut mir leid, ich habe keine Zeit. Auf Wiederhören.",
                "Entschuldigung, wie meinen Sie das?", ("auf wiedersehen", "auf wiederhören", "tschüss", "tschüs")),
    "es": Lines("Gracias, eso es todo. Adiós.", "Lo siento, no tengo tiempo para esto. Adiós.",
                "Perdone, ¿qué quiere decir?", ("adiós", "hasta luego", "hasta pronto")),
    "fr": Lines("Merci, c'est tout. Au revoir.", "Désolé, je n'ai pas le temps. Au revoir.",
                "Pardon, qu'est-ce que vous voulez dire ?", ("au revoir", "à bientôt", "bonne journée")),
    "it": Lines("Grazie, è tutto. Arrivederci.", "Mi scusi, non ho tempo per questo. Arrivederci.",
                "Scusi, che cosa intende?", ("arrivederci", "arrivederla", "a presto")),
    "pt": Lines("Obrigado, é tudo. Adeus.", "Desculpe, não tenho tempo para isto. Adeus.",
                "Desculpe, o que quer dizer?", ("adeus", "tchau", "até logo", "até mais")),
    "nl": Lines("Bedankt, dat was alles. Tot ziens.", "Sorry, ik heb hier geen tijd voor. Tot ziens.",
                "Sorry, wat bedoelt u?", ("tot ziens", "tot horens", "doei")),
    "pl": Lines("Dziękuję, to wszystko. Do widzenia.", "Przepraszam, nie mam na to czasu. Do widzenia.",
                "Przepraszam, co to znaczy?", ("do widzenia", "do usłyszenia", "do zobaczenia")),
}


def lines_for(language: str) -> Lines:
    """The caller's words for a persona's language (`pt-BR` -> pt), English when there are none."""
    return LINES.get(language.split("-")[0].lower(), LINES["en"])


def _folded(text: str) -> str:
    """Lowercase without accents, so "Adiós", "adios" and "ADIÓS" are one word ("ß" is "ss")."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


#: A goodbye in any language of the table, as whole words: the agent may close in another
#: language than the caller's ("Goodbye" to a German caller of an English agent).
_GOODBYE = re.compile(r"(?<!\w)(?:" + "|".join(sorted({re.escape(_folded(word)) for lines in LINES.values()
                                                         for word in lines.goodbyes}, key=len, reverse=True))
                      + r")(?!\w)")


def says_goodbye(text: str) -> bool:
    """Whether the agent's turn says goodbye (whole words, any language, accents optional)."""
    return _GOODBYE.search(_folded(text)) is not None


def first_sentence(text: str) -> str:
    match = re.match(r"(.+?[.!?])(\s|$)", text.strip())
    return match.group(1) if match else text.strip()


class ScriptedCaller:
    def __init__(self, persona: Persona) -> None:
        self.persona = persona
        self.spec = persona.caller
        self.style = persona.caller.style
        self.lines = lines_for(persona.language)
        self.turns = 0
        self.confused_about: str | None = None
        #: replay: the next recorded turn, and the agent turns heard since the caller last spoke.
        self.next_turn = 0
        self.heard = 0

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
        """What the caller says (or does) after the agent's turn `text`. A silent caller's turns
        are the ones it lets pass: they count toward `hang_up_after_turns` too, and it hangs up
        without a word."""
        if self.style == "replay":
            return self._replay()
        if says_goodbye(text):
            return Action()  # the agent is closing; wait for it to hang up
        limit = self.spec.hang_up_after_turns
        if self.style == "impatient":
            limit = min(limit, IMPATIENT_TURNS)
        if self.turns >= limit:
            self.turns += 1
            if self.style == "silent":
                return Action(hang_up=True)
            line = self.lines.rushed if self.style == "impatient" else self.lines.bye
            return Action(say=[line], hang_up=True)
        self.turns += 1
        if self.style == "silent":
            return Action()

        if self.style == "confused":
            if self.confused_about is None:
                self.confused_about = text
                return Action(say=[self.lines.confused])
            text, self.confused_about = f"{self.confused_about} {text}", None

        reply, index = self._answer(text)
        if self.style == "impatient":
            return Action(say=[first_sentence(reply)])
        if self.style == "interrupting" and index is not None and index + 1 < len(self.spec.replies):
            return Action(say=[reply, self.spec.replies[index + 1].say])
        return Action(say=[reply])

    def _replay(self) -> Action:
        """The recorded caller's next words, once the agent has said as many turns as it had in
        the recording; the agent's words do not matter (a replay asks what the agent does with
        the same caller), its number of turns does. The recorded goodbye is said like any turn."""
        self.heard += 1
        recorded = self.spec.turns
        if self.next_turn >= len(recorded):  # the recording's caller said everything: wait for the end
            if self.heard > self.spec.hang_up_after_turns:
                return Action(hang_up=True)
            return Action()
        say: list[str] = []
        while self.next_turn < len(recorded) and (say or self.heard >= recorded[self.next_turn].after):
            turn = recorded[self.next_turn]
            if say and turn.after > 0:
                break  # the next one waits for the agent again
            self.next_turn += 1
            self.turns += 1
            if turn.say:
                say.append(turn.say)
            if turn.hang_up:
                return Action(say=say, hang_up=True)
        if say:
            self.heard = 0
        return Action(say=say)


#: An unmatched turn heard as fewer words than this is a fragment: ask again rather than move on.
MIN_GIST_WORDS = 3


class PersonaFlow(ScriptedCaller):
    """How the local caller agent follows a persona's prompt: its replies as a flow, in order.

    A matching hint wins, as for the scripted caller. But where the scripted caller falls back
    ("could you say that again?") whenever its phrases miss, an LLM playing the persona gets the
    gist and moves on; so does this flow: an unmatched turn gets the next reply not given yet,
    the same turn heard again gets the same answer again, and the fallback is left for a fragment
    too short to get the gist of, or for when the replies are used up. That keeps a bridged
    voice call going through the recogniser's errors (pocketsphinx mishears espeak's agent voice
    about one word in two)."""

    def __init__(self, persona: Persona) -> None:
        super().__init__(persona)
        self.next_reply = 0
        self._last: tuple[str, tuple[str, int | None]] | None = None

    def _answer(self, agent_text: str) -> tuple[str, int | None]:
        heard = " ".join(agent_text.lower().split())
        if self._last is not None and self._last[0] == heard:
            return self._last[1]
        index = self._rule(agent_text)
        if index is None and len(heard.split()) >= MIN_GIST_WORDS and self.next_reply < len(self.spec.replies):
            index = self.next_reply
        if index is not None:
            self.next_reply = max(self.next_reply, index + 1)
        answer = (self.spec.replies[index].say if index is not None else self.spec.fallback), index
        self._last = heard, answer
        return answer
