"""The start of a websocket conversation, as the platform decides it. Pure: the client's first
message and the URL's query in, `Accepted` or `Refused` (close code and reason) out; no socket.

Order, as production: the signature of a private agent, the agent id, the first message's shape,
the dynamic variables the agent needs. A refused override is decided here too, but the platform
sends it *after* the conversation metadata (an `error` event, then close 1008), so it rides on
`Accepted.refusal`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..datasets import agent_variables
from ..models import AgentSpec

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
    #: The whole initiation message, kept with the conversation (GET conversation shows it).
    client_data: dict[str, Any] = field(default_factory=dict)
    #: Set when the client overrode a field the agent does not allow: sent after the metadata.
    refusal: str | None = None


def parse_first_message(raw: Any) -> dict[str, Any] | Refused:
    """The first frame's JSON, or the platform's refusal of it."""
    try:
        data = json.loads(raw)
    except (TypeError, ValueError):
        return Refused(1008, "invalid_message: the first message must be JSON")
    if not isinstance(data, dict) or data.get("type") != INIT_TYPE:
        return Refused(1008, f"missing_fields: expected {INIT_TYPE} first")
    return data


def text_only(override: Mapping[str, Any]) -> bool:
    # SDK 2.78 sends a top-level `text_only`; the documented place is conversation.text_only.
    conversation = override.get("conversation") or {}
    return bool(override.get("text_only") or (isinstance(conversation, Mapping) and conversation.get("text_only")))


def overridden_fields(override: Mapping[str, Any]) -> list[str]:
    """The overridable fields a client set (empty values count as not provided)."""
    agent = override.get("agent") or {}
    if not isinstance(agent, Mapping):
        return []
    fields = []
    prompt = agent.get("prompt") or {}
    if isinstance(prompt, Mapping) and prompt.get("prompt"):
        fields.append("prompt")
    for name in ("first_message", "language"):
        if agent.get(name):
            fields.append(name)
    tts = override.get("tts") or {}
    if isinstance(tts, Mapping) and tts.get("voice_id"):
        fields.append("voice_id")
    return fields


def handshake(init: Mapping[str, Any], query: Mapping[str, str], agents: Mapping[str, AgentSpec], *,
              signature_ok: bool | None = None) -> Accepted | Refused:
    """Accept or refuse a conversation. `signature_ok`: None for public agents, else whether the
    URL's conversation_signature was valid."""
    if signature_ok is False:
        return Refused(1008, "Could not authorize the conversation")
    agent = agents.get(query.get("agent_id", ""))
    if agent is None:
        return Refused(1008, "Agent not found")
    raw_variables = init.get("dynamic_variables") or {}
    override = init.get("conversation_config_override") or {}
    if not isinstance(raw_variables, Mapping):
        return Refused(1008, "invalid_message: dynamic_variables must be an object")
    if not isinstance(override, Mapping):
        return Refused(1008, "invalid_message: conversation_config_override must be an object")
    variables = {str(k): str(v) for k, v in raw_variables.items()}
    missing = sorted(agent_variables(agent) - set(variables))
    if missing:
        return Refused(1008, "Missing required dynamic variables: " + ", ".join(missing))
    agent_override = override.get("agent") or {}
    if not isinstance(agent_override, Mapping):
        agent_override = {}
    refused = [f for f in overridden_fields(override) if f not in agent.platform.allowed_overrides]
    language = str(agent_override.get("language") or agent.language)
    first = agent_override.get("first_message")
    return Accepted(agent=agent, variables=variables, language=language,
                    first_message=str(first) if first else None, text_only=text_only(override),
                    client_data={**init, "language": language},
                    refusal=f"Override for field '{refused[0]}' is not allowed by config." if refused else None)
