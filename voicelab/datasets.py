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

from .errors import DatasetError
from .models import AgentSpec, CallRequest, LocalText, Persona

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


def required_variables(agent: AgentSpec) -> set[str]:
    """What a caller must provide: the variables the agent uses, less the ones the platform fills
    (`system__*`) and the ones with a placeholder default."""
    return {name for name in agent_variables(agent)
            if not name.startswith(SYSTEM_PREFIX) and name not in agent.platform.placeholders}


def agent_variables(agent: AgentSpec) -> set[str]:
    """Every dynamic variable the agent's texts use."""
    names = variables_in(agent.first_message) | variables_in(agent.prompt) | variables_in(agent.context)
    flow = agent.flow
    names |= variables_in(flow.reprompt) | variables_in(flow.silence.say) | variables_in(flow.silence.goodbye)
    for step in flow.steps.values():
        names |= variables_in(step.say) | variables_in(step.reprompt)
    return names


# --------------------------------------------------------------------------- YAML + pydantic


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DatasetError(f"cannot be read ({exc.strerror})", file=str(path)) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise DatasetError(
            f"is not valid YAML{where}: {problem}", file=str(path), fix="check indentation and quoting"
        ) from None


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
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError("agents folder not found", file=str(folder),
                           fix="pass --agents with a folder of agent YAML files")
    agents: dict[str, AgentSpec] = {}
    sources: dict[str, Path] = {}
    for path in sorted(folder.glob("*.y*ml")):
        raw = _read_yaml(path)
        if not isinstance(raw, dict):
            raise DatasetError("an agent file must be a YAML mapping (id, name, first_message, ...)",
                               file=str(path))
        agent_id = raw.get("id") if isinstance(raw.get("id"), str) else None
        agent = _build(AgentSpec, raw, file=path, agent=agent_id)
        _check_flow(agent, path)
        if agent.id in agents:
            raise DatasetError(f"duplicate agent id, also defined in {sources[agent.id]}", file=str(path),
                               agent=agent.id, field="id", fix="give each agent a unique id")
        agents[agent.id], sources[agent.id] = agent, path
    if not agents:
        raise DatasetError("no agent files (*.yaml) found", file=str(folder))
    return agents


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
    for field, intent in intents:
        if intent.goto is None and not intent.repeat:
            raise DatasetError("an intent needs `goto: <step>` or `repeat: true`", file=str(path),
                               agent=agent.id, field=field)
        if intent.goto is not None and intent.goto not in flow.steps:
            raise DatasetError(f"goto names unknown step '{intent.goto}'", file=str(path),
                               agent=agent.id, field=f"{field}.goto")


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
    agent_specs = load_agents(agents)
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
            _cross_check(persona, path, agent_specs, found, files)
            found[persona.id], files[persona.id] = persona, path
    return Dataset(personas=found, agents=agent_specs, persona_files=files)


def _cross_check(persona: Persona, path: Path, agents: dict[str, AgentSpec],
                 found: dict[str, Persona], files: dict[str, Path]) -> None:
    if persona.id in found:
        raise DatasetError(f"duplicate persona id, also defined in {files[persona.id]}", file=str(path),
                           persona=persona.id, field="id", fix="give each persona a unique id")
    if persona.agent not in agents:
        raise DatasetError(f"unknown agent id '{persona.agent}' (known: {', '.join(sorted(agents))})",
                           file=str(path), persona=persona.id, field="agent",
                           fix="use the id of a file in the agents folder")
    missing = sorted(required_variables(agents[persona.agent]) - set(persona.variables))
    if missing:
        raise DatasetError(
            f"agent '{persona.agent}' uses {{{{{missing[0]}}}}} but the persona does not set it"
            + (f" (also missing: {', '.join(missing[1:])})" if missing[1:] else ""),
            file=str(path), persona=persona.id, field=f"variables.{missing[0]}",
            fix=f"add `{missing[0]}: ...` under variables",
        )
