"""What the local agent expects to hear: the vocabulary its voice mode biases recognition toward.

A hosted agent's recogniser is biased by `asr.keywords`; a production stack adds what the dialogue
expects at this point (yes/no, the options just offered). The local agent knows its whole flow,
so the vocabulary is built once per call from what the *agent* knows, nothing else:

- the intents' phrases (what moves the flow: `when:` of every step and of `flow.any`);
- the agent's own words (first message, steps' texts, re-prompts, silence texts, the prompt),
  with the call's variables filled in: callers answer in the words they were asked with;
- its tools' names (split at `_`) and their parameters' enum values;
- the call's dynamic variable values (names, products, numbers), but not `secret__*` ones;
- `platform.asr_keywords` (boosted above the rest);
- the language's yes / no / goodbye / politeness words.

It never reads a persona: the caller's lines are what the test is about, and a recogniser that
knew them would hear a script instead of the call. (The function takes no persona, so it cannot.)
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from voicelab.audio.bias import Vocabulary
from voicelab.spec.datasets import VARIABLE, render
from voicelab.spec.models import AgentSpec, LocalText, pick_language

#: Words any caller uses to answer, agree, refuse, ask again and leave, per language.
LANGUAGE_WORDS: dict[str, tuple[str, ...]] = {
    "en": ("yes", "yeah", "yep", "no", "nope", "okay", "ok", "sure", "right", "correct", "that's right",
           "exactly", "please", "thank you", "thanks", "no thanks", "sorry", "pardon", "hello", "hi",
           "goodbye", "bye", "bye bye", "that's all", "nothing else", "i don't know", "not sure",
           "could you say that again", "what do you mean", "i'm sorry", "of course", "speaking",
           "this is", "it's me", "that's me", "yes please", "no thank you", "one moment", "wait"),
    "de": ("ja", "nein", "genau", "richtig", "bitte", "danke", "danke schön", "entschuldigung", "hallo",
           "tschüss", "auf wiedersehen", "das ist alles", "wie bitte", "ich weiß nicht", "gerne"),
}
#: Phrases are sentences: no bigram of the biased model spans a full stop.
SENTENCE_END = re.compile(r"[.!?;:\n]+(?:\s|$)|\n")
#: Variable values longer than this are prose (a context blob), not words a caller repeats.
MAX_VALUE_CHARS = 200


def _texts(text: LocalText | None, language: str) -> list[str]:
    """The text as the call's language says it (another language's words would only be misheard:
    one recogniser model hears them all with English sounds)."""
    if text is None:
        return []
    return [pick_language(text, language)]


def agent_vocabulary(agent: AgentSpec, variables: Mapping[str, str], language: str | None = None) -> Vocabulary:
    """The vocabulary of one call of `agent` with these dynamic `variables` (see the module doc).
    Deterministic and order-preserving (duplicates dropped), so equal calls share one model."""
    language = language or agent.language
    values = {k: str(v) for k, v in variables.items() if not k.startswith("secret__")}
    phrases: list[str] = []

    def add(text: str) -> None:
        # a variable the call does not have is no word anyone says (its name least of all)
        for sentence in SENTENCE_END.split(VARIABLE.sub(" ", render(text, values))):
            if sentence.strip():
                phrases.append(sentence.strip())

    flow = agent.flow
    for intent in [i for step in flow.steps.values() for i in step.intents] + list(flow.any):
        for phrase in intent.when:
            add(phrase)
        for value in intent.set.values():
            add(value)
    for text in [agent.first_message, flow.reprompt, flow.silence.say, flow.silence.goodbye]:
        for t in _texts(text, language):
            add(t)
    for step in flow.steps.values():
        for t in [*_texts(step.say, language), *_texts(step.reprompt, language)]:
            add(t)
        if step.call is not None:
            add(step.call.tool.replace("_", " "))
    for tool in agent.tools:
        add(tool.name.replace("_", " "))
        for parameter in tool.parameters.values():
            for option in parameter.enum or []:
                add(option)
    for name, value in values.items():
        if not name.startswith("system__") and len(value) <= MAX_VALUE_CHARS:
            add(value)
    add(agent.prompt)
    for word in LANGUAGE_WORDS.get(language.split("-")[0], ()) + LANGUAGE_WORDS["en"]:
        add(word)
    keywords = [k.strip() for k in agent.platform.asr_keywords if k.strip()]
    return Vocabulary(phrases=tuple(dict.fromkeys(phrases)), keywords=tuple(dict.fromkeys(keywords)),
                      language=language)
