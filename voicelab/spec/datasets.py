"""Load and validate persona and agent files, and render `{{variables}}`.

Validation happens here, once, so every later part can trust its inputs: a bad file fails with
one `DatasetError` that names the file, the persona id and the field, before any call is placed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from voicelab.spec.errors import DatasetError
from voicelab.spec.models import (
    NOISES,
    SYSTEM_TOOLS,
    AgentSpec,
    CallRequest,
    FlowStep,
    LocalText,
    Persona,
    ToolParameter,
)

VARIABLE = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")
DEFAULT_PERSONAS = Path("datasets/personas")
#: A call's time limit when neither the run nor the persona sets one.
DEFAULT_TIME_LIMIT_S = 60.0
DEFAULT_AGENTS = Path("datasets/agents")


def render(text: str, variables: dict[str, str]) -> str:
    """Replace `{{name}}` with its value; unknown names are left as they are (and caught earlier)."""
    return VARIABLE.sub(lambda m: variables.get(m.group(1), m.group(0)), text)


def variables_in(text: LocalText | None) -> set[str]:
    if text is None:
        return set()
    texts = [text] if isinstance(text, str) else list(text.values())
    return {name for t in texts for name in VARIABLE.findall(t) if not name.startswith("system__")}


SYSTEM_PREFIX = "system__"
#: Variables only webhook headers may use; voicelab takes them from the environment.
SECRET_PREFIX = "secret__"


def required_variables(agent: AgentSpec) -> set[str]:
    """What a caller must provide: the variables the agent uses, less the ones the platform fills
    (`system__*`), the ones with a placeholder default and the ones the flow sets itself."""
    return {name for name in agent_variables(agent) - flow_variables(agent)
            if not name.startswith((SYSTEM_PREFIX, SECRET_PREFIX)) and name not in agent.platform.placeholders}


def secret_variables(agent: AgentSpec) -> set[str]:
    """The `secret__*` variables the agent's webhook headers use."""
    return {name for tool in agent.tools if tool.webhook is not None
            for value in tool.webhook.headers.values() for name in variables_in(value)
            if name.startswith(SECRET_PREFIX)}


def flow_variables(agent: AgentSpec) -> set[str]:
    """Variables the local flow sets during a call: from the caller's answers (an intent's `set`)
    and from tool results (a call's `save`)."""
    flow = agent.flow
    names = {key for intent in flow.any for key in intent.set}
    for step in flow.steps.values():
        names |= {key for intent in step.intents for key in intent.set}
        names |= set(step.call.save) if step.call else set()
    return names


def agent_variables(agent: AgentSpec) -> set[str]:
    """Every dynamic variable the agent's texts use."""
    names = variables_in(agent.first_message) | variables_in(agent.prompt) | variables_in(agent.context)
    flow = agent.flow
    names |= variables_in(flow.reprompt) | variables_in(flow.silence.say) | variables_in(flow.silence.goodbye)
    for step in flow.steps.values():
        names |= variables_in(step.say) | variables_in(step.reprompt)
        for value in (step.call.args.values() if step.call else ()):
            names |= variables_in(value)
    for tool in agent.tools:
        if tool.webhook is not None:
            names |= variables_in(tool.webhook.url)
            for value in tool.webhook.headers.values():
                names |= variables_in(value)
    return names


# --------------------------------------------------------------------------- YAML + pydantic


#: Most values a YAML file may expand to through anchors and aliases (a "billion laughs" file
#: expands to gigabytes from a few lines; a real persona file has a few hundred values).
MAX_YAML_VALUES = 100_000


class _YamlProblem(ValueError):
    """A YAML file that parses but must be refused; the message says why, the mark says where."""

    def __init__(self, problem: str, line: int | None = None) -> None:
        super().__init__(problem)
        self.line = line


class _StrictLoader(yaml.SafeLoader):
    """Safe YAML that refuses duplicate keys (YAML itself lets the last one silently win)."""


def _mapping_without_duplicates(loader: _StrictLoader, node: yaml.MappingNode) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # `<<: *defaults`: merged keys may be overridden, that is what merging is for
        key = loader.construct_object(key_node)
        try:
            if key in seen:
                raise _YamlProblem(f"duplicate key {key!r} (first at line {seen[key]}; YAML would keep only the "
                                   "last)", key_node.start_mark.line + 1)
            seen[key] = key_node.start_mark.line + 1
        except TypeError:  # an unhashable key: the constructor below explains it
            continue
    return loader.construct_mapping(node)  # merges `<<`, refuses unhashable keys


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def _expanded_values(node: yaml.Node, sizes: dict[int, int], open_nodes: set[int]) -> int:
    """How many values `node` stands for once its aliases are expanded (each alias counted in full)."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in open_nodes:
        raise _YamlProblem("an alias refers to a node that contains it (a recursive structure)",
                           node.start_mark.line + 1)
    open_nodes.add(key)
    if isinstance(node, yaml.SequenceNode):
        size = 1 + sum(_expanded_values(child, sizes, open_nodes) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        size = 1 + sum(_expanded_values(k, sizes, open_nodes) + _expanded_values(v, sizes, open_nodes)
                       for k, v in node.value)
    else:
        size = 1
    open_nodes.discard(key)
    if size > MAX_YAML_VALUES:
        raise _YamlProblem(f"anchors and aliases expand to more than {MAX_YAML_VALUES:,} values",
                           node.start_mark.line + 1)
    sizes[key] = size
    return size


def parse_yaml(text: str) -> Any:
    """Parse one YAML document: safe types only, no duplicate keys, bounded alias expansion."""
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_values(node, {}, set())
        return loader.construct_document(node)
    finally:
        loader.dispose()


def read_text(path: Path) -> str:
    """A file's text, or DatasetError naming the file (and the byte, if it is not UTF-8)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"cannot be read ({exc.strerror})", file=str(path)) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise DatasetError(f"is not UTF-8 text: byte 0x{data[exc.start]:02x} at offset {exc.start} (line {line})",
                           file=str(path), fix="save the file as UTF-8") from None


def _read_yaml(path: Path) -> Any:
    text = read_text(path)
    try:
        return parse_yaml(text)
    except _YamlProblem as exc:
        where = f" at line {exc.line}" if exc.line else ""
        raise DatasetError(f"is refused{where}: {exc}", file=str(path)) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise DatasetError(
            f"is not valid YAML{where}: {problem}", file=str(path), fix="check indentation and quoting"
        ) from None
    except RecursionError:
        raise DatasetError("is nested too deeply to read", file=str(path)) from None


def _loc(loc: Iterable[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _validation_error(exc: ValidationError, *, file: Path, persona: str | None = None,
                      agent: str | None = None) -> DatasetError:
    """Turn pydantic's report into one error naming the first bad field and how to fix it."""
    err = exc.errors()[0]
    field = _loc(err["loc"])
    kind = err["type"]
    if kind == "extra_forbidden":
        problem, fix = "unknown key", "remove it or check its spelling against docs/formats.md"
    elif kind == "missing":
        problem, fix = "required field is missing", "add it"
    else:
        problem, fix = err["msg"].removeprefix("Value error, "), None
    more = len(exc.errors()) - 1
    if more:
        problem += f" (and {more} more problem{'s' if more > 1 else ''})"
    return DatasetError(problem, file=str(file), persona=persona, agent=agent, field=field, fix=fix)


def _build(model: type[BaseModel], raw: Any, **where: Any) -> Any:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise _validation_error(exc, **where) from None


# --------------------------------------------------------------------------- agents


def load_agents(folder: str | Path = DEFAULT_AGENTS) -> dict[str, AgentSpec]:
    """Load every `*.yaml` agent spec in `folder`, keyed by id."""
    return _load_agents(folder)[0]


def _load_agents(folder: str | Path) -> tuple[dict[str, AgentSpec], dict[str, Path]]:
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError("agents folder not found", file=str(folder),
                           fix="pass --agents with a folder of agent YAML files")
    agents: dict[str, AgentSpec] = {}
    sources: dict[str, Path] = {}
    for path in sorted(folder.glob("*.y*ml")):
        agent = load_agent_file(path)
        if agent.id in agents:
            raise DatasetError(f"duplicate agent id, also defined in {sources[agent.id]}", file=str(path),
                               agent=agent.id, field="id", fix="give each agent a unique id")
        agents[agent.id], sources[agent.id] = agent, path
    if not agents:
        raise DatasetError("no agent files (*.yaml) found", file=str(folder))
    return agents, sources


def load_agent_file(path: Path) -> AgentSpec:
    """One agent spec file, validated as in a folder of them."""
    raw = _read_yaml(path)
    if not isinstance(raw, dict):
        raise DatasetError("an agent file must be a YAML mapping (id, name, first_message, ...)", file=str(path))
    agent_id = raw.get("id") if isinstance(raw.get("id"), str) else None
    return validate_agent(_build(AgentSpec, raw, file=path, agent=agent_id), path)


def validate_agent(agent: AgentSpec, path: str | Path) -> AgentSpec:
    """The checks an agent file gets when it is loaded, for a spec made in code too (a mutant, an
    experiment's variant): DatasetError naming `path`, the agent, the field and the fix."""
    path = Path(path)
    _check_flow(agent, path)
    _check_placeholders(agent, path)
    problem = unset_variable_problem(agent, path)
    if problem is not None:
        raise problem
    return agent


def _check_flow(agent: AgentSpec, path: Path) -> None:
    flow = agent.flow
    if flow.start not in flow.steps:
        raise DatasetError(f"start step '{flow.start}' is not one of the steps", file=str(path),
                           agent=agent.id, field="flow.start")
    intents = [(f"flow.any[{i}]", it) for i, it in enumerate(flow.any)]
    for name, step in flow.steps.items():
        intents += [(f"flow.steps.{name}.intents[{i}]", it) for i, it in enumerate(step.intents)]
        if step.on_no_match and step.on_no_match not in flow.steps:
            raise DatasetError(f"on_no_match names unknown step '{step.on_no_match}'", file=str(path),
                               agent=agent.id, field=f"flow.steps.{name}.on_no_match")
        if step.call is not None:
            _check_step_call(agent, path, name, step)
    for field, intent in intents:
        if intent.goto is None and not intent.repeat:
            raise DatasetError("an intent needs `goto: <step>` or `repeat: true`", file=str(path),
                               agent=agent.id, field=field)
        if intent.goto is not None and intent.goto not in flow.steps:
            raise DatasetError(f"goto names unknown step '{intent.goto}' (steps: {', '.join(flow.steps)})",
                               file=str(path), agent=agent.id, field=f"{field}.goto")
    # the flow as a graph: every step reachable from start, and none a dead end
    everywhere = [i.goto for i in flow.any if i.goto]

    def exits(step: FlowStep) -> list[str]:
        called = ([t for t in (step.call.on_success, step.call.on_error) if t]
                  + [b.goto for b in step.call.branches]) if step.call else []
        return ([i.goto for i in step.intents if i.goto] + everywhere + called
                + ([step.on_no_match] if step.on_no_match else []))

    reached, todo = {flow.start}, [flow.start]
    while todo:
        for target in exits(flow.steps[todo.pop()]):
            if target not in reached:
                reached.add(target)
                todo.append(target)
    for name, step in flow.steps.items():
        if name not in reached:
            raise DatasetError(f"step '{name}' is never reached from start step '{flow.start}'", file=str(path),
                               agent=agent.id, field=f"flow.steps.{name}",
                               fix="add an intent or on_no_match that goes to it, or remove it")
        transfers = step.call is not None and step.call.tool == "transfer_to_number"  # ends the call
        if not step.end_call and not transfers and not exits(step):
            raise DatasetError(f"step '{name}' has no way out: the call would stay in it until it times out",
                               file=str(path), agent=agent.id, field=f"flow.steps.{name}",
                               fix="give it an intent with goto, an on_no_match, end_call: true, or a call of "
                                   "transfer_to_number")


#: System tools a local flow step can call (end_call is a step's `end_call: true`).
STEP_SYSTEM_TOOLS = ("transfer_to_number", "language_detection", "skip_turn")


def _check_step_call(agent: AgentSpec, path: Path, name: str, step: FlowStep) -> None:
    """A step's tool call names a declared tool the local backend can run, with the arguments it
    takes, and moves on to steps that exist."""
    assert step.call is not None
    call, field = step.call, f"flow.steps.{name}.call"
    tool = agent.tool(call.tool)
    if tool is None:
        known = ", ".join(t.name for t in agent.tools) or "none declared"
        raise DatasetError(f"calls '{call.tool}', which is not a tool of this agent (tools: {known})",
                           file=str(path), agent=agent.id, field=f"{field}.tool", fix="declare it under tools:")
    if tool.type == "system" and tool.name not in STEP_SYSTEM_TOOLS:
        fix = "end the step with `end_call: true`" if tool.name == "end_call" else \
            f"call one of {', '.join(STEP_SYSTEM_TOOLS)}, or a client or webhook tool"
        raise DatasetError(f"the local backend's flows do not call the system tool '{tool.name}'", file=str(path),
                           agent=agent.id, field=f"{field}.tool", fix=fix)
    if tool.name == "language_detection":
        language = call.args.get("language")
        if language not in agent_languages(agent):
            raise DatasetError(f"language_detection needs `language:` set to one of the agent's languages "
                               f"({', '.join(sorted(agent_languages(agent)))})", file=str(path), agent=agent.id,
                               field=f"{field}.args.language")
    elif tool.parameters:
        unknown = sorted(set(call.args) - set(tool.parameters))
        if unknown:
            raise DatasetError(f"'{tool.name}' has no parameter '{unknown[0]}' (parameters: "
                               f"{', '.join(tool.parameters)})", file=str(path), agent=agent.id,
                               field=f"{field}.args.{unknown[0]}")
    missing = [key for key in tool.required if key not in call.args]
    if missing:
        raise DatasetError(f"'{tool.name}' requires '{missing[0]}' but the step does not pass it", file=str(path),
                           agent=agent.id, field=f"{field}.args", fix=f"add `{missing[0]}: ...` under args")
    targets = [("on_success", call.on_success), ("on_error", call.on_error)]
    targets += [(f"branches[{i}].goto", b.goto) for i, b in enumerate(call.branches)]
    for key, target in targets:
        if target is not None and target not in agent.flow.steps:
            raise DatasetError(f"{key.split('.')[0]} names unknown step '{target}'", file=str(path), agent=agent.id,
                               field=f"{field}.{key}")


def agent_texts(agent: AgentSpec) -> list[tuple[str, str]]:
    """Every text of the agent that may hold {{variables}}, with its field path."""
    out: list[tuple[str, str]] = []

    def add(field: str, text: LocalText | None) -> None:
        if isinstance(text, str):
            out.append((field, text))
        elif isinstance(text, dict):
            out.extend((f"{field}.{lang}", t) for lang, t in text.items())

    add("first_message", agent.first_message)
    add("prompt", agent.prompt)
    add("context", agent.context)
    add("flow.reprompt", agent.flow.reprompt)
    add("flow.silence.say", agent.flow.silence.say)
    add("flow.silence.goodbye", agent.flow.silence.goodbye)
    for name, step in agent.flow.steps.items():
        add(f"flow.steps.{name}.say", step.say)
        add(f"flow.steps.{name}.reprompt", step.reprompt)
        if step.call is not None:
            for key, value in step.call.args.items():
                add(f"flow.steps.{name}.call.args.{key}", value)
    for index, tool in enumerate(agent.tools):
        if tool.webhook is not None:
            add(f"tools[{index}].webhook.url", tool.webhook.url)
            for key, value in tool.webhook.headers.items():
                add(f"tools[{index}].webhook.headers.{key}", value)
    return out


def _check_placeholders(agent: AgentSpec, path: Path) -> None:
    """Every `{{` opens a well-formed {{name}}: an unclosed one would reach the caller as is."""
    for field, text in agent_texts(agent):
        for opening in re.finditer(r"\{\{", text):
            if not VARIABLE.match(text, opening.start()):
                snippet = text[opening.start():opening.start() + 24].split("\n")[0]
                raise DatasetError(f"malformed placeholder '{snippet}': write {{{{name}}}} with letters, digits "
                                   "and underscores, closed by }}", file=str(path), agent=agent.id, field=field)


def _set_on_entry(agent: AgentSpec, tracked: set[str]) -> dict[str, set[str]]:
    """For every step reachable from start: which of the `tracked` variables are set whenever the
    call enters it, on every path there. An intent's `set` counts on the way to its goto; a call's
    `save` on its success and branches, not on its error. (A must-analysis: a meet of sets over the
    flow's graph, shrinking to a fixed point.)"""
    flow = agent.flow

    def exits(step: FlowStep) -> list[tuple[str, set[str]]]:
        out = [(i.goto, set(i.set)) for i in [*step.intents, *flow.any] if i.goto]
        if step.on_no_match:
            out.append((step.on_no_match, set()))
        if step.call is not None:
            saved = set(step.call.save)
            out += [(t, saved) for t in (step.call.on_success, *(b.goto for b in step.call.branches)) if t]
            if step.call.on_error:
                out.append((step.call.on_error, set()))
        return out

    entered: dict[str, set[str]] = {flow.start: set()}
    todo = [flow.start]
    while todo:
        name = todo.pop()
        for target, sets in exits(flow.steps[name]):
            arriving = (entered[name] | sets) & tracked
            known = entered.get(target)
            if known is None or not known <= arriving:
                entered[target] = arriving if known is None else known & arriving
                todo.append(target)
    return entered


def unset_variable_problem(agent: AgentSpec, path: str | Path = "") -> DatasetError | None:
    """The first text the agent can say (or send to a tool) before its flow has set a variable the
    text uses, as the DatasetError loading refuses the agent with; None when there is none.

    A variable the flow sets (an intent's `set`, a call's `save`) has no value before that point:
    the first message, the prompt, the context and the silence texts come before every step, a
    step's texts after the paths that lead to it. Used there, it would be said as the literal
    '{{name}}' (no persona sets it: it is the flow's), so it is an error of the agent file, refused
    at load, like a step that names an unknown step. A `platform.placeholders` default counts as set."""
    flow = agent.flow
    tracked = flow_variables(agent) - set(agent.platform.placeholders)
    if not tracked:
        return None
    entered = _set_on_entry(agent, tracked)
    uses: list[tuple[str, LocalText | None, set[str]]] = [
        ("first_message", agent.first_message, set()), ("prompt", agent.prompt, set()),
        ("context", agent.context, set()), ("flow.silence.say", flow.silence.say, set()),
        ("flow.silence.goodbye", flow.silence.goodbye, set())]
    for name, step in flow.steps.items():
        here = entered.get(name, tracked)  # an unreached step is refused elsewhere
        uses += [(f"flow.steps.{name}.say", step.say, here), (f"flow.steps.{name}.reprompt", step.reprompt, here)]
        if step.reprompt is None:
            uses.append(("flow.reprompt", flow.reprompt, here))
        for index, intent in enumerate(step.intents):
            uses += [(f"flow.steps.{name}.intents[{index}].set.{key}", value, here)
                     for key, value in intent.set.items()]
        for index, intent in enumerate(flow.any):
            uses += [(f"flow.any[{index}].set.{key}", value, here) for key, value in intent.set.items()]
        if step.call is not None:
            uses += [(f"flow.steps.{name}.call.args.{key}", value, here) for key, value in step.call.args.items()]
            tool = agent.tool(step.call.tool)
            if tool is not None and tool.webhook is not None:
                where = f"tools[{agent.tools.index(tool)}].webhook"
                uses.append((f"{where}.url", tool.webhook.url, here))
                uses += [(f"{where}.headers.{key}", value, here) for key, value in tool.webhook.headers.items()]
    for field, text, available in uses:
        texts = {field: text} if not isinstance(text, dict) else {f"{field}.{lang}": t for lang, t in text.items()}
        for where, one in texts.items():
            early = sorted((variables_in(one) & tracked) - available)
            if early:
                name = early[0]
                setter = _setter(agent, name)
                return DatasetError(
                    f"uses {{{{{name}}}}} before the flow sets it ({setter}): the call would say or send the "
                    f"literal '{{{{{name}}}}}'", file=str(path), agent=agent.id, field=where,
                    fix=f"use {{{{{name}}}}} only in steps the flow reaches after {setter}, or give it a default "
                        f"under platform.placeholders")
    return None


def _setter(agent: AgentSpec, name: str) -> str:
    """Where the flow sets variable `name`, for a message: "the save of step 'book'"."""
    for index, intent in enumerate(agent.flow.any):
        if name in intent.set:
            return f"the set of flow.any[{index}]"
    for step_name, step in agent.flow.steps.items():
        if step.call is not None and name in step.call.save:
            return f"the save of step '{step_name}'"
        if any(name in intent.set for intent in step.intents):
            return f"an intent's set in step '{step_name}'"
    return "a save or set"


def agent_languages(agent: AgentSpec) -> set[str]:
    """The languages the agent has words for: its own, and every variant of its first message."""
    first = agent.first_message
    return {agent.language} | (set(first) if isinstance(first, dict) else set())


# --------------------------------------------------------------------------- personas


@dataclass
class Dataset:
    """Personas and agents that were validated together (ids unique, references resolved)."""

    personas: dict[str, Persona]
    agents: dict[str, AgentSpec]
    persona_files: dict[str, Path]

    def persona(self, persona_id: str) -> Persona:
        if persona_id not in self.personas:
            known = ", ".join(sorted(self.personas)) or "none"
            raise DatasetError(f"no persona with id '{persona_id}' (known: {known})",
                               fix="run `voicelab personas` to list them")
        return self.personas[persona_id]

    def agent_for(self, persona: Persona) -> AgentSpec:
        return self.agents[persona.agent]

    def request(self, persona_id: str, *, agent_id: str | None = None, max_duration_s: float = DEFAULT_TIME_LIMIT_S,
                **fields: object) -> CallRequest:
        """The one way a CallRequest is built (CLI, batches, console, tests): persona, its agent
        (or `agent_id`), and the time limit by `time_limit`. `fields`: backend, caller, mode,
        run_id, call_id, audio_dir."""
        persona = self.persona(persona_id)
        if agent_id is not None and agent_id not in self.agents:
            raise DatasetError(f"no agent with id '{agent_id}' (known: {', '.join(sorted(self.agents))})",
                               fix="run `voicelab personas` to list them")
        agent = self.agents[agent_id] if agent_id is not None else self.agent_for(persona)
        return CallRequest(persona=persona, agent=agent, max_duration_s=time_limit(persona, max_duration_s),
                           **fields)


def time_limit(persona: Persona, default_s: float = DEFAULT_TIME_LIMIT_S) -> float:
    """The call's hard time limit: the persona's `caller.timeout_s`, else the run's default; never
    shorter than the persona's own `expect.max_duration_s`, so a call its expectations allow is
    never cut off (and failed as a timeout) by a run-wide default."""
    limit = persona.caller.timeout_s or default_s
    return max(limit, persona.expect.max_duration_s or 0.0)


def persona_files(path: str | Path) -> list[Path]:
    path = Path(path)
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.y*ml") if p.is_file())
        if not files:
            raise DatasetError("no persona files (*.yaml) found in this folder", file=str(path))
        return files
    raise DatasetError("persona file or folder not found", file=str(path),
                       fix="pass --personas with a YAML file or a folder of them")


def load_dataset(personas: str | Path = DEFAULT_PERSONAS, agents: str | Path = DEFAULT_AGENTS) -> Dataset:
    """Load and cross-check personas against the agents they call."""
    agent_specs, agent_files = _load_agents(agents)
    found: dict[str, Persona] = {}
    files: dict[str, Path] = {}
    for path in persona_files(personas):
        raw = _read_yaml(path)
        if not isinstance(raw, dict) or "personas" not in raw:
            raise DatasetError("a persona file needs a top-level `personas:` list", file=str(path),
                               field="personas")
        extra = sorted(set(raw) - {"personas"})
        if extra:
            raise DatasetError("unknown key at the top level", file=str(path), field=extra[0],
                               fix="only `personas:` is allowed there")
        items = raw["personas"]
        if not isinstance(items, list):
            raise DatasetError("must be a list of personas", file=str(path), field="personas")
        for index, item in enumerate(items):
            pid = item.get("id") if isinstance(item, dict) and isinstance(item.get("id"), str) else None
            if not isinstance(item, dict):
                raise DatasetError("each persona must be a mapping", file=str(path),
                                   field=f"personas[{index}]")
            persona = _build(Persona, item, file=path, persona=pid or f"#{index + 1}")
            persona = _resolve_noise(persona, path)
            _cross_check(persona, path, agent_specs, found, files)
            found[persona.id], files[persona.id] = persona, path
    _check_variables(found, files, agent_specs, agent_files)
    return Dataset(personas=found, agents=agent_specs, persona_files=files)


def _resolve_noise(persona: Persona, path: Path) -> Persona:
    """A noise WAV named in `caller.audio.noise` is found relative to the persona file (and
    stored as an absolute path, so a run resumes from anywhere); a missing one is named now."""
    audio = persona.caller.audio
    if audio is None or audio.noise is None or audio.noise in NOISES:
        return persona
    wav = (path.parent / audio.noise).resolve()
    if not wav.is_file():
        raise DatasetError(f"noise file {audio.noise} not found (relative to the persona file)", file=str(path),
                           persona=persona.id, field="caller.audio.noise",
                           fix=f"use one of {', '.join(NOISES)}, or the path of a WAV file")
    caller = persona.caller.model_copy(update={"audio": audio.model_copy(update={"noise": str(wav)})})
    return persona.model_copy(update={"caller": caller})


def _cross_check(persona: Persona, path: Path, agents: dict[str, AgentSpec],
                 found: dict[str, Persona], files: dict[str, Path]) -> None:
    if persona.id in found:
        raise DatasetError(f"duplicate persona id, also defined in {files[persona.id]}", file=str(path),
                           persona=persona.id, field="id", fix="give each persona a unique id")
    if persona.agent not in agents:
        raise DatasetError(f"unknown agent id '{persona.agent}' (known: {', '.join(sorted(agents))})",
                           file=str(path), persona=persona.id, field="agent",
                           fix="use the id of a file in the agents folder")
    agent = agents[persona.agent]
    _check_persona_tools(persona, path, agent)
    if persona.start_language is not None and persona.start_language not in agent_languages(agent):
        raise DatasetError(f"start_language '{persona.start_language}' is not one agent '{agent.id}' speaks "
                           f"({', '.join(sorted(agent_languages(agent)))})", file=str(path), persona=persona.id,
                           field="start_language")
    if persona.language not in agent_languages(agent):
        raise DatasetError(f"language '{persona.language}' is not one agent '{agent.id}' speaks "
                           f"({', '.join(sorted(agent_languages(agent)))})", file=str(path), persona=persona.id,
                           field="language", fix=f"give the agent a '{persona.language}' first_message variant, "
                                                 "or use one of its languages")
    _check_call_language(persona, path, agent)


def _check_call_language(persona: Persona, path: Path, agent: AgentSpec) -> None:
    """A call starts in the agent's own language unless the `language` override is sent, as on the
    platform (which switches only for an override the agent allows). A persona whose call starts
    in another language would silently get the agent's default: its first message in that
    language would never be said, its words never understood."""
    language = persona.call_language
    if language == agent.language or "language" in agent.overrides:
        return
    field = "start_language" if persona.start_language is not None else "language"
    raise DatasetError(
        f"the call starts in '{language}', but agent '{agent.id}' does not send the `language` override, so "
        f"every call stays in its default '{agent.language}'", file=str(path), persona=persona.id, field=field,
        fix=f"add `language` to the `overrides` of agent '{agent.id}' and allow it on a hosted agent under "
            f"Security > Overrides; or set `start_language: {agent.language}` for a caller who answers an "
            f"'{agent.language}' call")


def _check_persona_tools(persona: Persona, path: Path, agent: AgentSpec) -> None:
    """Mocks and expected calls name tools the agent has, with arguments the tool takes."""
    mockable = {t.name: t for t in agent.tools if t.type in ("client", "webhook")}
    for name in persona.tools:
        if name not in mockable:
            what = "a system tool, run by the platform itself" if name in SYSTEM_TOOLS else \
                f"not a tool of agent '{agent.id}'"
            raise DatasetError(f"mocks '{name}', which is {what} (tools it can mock: "
                               f"{', '.join(mockable) or 'none'})", file=str(path),
                               persona=persona.id, field=f"tools.{name}")
    for index, call in enumerate(persona.expect.agent_calls):
        tool = agent.tool(call.tool)
        if tool is None:
            raise DatasetError(f"expects a call of '{call.tool}', which agent '{agent.id}' does not have "
                               f"(tools: {', '.join(t.name for t in agent.tools) or 'none'})", file=str(path),
                               persona=persona.id, field=f"expect.agent_calls[{index}].tool")
        unknown = sorted(set(call.args) - set(tool.parameters))
        if unknown and tool.parameters:
            raise DatasetError(f"'{call.tool}' has no parameter '{unknown[0]}' (parameters: "
                               f"{', '.join(tool.parameters)})", file=str(path), persona=persona.id,
                               field=f"expect.agent_calls[{index}].args.{unknown[0]}")
        for key, value in call.args.items():
            problem = _misfit(tool.parameters[key], value) if key in tool.parameters else None
            if problem:
                raise DatasetError(f"'{call.tool}' {key}: {problem}", file=str(path), persona=persona.id,
                                   field=f"expect.agent_calls[{index}].args.{key}")
    for index, name in enumerate(persona.expect.agent_never_calls):
        if agent.tool(name) is None and name not in SYSTEM_TOOLS:
            raise DatasetError(f"'{name}' is neither a tool of agent '{agent.id}' nor a system tool "
                               f"({', '.join(SYSTEM_TOOLS)})", file=str(path), persona=persona.id,
                               field=f"expect.agent_never_calls[{index}]")


def _misfit(parameter: ToolParameter, value: object) -> str | None:
    """Why an expected argument can never match the parameter (None: it can)."""
    if parameter.enum and str(value).lower() not in {e.lower() for e in parameter.enum}:
        return f"{value!r} is not one of its values ({', '.join(parameter.enum)})"
    if parameter.type in ("number", "integer") and (isinstance(value, bool) or not isinstance(value, int | float)):
        try:
            float(str(value))
        except ValueError:
            return f"{value!r} is not a number"
    if parameter.type == "boolean" and not isinstance(value, bool):
        return f"{value!r} is not true or false"
    return None


def _check_variables(personas: dict[str, Persona], files: dict[str, Path], agents: dict[str, AgentSpec],
                     agent_files: dict[str, Path]) -> None:
    """Every {{variable}} an agent uses is set by each persona that calls it. A name that none of
    its callers sets is the agent file's mistake (a typo there), not every persona's."""
    import difflib

    known = {name for p in personas.values() for name in p.variables}
    for agent_id, agent in agents.items():
        callers = [p for p in personas.values() if p.agent == agent_id]
        for name in sorted(required_variables(agent)):
            lacking = [p for p in callers if name not in p.variables]
            field = next(f for f, text in agent_texts(agent) if name in variables_in(text))
            close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.8)
            # the agent's fault when nobody sets it and it looks like a typo of a name they do set,
            # or when several personas call it and not one sets it
            if name not in known and (close or len(callers) >= 2):
                said = f"none of the {len(callers)} personas that call it sets it" if callers else \
                    "no persona sets it"
                raise DatasetError(
                    f"uses {{{{{name}}}}} but {said}" + (f"; did you mean {{{{{close[0]}}}}}?" if close else ""),
                    file=str(agent_files[agent_id]), agent=agent_id, field=field,
                    fix=f"correct the name, or add `{name}` to the personas' variables "
                        "(or to platform.placeholders with a default)")
            if lacking:
                persona = lacking[0]
                raise DatasetError(
                    f"agent '{agent_id}' uses {{{{{name}}}}} but the persona does not set it",
                    file=str(files[persona.id]), persona=persona.id, field=f"variables.{name}",
                    fix=f"add `{name}: ...` under variables")
