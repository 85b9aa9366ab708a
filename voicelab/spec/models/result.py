"""One finished call as stored (runs/<run_id>/calls.jsonl): transcript, metrics, checks, tool
calls and the platform's own analysis. Output models, plain JSON (not strict), so that tables,
charts and reports are pure functions of what is stored; they need none of the input models.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from voicelab.spec.models.base import Backend, CallerKind, Mode

Speaker = Literal["agent", "user"]
EndReason = Literal["agent_ended", "caller_ended", "timeout", "disconnected", "error", "cancelled"]


class TranscriptEntry(BaseModel):
    speaker: Speaker
    text: str
    timestamp: float  # seconds from call start
    #: For agent turns that answer a user turn: ms from that user turn to this one.
    latency_ms: float | None = None
    #: An agent turn cut off by the caller: what it meant to say (`text` is what was heard, from
    #: the platform's agent_response_correction).
    original_text: str | None = None
    #: An agent turn the caller cut off (barge-in): the platform corrected it to what was said.
    interrupted: bool = False
    #: Voice calls, a caller turn the persona spoke (synthetic voice, agent caller): what it said.
    #: `text` is then what the agent's speech recognition heard (its `user_transcript`; "" when
    #: it reported nothing for this turn before the call ended). None in text calls and for a
    #: person at a microphone (only what the agent heard is known).
    said: str | None = None
    #: Voice calls, agent turns, when transcripts are compared (`expect.transcripts_agree`, or
    #: the request's `compare_transcripts`): voicelab's own recognition of this turn's recorded
    #: agent audio ("" when the recording has no speech there). None: not recognised.
    audio_text: str | None = None


class BargeIn(BaseModel):
    """One timed barge-in of a voice call (`caller.interrupt`) and how the agent took it."""

    agent_turn: int
    said: str
    backchannel: bool = False
    #: Seconds into the call the caller's speech began (its first loud frame went out).
    onset_s: float | None = None
    #: ms from that onset to the platform's `interruption` event (None: none came).
    interruption_ms: float | None = None
    #: ms from that onset to the agent's audio stopping at the caller (cut, or its turn ended).
    audio_stop_ms: float | None = None
    #: The agent stopped for it (an `interruption` event came).
    stopped: bool = False
    #: The interrupted agent turn was corrected in the transcript to what was really said.
    corrected: bool = False
    #: The agent's next turn came after the caller's words and was not its cut-off turn again.
    answered: bool = False


class ToolCallRecord(BaseModel):
    """One tool call the agent made in a call, as the calling side saw it (client tools: their
    handler; webhook and system tools: the `agent_tool_request` / `agent_tool_response` events,
    their arguments and results from the conversation's history when it was fetched)."""

    tool: str
    type: str = "client"
    #: The platform's id of the call (client_tool_call.tool_call_id / the history's request_id).
    id: str | None = None
    args: dict[str, Any] = Field(default_factory=dict)
    result: Any = None
    is_error: bool = False
    #: Seconds into the call when the agent asked for it, and how long the answer took.
    at: float = 0.0
    latency_ms: float | None = None
    #: How many transcript entries came before it (the turn it follows); None: only its time is known.
    turn: int | None = None


class Check(BaseModel):
    name: str
    passed: bool
    detail: str


class Metrics(BaseModel):
    turns: int = 0
    agent_turns: int = 0
    user_turns: int = 0
    response_latency_ms: list[float] = Field(default_factory=list)
    interruptions: int = 0
    #: Voice calls: seconds the caller spoke / seconds of agent audio received.
    talk_ratio: float | None = None
    #: Voice calls: word error rate of what the agent heard against what the persona said.
    wer: float | None = None
    #: Voice calls, per agent turn: end of the caller's speech -> the first agent audio chunk
    #: arriving, and -> the first chunk with speech in it (time to first audio).
    first_audio_ms: list[float] = Field(default_factory=list)
    first_speech_ms: list[float] = Field(default_factory=list)
    #: Voice calls: the caller's audio condition ('clean' when none) and the frames it dropped.
    condition: str | None = None
    frames_lost: int = 0
    #: Voice calls with `caller.interrupt`: each timed barge-in and the agent's reaction.
    barge_ins: list[BargeIn] = Field(default_factory=list)


class PlatformConversation(BaseModel):
    """`analysis` of a call on the hosted platform: GET /v1/convai/conversations/{id} after the call."""

    source: Literal["platform"] = "platform"
    status: str | None = None
    call_successful: str | None = None
    transcript_summary: str | None = None
    evaluation_criteria_results: dict[str, dict[str, Any]] = Field(default_factory=dict)
    data_collection_results: dict[str, dict[str, Any]] = Field(default_factory=dict)
    call_duration_secs: float | None = None
    cost: float | None = None
    termination_reason: str | None = None
    transcript: list[dict[str, Any]] = Field(default_factory=list)
    #: The tool calls in the platform's history (tool, type, args, result, is_error), and where
    #: they differ from what voicelab saw during the call (empty: they agree).
    tool_calls: list[dict[str, Any]] = Field(default_factory=list)
    tool_calls_differ: list[str] = Field(default_factory=list)
    #: Set when the platform's record could not be fetched; the fields above are then empty.
    error: str | None = None


class PlatformToolTest(BaseModel):
    """One agent-testing tool-call test made from a simulated conversation: does the agent's next
    turn after the first `history_turns` items call (or not call) `tool`?"""

    tool: str
    expect: Literal["called", "not_called"]
    history_turns: int
    #: passed | failed (the platform's verdict) | error | cancelled | not_run (and why, below)
    status: str
    rationale: str | None = None
    test_id: str | None = None
    test_run_id: str | None = None


class PlatformTestRun(BaseModel):
    """`analysis` of a call the platform's simulated user played (agent-testing)."""

    source: Literal["platform-test"] = "platform-test"
    test_run_id: str | None = None
    test_id: str | None = None
    status: str | None = None
    call_successful: str | None = None
    rationale: str | None = None
    transcript: list[dict[str, Any]] = Field(default_factory=list)
    #: The tool-call tests run on the simulated conversation (persona's agent_calls / never_calls).
    tool_tests: list[PlatformToolTest] = Field(default_factory=list)

    def verdict(self) -> tuple[str | None, str | None]:
        """The simulation's verdict, turned to failure by any failed tool-call test (named)."""
        failed = [t for t in self.tool_tests if t.status == "failed"]
        if not failed:
            return self.call_successful, self.rationale
        named = "; ".join(f"{t.tool} {t.expect.replace('_', ' ')} after {t.history_turns} turns: {t.rationale}"
                          for t in failed)
        return "failure", f"{self.rationale or ''} Tool-call tests failed: {named}".strip()


#: The platform's own view of a call, one shape per `source`.
Analysis = Annotated[PlatformConversation | PlatformTestRun, Field(discriminator="source")]


class CallResult(BaseModel):
    """One finished call, as stored (one JSON line in runs/<run_id>/calls.jsonl)."""

    conversation_id: str | None
    status: Literal["completed", "failed"]
    duration_seconds: float
    transcript: list[TranscriptEntry]
    run_id: str | None = None
    call_id: str | None = None
    persona_id: str
    agent_id: str
    backend: Backend
    caller: CallerKind
    mode: Mode
    started_at: str
    end_reason: EndReason
    error: str | None = None
    metrics: Metrics = Field(default_factory=Metrics)
    checks: list[Check] = Field(default_factory=list)
    success: bool = False
    analysis: Analysis | None = None
    audio_path: str | None = None
    #: REST retries made for this call (429 / 5xx), so a flaky platform shows in the results.
    retries: list[dict] = Field(default_factory=list)
    #: Tool calls the agent made, in order.
    tool_calls: list[ToolCallRecord] = Field(default_factory=list)
    #: The experiment variant (None outside experiments).
    variant: str | None = None
    #: `caller: agent`: the caller agent's own conversation, and its transcript (its `agent` turns
    #: are the persona's words, its `user` turns what it heard of the agent under test).
    caller_conversation_id: str | None = None
    caller_transcript: list[TranscriptEntry] | None = None
    #: When transcripts are compared: the conversation as the backend stored it (GET
    #: /v1/convai/conversations/{id} after the call), its turns with words in order (`text` its
    #: message, `timestamp` its time_in_call_secs). None: not fetched, or it could not be.
    stored_transcript: list[TranscriptEntry] | None = None
    #: `--cluster`: the Dask worker that placed the call (its address), so a slow or failing
    #: machine shows in the results; None when the run's own process placed it.
    worker: str | None = None
