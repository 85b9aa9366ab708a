"""Persona -> prose for any simulated caller or judge: the words a persona becomes when someone
else (an LLM, or the local backend reading it back) plays it.

- `STYLE_TEXT`: the one table of the five caller styles in words, one entry per style with the
  sentence each reader gets (the caller agent's prompt speaks to the persona; the platform's
  simulated user gets its own sentence, which the local backend finds again in the scenario).
- `scenario`: the platform's simulated user (agent-testing's `simulation_scenario`); the local
  backend reads it back in local/scenario.py.
- `caller_prompt` / `parse_caller_prompt`: the caller agent's system prompt (`caller: agent`),
  and the persona the local backend's caller agent reads back from it (a round trip).

What success means for a judge (agent-testing's `success_conditions`) comes from the check
registry, spec/checks.py.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from voicelab.spec.models import CallerSpec, Persona, ReplayTurn, ReplyRule
from voicelab.spec.script import lines_for

#: The local backend's built-in caller agent.
CALLER_AGENT_ID = "voicelab-caller"


@dataclass(frozen=True)
class StyleText:
    """One caller style in words, for each reader."""

    #: The caller agent's prompt (`caller_prompt`): tells the persona how to talk.
    prompt: str
    #: The platform's simulated user (`scenario`); the local backend recognises the style by it.
    scenario: str


#: The one style table: every style of `CallerSpec.style`, in words.
STYLE_TEXT: dict[str, StyleText] = {
    "cooperative": StyleText(
        prompt="Friendly and helpful: answer each question plainly, in one or two short sentences.",
        scenario="You are cooperative and answer every question directly."),
    "impatient": StyleText(
        prompt="In a hurry: answer with one short sentence and hang up after at most three of your turns.",
        scenario="You are in a hurry: answer in as few words as possible and end the call after about 3 answers."),
    "confused": StyleText(
        prompt="Easily lost: before answering a new question, ask what the agent means.",
        scenario="You are easily confused: before answering each new question, ask what the agent means."),
    "silent": StyleText(
        prompt="You say nothing at all, whatever the agent says.",
        scenario="You do not say anything at all."),
    "interrupting": StyleText(
        prompt="You talk over the agent: answer at once and add your next point before it has replied.",
        scenario="You answer before the agent finishes and often add your next answer right away."),
    "replay": StyleText(
        prompt="You replay a recorded call: say exactly the lines below, in this order, word for word, each "
               "after the agent has finished as many turns as shown, whatever the agent says.",
        scenario="You replay a recorded call: say exactly the lines below, in this order, word for word."),
}


# --------------------------------------------------------------------------- a replay's turns in words

#: One recorded caller turn as a line of a prompt or scenario (a round trip: `replay_lines`,
#: `replay_turns`).
_TURN = re.compile(r'^- after (\d+) agent turns?, (?:say ("(?:[^"\\]|\\.)*")( and hang up)?|hang up without a word)$')


def replay_lines(turns: list[ReplayTurn]) -> list[str]:
    """A replay's recorded caller turns, one line each, for whoever plays them from text."""
    out = []
    for turn in turns:
        wait = f"- after {turn.after} agent turn{'' if turn.after == 1 else 's'}, "
        out.append(wait + (f"say {json.dumps(turn.say, ensure_ascii=False)}" + (" and hang up" if turn.hang_up else "")
                           if turn.say else "hang up without a word"))
    return out


def replay_turns(text: str) -> list[ReplayTurn]:
    """The recorded caller turns written by `replay_lines` in a prompt or scenario (other lines
    are ignored)."""
    out = []
    for line in text.splitlines():
        if match := _TURN.match(line.strip()):
            say = json.loads(match.group(2)) if match.group(2) else None
            out.append(ReplayTurn(say=say, after=int(match.group(1)), hang_up=bool(match.group(3)) or say is None))
    return out


# --------------------------------------------------------------------------- the platform's simulated user


def scenario(persona: Persona) -> str:
    facts = ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in persona.variables.items())
    rules = " ".join(f"If asked about {' / '.join(r.when)}, say: \"{r.say}\"" for r in persona.caller.replies)
    def name(code: str) -> str:
        return {"de": "German", "en": "English"}.get(code, code)

    starts = f" The call starts in {name(persona.call_language)}." if persona.call_language != persona.language else ""
    text = (f"You are {persona.name}. {persona.summary} {STYLE_TEXT[persona.caller.style].scenario} "
            f"Speak {name(persona.language)}.{starts} What you know: {facts}. {rules}").strip()
    if persona.caller.style == "replay":  # the lines themselves, one per line (spec/prose.replay_turns)
        text += "\n" + "\n".join(replay_lines(persona.caller.turns))
    return text


# --------------------------------------------------------------------------- the caller agent's prompt


_QUOTED = r'"(?:[^"\\]|\\.)*"'
_HINT = re.compile(rf"^- when the agent says ({_QUOTED}(?: or {_QUOTED})*), say ({_QUOTED})$")
_FALLBACK = re.compile(rf"^If you do not understand the agent, say ({_QUOTED})$")
_STYLE = re.compile(r"\(style: (\w+)\)")
_TURNS = re.compile(r"After (\d+) of your turns")
_NAME = re.compile(r"^You are (.+?)\. ")


def caller_prompt(persona: Persona) -> str:
    """The caller agent's system prompt: who the persona is, what they know (its variables),
    their goal, their style, their replies as hints, and when to hang up.

    Written for an LLM to read; the local backend's caller agent reads the same text back with
    `parse_caller_prompt`, so every rule is on a line of its own with its strings in JSON quotes."""
    spec, lines = persona.caller, lines_for(persona.language)
    out = [f"You are {persona.name}. {persona.summary}",
           f"You are on a phone call with a company's voice agent. Play {persona.name}: a real person, not an "
           "assistant. Never say you are an AI, never offer help, and keep every answer short and spoken.",
           f"Speak {persona.language} only.", ""]
    if persona.variables:
        out.append("What you know (give these facts when you are asked for them):")
        out += [f"- {name}: {value}" for name, value in persona.variables.items()]
        out.append("")
    out += ["Your goal: get what the first paragraph says you want; answer the agent's questions and confirm "
            "what is right.", "", f"How you talk (style: {spec.style}): {STYLE_TEXT[spec.style].prompt}", ""]
    if spec.style == "replay":
        out.append("The lines of the recorded call:")
        out += replay_lines(spec.turns)
        out.append("")
    if spec.replies:
        out.append("What you would say (hints; when the agent's turn contains one of the first phrases, "
                   "answer along the lines of the last):")
        out += [f"- when the agent says {' or '.join(json.dumps(p) for p in rule.when)}, say {json.dumps(rule.say)}"
                for rule in spec.replies]
    if spec.style == "replay":  # after its last line it waits for the agent, within a limit
        last = f"After your last line, let the agent end the call. After {spec.hang_up_after_turns} of your turns " \
               "past your last line (agent turns you let pass), end the call with the end_call tool without a word."
    elif spec.style == "silent":  # its turns are the ones it lets pass, and it hangs up without a word
        last = f"After {spec.hang_up_after_turns} of your turns (each agent turn you let pass), end the call " \
               "with the end_call tool without a word."
    else:
        last = f"After {spec.hang_up_after_turns} of your turns, say {json.dumps(lines.bye)} and end the call " \
               "with the end_call tool."
    out += [f"If you do not understand the agent, say {json.dumps(spec.fallback)}", "",
            "When to hang up: when the agent says goodbye, say nothing more and let it end the call. " + last]
    return "\n".join(out)


def parse_caller_prompt(prompt: str, language: str = "en") -> Persona:
    """The persona a `caller_prompt` describes (its name, style, replies, fallback and turn limit):
    what the local backend's caller agent follows. Lines it does not know are ignored."""
    spec: dict[str, Any] = {"replies": []}
    name = "Caller"
    for line in prompt.splitlines():
        line = line.strip()
        if (match := _NAME.match(line)) and name == "Caller":
            name = match.group(1)
        if match := _HINT.match(line):
            spec["replies"].append(ReplyRule(when=[json.loads(p) for p in re.findall(_QUOTED, match.group(1))],
                                             say=json.loads(match.group(2))))
        elif match := _FALLBACK.match(line):
            spec["fallback"] = json.loads(match.group(1))
        if (match := _STYLE.search(line)) and match.group(1) in STYLE_TEXT:
            spec["style"] = match.group(1)
        if match := _TURNS.search(line):
            spec["hang_up_after_turns"] = max(1, int(match.group(1)))
    if spec.get("style") == "replay":
        spec["turns"] = replay_turns(prompt)
    return Persona(id="caller-agent", name=name, summary="the persona of a caller prompt", agent="caller",
                   language=language, caller=CallerSpec(**spec))
