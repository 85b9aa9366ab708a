"""Tools an agent can call (client, webhook, system) and what a tool answers in a test. Its own
module because both sides use it: an agent spec declares tools, a persona mocks them.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, model_validator

from voicelab.spec.models.base import E164_PATTERN, _Strict

#: Tool names: what the agent calls them and the SDK registers them by.
TOOL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _tool_name(value: str) -> str:
    if not TOOL_NAME.match(value):
        raise ValueError("a tool name is letters, digits and underscores, not starting with a digit")
    return value


ToolName = Annotated[str, AfterValidator(_tool_name)]


class ToolMock(_Strict):
    """What a tool answers in a test: a result (any JSON value), or an error; after `delay_ms`."""

    result: Any = None
    error: str | None = None
    delay_ms: float = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _one_answer(self) -> ToolMock:
        if self.result is not None and self.error is not None:
            raise ValueError("a tool mock answers with a result or an error, not both")
        return self


class ToolParameter(_Strict):
    type: Literal["string", "number", "integer", "boolean"] = "string"
    description: str = ""
    enum: list[str] | None = None


#: The platform's system tools (run by the platform itself, no code of yours).
SYSTEM_TOOLS = ("end_call", "transfer_to_number", "transfer_to_agent", "language_detection", "skip_turn",
                "play_keypad_touch_tone", "voicemail_detection")
#: The dynamic variable through which voicelab hands a persona's webhook-tool mocks to the local
#: backend (a JSON object {tool: {result|error, delay_ms}}); the backend takes it out before the
#: conversation sees its variables, and the hosted platform is never sent it.
TOOL_MOCKS_VARIABLE = "voicelab__tool_mocks"


class Webhook(_Strict):
    """Where a server (webhook) tool sends its request. `url` and header values may use
    {{dynamic variables}} (headers also `secret__` ones); the arguments go as a JSON body (POST, PUT,
    PATCH) or as query parameters (GET, DELETE)."""

    url: str = Field(pattern=r"^(https?://|\{\{)")
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    headers: dict[str, str] = Field(default_factory=dict)


class Transfer(_Strict):
    """A number `transfer_to_number` may transfer to, and when (the platform's `transfers`)."""

    phone_number: Annotated[str, Field(pattern=E164_PATTERN.pattern)]
    condition: str = Field(min_length=1)


class Tool(_Strict):
    """A tool the agent can call. Client tools run in the calling app (the SDK's ClientTools);
    webhook tools are HTTP requests the backend makes; system tools are the platform's own
    (`name` says which). `end_call` is what a flow step's `end_call: true` calls."""

    name: ToolName
    type: Literal["client", "webhook", "system"] = "client"
    description: str = ""
    parameters: dict[str, ToolParameter] = Field(default_factory=dict)
    required: list[str] = Field(default_factory=list)
    #: Client tools: wait for the client's result (else the agent carries on at once).
    expects_response: bool = True
    #: Client and webhook tools: how long the agent waits for a result before it carries on as
    #: for an error.
    response_timeout_s: float = Field(default=10.0, gt=0)
    #: Client and webhook tools: the answer when the persona does not mock the tool (client tools:
    #: voicelab answers with it; webhook tools: the local backend does, instead of the request).
    default_mock: ToolMock | None = None
    #: Webhook tools: the request.
    webhook: Webhook | None = None
    #: transfer_to_number: the numbers it may transfer to.
    transfers: list[Transfer] = Field(default_factory=list)
    #: The hosted platform's id of this tool (`tool_...`), where agent-testing names tools by id
    #: (tool mocks, tool-call tests); the name when not given. The local backend takes either.
    platform_id: str | None = None

    @model_validator(mode="after")
    def _fits_its_type(self) -> Tool:
        if self.type == "webhook" and self.webhook is None:
            raise ValueError(f"webhook tool '{self.name}' needs `webhook: {{url: ...}}`")
        if self.type != "webhook" and self.webhook is not None:
            raise ValueError(f"only a webhook tool has `webhook:` ('{self.name}' is a {self.type} tool)")
        if self.type == "system":
            if self.name not in SYSTEM_TOOLS:
                raise ValueError(f"'{self.name}' is not a system tool: use one of {', '.join(SYSTEM_TOOLS)}, or "
                                 "type: client or webhook for your own tool")
            if self.default_mock is not None:
                raise ValueError(f"system tool '{self.name}' is run by the platform and cannot be mocked")
            if self.name == "transfer_to_number" and not self.transfers:
                raise ValueError("transfer_to_number needs `transfers:` (phone_number and condition)")
        if self.transfers and self.name != "transfer_to_number":
            raise ValueError(f"only transfer_to_number has `transfers:` (not '{self.name}')")
        unknown = sorted(set(self.required) - set(self.parameters))
        if unknown:
            raise ValueError(f"required names '{unknown[0]}', which is not one of its parameters")
        return self
