"""Preflight: before a run places anything, read the agent's settings as the platform has them
(`GET /v1/convai/agents/{id}`) and tell what would make the planned calls meaningless.

    overrides   an override the agent spec sends that the agent does not allow
    variables   a `{{variable}}` of the agent's prompt or first message that a persona does not give
    tools       a client tool the agent declares that no persona (nor the spec's default mock) answers
    expected    a tool in `expect.agent_calls` / `agent_never_calls` the agent does not have
    language    a language the personas need that the agent lacks (its language and additional
                languages), or a language override it refuses
    audio       voice mode: audio formats other than the 16 kHz PCM the SDK sends and plays, a
                text-only agent; client events the transcripts need

Everything but `fetch_agent` (the one SDK call) and `run_preflight` (which starts the local
backend when asked and connects as a call would) is a pure function from the GET body and the
dataset to `Finding`s, so each rule is tested on its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from voicelab.spec.datasets import SECRET_PREFIX, SYSTEM_PREFIX, VARIABLE, flow_variables

if TYPE_CHECKING:
    from elevenlabs import ElevenLabs

    from voicelab.spec.datasets import Dataset
    from voicelab.spec.models import AgentSpec, Persona

Verdict = Literal["ok", "warning", "blocking"]
#: The order findings are listed in (and the first blocker named from).
CHECKS = ("overrides", "variables", "tools", "expected", "language", "audio")
#: What the SDK sends and plays in voice mode, whatever the agent announces (2.78 ignores the formats).
SDK_AUDIO_FORMAT = "pcm_16000"


@dataclass(frozen=True)
class Finding:
    """One row of the preflight table."""

    #: The agent spec the row is about.
    agent: str
    #: One of CHECKS.
    check: str
    #: The setting, as a person reads it: "override agent.language", "variable {{first_name}}".
    setting: str
    #: What the planned run needs of it.
    needs: str
    #: What the agent has.
    has: str
    verdict: Verdict
    #: What to change, for warnings and blockers.
    fix: str | None = None
    #: The override field, variable, tool, language or audio setting the row is about.
    subject: str = ""
    #: The personas the row concerns (those missing something, for warnings and blockers).
    personas: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "personas": list(self.personas)}


# --------------------------------------------------------------------------- the GET body


def _at(body: Any, *path: str) -> Any:
    node = body
    for key in path:
        node = node.get(key) if isinstance(node, Mapping) else None
    return node


#: Override fields by the leaf name the platform's refusal uses, and where their switch is in
#: platform_settings.overrides.conversation_config_override.
OVERRIDE_SWITCHES = {
    "prompt": ("agent", "prompt", "prompt"),
    "llm": ("agent", "prompt", "llm"),
    "first_message": ("agent", "first_message"),
    "language": ("agent", "language"),
    "voice_id": ("tts", "voice_id"),
    "text_only": ("conversation", "text_only"),
}
#: The dotted path of each override in conversation_config_override (for the table).
OVERRIDE_PATHS = {"prompt": "agent.prompt.prompt", "llm": "agent.prompt.llm", "first_message": "agent.first_message",
                  "language": "agent.language", "voice_id": "tts.voice_id", "text_only": "conversation.text_only"}


@dataclass(frozen=True)
class AgentSettings:
    """The parts of a GET agent body a run depends on."""

    agent_id: str
    language: str
    #: The agent's additional languages (conversation_config.language_presets).
    presets: frozenset[str]
    #: The override fields Security > Overrides allows (leaf names, as OVERRIDE_SWITCHES).
    allowed_overrides: frozenset[str]
    #: The texts that may use dynamic variables: {where: text}, the prompt and the first
    #: message(s) ("first message" and "first message (de)" for a language preset's).
    texts: dict[str, str]
    placeholders: dict[str, str]
    #: Tools by name -> type (client, webhook, system, ...), from prompt.tools, built_in_tools and
    #: tool_ids the agent spec names by `platform_id`.
    tools: dict[str, str]
    #: tool_ids the body does not name (a standalone tool GET agent gives by id only).
    unnamed_tool_ids: tuple[str, ...]
    text_only: bool
    input_format: str | None
    output_format: str | None
    #: None when the body does not say.
    client_events: tuple[str, ...] | None


def agent_settings(body: Mapping[str, Any], spec: AgentSpec | None = None) -> AgentSettings:
    """Read a GET agent body (a dict, as the SDK's model dumps it). `spec` names tool_ids that
    match one of its tools' `platform_id`."""
    config = _at(body, "conversation_config") or {}
    agent = _at(config, "agent") or {}
    prompt = _at(agent, "prompt") or {}
    presets = _at(config, "language_presets") or {}
    switches = _at(body, "platform_settings", "overrides", "conversation_config_override") or {}
    allowed = frozenset(name for name, path in OVERRIDE_SWITCHES.items() if _at(switches, *path) is True)
    texts: dict[str, str] = {}
    if isinstance(_at(prompt, "prompt"), str):
        texts["prompt"] = prompt["prompt"]
    if isinstance(_at(agent, "first_message"), str):
        texts["first message"] = agent["first_message"]
    for language, preset in presets.items() if isinstance(presets, Mapping) else ():
        for text in (_at(preset, "overrides", "agent", "first_message"),
                     _at(preset, "first_message_translation", "text")):
            if isinstance(text, str) and text:
                texts[f"first message ({language})"] = text
        if isinstance(p := _at(preset, "overrides", "agent", "prompt", "prompt"), str) and p:
            texts[f"prompt ({language})"] = p
    tools: dict[str, str] = {}
    for item in _at(prompt, "tools") or []:
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
            continue
        kind = str(item.get("type") or "client")
        name = _at(item, "params", "system_tool_type") if kind == "system" else None
        tools[name if isinstance(name, str) else item["name"]] = kind
    for name, config_of in (_at(prompt, "built_in_tools") or {}).items():
        if config_of:
            tools.setdefault(name, "system")
    by_platform_id = {t.platform_id: t for t in (spec.tools if spec else []) if t.platform_id}
    unnamed = []
    for tool_id in _at(prompt, "tool_ids") or []:
        if tool_id in by_platform_id:
            tools.setdefault(by_platform_id[tool_id].name, by_platform_id[tool_id].type)
        elif tool_id not in tools:
            unnamed.append(str(tool_id))
    placeholders = _at(agent, "dynamic_variables", "dynamic_variable_placeholders") or {}
    events = _at(config, "conversation", "client_events")
    return AgentSettings(
        agent_id=str(body.get("agent_id") or ""), language=str(_at(agent, "language") or "en"),
        presets=frozenset(presets) if isinstance(presets, Mapping) else frozenset(),
        allowed_overrides=allowed, texts=texts,
        placeholders={str(k): str(v) for k, v in placeholders.items()} if isinstance(placeholders, Mapping) else {},
        tools=tools, unnamed_tool_ids=tuple(unnamed), text_only=bool(_at(config, "conversation", "text_only")),
        input_format=_at(config, "asr", "user_input_audio_format"),
        output_format=_at(config, "tts", "agent_output_audio_format"),
        client_events=tuple(events) if isinstance(events, list) else None)


# --------------------------------------------------------------------------- the rules (pure)


def _names(personas: Iterable[str], most: int = 4) -> str:
    names = sorted(personas)
    shown = ", ".join(names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def sent_overrides(spec: AgentSpec, mode: str) -> list[str]:
    """The override fields every call of the spec sends: what `overrides:` lists, and text_only,
    which the SDK adds to a call without audio (text mode)."""
    sent = [name for name in ("prompt", "first_message", "language") if name in spec.overrides]
    return sent + (["text_only"] if mode == "text" else [])


def override_findings(agent: str, sent: Sequence[str], allowed: AbstractSet[str], *,
                      backend: str = "elevenlabs") -> list[Finding]:
    """(a) Each override sent against Security > Overrides. A refused one ends every call at the
    start (close 1008), so it blocks; text_only, which the SDK sends by itself, blocks on the
    local backend (it enforces the switch) and is a warning on the hosted platform, where
    whether that switch is needed for it is unconfirmed."""
    out = []
    for name in sent:
        path = OVERRIDE_PATHS[name]
        if name in allowed:
            out.append(Finding(agent, "overrides", f"override {path}", "allowed", "allowed", "ok", subject=name))
            continue
        implicit = name == "text_only"
        needs = ("allowed (the SDK sends text_only on every text-mode call)" if implicit else
                 f"allowed (the agent file lists '{name}' under overrides)")
        fix = (f"allow '{name}' under Security > Overrides for this agent, or run --mode voice" if implicit else
               f"allow '{name}' under Security > Overrides for this agent, or remove it from `overrides` in "
               "the agent file")
        verdict: Verdict = "warning" if implicit and backend != "local" else "blocking"
        out.append(Finding(agent, "overrides", f"override {path}", needs, "not allowed", verdict, fix, name))
    return out


def variables_used(texts: Mapping[str, str], *, skip: AbstractSet[str] = frozenset()) -> dict[str, list[str]]:
    """{variable: [where it is used]} for the `{{name}}`s of the texts, less system__ and secret__
    ones and `skip` (variables the local flow sets itself)."""
    used: dict[str, list[str]] = {}
    for where, text in texts.items():
        for name in VARIABLE.findall(text):
            if name.startswith((SYSTEM_PREFIX, SECRET_PREFIX)) or name in skip:
                continue
            if where not in used.setdefault(name, []):
                used[name].append(where)
    return used


def variable_findings(agent: str, used: Mapping[str, Sequence[str]], given: Mapping[str, AbstractSet[str]],
                      placeholders: Mapping[str, str]) -> list[Finding]:
    """(b) One row per variable used: every persona gives it (ok); some do not, and the agent
    has a placeholder, so they talk to a stand-in value (warning); or the platform refuses their
    conversations for the missing variable (blocking)."""
    out = []
    for name in sorted(used):
        where = ", ".join(used[name])
        missing = tuple(sorted(p for p, names in given.items() if name not in names))
        placeholder = placeholders.get(name)
        has = f"used in {where}" + (f"; placeholder {placeholder!r}" if placeholder is not None else "; no placeholder")
        setting = f"variable {{{{{name}}}}}"
        if not missing:
            out.append(Finding(agent, "variables", setting, f"given by all {len(given)} personas", has, "ok",
                               subject=name))
            continue
        needs = f"a value from every persona; {len(missing)} give none ({_names(missing)})"
        fix = f"set `{name}` under `variables` in persona {_names(missing)}"
        if placeholder is not None:
            out.append(Finding(agent, "variables", setting, needs, has, "warning",
                               fix + f" (else the calls use the placeholder {placeholder!r})", name, missing))
        else:
            out.append(Finding(agent, "variables", setting, needs, has, "blocking",
                               fix + ", or give the variable a placeholder on the agent", name, missing))
    return out


def answered_tools(spec: AgentSpec, persona: Persona) -> set[str]:
    """The client tools voicelab answers in this persona's calls: the spec's client tools the
    persona mocks or the spec gives a default mock (any other gets "not registered")."""
    return {t.name for t in spec.tools
            if t.type == "client" and (t.name in persona.tools or t.default_mock is not None)}


def client_tool_findings(agent: str, client_tools: Iterable[str],
                         answered: Mapping[str, AbstractSet[str]]) -> list[Finding]:
    """(c) One row per client tool the agent declares: answered in every persona's calls (ok), in
    some (warning: the others get "Tool '...' is not registered"), or in none (blocking)."""
    out = []
    for name in sorted(set(client_tools)):
        missing = tuple(sorted(p for p, names in answered.items() if name not in names))
        setting = f"client tool {name}"
        has = "declared (type client)"
        if not missing:
            out.append(Finding(agent, "tools", setting, f"answered in all {len(answered)} personas' calls", has, "ok",
                               subject=name))
            continue
        fix = (f"add `{name}` to the agent file's tools with a default_mock, or mock it under `tools:` in persona "
               f"{_names(missing)}")
        if len(missing) == len(answered):
            out.append(Finding(agent, "tools", setting, "an answer (a persona mock or the agent file's default_mock)",
                               has + "; no persona answers it", "blocking", fix, name, missing))
        else:
            out.append(Finding(agent, "tools", setting, f"an answer in every call; {len(missing)} personas have none "
                               f"({_names(missing)})", has, "warning", fix, name, missing))
    return out


def expected_tool_findings(agent: str, tools: AbstractSet[str], calls: Mapping[str, AbstractSet[str]],
                           never: Mapping[str, AbstractSet[str]] | None = None, *, unnamed: int = 0) -> list[Finding]:
    """(d) One row per tool personas expect: `agent_calls` of a tool the agent lacks can never pass
    (blocking), `agent_never_calls` of one passes without testing anything (warning). When the
    agent has tools GET agent names by id only, a missing one may be among them (warning)."""
    never = never or {}
    out = []
    for name in sorted({t for names in calls.values() for t in names} | {t for names in never.values() for t in names}):
        callers = tuple(sorted(p for p, names in calls.items() if name in names))
        avoiders = tuple(sorted(p for p, names in never.items() if name in names))
        needs = "; ".join(filter(None, (f"called (agent_calls of {_names(callers)})" if callers else "",
                                        f"not called (agent_never_calls of {_names(avoiders)})" if avoiders else "")))
        setting = f"expected tool {name}"
        if name in tools:
            out.append(Finding(agent, "expected", setting, needs, "has it", "ok", subject=name))
            continue
        has = "no such tool" + (f" by name ({unnamed} more by id only)" if unnamed else "")
        if callers:
            verdict: Verdict = "warning" if unnamed else "blocking"
            fix = (f"add the tool '{name}' to the agent, or remove it from `agent_calls` of persona {_names(callers)}"
                   + (" (set platform_id in the agent file so it can be matched by id)" if unnamed else ""))
            out.append(Finding(agent, "expected", setting, needs, has, verdict, fix, name, callers))
        else:
            out.append(Finding(agent, "expected", setting, needs, has, "warning",
                               f"agent_never_calls of '{name}' passes without testing anything: add the tool to "
                               f"the agent or drop it from persona {_names(avoiders)}", name, avoiders))
    return out


def language_findings(agent: str, personas: Iterable[tuple[str, str, str]], *, default: str,
                      languages: AbstractSet[str], override_sent: bool, override_allowed: bool,
                      detection: bool) -> list[Finding]:
    """(e) Languages: `personas` are (persona id, the language its call starts in, the language it
    speaks). The agent has its own language and its additional `languages`. A call starting in
    another language needs the `language` override, sent and allowed, and the agent must have the
    language; a caller speaking another language than the call starts in needs the agent to have
    it (and language_detection to switch to it: a warning without)."""
    people = list(personas)
    have = {default, *languages}
    has = f"language {default}; additional: {', '.join(sorted(set(languages) - {default})) or 'none'}"
    out = []
    for lang in sorted({start for _, start, _ in people}):
        who = tuple(sorted(p for p, start, _ in people if start == lang))
        setting, needs = f"language {lang} (call start)", f"calls start in {lang} ({_names(who)})"
        if lang == default:
            out.append(Finding(agent, "language", setting, needs, has, "ok", subject=lang))
        elif not override_sent:
            out.append(Finding(agent, "language", setting, needs + ": the language override", has + "; override "
                               "not sent", "blocking", "list `language` under `overrides` in the agent file (every "
                               f"call would stay in {default}), or set start_language: {default} in persona "
                               f"{_names(who)}", lang, who))
        elif not override_allowed:
            out.append(Finding(agent, "language", setting, needs + ": the language override", has + "; override "
                               "not allowed", "blocking", "allow 'language' under Security > Overrides for this "
                               "agent", lang, who))
        elif lang not in have:
            out.append(Finding(agent, "language", setting, needs, has, "blocking",
                               f"add {lang} to the agent's additional languages (Agent > Additional languages)",
                               lang, who))
        else:
            out.append(Finding(agent, "language", setting, needs, has + "; language override allowed", "ok",
                               subject=lang))
    for lang in sorted({spoken for _, start, spoken in people if spoken != start}):
        who = tuple(sorted(p for p, start, spoken in people if spoken == lang and start != lang))
        setting = f"language {lang} (caller speaks)"
        needs = f"the agent switches to {lang} mid-call ({_names(who)})"
        if lang not in have:
            out.append(Finding(agent, "language", setting, needs, has, "blocking",
                               f"add {lang} to the agent's additional languages (Agent > Additional languages)",
                               lang, who))
        elif not detection:
            out.append(Finding(agent, "language", setting, needs, has + "; no language_detection tool", "warning",
                               "add the language_detection system tool to the agent", lang, who))
        else:
            out.append(Finding(agent, "language", setting, needs, has + "; language_detection", "ok", subject=lang))
    return out


def audio_findings(agent: str, *, mode: str, text_only: bool, input_format: str | None, output_format: str | None,
                   client_events: Sequence[str] | None) -> list[Finding]:
    """(e, f) Voice mode needs an agent that speaks, in the format the SDK plays and sends (16 kHz
    PCM: SDK 2.78 ignores the announced formats). Both modes need the `agent_response` client
    event (else transcripts stay empty); voice mode `audio`, and `user_transcript` for what the
    agent heard (a warning)."""
    out = []
    if mode == "voice":
        out.append(Finding(agent, "audio", "conversation.text_only", "false (voice mode)", str(text_only).lower(),
                           "blocking" if text_only else "ok",
                           "turn text-only off for this agent, or run --mode text" if text_only else None, "text_only"))
        for setting, value, what in (("asr.user_input_audio_format", input_format, "the caller's audio the SDK sends"),
                                     ("tts.agent_output_audio_format", output_format,
                                      "the agent's audio the SDK plays and voicelab records")):
            ok = value in (None, SDK_AUDIO_FORMAT)
            out.append(Finding(agent, "audio", setting, f"{SDK_AUDIO_FORMAT} ({what})",
                               value or f"not reported (platform default {SDK_AUDIO_FORMAT})",
                               "ok" if ok else "blocking",
                               None if ok else f"set {setting.split('.')[0]} format to {SDK_AUDIO_FORMAT} "
                                               "(PCM 16000 Hz) for this agent", setting))
    if client_events is not None:
        events = set(client_events)
        needed: list[tuple[str, Verdict, str]] = [("agent_response", "blocking", "the agent's turns in the transcript")]
        if mode == "voice":
            needed += [("audio", "blocking", "the agent's voice"),
                       ("user_transcript", "warning", "what the agent heard (WER, the caller's turns)")]
        for name, verdict, why in needed:
            ok = name in events
            out.append(Finding(agent, "audio", f"client event {name}", f"sent ({why})", "sent" if ok else "not sent",
                               "ok" if ok else verdict,
                               None if ok else f"enable the '{name}' client event for this agent (Advanced > "
                                               "Client events)", name))
    return out


# --------------------------------------------------------------------------- one agent, a dataset


def check_agent(body: Mapping[str, Any], spec: AgentSpec, personas: Sequence[Persona], *, mode: str = "text",
                backend: str = "elevenlabs") -> list[Finding]:
    """Every rule for one agent spec, its GET body and the personas of the run that call it."""
    s = agent_settings(body, spec)
    sent = sent_overrides(spec, mode)
    findings = override_findings(spec.id, sent, s.allowed_overrides, backend=backend)
    texts = dict(s.texts)
    if "prompt" in sent and "prompt" in s.allowed_overrides:  # voicelab sends the prompt, rendered
        texts = {k: v for k, v in texts.items() if not k.startswith("prompt")}
    if "first_message" in sent and "first_message" in s.allowed_overrides:
        texts = {k: v for k, v in texts.items() if not k.startswith("first message")}
    # on the local backend the flow sets some variables itself (a caller's answer, a tool's result)
    used = variables_used(texts, skip=flow_variables(spec) if backend == "local" else frozenset())
    findings += variable_findings(spec.id, used, {p.id: set(p.variables) for p in personas}, s.placeholders)
    client = [name for name, kind in s.tools.items() if kind == "client"]
    findings += client_tool_findings(spec.id, client, {p.id: answered_tools(spec, p) for p in personas})
    findings += expected_tool_findings(spec.id, set(s.tools), {p.id: {c.tool for c in p.expect.agent_calls}
                                                               for p in personas},
                                       {p.id: set(p.expect.agent_never_calls) for p in personas},
                                       unnamed=len(s.unnamed_tool_ids))
    languages = set(s.presets)
    if backend == "local" and isinstance(spec.first_message, dict):  # the local flow speaks what it has words for
        languages |= set(spec.first_message)
    findings += language_findings(spec.id, [(p.id, p.call_language, p.language) for p in personas],
                                  default=s.language, languages=languages, override_sent="language" in sent,
                                  override_allowed="language" in s.allowed_overrides,
                                  detection="language_detection" in s.tools)
    findings += audio_findings(spec.id, mode=mode, text_only=s.text_only, input_format=s.input_format,
                               output_format=s.output_format, client_events=s.client_events)
    return findings


@dataclass
class Preflight:
    """The findings for a planned run, agent by agent."""

    backend: str
    mode: str
    #: {agent spec id: the platform's agent id it was read from}.
    agents: dict[str, str] = field(default_factory=dict)
    #: {agent spec id: the personas of the run that call it}.
    personas: dict[str, list[str]] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)

    @property
    def blocking(self) -> list[Finding]:
        return [f for f in self.findings if f.verdict == "blocking"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.verdict == "warning"]

    def summary(self, more: str = "in the table above") -> str | None:
        """One line naming the first blocker and its fix (None when nothing blocks); `more` says
        where the other blockers are listed."""
        if not self.blocking:
            return None
        first = self.blocking[0]
        others = len(self.blocking) - 1
        where = f"agent '{first.agent}'" + (f" (platform agent {self.agents[first.agent]})"
                                            if self.agents.get(first.agent, first.agent) != first.agent else "")
        return (f"preflight: {where}, {first.setting}: the run needs {first.needs}; the agent has: {first.has}. "
                f"Fix: {first.fix}" + (f" ({others} more blocking finding{'s' if others != 1 else ''} {more})"
                                       if others else ""))

    def as_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "mode": self.mode, "ok": not self.blocking,
                "blocking": len(self.blocking), "warnings": len(self.warnings),
                "agents": [{"agent": a, "platform_agent_id": self.agents[a], "personas": self.personas.get(a, [])}
                           for a in self.agents],
                "findings": [f.as_dict() for f in self.findings]}


def check(dataset: Dataset, persona_ids: Sequence[str], bodies: Mapping[str, Mapping[str, Any]], *,
          mode: str = "text", backend: str = "elevenlabs", agent_ids: Mapping[str, str] | None = None) -> Preflight:
    """Pure: the findings for `persona_ids` of `dataset`, given each agent spec's GET body."""
    result = Preflight(backend=backend, mode=mode)
    by_agent: dict[str, list[Persona]] = {}
    for pid in persona_ids:
        persona = dataset.persona(pid)
        by_agent.setdefault(persona.agent, []).append(persona)
    for agent, personas in by_agent.items():
        result.agents[agent] = (agent_ids or {}).get(agent, agent)
        result.personas[agent] = [p.id for p in personas]
        result.findings += check_agent(bodies[agent], dataset.agents[agent], personas, mode=mode, backend=backend)
    order = {name: i for i, name in enumerate(CHECKS)}
    result.findings.sort(key=lambda f: (list(by_agent).index(f.agent), order[f.check]))
    return result


def choose_personas(dataset: Dataset, persona_ids: Sequence[str] | None = None, agent: str | None = None) -> list[str]:
    """The personas a run would call: these ids, or every persona (of `agent`)."""
    if persona_ids:
        for pid in persona_ids:
            dataset.persona(pid)  # an unknown id is a DatasetError naming the known ones
        return list(persona_ids)
    return [p.id for p in dataset.personas.values() if agent is None or p.agent == agent]


# --------------------------------------------------------------------------- the platform


def fetch_agent(client: ElevenLabs, agent_id: str) -> dict[str, Any]:
    """GET /v1/convai/agents/{id} through the SDK, as a dict; a refusal is a ConfigError (exit 2)."""
    from voicelab.harness.hosted import NO_SDK_RETRIES, with_retries
    from voicelab.spec.errors import BackendError, ConfigError

    try:
        agent = with_retries(lambda: client.conversational_ai.agents.get(agent_id, request_options=NO_SDK_RETRIES),
                             what=f"reading agent '{agent_id}' (GET /v1/convai/agents/{agent_id})")
    except BackendError as exc:
        raise ConfigError(str(exc)) from None
    return agent.dict()


def run_preflight(dataset: Dataset, persona_ids: Sequence[str], *, backend: str = "elevenlabs", mode: str = "text",
                  local_url: str | None = None) -> Preflight:
    """Read every agent the personas call from its backend (the hosted platform, through the agent
    id a call would use; or a local backend started for it, as `voicelab run` starts one) and
    check it. Settings a call needs (API key, agent id, secrets) raise ConfigError first."""
    from voicelab.harness.connection import connect
    from voicelab.lab.backends import backend_url

    first: dict[str, str] = {}
    for pid in persona_ids:
        first.setdefault(dataset.persona(pid).agent, pid)
    requests = {agent: dataset.request(pid, backend=backend, mode=mode) for agent, pid in first.items()}
    if backend != "local":
        for request in requests.values():
            connect(request)  # a missing key or agent id before the local backend could start
    bodies: dict[str, dict[str, Any]] = {}
    agent_ids: dict[str, str] = {}
    with backend_url(backend, dataset, local_url=local_url) as base_url:
        read: dict[tuple[str, str], dict[str, Any]] = {}
        for agent, request in requests.items():
            connection = connect(request, base_url)
            key = (str(base_url), connection.agent_id)
            if key not in read:
                read[key] = fetch_agent(connection.client, connection.agent_id)
            bodies[agent], agent_ids[agent] = read[key], connection.agent_id
    return check(dataset, persona_ids, bodies, mode=mode, backend=backend, agent_ids=agent_ids)


def table(result: Preflight) -> str:
    """The findings as a table, agent by agent, and a count."""
    lines: list[str] = []
    widths = {"setting": 32, "needs": 46, "has": 40}

    def cut(text: str, width: int) -> str:
        return text if len(text) <= width else text[: width - 3] + "..."

    for agent, platform_id in result.agents.items():
        rows = [f for f in result.findings if f.agent == agent]
        via = f"platform agent {platform_id}" if result.backend != "local" else "the local backend"
        lines.append(f"agent {agent} ({via}), {len(result.personas.get(agent, []))} personas, {result.mode} mode")
        lines.append(f"  {'setting':{widths['setting']}}  {'run needs':{widths['needs']}}  "
                     f"{'agent has':{widths['has']}}  verdict")
        for f in rows:
            lines.append(f"  {cut(f.setting, widths['setting']):{widths['setting']}}  "
                         f"{cut(f.needs, widths['needs']):{widths['needs']}}  "
                         f"{cut(f.has, widths['has']):{widths['has']}}  {f.verdict}")
            if f.verdict != "ok":  # the whole story of a finding, however long
                pad = " " * (widths["setting"] + 4)
                if len(f.needs) > widths["needs"]:
                    lines.append(f"{pad}run needs: {f.needs}")
                if len(f.has) > widths["has"]:
                    lines.append(f"{pad}agent has: {f.has}")
                if f.fix:
                    lines.append(f"{pad}fix: {f.fix}")
        lines.append("")
    ok = len(result.findings) - len(result.blocking) - len(result.warnings)
    lines.append(f"{len(result.findings)} checks: {ok} ok, {len(result.warnings)} warnings, "
                 f"{len(result.blocking)} blocking")
    return "\n".join(lines)


__all__ = ["AgentSettings", "Finding", "Preflight", "agent_settings", "answered_tools", "audio_findings", "check",
           "check_agent", "choose_personas", "client_tool_findings", "expected_tool_findings", "fetch_agent",
           "language_findings", "override_findings", "run_preflight", "sent_overrides", "table",
           "variable_findings", "variables_used"]
