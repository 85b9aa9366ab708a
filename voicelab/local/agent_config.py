"""An agent's config as a client pushes it (agents create / PATCH, a test's agent_config_override),
and what of it the local backend acts on. Pure: bodies in, checked pieces and an `AgentSpec` out.

The pushed `conversation_config` and `platform_settings` are checked with the SDK's own request
models (a malformed one is a 422 naming the field, never a 500) and kept as pushed: GET agent lays
them over what it reports for the spec. The fields the websocket enforces change the spec the next
conversation gets: the first message, the language, the prompt text (its {{variables}} become
required), the placeholders, the client events, text-only, the maximum duration, the turn timeout,
the overrides allowed, the ASR keywords (`asr.keywords`, which bias voice mode's recognition)
and the success evaluation criteria (`platform_settings.evaluation.criteria`, judged after each
conversation with the condition grammar).
Everything else (voice, LLM, tools, knowledge base, ...) is kept and returned, and has no effect
offline.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, get_args

import pydantic

from voicelab.local.handshake import CLIENT_EVENTS, variable_text
from voicelab.local.rest import Unprocessable
from voicelab.local.sdk_models import sdk_model
from voicelab.spec.datasets import SYSTEM_PREFIX
from voicelab.spec.models import LANGUAGES, AgentSpec, ClientEvent, Flow, FlowStep, PlatformSettings, Silence

#: What an agent made over REST answers a caller: the local backend follows a voicelab flow, and
#: an agent pushed as a platform config has none (nor a language model to follow its prompt).
NO_FLOW_REPLY = ("This agent was created through the API and has no voicelab flow: "
                 "the local backend has no language model to follow its prompt.")
#: The platform's turn timeout of a new agent (TurnConfig.turn_timeout's default).
DEFAULT_TURN_TIMEOUT_S = 7.0
#: Security > Overrides switches: the spec's field name -> its path under conversation_config_override.
OVERRIDE_SWITCHES: dict[str, tuple[str, ...]] = {
    "first_message": ("agent", "first_message"), "language": ("agent", "language"),
    "prompt": ("agent", "prompt", "prompt"), "llm": ("agent", "prompt", "llm"),
    "voice_id": ("tts", "voice_id"), "text_only": ("conversation", "text_only")}
#: The client events a spec can name (the rest of the contract's are always sent or never sent here).
SPEC_EVENTS = frozenset(get_args(ClientEvent))


def _at(node: Any, *path: str) -> Any:
    for key in path:
        node = node.get(key) if isinstance(node, Mapping) else None
    return node


def deep_merge(base: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """`patch` laid over `base`, as PATCH does: objects merge key by key, anything else (lists
    too) replaces."""
    out = copy.deepcopy(dict(base))
    for key, value in patch.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def checked_model(model: type[pydantic.BaseModel], raw: Any, where: str) -> dict[str, Any]:
    """`raw` validated by the SDK's model, dumped as sent (unset fields stay out); a validation
    error becomes FastAPI's 422 detail with the field's path."""
    try:
        parsed = model.model_validate(raw)
    except pydantic.ValidationError as exc:
        raise Unprocessable.from_errors(exc.errors(include_url=False, include_input=False, include_context=False),
                                        "body", where) from None
    return _without_nulls(parsed.model_dump(mode="json", by_alias=True, exclude_unset=True))


def _without_nulls(value: Any) -> Any:
    """A null is "not given" (the platform's default), never a value laid over the agent's."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _check_local(config: Mapping[str, Any]) -> None:
    """What the platform refuses and the SDK's models let through: unknown languages and client
    events, placeholders that are not scalars or use the reserved prefix, non-positive durations."""
    where = "conversation_config"
    language = _at(config, "agent", "language")
    if isinstance(language, str) and language.split("-")[0].lower() not in LANGUAGES:
        raise Unprocessable("body", f"{where}.agent.language", f"unsupported language {language!r}", "enum")
    events = _at(config, "conversation", "client_events")
    if events is not None:
        unknown = sorted({str(e) for e in events} - CLIENT_EVENTS)
        if unknown:
            raise Unprocessable("body", f"{where}.conversation.client_events",
                                f"unknown client events: {', '.join(unknown)}", "enum")
    variables = _at(config, "agent", "dynamic_variables")
    if variables is not None:
        placeholders = _at(variables, "dynamic_variable_placeholders")
        if not isinstance(variables, Mapping) or not isinstance(placeholders, Mapping | None):
            raise Unprocessable("body", f"{where}.agent.dynamic_variables",
                                "must be an object with dynamic_variable_placeholders (an object)")
        for name, value in (placeholders or {}).items():
            if str(name).startswith(SYSTEM_PREFIX):
                raise Unprocessable("body", f"{where}.agent.dynamic_variables",
                                    f"placeholder '{name}' uses the reserved prefix '{SYSTEM_PREFIX}'")
            if variable_text(value) is None:
                raise Unprocessable("body", f"{where}.agent.dynamic_variables",
                                    f"placeholder '{name}' must be a string, number or boolean")
    duration = _at(config, "conversation", "max_duration_seconds")
    if isinstance(duration, int | float) and duration <= 0:
        raise Unprocessable("body", f"{where}.conversation.max_duration_seconds", "must be greater than 0",
                            "greater_than")


def checked_body(body: Mapping[str, Any], *, create: bool) -> dict[str, Any]:
    """A create or PATCH body, checked: its conversation_config, platform_settings, workflow
    (each as sent), name and tags."""
    out: dict[str, Any] = {}
    if create and body.get("conversation_config") is None:
        raise Unprocessable("body", "conversation_config", "field required", "missing")
    for key, model in (("conversation_config", "ConversationalConfig"),
                       ("platform_settings", "AgentPlatformSettingsRequestModel"),
                       ("workflow", "AgentWorkflowRequestModel")):
        if body.get(key) is not None:
            out[key] = checked_model(sdk_model(model), body[key], key)
    _check_local(out.get("conversation_config") or {})
    name = body.get("name")
    if name is not None:
        if not isinstance(name, str):
            raise Unprocessable("body", "name", "must be a string", "string_type")
        out["name"] = name
    tags = body.get("tags")
    if tags is not None:
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise Unprocessable("body", "tags", "must be a list of strings", "list_type")
        out["tags"] = list(tags)
    return out


def blank_spec(agent_id: str, name: str) -> AgentSpec:
    """An agent the client created: the platform's defaults for a new agent (no first message,
    English, no overrides allowed, a 7 s turn timeout) and a flow that only waits."""
    spec = AgentSpec(id="created", name=name or "Unnamed agent", first_message="", prompt="",
                     flow=Flow(start="listen", steps={"listen": FlowStep()}, reprompt=NO_FLOW_REPLY,
                               silence=Silence(after_s=DEFAULT_TURN_TIMEOUT_S)),
                     platform=PlatformSettings(allowed_overrides=[]))
    return spec.model_copy(update={"id": agent_id})  # the platform's agent_… ids are no voicelab ids


def applied(spec: AgentSpec, pushed: Mapping[str, Any]) -> AgentSpec:
    """`spec` with the fields of a checked body (`checked_body`) the local backend acts on; the
    fields the body leaves out keep their value."""
    config = pushed.get("conversation_config") or {}
    agent = _at(config, "agent") or {}
    update: dict[str, Any] = {}
    if isinstance(pushed.get("name"), str):
        update["name"] = pushed["name"]
    if isinstance(agent.get("first_message"), str):
        update["first_message"] = agent["first_message"]
    if isinstance(agent.get("language"), str):
        update["language"] = agent["language"]
    if isinstance(_at(agent, "prompt", "prompt"), str):
        update["prompt"] = agent["prompt"]["prompt"]
    platform: dict[str, Any] = {}
    placeholders = _at(agent, "dynamic_variables", "dynamic_variable_placeholders")
    if isinstance(placeholders, Mapping):
        platform["placeholders"] = {str(k): variable_text(v) for k, v in placeholders.items()}
    events = _at(config, "conversation", "client_events")
    if isinstance(events, list):
        platform["client_events"] = [e for e in events if e in SPEC_EVENTS]
    if isinstance(_at(config, "conversation", "text_only"), bool):
        platform["text_only"] = config["conversation"]["text_only"]
    if isinstance(duration := _at(config, "conversation", "max_duration_seconds"), int | float) and duration > 0:
        platform["max_duration_s"] = int(duration)
    keywords = _at(config, "asr", "keywords")
    if isinstance(keywords, list):  # voice mode biases recognition toward them (vocabulary.py)
        platform["asr_keywords"] = [k for k in keywords if isinstance(k, str) and k.strip()]
    criteria = _at(pushed, "platform_settings", "evaluation", "criteria")
    if isinstance(criteria, list):  # judged on each conversation after it ends (history.py)
        platform["evaluation_criteria"] = [
            {"id": c["id"], "conversation_goal_prompt": c["conversation_goal_prompt"]} for c in criteria
            if isinstance(c, Mapping) and isinstance(c.get("id"), str) and c["id"]
            and isinstance(c.get("conversation_goal_prompt"), str) and c["conversation_goal_prompt"].strip()]
    switches = _at(pushed, "platform_settings", "overrides", "conversation_config_override")
    if isinstance(switches, Mapping):
        allowed = set(spec.platform.allowed_overrides)
        for name, path in OVERRIDE_SWITCHES.items():
            value = _at(switches, *path)
            if value is True:
                allowed.add(name)
            elif value is False:
                allowed.discard(name)
        platform["allowed_overrides"] = [n for n in OVERRIDE_SWITCHES if n in allowed]
    if platform:
        update["platform"] = PlatformSettings.model_validate({**spec.platform.model_dump(), **platform})
    timeout = _at(config, "turn", "turn_timeout")
    if isinstance(timeout, int | float) and timeout > 0:
        update["flow"] = spec.flow.model_copy(update={"silence": spec.flow.silence.model_copy(
            update={"after_s": float(timeout)})})
    return spec.model_copy(update=update)
