"""What the REST service reads and writes on the wire (its OpenAPI schema is made from these).

They are transport shapes, not voicelab's data: a stored call is still a `models.CallResult`;
`ConversationResponse` is the original conversation service's answer made from one. The
original contract's field names and types never change; new fields may only be added after them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AnyHttpUrl, BaseModel, ConfigDict, Field, StringConstraints

from ..models import E164_PATTERN, EndReason

#: A required piece of text: surrounding spaces are dropped, and it may not be empty after that.
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Id = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]*$", max_length=100)]


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


class ConversationCreate(ConversationStartRequest):
    """`POST /api/conversations`: the same body, plus who answers, which agent calls, and where
    to send the result when the call ends."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {**ANNA, "callback_url": "http://crm.example.internal/hooks/call-ended"},
        {**ANNA, "persona_id": "marek-angry", "agent_id": "chargeback"}]})

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
    state: Literal["queued", "running", "done"]
    location: str


class ConversationStatus(BaseModel):
    """A call placed with `POST /api/conversations`: its state, and once `done` the same fields
    as `POST /api/conversation/start` answers."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"id": "call-5d1c0e9a7b3f", "state": "running"}]})

    id: str
    state: Literal["queued", "running", "done"]
    conversation_id: str | None = None
    transcript: list[TranscriptTurn] | None = None
    status: Literal["completed", "failed"] | None = None
    duration_seconds: float | None = None
    call_id: str | None = None
    run_id: str | None = None
    end_reason: EndReason | None = None
    error: str | None = None
    success: bool | None = None
    callback: CallbackStatus | None = None


class RunCreate(BaseModel):
    """`POST /api/runs`: a batch (personas x repeats) or, with `experiment`, an experiment file's
    run; the options of `voicelab run` / `voicelab experiment`."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"personas": ["anna-double-charge", "marek-angry"], "repeats": 2},
        {"agent": "chargeback", "concurrency": 8},
        {"experiment": "experiments/chargeback-reason.yaml", "repeats": 3}]})

    #: An experiment file, relative to the service's folder (its personas, agents and backend).
    experiment: str | None = Field(default=None, max_length=300)
    personas: list[Id] | None = Field(default=None, max_length=1000)
    agent: Id | None = None
    repeats: int | None = Field(default=None, ge=1, le=1000)
    concurrency: int | None = Field(default=None, ge=1, le=64)
    caller: Literal["scripted", "platform", "phone"] = "scripted"
    mode: Literal["text", "voice"] = "text"
    max_duration_s: float = Field(default=60.0, gt=0, le=3600)
    latency_ms: float = Field(default=0.0, ge=0, le=60_000)
    run_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]+$", max_length=100)] | None = None
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
    #: running | cancelling | finished | interrupted (resumable with `voicelab run --resume`)
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
