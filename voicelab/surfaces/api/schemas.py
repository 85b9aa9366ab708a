"""What the REST service reads and writes on the wire (its OpenAPI schema is made from these).

They are transport shapes, not voicelab's data: a stored call is still a `models.CallResult`;
`ConversationResponse` is the original conversation service's answer made from one. The
original contract's field names and types never change; new fields may only be added after them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AnyHttpUrl,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
)

from voicelab.harness import runners
from voicelab.spec.models import E164_PATTERN, MAX_ID, Check, EndReason, ToolCallRecord

#: A required piece of text: surrounding spaces are dropped, and it may not be empty after that.
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Id = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]*$", max_length=MAX_ID)]
#: A run id is a folder name in the run store: plain ASCII, never a path ("..", "a/b"), at most
#: 128 characters (voicelab.lab.store.RUN_ID), so no file name made from it passes 255 bytes.
RUN_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
RunId = Annotated[str, StringConstraints(pattern=RUN_ID_PATTERN, max_length=128)]
#: A call id as the service makes them (call-<hex>), or a conversation id (conv_...).
CallKey = Annotated[str, StringConstraints(pattern=RUN_ID_PATTERN, max_length=255)]
#: A dynamic variable's name, as an agent's {{name}} uses it.
VariableName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=100)]


def _variable_text(value: object) -> object:
    """Dynamic variables are single values on the wire: a number or true/false becomes text
    (as in persona files); a mapping or list is refused."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, dict | list):
        raise ValueError("must be a single value (text, a number, true/false), not a "
                         + ("mapping" if isinstance(value, dict) else "list"))
    return value


VariableValue = Annotated[str, BeforeValidator(_variable_text), StringConstraints(max_length=1000),
                          WithJsonSchema({"type": ["string", "number", "boolean"], "maxLength": 1000})]


def _batch_caller(value: str) -> str:
    if value not in runners.names(batch=True):
        raise ValueError(f"unknown caller {value!r} for a run: use one of {', '.join(runners.names(batch=True))}")
    return value


#: Who plays the personas of a run: any caller of the runner registry that runs unattended.
BatchCaller = Annotated[str, AfterValidator(_batch_caller),
                        WithJsonSchema({"type": "string", "enum": runners.names(batch=True)})]


def _e164(value: str) -> str:
    if not E164_PATTERN.match(value):
        raise ValueError("must be an E.164 phone number: + and 7 to 15 digits, no spaces, like +48601234567")
    return value


Phone = Annotated[str, StringConstraints(strip_whitespace=True), AfterValidator(_e164)]

ANNA = {"user_info": {"first_name": "Anna", "last_name": "Kowalska", "phone_number": "+48601234567"},
        "chargeback_info": {"product_name": "Premium Gym Membership", "reason": "duplicate charge"}}


class UserInfo(BaseModel):
    """Who the agent calls."""

    first_name: Text
    last_name: Text
    phone_number: Phone


class ChargebackInfo(BaseModel):
    """The disputed charge the agent calls about."""

    product_name: Text
    reason: Text


class ConversationStartRequest(BaseModel):
    """The original conversation service's request: the person and the disputed charge."""

    model_config = ConfigDict(json_schema_extra={"examples": [ANNA]})

    user_info: UserInfo
    chargeback_info: ChargebackInfo


class ConversationCreate(BaseModel):
    """`POST /api/conversations`: who is called, which agent calls (with its dynamic variables),
    who answers, and where to send the result when the call ends. The agent's own variables are
    required (checked before anything is placed); `chargeback_info` only for agents that use
    product_name and chargeback_reason."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {**ANNA, "callback_url": "http://crm.example.internal/hooks/call-ended"},
        {**ANNA, "persona_id": "marek-already-closed", "agent_id": "chargeback"},
        {"user_info": {"first_name": "Priya", "last_name": "Raman", "phone_number": "+4915112345678"},
         "agent_id": "applicant-screening",
         "variables": {"position": "Backend Developer", "years_experience": 6, "current_employer": "Acme"}}]})

    user_info: UserInfo
    #: The disputed charge: the variables product_name and chargeback_reason.
    chargeback_info: ChargebackInfo | None = None
    #: More dynamic variables for the agent (they win over the persona's and the ones above).
    variables: dict[VariableName, VariableValue] = Field(default_factory=dict, max_length=100)
    #: A persona from the service's persona files answers the call (the request's details win
    #: over its variables); default: a cooperative callee built from the request.
    persona_id: Id | None = None
    #: An agent from the service's agent files (default: chargeback).
    agent_id: Id | None = None
    #: Receives the finished call (the GET response) by POST, retried on failure.
    callback_url: AnyHttpUrl | None = None


class TranscriptTurn(BaseModel):
    speaker: Literal["agent", "user"]
    text: str
    #: Seconds from the start of the call.
    timestamp: float


class ConversationResponse(BaseModel):
    """The original contract's answer (its first four fields), then what voicelab adds."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "conversation_id": "conv_7f3a9c2e41b04d55a1c6e0b2",
        "transcript": [
            {"speaker": "agent", "text": "Hello, this is Nora from Northbank's card disputes team. "
             "Am I speaking with Anna Kowalska?", "timestamp": 0.0},
            {"speaker": "user", "text": "Yes, this is Anna.", "timestamp": 1.2}],
        "status": "completed", "duration_seconds": 42.1, "call_id": "call-5d1c0e9a7b3f",
        "run_id": "api-20261121-101500", "end_reason": "agent_ended", "error": None, "success": True}]})

    conversation_id: str | None = Field(description="the platform's conversation id (null if the call never "
                                        "connected)")
    transcript: list[TranscriptTurn]
    status: Literal["completed", "failed"]
    duration_seconds: float
    call_id: str | None = None
    run_id: str | None = None
    end_reason: EndReason
    #: Why a failed call failed (null when it completed).
    error: str | None = None
    #: Whether the call passed its callee's checks (the agent said the product and the reason).
    success: bool
    #: The callee's checks, each with its verdict and what it saw.
    checks: list[Check] = Field(default_factory=list)
    #: The tool calls the agent made, in order.
    tool_calls: list[ToolCallRecord] = Field(default_factory=list)
    #: False when the result could not be written to the run store (a full or read-only disk):
    #: the call happened and this is its result; the service keeps it and stores it once it can.
    stored: bool = True
    #: Why it could not be stored (names the path), while it is not.
    store_error: str | None = None


class CallbackStatus(BaseModel):
    url: str
    state: Literal["pending", "delivered", "failed"] = "pending"
    attempts: int = 0
    #: The last answer's HTTP status, or why no answer came.
    last_status: int | None = None
    error: str | None = None


class ConversationAccepted(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"id": "call-5d1c0e9a7b3f", "state": "queued", "location": "/api/conversations/call-5d1c0e9a7b3f"}]})

    id: str
    state: Literal["queued", "running", "done", "interrupted"]
    location: str


class ConversationStatus(BaseModel):
    """A call placed with `POST /api/conversations`: its state, and once `done` the same fields
    as `POST /api/conversation/start` answers. `interrupted` (state and status): the service
    stopped before the call ended; it is not placed again (what it said so far, if stored, is here)."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"id": "call-5d1c0e9a7b3f", "state": "running"}]})

    id: str
    state: Literal["queued", "running", "done", "interrupted"]
    conversation_id: str | None = None
    transcript: list[TranscriptTurn] | None = None
    status: Literal["completed", "failed", "interrupted"] | None = None
    duration_seconds: float | None = None
    call_id: str | None = None
    run_id: str | None = None
    end_reason: EndReason | None = None
    error: str | None = None
    success: bool | None = None
    checks: list[Check] | None = None
    tool_calls: list[ToolCallRecord] | None = None
    stored: bool | None = None
    store_error: str | None = None
    callback: CallbackStatus | None = None


class RunCreate(BaseModel):
    """`POST /api/runs`: a batch (personas x repeats) or, with `experiment`, an experiment file's
    run; the options of `voicelab run` / `voicelab experiment`."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"personas": ["anna-double-charge", "marek-already-closed"], "repeats": 2},
        {"agent": "chargeback", "concurrency": 8},
        {"experiment": "experiments/chargeback-reason.yaml", "repeats": 3}]})

    #: An experiment file, relative to the service's folder (its personas, agents and backend).
    experiment: str | None = Field(default=None, max_length=300)
    personas: list[Id] | None = Field(default=None, max_length=1000)
    agent: Id | None = None
    repeats: int | None = Field(default=None, ge=1, le=1000)
    concurrency: int | None = Field(default=None, ge=1, le=64)
    caller: BatchCaller = "scripted"
    mode: Literal["text", "voice"] = "text"
    max_duration_s: float = Field(default=60.0, gt=0, le=3600)
    latency_ms: float = Field(default=0.0, ge=0, le=60_000)
    run_id: RunId | None = None
    #: Pass when at least this share of calls succeeded (default: every call must).
    fail_under: float | None = Field(default=None, ge=0, le=1)


class RunCounts(BaseModel):
    planned: int
    done: int
    passed: int
    failed: int
    running: int


class RunStatus(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "run_id": "run-20261121-101500", "kind": "batch",
        "state": "running", "stopped_by": None,
        "counts": {"planned": 30, "done": 12, "passed": 11, "failed": 0, "running": 4},
        "summary": {"calls": 12, "passed": 11, "success_rate": 0.917}, "gate": None,
        "links": {"report": "/api/runs/run-20261121-101500/report", "calls": "/api/runs/run-20261121-101500/calls"}}]})

    run_id: str
    kind: str
    #: queued (waiting for room under the service's cap) | running | cancelling | finished |
    #: interrupted (resumable with `voicelab run --resume`)
    state: str
    stopped_by: str | None = None
    counts: RunCounts
    #: The report's key figures of the calls stored so far (null where there is nothing to measure).
    summary: dict[str, float | int | None]
    #: Once finished: whether the run passes its CI gates, and why not.
    gate: dict[str, Any] | None = None
    links: dict[str, str]


class FieldError(BaseModel):
    field: str
    message: str


class ErrorBody(BaseModel):
    """Every error the service answers, whatever went wrong."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "status": 422, "error": "invalid_request",
        "detail": "user_info.phone_number: must be an E.164 phone number: + and 7 to 15 digits, no spaces, "
                  "like +48601234567",
        "fields": [{"field": "user_info.phone_number", "message": "must be an E.164 phone number: + and 7 to 15 "
                    "digits, no spaces, like +48601234567"}]}]})

    status: int
    #: A short machine-readable name: invalid_request, unauthorized, not_found, not_configured, ...
    error: str
    #: One readable sentence: what is wrong and what to do.
    detail: str
    fields: list[FieldError] = Field(default_factory=list)
