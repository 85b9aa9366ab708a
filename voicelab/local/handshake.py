"""The start of a websocket conversation, as the platform decides it. Pure: the client's first
message and the URL's query in, `Accepted` or `Refused` (close code and reason) out; no socket.

Order, as production: the signature of a private agent, the agent id, the first message's shape,
the dynamic variables the agent needs. A refused override is decided here too, but the platform
sends it *after* the conversation metadata (an `error` event, then close 1008), so it rides on
`Accepted.refusal`.
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
    #: Set when the client overrode a field the agent does not allow: sent after the metadata.
    refusal: str | None = None
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
    return None


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
    missing = sorted(required_variables(agent) - set(variables))
    if missing:
        return Refused(1008, "Missing required dynamic variables: " + ", ".join(missing))
    missing = sorted(secret_variables(agent) - set(variables))
    if missing:  # production's words for variables a tool needs
        return Refused(1008, "Missing required dynamic variables in tools: {" + ", ".join(missing) + "}")
    agent_override = _section(override, "agent")
    refused = [f for f in overridden_fields(override) if f not in agent.platform.allowed_overrides]
    language = str(agent_override.get("language") or agent.language)
    if not refused and language.split("-")[0].lower() not in LANGUAGES:
        refused_reason: str | None = f"Unsupported language '{language}'"
    else:
        refused_reason = f"Override for field '{refused[0]}' is not allowed by config." if refused else None
    first = agent_override.get("first_message")
    return Accepted(agent=agent, variables=variables, language=language,
                    first_message=str(first) if first else None,
                    prompt=str(_section(override, "agent", "prompt").get("prompt") or "") or None,
                    text_only=agent.platform.text_only or text_only(override),
                    client_data={**init, "language": language}, refusal=refused_reason, tool_mocks=mocks)
