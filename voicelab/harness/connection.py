"""How a request reaches its agent: which SDK client, which agent id, what to send first, and
what a disconnect means. Pure decisions (plus the settings they read), shared by every runner.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from elevenlabs.base_client import BaseElevenLabs
from elevenlabs.conversational_ai.conversation import ConversationInitiationData

from voicelab.harness import sdk, settings
from voicelab.spec.datasets import render, secret_variables
from voicelab.spec.errors import ConfigError
from voicelab.spec.models import TOOL_MOCKS_VARIABLE, CallRequest, EndReason, pick_language


@dataclass(frozen=True)
class Connection:
    """What the SDK needs to reach an agent: a client, the agent id and whether to sign."""

    client: BaseElevenLabs  # what sdk.client() builds
    agent_id: str
    requires_auth: bool = False
    #: An experiment variant's branch of the hosted agent (reached through a signed URL).
    branch_id: str | None = None


def check_secrets(request: CallRequest) -> None:
    """ConfigError for a `secret__*` variable the agent's webhooks use but the environment lacks:
    a setting to fix before anything is placed, not a failed call."""
    for name in secret_variables(request.agent):
        settings.secret_variable(name, request.agent.id)


def connect(request: CallRequest, base_url: str | None = None) -> Connection:
    """The SDK client for the request's backend. Raises ConfigError before anything is sent."""
    check_secrets(request)
    if request.backend == "local":
        url = base_url or settings.get("VOICELAB_LOCAL_URL")
        if not url:
            raise ConfigError("the local backend's URL is unknown: start one with voicelab.LocalBackend() "
                              "(or `voicelab serve`) and pass its base_url, or set VOICELAB_LOCAL_URL")
        return Connection(sdk.client(url, None), request.agent.id)
    key = settings.api_key()
    agent_id = request.agent.elevenlabs_agent_id or settings.get("ELEVENLABS_AGENT_ID")
    if not agent_id:
        raise ConfigError(f"agent '{request.agent.id}' has no hosted agent id: set elevenlabs_agent_id in "
                          "its agent file or the ELEVENLABS_AGENT_ID environment variable")
    requires_auth = (settings.get("ELEVENLABS_REQUIRES_AUTH", "false") or "").lower() in ("1", "true", "yes")
    return Connection(sdk.client(base_url or settings.hosted_base_url(), key), agent_id, requires_auth,
                      request.branch_id)


def initiation_data(request: CallRequest) -> ConversationInitiationData:
    """Dynamic variables always; overrides only for the fields the agent spec lists."""
    persona, agent = request.persona, request.agent
    variables = dict(persona.variables)
    override: dict[str, Any] = {}
    agent_part: dict[str, Any] = {}
    if "prompt" in agent.overrides:
        agent_part["prompt"] = {"prompt": render(agent.prompt, variables)}
    if "first_message" in agent.overrides:
        agent_part["first_message"] = render(pick_language(agent.first_message, persona.call_language), variables)
    if "language" in agent.overrides:
        agent_part["language"] = persona.call_language
    variant = request.overrides
    if variant is not None:  # an experiment variant's overrides, whatever the agent spec lists
        if variant.prompt is not None:
            agent_part["prompt"] = {"prompt": render(variant.prompt, variables)}
        if variant.first_message is not None:
            agent_part["first_message"] = render(variant.first_message, variables)
        if variant.language is not None:
            agent_part["language"] = variant.language
        if variant.voice_id is not None:
            override["tts"] = {"voice_id": variant.voice_id}
    if agent_part:
        override["agent"] = agent_part
    for name in secret_variables(agent):  # from the environment, never from the persona
        variables[name] = settings.secret_variable(name, agent.id)
    webhook_mocks = {name: mock.model_dump(exclude_defaults=True) for name, mock in persona.tools.items()
                     if (tool := agent.tool(name)) is not None and tool.type == "webhook"}
    if webhook_mocks and request.backend == "local":  # the platform applies them only in agent-testing
        variables[TOOL_MOCKS_VARIABLE] = json.dumps(webhook_mocks)
    return ConversationInitiationData(dynamic_variables=variables, conversation_config_override=override)


def describe_disconnect(reason: str | None, close_code: int | None, close_reason: str | None,
                        message: str | None = None) -> tuple[EndReason, str | None]:
    """The SDK's DisconnectionDetails (its fields) as an end reason and a readable error."""
    if reason == "agent":
        return "agent_ended", None
    if reason == "user":
        return "caller_ended", None
    if close_code == 1006:
        return "disconnected", "the connection dropped mid-call (no close frame, code 1006)"
    text = close_reason or ""
    if text.startswith("Override for field"):
        field = text.split("'")[1] if "'" in text else "?"
        return "error", (f"the agent refused the override of '{field}' (its Security settings do not allow it): "
                         f"allow '{field}' under Security > Overrides for this agent, or remove it from "
                         "`overrides` in the agent file")
    if text == "Could not authorize the conversation":
        return "error", ("the agent is private and the call had no valid signature: set ELEVENLABS_REQUIRES_AUTH=true "
                         "so voicelab fetches a signed URL")
    if text == "Agent not found":
        return "error", "the backend has no such agent: check the agent id (close code 1008)"
    if close_code is not None:
        return "error", f"the backend closed the call with code {close_code}: {text}"
    return "error", f"the call failed: {message or 'connection error'}"
