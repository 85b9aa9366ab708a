"""Every server-to-client websocket frame of the local backend, built in one place.

One function per frame kind (elevenlabs-protocol.md §2.3), keyword arguments only, returning the
object exactly as it goes on the wire: the SDKs read these by key, and some keys must be present
even when empty (`ping_ms`, `audio_base_64`), so a builder never drops a field. Key order is kept
too, so the JSON text stays the same frame for frame (recordings and logs compare equal).
Whether a frame is sent at all (the agent's client_events) is the session's business, not theirs.
"""

from __future__ import annotations

import base64
from typing import Any, Literal

Frame = dict[str, Any]


def conversation_initiation_metadata(*, conversation_id: str, agent_output_audio_format: str = "pcm_16000",
                                     user_input_audio_format: str = "pcm_16000") -> Frame:
    """§2.3 conversation_initiation_metadata: the first server frame, exactly once. The format
    fields are ignored by Python but required by the JS SDK."""
    return {"type": "conversation_initiation_metadata",
            "conversation_initiation_metadata_event": {
                "conversation_id": conversation_id,
                "agent_output_audio_format": agent_output_audio_format,
                "user_input_audio_format": user_input_audio_format}}


def ping(*, event_id: int, ping_ms: int | None) -> Frame:
    """§2.3 ping: `ping_ms` is always present (null before the first pong), or the Python SDK's
    latency callback raises KeyError."""
    return {"type": "ping", "ping_event": {"event_id": event_id, "ping_ms": ping_ms}}


def agent_response(*, text: str, event_id: int) -> Frame:
    """§2.3 agent_response: the full text of one agent turn (§2.4: the turn's id)."""
    return {"type": "agent_response", "agent_response_event": {"agent_response": text, "event_id": event_id}}


def agent_chat_response_part(*, text: str, part: Literal["start", "delta", "stop"], event_id: int) -> Frame:
    """§2.3 agent_chat_response_part: streamed text of a text-only turn (§2.6); `start` and
    `stop` carry empty text."""
    return {"type": "agent_chat_response_part",
            "text_response_part": {"text": text, "type": part, "event_id": event_id}}


def audio(*, pcm: bytes, event_id: int) -> Frame:
    """§2.3 audio: one chunk of the agent's 16 kHz PCM, base64; no `alignment` (it is optional)."""
    return {"type": "audio", "audio_event": {"audio_base_64": base64.b64encode(pcm).decode(), "event_id": event_id}}


def user_transcript(*, text: str, event_id: int) -> Frame:
    """§2.3 user_transcript: the final ASR text of one caller turn."""
    return {"type": "user_transcript", "user_transcription_event": {"user_transcript": text, "event_id": event_id}}


def tentative_user_transcript(*, text: str, event_id: int) -> Frame:
    """tentative_user_transcript (agent.asyncapi.yaml): the caller's turn as heard so far, while
    it goes on (it may still change); `event_id` is the one its final user_transcript will have."""
    return {"type": "tentative_user_transcript",
            "tentative_user_transcription_event": {"user_transcript": text, "event_id": event_id}}


def vad_score(*, score: float) -> Frame:
    """vad_score (agent.asyncapi.yaml): how likely the caller's last audio chunk is speech, 0 to 1."""
    return {"type": "vad_score", "vad_score_event": {"vad_score": score}}


def interruption(*, event_id: int) -> Frame:
    """§2.3 interruption, §2.5: an id larger than the cut-off turn's, so both SDKs drop its audio."""
    return {"type": "interruption", "interruption_event": {"event_id": event_id}}


def agent_response_correction(*, original: str, corrected: str, event_id: int) -> Frame:
    """§2.3 agent_response_correction, §2.5: the cut-off turn (its own id) as it was really heard."""
    return {"type": "agent_response_correction", "agent_response_correction_event": {
        "original_agent_response": original, "corrected_agent_response": corrected, "event_id": event_id}}


def agent_tool_request(*, tool_name: str, tool_call_id: str, tool_type: str, event_id: int) -> Frame:
    """§2.3 (events the Python SDK ignores) agent_tool_request: the agent starts a tool call."""
    return {"type": "agent_tool_request", "agent_tool_request": {
        "tool_name": tool_name, "tool_call_id": tool_call_id, "tool_type": tool_type, "event_id": event_id}}


def agent_tool_response(*, tool_name: str, tool_call_id: str, tool_type: str, is_error: bool, event_id: int,
                        is_called: bool = True) -> Frame:
    """§2.3 (events the Python SDK ignores) agent_tool_response: the call's outcome. The JS client
    ends its session on the one for end_call."""
    return {"type": "agent_tool_response", "agent_tool_response": {
        "tool_name": tool_name, "tool_call_id": tool_call_id, "tool_type": tool_type, "is_error": is_error,
        "is_called": is_called, "event_id": event_id}}


def client_tool_call(*, tool_name: str, tool_call_id: str, parameters: dict[str, Any], event_id: int) -> Frame:
    """§2.3 client_tool_call: the client runs the tool and answers with client_tool_result (§2.2)."""
    return {"type": "client_tool_call", "client_tool_call": {
        "tool_name": tool_name, "tool_call_id": tool_call_id, "parameters": parameters, "event_id": event_id}}


def error(*, code: int, error_type: str, message: str, reason: str | None = None) -> Frame:
    """§2.3 error (and §2.7): sent just before the server closes on an error; `reason` repeats
    `message` unless given."""
    return {"type": "error", "error_event": {"code": code, "error_type": error_type, "message": message,
                                             "reason": message if reason is None else reason}}
