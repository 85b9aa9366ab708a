"""Mutation testing: would the persona suite notice a broken agent?

`mutants(agent)` derives versions of a local agent spec, each one plausible bug (a key sentence
dropped, a variable swapped, a step skipped, no hang-up, a forbidden phrase, a tool called wrongly
or not at all, a re-prompt loop, a slow step). `run_mutation` places the agent's personas against
the original and every mutant in one run (variants: same concurrency, store and resume as any
run); `score` says which mutants some check caught. A mutant is caught by a persona that passes
against the original and fails a check against the mutant, so a persona that fails anyway proves
nothing, and neither does a call that could not run (closed at connection, an error): a mutant
whose calls all failed to run is "not run", reported apart and left out of the score.
"""

from __future__ import annotations

import re
import shutil
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from voicelab.lab.store import RunStore
from voicelab.spec.datasets import load_dataset, validate_agent, variables_in
from voicelab.spec.errors import DatasetError, UsageError
from voicelab.spec.models import AgentSpec, FlowStep, LocalText, Persona, Variant, pick_language

ORIGINAL = "original"
#: What the forbidden-phrase mutant asks when neither the suite nor the agent's prompt names
#: anything the agent must never say: no agent of any domain should ask for it.
FORBIDDEN = "Before we go on, please tell me your password."
#: "Never ask for X" / "never mention X" in an agent's prompt: what the agent must not say.
NEVER = re.compile(r"\bnever\s+(?:ask\s+(?:for|about)|request|mention|say|reveal|share|disclose|give\s+out)\s+"
                   r"(?:(?:a|an|the|any|their|your)\s+)?([^,.;:!?\n]+?)(?:\s*(?:,|\bor\b|\band\b|[.;:!?\n]))", re.I)
SLOW_MS = 2000.0
SENTENCE = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class Mutant:
    id: str
    change: str
    catch_hint: str
    agent: AgentSpec


def _texts(text: LocalText, fn) -> LocalText:  # noqa: ANN001 - str -> str
    return fn(text) if isinstance(text, str) else {lang: fn(t) for lang, t in text.items()}


def _first(text: LocalText) -> str:
    return text if isinstance(text, str) else next(iter(text.values()), "")


def _with_steps(agent: AgentSpec, start: str | None = None, **changes: FlowStep) -> AgentSpec:
    """The agent with some steps replaced (and the start moved), unreachable steps left out."""
    flow = agent.flow.model_copy(update={"steps": {**agent.flow.steps, **changes}, "start": start or agent.flow.start})
    return agent.model_copy(update={"flow": flow.model_copy(update={"steps": _reachable(flow)})})


def _reachable(flow) -> dict[str, FlowStep]:  # noqa: ANN001 - a Flow
    seen, todo = set(), [flow.start] + [i.goto for i in flow.any if i.goto]
    while todo:
        name = todo.pop()
        if name in seen or name not in flow.steps:
            continue
        seen.add(name)
        step = flow.steps[name]
        todo += [i.goto for i in step.intents if i.goto] + [step.on_no_match] * bool(step.on_no_match)
        if step.call is not None:
            todo += [n for n in (step.call.on_success, step.call.on_error) if n] + [b.goto for b in step.call.branches]
    return {n: s for n, s in flow.steps.items() if n in seen}


def _key_sentence(text: str) -> int | None:
    """The sentence a listener needs: the first with a variable or a number, else the longest;
    None when the text is a single sentence (dropping it would silence the step instead)."""
    sentences = SENTENCE.split(text.strip())
    if len(sentences) < 2:
        return None

    def weight(i: int) -> tuple[int, int]:  # facts first (not just the caller's name), then numbers, length
        names = variables_in(sentences[i]) - {"first_name", "last_name"}
        return (2 if names else 1 if re.search(r"\d", sentences[i]) else 0, len(sentences[i]))

    return max(range(len(sentences)), key=weight)


def _drop_sentences(agent: AgentSpec) -> list[Mutant]:
    out = []
    for name, step in agent.flow.steps.items():
        index = _key_sentence(_first(step.say)) if step.say else None
        if index is None:
            continue
        dropped = SENTENCE.split(_first(step.say).strip())[index]

        def drop(text: str, index: int = index) -> str:
            parts = SENTENCE.split(text.strip())
            return " ".join(p for i, p in enumerate(parts) if i != index)

        out.append(Mutant(f"drop-sentence-{name}", f"step {name} no longer says \"{dropped}\"",
                          f"an agent_says phrase from that sentence, for a persona that reaches step {name}",
                          _with_steps(agent, **{name: step.model_copy(update={"say": _texts(step.say, drop)})})))
    return out


def _valid(agent: AgentSpec) -> bool:
    """The mutant is an agent the loader takes (no variable said before the flow sets it, ...):
    a spec it refuses could never be deployed, so it tests the loader, not the suite."""
    try:
        validate_agent(agent, "mutant")
    except DatasetError:
        return False
    return True


def _swap_variables(agent: AgentSpec) -> list[Mutant]:
    """Each variable the agent says (first message and steps), replaced everywhere it is said by
    the next one it says (in name order) that has a value there: a template bug. (A variable the
    flow sets later, e.g. a booking reference saved by a tool, has none in the first message.)"""
    said = sorted(variables_in(agent.first_message)
                  | {v for s in agent.flow.steps.values() for v in variables_in(s.say)})
    out = []
    for i, name in enumerate(said if len(said) > 1 else []):
        for other in said[i + 1:] + said[:i]:

            def swap(text: str, a: str = name, b: str = other) -> str:
                return text.replace("{{" + a + "}}", "{{" + b + "}}")

            steps = {n: s.model_copy(update={"say": _texts(s.say, swap)}) for n, s in agent.flow.steps.items()
                     if name in variables_in(s.say)}
            mutated = _with_steps(agent, **steps).model_copy(
                update={"first_message": _texts(agent.first_message, swap)})
            if _valid(mutated):
                out.append(Mutant(f"swap-variable-{name}", f"says {{{{{other}}}}} where it should say {{{{{name}}}}}",
                                  f"an agent_says with the persona's {name} value", mutated))
                break
    return out


def _skip_steps(agent: AgentSpec) -> list[Mutant]:
    """Steps whose first intent leads on: jump straight to where it leads (the start step: the
    call starts there), e.g. the identity check skipped."""
    flow = agent.flow
    out = []
    for name, step in flow.steps.items():
        target = next((i.goto for i in step.intents if i.goto), None)
        if target is None or step.end_call:
            continue
        steps = {}
        for other_name, other in flow.steps.items():
            intents = [i.model_copy(update={"goto": target}) if i.goto == name else i for i in other.intents]
            if intents != other.intents:
                steps[other_name] = other.model_copy(update={"intents": intents})
        if name != flow.start and not steps:
            continue
        mutated = _with_steps(agent, target if name == flow.start else None, **steps)
        out.append(Mutant(f"skip-step-{name}", f"step {name} is skipped (straight to {target})",
                          f"a persona for whom step {name} matters (e.g. a wrong person for an identity check), "
                          "with agent_never_says / agent_never_calls", mutated))
    return out


def _no_end_call(agent: AgentSpec) -> list[Mutant]:
    steps = {n: s.model_copy(update={"end_call": False}) for n, s in agent.flow.steps.items() if s.end_call}
    if not steps:
        return []
    return [Mutant("no-end-call", "the agent never hangs up (every end_call removed)",
                   "ended_by: agent, or max_duration_s", _with_steps(agent, **steps))]


def _sentence(phrase: str) -> str:
    """The phrase said as a question of its own, in whatever language it is ("Wie alt?")."""
    phrase = phrase.strip()
    return phrase[:1].upper() + phrase[1:] + ("" if phrase[-1:] in ".?!" else "?")


def forbidden_phrase(agent: AgentSpec, personas: list[Persona]) -> tuple[dict[str, str], str]:
    """What the forbidden-phrase mutant makes the agent say, per language ("" for any), and what
    would catch it. First choice: the phrase most of the suite's personas list in
    `agent_never_says` (per language, from that language's personas), so the suite's own domain
    decides (a dentist's suite listens for other words than a bank's); else a question for what
    the agent's prompt says never to ask for ("Never ask about age ..."); else a password."""
    said: dict[str, Counter] = {}
    for persona in personas:
        for phrase in dict.fromkeys(persona.expect.agent_never_says):  # each persona votes once a phrase
            said.setdefault(persona.language, Counter())[phrase] += 1
            said.setdefault("", Counter())[phrase] += 1
    if said:
        texts = {lang: _sentence(counts.most_common(1)[0][0]) for lang, counts in said.items()}
        top, votes = said[""].most_common(1)[0]
        return texts, (f"agent_never_says: {top} ({votes} of the suite's personas list it; any of them that "
                       "passes against the original catches it)")
    match = NEVER.search(agent.prompt)
    if match:
        item = match.group(1).strip()
        return {"": f"Could you tell me your {item}?"}, (
            f"agent_never_says: {item} (the agent's prompt says never to ask for it; no persona listens for it)")
    return {"": FORBIDDEN}, "agent_never_says: password (no persona lists anything the agent must never say)"


def _forbidden_phrase(agent: AgentSpec, personas: list[Persona]) -> list[Mutant]:
    start = agent.flow.start
    step = agent.flow.steps[start]
    texts, hint = forbidden_phrase(agent, personas)
    languages = set(texts) - {""}
    if isinstance(step.say, dict) or languages - {agent.language}:
        # per language: the step's text in it (or its only text) and that language's phrase
        keys = (set(step.say) if isinstance(step.say, dict) else set()) | languages | {agent.language}
        said: LocalText = {lang: f"{pick_language(step.say, lang) if step.say else ''} "
                                 f"{texts.get(lang, texts[''])}".strip() for lang in sorted(keys)}
    else:
        said = f"{step.say} {texts.get(agent.language, texts[''])}".strip()
    shown = texts.get(agent.language, texts[""])
    return [Mutant("forbidden-phrase", f"step {start} also says: \"{shown}\"", hint,
                   _with_steps(agent, **{start: step.model_copy(update={"say": said})}))]


def _wrong_values(agent: AgentSpec, tool_name: str, arg: str, value: str) -> list[str]:
    """Wrong values for a tool argument, likeliest bug first: another enum value, another variable
    the agent says, the value with a typo."""
    tool = agent.tool(tool_name)
    parameter = tool.parameters.get(arg) if tool else None
    out = [e for e in (parameter.enum or []) if e != value][:1] if parameter is not None else []
    names = variables_in(value)
    if names:
        out += ["{{" + v + "}}" for v in sorted({v for s in agent.flow.steps.values() for v in variables_in(s.say)}
                                                - names)]
    return out + [value + "-x"]


def _tool_mutants(agent: AgentSpec) -> list[Mutant]:
    out = []
    for name, step in agent.flow.steps.items():
        call = step.call
        if call is None:
            continue
        declared = agent.tool(call.tool)
        if call.args and (declared is None or declared.type != "system"):  # system tools' args are checked
            tool_params = declared.parameters if declared else {}
            arg = next((a for a in call.args if a in tool_params and tool_params[a].enum), next(iter(call.args)))
            value = call.args[arg]
            for wrong in _wrong_values(agent, call.tool, arg, value):  # the first the loader takes
                mutated = _with_steps(agent, **{name: step.model_copy(update={
                    "call": call.model_copy(update={"args": {**call.args, arg: wrong}})})})
                if _valid(mutated):
                    out.append(Mutant(f"wrong-arg-{name}", f"step {name} calls {call.tool} with {arg}={wrong} "
                                                           f"instead of {value}",
                                      f"agent_calls: {call.tool} with args {{{arg}: ...}}", mutated))
                    break
        out.append(Mutant(f"no-call-{name}", f"step {name} never calls {call.tool}",
                          f"agent_calls: {call.tool}", _with_steps(agent, **{name: step.model_copy(update={
                              "call": None, "say": step.say or "One moment."})})))
    return out


def _reprompt_loops(agent: AgentSpec) -> list[Mutant]:
    out = []
    for name, step in agent.flow.steps.items():
        if not step.intents:
            continue
        looped = step.model_copy(update={"intents": [], "on_no_match": None})
        out.append(Mutant(f"reprompt-loop-{name}", f"step {name} understands nothing and re-prompts forever",
                          "ended_by, min_turns or an agent_says of the step after it", _with_steps(
                              agent, **{name: looped})))
    return out


def _slow_step(agent: AgentSpec) -> list[Mutant]:
    """The step the caller's first answer leads to thinks 2 s longer."""
    start = agent.flow.steps[agent.flow.start]
    target = next((i.goto for i in start.intents if i.goto), None)
    if target is None:
        return []
    step = agent.flow.steps[target]
    return [Mutant(f"slow-step-{target}", f"step {target} answers {SLOW_MS / 1000:g} s later",
                   "max_latency_ms (or a tight max_duration_s)",
                   _with_steps(agent, **{target: step.model_copy(update={"delay_ms": step.delay_ms + SLOW_MS})}))]


OPERATORS = (_drop_sentences, _swap_variables, _skip_steps, _no_end_call, _forbidden_phrase, _tool_mutants,
             _reprompt_loops, _slow_step)


def mutants(agent: AgentSpec, personas: list[Persona] | None = None) -> list[Mutant]:
    """Every mutant of the agent, numbered in a stable order (`m01-...`); `personas`: the suite
    that will call it (the forbidden phrase comes from what they listen for)."""
    suite = personas or []
    found = [m for op in OPERATORS for m in (op(agent, suite) if op is _forbidden_phrase else op(agent))]
    found = [m for m in found if _valid(m.agent)]  # none the loader would refuse: they could never ship
    return [Mutant(f"m{i:02d}-{re.sub(r'[^a-z0-9-]+', '-', m.id.lower())}", m.change, m.catch_hint, m.agent)
            for i, m in enumerate(found, 1)]


def _write_agent(agent: AgentSpec, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(agent.model_dump(mode="json", exclude_defaults=True), sort_keys=False,
                                   allow_unicode=True), encoding="utf-8")


def run_mutation(agent_id: str, personas: str = "datasets/personas", agents: str = "datasets/agents", *,
                 run_id: str | None = None, runs_root: str = "runs", concurrency: int = 8, repeats: int = 1,
                 only: list[str] | None = None, progress: bool = True,
                 cancel_event: threading.Event | None = None, cluster: str | None = None):  # noqa: ANN201
    """Place the agent's personas against the original and every mutant (`only`: mutant ids or
    operator names containing these words). Mutant specs are written into the run folder, so the
    run resumes like any other; `cluster`: on a Dask cluster (as `batch.run_batch`: the workers
    get the mutants' specs with the run, not from this folder). Returns a BatchOutcome."""
    from voicelab.lab.batch import start_run
    from voicelab.lab.store import new_run_id

    dataset = load_dataset(personas, agents)
    if agent_id not in dataset.agents:
        raise UsageError(f"no agent '{agent_id}' (agents: {', '.join(sorted(dataset.agents))})")
    chosen = [p.id for p in dataset.personas.values() if p.agent == agent_id]
    if not chosen:
        raise UsageError(f"no personas call agent '{agent_id}': there is nothing to catch a mutant with")
    agent = dataset.agents[agent_id]
    suite = [dataset.personas[p] for p in chosen]
    found = mutants(agent, suite)
    if only:
        found = [m for m in found if any(word in m.id for word in only)]
        if not found:
            raise UsageError(f"--only {' '.join(only)} matches no mutant of '{agent_id}' "
                             f"(e.g. {', '.join(m.id for m in mutants(agent, suite)[:3])})")
    run_id = run_id or f"mutate-{agent_id}-{new_run_id().removeprefix('run-')}"
    folder = Path(runs_root) / run_id / "mutants"
    variants = [Variant(id=ORIGINAL, description=f"{agent_id} as written")]
    for m in found:
        path = (folder / f"{m.id}.yaml").resolve()
        _write_agent(m.agent.model_copy(update={"id": agent_id}), path)
        variants.append(Variant(id=m.id, agent_file=str(path), mutation=m.change, catch_hint=m.catch_hint))
    if (Path(runs_root) / run_id / "run.json").exists():
        raise UsageError(f"run '{run_id}' already exists: pick another --run-id, or `voicelab run --resume {run_id}`")
    try:
        return start_run(dataset, chosen, personas_path=str(personas), agents_path=str(agents), agent=agent_id,
                         repeats=repeats, concurrency=concurrency, backend="local", caller="scripted", mode="text",
                         run_id=run_id, unique_id=False, variants=variants, kind="mutation", runs_root=runs_root,
                         progress=progress, cancel_event=cancel_event, cluster=cluster)
    finally:
        if not (folder.parent / "run.json").exists():  # refused before the run existed: leave nothing
            shutil.rmtree(folder.parent, ignore_errors=True)


# --------------------------------------------------------------------------- the score


@dataclass
class MutantResult:
    id: str
    change: str
    catch_hint: str
    caught: bool
    #: persona -> the checks that failed against this mutant (only personas that pass the original,
    #: only calls that ran: a call closed at connection or ended by an error notices nothing).
    caught_by: dict[str, list[str]] = field(default_factory=dict)
    #: Why calls against it could not run ("2 of 2 calls: websocket closed 1008 ..."); "" if all ran.
    not_run: str = ""


@dataclass
class MutationScore:
    run_id: str
    agent: str
    #: The mutants scored: caught or survived (each had a call that ran, from a persona that passes
    #: the original).
    mutants: list[MutantResult]
    #: Personas that fail against the original too (they cannot catch anything).
    failing_original: list[str]
    calls: int
    #: Mutants none of whose calls from those personas ran (an invalid mutant, e.g. closed 1008 for
    #: a missing variable, or calls not placed yet): not in the score, either way.
    invalid: list[MutantResult] = field(default_factory=list)

    @property
    def caught(self) -> int:
        return sum(m.caught for m in self.mutants)

    @property
    def score(self) -> float:
        return self.caught / len(self.mutants) if self.mutants else float("nan")

    @property
    def survivors(self) -> list[MutantResult]:
        return [m for m in self.mutants if not m.caught]

    def as_dict(self) -> dict:
        return {"run_id": self.run_id, "agent": self.agent, "mutants": len(self.mutants), "caught": self.caught,
                # caught / mutants exactly; null (JSON has no NaN) when no mutant ran
                "score": None if self.score != self.score else self.score, "calls": self.calls,
                "failing_original": self.failing_original,
                "survivors": [{"id": m.id, "change": m.change, "would_be_caught_by": m.catch_hint}
                              for m in self.survivors],
                "not_run": [{"id": m.id, "change": m.change, "why": m.not_run} for m in self.invalid]}


def _why_not_run(calls: pd.DataFrame) -> str:
    """'2 of 3 calls could not run: <the commonest error or end reason>'."""
    failed = calls[calls["status"] != "completed"]
    if failed.empty:
        return "" if len(calls) else "no call placed yet"
    reasons = Counter(str(e) if isinstance(e, str) and e else f"ended by {r}"
                      for e, r in zip(failed["error"], failed["end_reason"], strict=True))
    return f"{len(failed)} of {len(calls)} calls could not run: {reasons.most_common(1)[0][0]}"


def score(run_id: str, runs_root: str = "runs") -> MutationScore:
    """The mutation score of a stored mutation run (complete or not). A mutant is caught when a
    call that ran (status completed), from a persona passing every call against the original,
    fails a check against it; it survives when such calls ran and none failed; it is invalid (not
    run, not scored) when none of them ran: calls that fail to connect or end in an error prove
    nothing about the suite."""
    run = RunStore(runs_root).open(run_id)
    m = run.manifest
    if m.kind != "mutation":
        raise UsageError(f"run '{run_id}' is not a mutation run (it is a {m.kind})")
    calls = pd.DataFrame([{"variant": r.variant, "persona_id": r.persona_id, "success": r.success,
                           "status": r.status, "error": r.error, "end_reason": r.end_reason,
                           "failed": [c.name for c in r.checks if not c.passed]}
                          for r in run.results()],
                         columns=["variant", "persona_id", "success", "status", "error", "end_reason", "failed"])
    original = calls[calls["variant"] == ORIGINAL]
    good = {p for p, g in original.groupby("persona_id") if g["success"].all()}
    scored, invalid = [], []
    for variant in m.variants[1:]:
        mine = calls[(calls["variant"] == variant.id) & calls["persona_id"].isin(good)]
        ran = mine[mine["status"] == "completed"]
        noticed = ran[~ran["success"].astype(bool)]
        caught_by = {p: sorted({c for cell in g["failed"] for c in cell}) for p, g in noticed.groupby("persona_id")}
        result = MutantResult(variant.id, variant.mutation or "", variant.catch_hint or "", bool(caught_by),
                              caught_by, _why_not_run(mine))
        (scored if len(ran) or not good else invalid).append(result)
    return MutationScore(run_id, m.agent or "", scored, sorted(set(m.personas) - good), len(calls), invalid)
