"""The start of a websocket conversation, as the platform decides it. Pure: the client's first
message and the URL's query in, `Accepted` or `Refused` (close code and reason) out; no socket.

Order, as production: the signature of a private agent, the agent id, the first message's shape,
the dynamic variables the agent needs. Missing variables and a refused override are decided here
too, but the platform sends them *after* the conversation metadata (an `error` event of
`Accepted.refusal_type`, then close 1008), so they ride on `Accepted.refusal`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from voicelab.local.messages import TooDeep, load_json
from voicelab.spec.datasets import SYSTEM_PREFIX, required_variables, secret_variables
from voicelab.spec.models import LANGUAGES, TOOL_MOCKS_VARIABLE, AgentSpec, ToolMock

#: The one message a conversation must start with.
INIT_TYPE = "conversation_initiation_client_data"
#: The contract's ClientEvent enum (agent.asyncapi.yaml): what `conversation.client_events` may name.
CLIENT_EVENTS = frozenset((
    "audio", "agent_response", "agent_response_correction", "agent_chat_response_part",
    "agent_reasoning_response_part", "interruption", "user_transcript", "tentative_user_transcript",
    "conversation_initiation_metadata", "client_tool_call", "rich_content", "agent_tool_request",
    "agent_tool_response", "agent_tool_response_full_payload", "mcp_tool_call", "mcp_connection_status",
    "vad_score", "ping", "context_usage", "asr_initiation_metadata", "guardrail_triggered",
    "internal_turn_probability", "internal_tentative_agent_response", "agent_typing",
    "external_agent_connected", "external_agent_disconnected"))


@dataclass(frozen=True)
class Refused:
    code: int
    reason: str


@dataclass(frozen=True)
class Accepted:
    agent: AgentSpec
    variables: dict[str, str]
    language: str
    first_message: str | None
    text_only: bool
    #: The prompt the client sent as an override (the caller agent follows it).
    prompt: str | None = None
    #: The whole initiation message, kept with the conversation (GET conversation shows it).
    client_data: dict[str, Any] = field(default_factory=dict)
    #: Set when the conversation is refused after it began (a variable is missing, the client
    #: overrode a field the agent does not allow): sent after the metadata.
    refusal: str | None = None
    #: The `error` event's error_type for `refusal` (the contract's ErrorType).
    refusal_type: str = "override_error"
    #: The server events the client asked for (conversation.client_events override); None: the agent's.
    client_events: tuple[str, ...] | None = None
    #: Webhook-tool mocks the client sent (the local backend's extension, see TOOL_MOCKS_VARIABLE).
    tool_mocks: dict[str, ToolMock] = field(default_factory=dict)



def take_tool_mocks(variables: dict[str, str]) -> dict[str, ToolMock] | Refused:
    """Remove TOOL_MOCKS_VARIABLE from `variables` and parse it."""
    raw = variables.pop(TOOL_MOCKS_VARIABLE, None)
    if raw is None:
        return {}
    try:
        data = load_json(raw)
        if not isinstance(data, dict):
            raise ValueError("not an object")
        return {str(name): ToolMock.model_validate(mock) for name, mock in data.items()}
    except ValueError:  # pydantic's ValidationError too; its text would not fit a close reason
        return Refused(1008, f"invalid_message: {TOOL_MOCKS_VARIABLE} must be a JSON object of tool mocks")


def parse_first_message(raw: Any) -> dict[str, Any] | Refused:
    """The first frame's JSON, or the platform's refusal of it."""
    if not isinstance(raw, str | bytes):
        return Refused(1008, "invalid_message: the first message must be JSON")
    try:
        data = load_json(raw)
    except TooDeep as exc:
        return Refused(1008, f"invalid_message: {exc}")
    except ValueError:
        return Refused(1008, "invalid_message: the first message must be JSON")
    if not isinstance(data, dict) or data.get("type") != INIT_TYPE:
        return Refused(1008, f"missing_fields: expected {INIT_TYPE} first")
    return data


def text_only(override: Mapping[str, Any]) -> bool:
    # SDK 2.78 sends a top-level `text_only`; the documented place is conversation.text_only.
    conversation = override.get("conversation") or {}
    return bool(override.get("text_only") or (isinstance(conversation, Mapping) and conversation.get("text_only")))


def _section(override: Mapping[str, Any], *path: str) -> Mapping[str, Any]:
    node: Any = override
    for key in path:
        node = node.get(key) if isinstance(node, Mapping) else None
    return node if isinstance(node, Mapping) else {}


def overridden_fields(override: Mapping[str, Any]) -> list[str]:
    """The overridable fields a client set (empty values count as not provided), by the leaf name
    the platform's refusal uses."""
    agent, prompt, tts = _section(override, "agent"), _section(override, "agent", "prompt"), _section(override, "tts")
    fields = [name for name, value in (("prompt", prompt.get("prompt")), ("llm", prompt.get("llm")),
                                       ("first_message", agent.get("first_message")),
                                       ("language", agent.get("language")), ("voice_id", tts.get("voice_id")))
              if value]
    if text_only(override):
        fields.append("text_only")
    return fields


def variable_text(value: Any) -> str | None:
    """A dynamic variable's value as text (string, number or boolean, as the platform allows)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    return None


def client_variables(raw: Any) -> dict[str, str] | Refused:
    """A client's dynamic variables, or the platform's refusal of them."""
    if not isinstance(raw, Mapping):
        return Refused(1008, "invalid_message: dynamic_variables must be an object")
    variables = {}
    for name, value in raw.items():
        if str(name).startswith(SYSTEM_PREFIX):
            return Refused(1008, f"invalid_message: dynamic variable '{name}' uses the reserved prefix "
                                 f"'{SYSTEM_PREFIX}' (the platform fills these)")
        text = variable_text(value)
        if text is None:
            return Refused(1008, f"invalid_message: dynamic variable '{name}' must be a string, number or boolean")
        variables[str(name)] = text
    return variables


def _check_override(override: Mapping[str, Any]) -> str | None:
    """Wrong types inside the override (production validates them): the refusal, or None."""
    for path in (("agent",), ("agent", "prompt"), ("tts",), ("conversation",)):
        node: Any = override
        for key in path:
            node = node.get(key) if isinstance(node, Mapping) else None
        if node is not None and not isinstance(node, Mapping):
            return f"invalid_message: conversation_config_override.{'.'.join(path)} must be an object"
    agent, prompt, tts = _section(override, "agent"), _section(override, "agent", "prompt"), _section(override, "tts")
    for where, section, name in (("agent", agent, "first_message"), ("agent", agent, "language"),
                                 ("agent.prompt", prompt, "prompt"), ("agent.prompt", prompt, "llm"),
                                 ("tts", tts, "voice_id")):
        if section.get(name) is not None and not isinstance(section[name], str):
            return f"invalid_message: conversation_config_override.{where}.{name} must be a string"
    return _check_client_events(_section(override, "conversation").get("client_events"))


def _check_client_events(events: Any) -> str | None:
    """The contract's `conversation.client_events`: null, or at least one ClientEvent."""
    where = "invalid_message: conversation_config_override.conversation.client_events"
    if events is None:
        return None
    if not isinstance(events, list) or not events or not all(isinstance(e, str) for e in events):
        return f"{where} must be a non-empty list of event types"
    unknown = sorted(set(events) - CLIENT_EVENTS)
    return f"{where} names unknown event types: {', '.join(unknown)}" if unknown else None


def requested_events(override: Mapping[str, Any]) -> tuple[str, ...] | None:
    """The server events the client asked for (already checked), or None to keep the agent's.
    No override switch gates it: the platform's overrides config has none for client_events."""
    events = _section(override, "conversation").get("client_events")
    return tuple(events) if events else None


#: The platform's agent languages; another code ends the session there, and here.

def handshake(init: Mapping[str, Any], query: Mapping[str, str], agents: Mapping[str, AgentSpec], *,
              signature_ok: bool | None = None) -> Accepted | Refused:
    """Accept or refuse a conversation. `signature_ok`: None for public agents, else whether the
    URL's conversation_signature was valid."""
    if signature_ok is False:
        return Refused(1008, "Could not authorize the conversation")
    agent = agents.get(query.get("agent_id", ""))
    if agent is None:
        return Refused(1008, "Agent not found")
    override = init.get("conversation_config_override") or {}
    if not isinstance(override, Mapping):
        return Refused(1008, "invalid_message: conversation_config_override must be an object")
    bad = _check_override(override)
    if bad:
        return Refused(1008, bad)
    variables = client_variables(init.get("dynamic_variables") or {})
    if isinstance(variables, Refused):
        return variables
    mocks = take_tool_mocks(variables)
    if isinstance(mocks, Refused):
        return mocks
    sent = init.get("dynamic_variables")
    if isinstance(sent, Mapping) and TOOL_MOCKS_VARIABLE in sent:  # kept nowhere, not even in the echo
        init = {**init, "dynamic_variables": {k: v for k, v in sent.items() if k != TOOL_MOCKS_VARIABLE}}
    variables = {**agent.platform.placeholders, **variables}
    language = str(_section(override, "agent").get("language") or agent.language)
    missing = missing_variables(agent, variables)
    refusal, refusal_type = (missing, "missing_dynamic_variable") if missing else (
        override_refusal(agent, override, language), "override_error")
    return Accepted(agent=agent, variables=variables, language=language,
                    first_message=first_message(agent, override),
                    prompt=str(_section(override, "agent", "prompt").get("prompt") or "") or None,
                    text_only=agent.platform.text_only or text_only(override),
                    client_data={**init, "language": language}, refusal=refusal, refusal_type=refusal_type,
                    tool_mocks=mocks, client_events=requested_events(override))


def missing_variables(agent: AgentSpec, variables: Mapping[str, str]) -> str | None:
    """The refusal of a conversation lacking variables the agent's texts or tools need, in
    production's words; None when nothing is missing."""
    missing = sorted(required_variables(agent) - set(variables))
    if missing:
        return "Missing required dynamic variables: " + ", ".join(missing)
    missing = sorted(secret_variables(agent) - set(variables))
    if missing:  # production's words for variables a tool needs
        return "Missing required dynamic variables in tools: {" + ", ".join(missing) + "}"
    return None


def override_refusal(agent: AgentSpec, override: Mapping[str, Any], language: str) -> str | None:
    """Why the client's override is refused (a field the agent does not allow, then a language
    the platform does not speak), or None."""
    refused = [f for f in overridden_fields(override) if f not in agent.platform.allowed_overrides]
    if refused:
        return f"Override for field '{refused[0]}' is not allowed by config."
    if language.split("-")[0].lower() not in LANGUAGES:
        return f"Unsupported language '{language}'"
    return None


def first_message(agent: AgentSpec, override: Mapping[str, Any]) -> str | None:
    """The first message the client set: "" when it set an empty one and the agent allows the
    override (the platform's agent then says nothing first and waits: AgentConfigOverride in
    agent.asyncapi.yaml), None for the agent's own. An empty one the agent does not allow counts
    as not provided, as every empty override does (overridden_fields)."""
    first = _section(override, "agent").get("first_message")
    if isinstance(first, str) and not first.strip():
        return "" if "first_message" in agent.platform.allowed_overrides else None
    return str(first) if first else None
