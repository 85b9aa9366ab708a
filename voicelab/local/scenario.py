"""What a client's agent-testing test says, read the way the local backend can: the simulated
user from its `simulation_scenario`, the verdict from its `success_conditions`.

The platform reads both with an LLM. The local backend reads the small sentence grammar that
voicelab writes (the scenario: spec/prose.py; the conditions: spec/checks.py's registry) and
nothing more, so the texts voicelab sends are really exercised: a reply rule that does not
survive the round trip changes the conversation, a condition that says something else than the
persona's expectations changes the verdict, and `agrees_with_platform` can be false. A sentence
outside the grammar is judged "unknown" and named in the rationale, never silently passed.

Scenario grammar: `You are <name>.` ... one of the style sentences ... `Speak <Language>.`
... `The call starts in <Language>.` (optional)
... `If asked about <a> / <b>, say: "<line>"` (any number); a replay's recorded lines, one per
line (`- after 1 agent turn, say "<line>"`: spec/prose.py `replay_lines`).
Condition grammar: the sentences of the check registry (spec/checks.py: each expectation's
`sentence`, e.g. `The agent says "<p>".`, `The agent calls the tool <t> with <a>="<v>".`), and
`The agent handles the caller politely and ends the call properly.` (no expectation to say).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from voicelab.local.flow import as_text, result_field
from voicelab.spec.checks import Simulation, judge_condition
from voicelab.spec.models import CallerSpec, Persona, ReplyRule
from voicelab.spec.prose import STYLE_TEXT, replay_turns

LANGUAGES = {"english": "en", "german": "de"}
RULE = re.compile(r'If asked about (.+?), say: "(.*?)"')


def simulated_user(scenario: str, variables: dict[str, str], max_turns: int) -> Persona:
    """The caller a scenario describes, as voicelab's scripted caller plays it."""
    name = re.match(r"\s*You are (.+?)\.(\s|$)", scenario)
    style = next((s for s, text in STYLE_TEXT.items() if text.scenario in scenario), "cooperative")
    spoken = re.search(r"Speak (\w+)\.", scenario)
    language = LANGUAGES.get(spoken.group(1).lower(), spoken.group(1).lower()) if spoken else "en"
    starts = re.search(r"The call starts in (\w+)\.", scenario)
    start = LANGUAGES.get(starts.group(1).lower(), starts.group(1).lower()) if starts else None
    replies = [ReplyRule(when=[w.strip() for w in when.split(" / ") if w.strip()], say=line)
               for when, line in RULE.findall(scenario) if when.strip()]
    turns = max(1, (max_turns - 2) // 2)
    recorded = replay_turns(scenario) if style == "replay" else []  # a replay's lines (spec/prose.py)
    return Persona(id="simulated-user", name=name.group(1) if name else "Simulated user", summary=scenario[:500],
                   language=language, start_language=start, agent="simulated", variables=variables,
                   caller=CallerSpec(style=style, replies=replies, hang_up_after_turns=turns, turns=recorded))


@dataclass(frozen=True)
class Verdict:
    condition: str
    result: str  # success | failure | unknown
    rationale: str


def judge(conditions: list[str], transcript: list[dict], ended_by: str) -> list[Verdict]:
    """Each success condition against a simulated transcript (role, message items), judged by
    the check registry's grammar (spec/checks.py `judge_condition`)."""
    sim = Simulation(transcript, ended_by)
    out = []
    for condition in conditions:
        text = condition.strip()
        judged = judge_condition(text, sim)
        if judged is None:
            out.append(Verdict(text, "unknown", "the local backend cannot judge this sentence (it reads only "
                                                "the condition grammar voicelab writes)"))
        else:
            passed, rationale = judged
            out.append(Verdict(text, "success" if passed else "failure", rationale))
    return out


def overall(verdicts: list[Verdict]) -> tuple[bool, str]:
    """Passed only if every condition succeeded; the rationale names each that did not."""
    failed = [v for v in verdicts if v.result != "success"]
    if not verdicts:
        return False, "The test has no success conditions to judge."
    if failed:
        return False, "Not met: " + "; ".join(f"{v.condition} ({v.result}: {v.rationale})" for v in failed)
    return True, f"All {len(verdicts)} success conditions met."


def _words(text: str) -> set[str]:
    return set(re.findall(r"[^\W_]+", text.casefold()))


def _overlap(a: str, b: str) -> float:
    """Word overlap of two responses (Jaccard over their lowercase words): 1 the same words, 0 none shared."""
    wa, wb = _words(a), _words(b)
    return len(wa & wb) / len(wa | wb) if wa | wb else 1.0


#: A response is like an example it shares at least this much of its words with.
LIKE = 0.3


def judge_response(test: dict, response: str) -> tuple[bool, str]:
    """An `llm` (response) test's verdict on the agent's next turn, read the way the local backend
    can (the platform asks a model whether `success_condition` holds, shown its examples):

    1. a `success_condition` in the condition grammar (a check registry sentence, e.g.
       `The agent says "refund".`) is judged on the response, as a simulation's condition is;
    2. otherwise the examples decide: the response passes if it is like a success example (shares
       at least LIKE of its words) and closer to it than to every failure example; with failure
       examples only, if it is like none of them;
    3. with neither, it fails and says why, never a silent pass."""
    condition = str(test.get("success_condition") or "").strip()
    if condition:
        judged = judge_condition(condition, Simulation([{"role": "agent", "message": response}], "none"))
        if judged is not None:
            return judged

    def examples(key: str) -> list[str]:
        return [str(e.get("response") or "") for e in test.get(key) or [] if isinstance(e, dict)]
    successes, failures = examples("success_examples"), examples("failure_examples")
    if not successes and not failures:
        return False, ("the local backend cannot judge this condition without a model: write it as a "
                       "sentence of voicelab's condition grammar or give success_examples / failure_examples")
    best_success = max((_overlap(response, e) for e in successes), default=None)
    best_failure = max((_overlap(response, e) for e in failures), default=None)
    if best_success is not None:
        passed = best_success >= LIKE and (best_failure is None or best_success > best_failure)
    else:
        passed = best_failure is not None and best_failure < LIKE
    said = f"the response {response!r}" if response else "an empty response"
    scores = ", ".join(f"{kind} example {score:.2f}" for kind, score in
                       (("closest success", best_success), ("closest failure", best_failure)) if score is not None)
    verdict = "is like a success example" if passed else "is not like a success example"
    if best_success is None:
        verdict = "is like no failure example" if passed else "is like a failure example"
    return passed, f"{said} {verdict} (word overlap, {LIKE} needed: {scores})"


def judge_tool_test(parameters: dict, calls: list[tuple[str, dict[str, str]]],
                    tool_ids: dict[str, str], check_any: bool = False) -> tuple[bool, str]:
    """A tool-call test's `tool_call_parameters` against the tools the agent's next turn called.

    `tool_ids` maps each id a test may name a tool by (the platform's tool id, or its name) to
    the name. Parameter evals: `exact` (the value's text), `regex` (re.search), `anything`
    (present); `llm` needs a model and is judged a failure that says so, never a pass."""
    ref = parameters.get("referenced_tool") or {}
    wanted = tool_ids.get(str(ref.get("id")), str(ref.get("id")))
    called = [name for name, _ in calls]
    said = ", ".join(called) or "no tool"
    matching = [(name, args) for name, args in calls if name == wanted]
    if parameters.get("verify_absence"):
        return (not matching, f"{wanted} not called (the next turn called {said})" if not matching
                else f"{wanted} was called")
    if not matching:
        return False, f"{wanted} not called: the next turn called {said}"
    if len(calls) > 1 and not check_any:
        return False, f"the next turn called {len(calls)} tools ({said}), the test wants one"
    problems = []
    for param in parameters.get("parameters") or []:
        path, rule = str(param.get("path", "")), param.get("eval") or {}
        value = result_field(matching[0][1], path)
        kind = rule.get("type")
        if value is None:
            problems.append(f"{path} missing")
        elif kind == "exact" and as_text(value) != str(rule.get("expected_value")):
            problems.append(f"{path}={as_text(value)!r}, expected {rule.get('expected_value')!r}")
        elif kind == "regex" and not re.search(str(rule.get("pattern")), as_text(value)):
            problems.append(f"{path}={as_text(value)!r} does not match /{rule.get('pattern')}/")
        elif kind == "llm":
            problems.append(f"{path}: an llm evaluation needs a model the local backend does not have")
    args = ", ".join(f"{k}={v}" for k, v in matching[0][1].items())
    if problems:
        return False, f"{wanted} called ({args}) but " + "; ".join(problems)
    return True, f"{wanted} called ({args})" if args else f"{wanted} called"
