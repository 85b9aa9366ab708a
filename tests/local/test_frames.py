"""The local backend's frame builders give, byte for byte, the JSON its frames always had
(the literals below are those the session and channels sent before voicelab/local/frames.py)."""

import base64
import json

import pytest

from voicelab.local import frames

PCM = b"\x01\x00\xff\x7f" * 4
CASES = [
    (frames.conversation_initiation_metadata(conversation_id="conv_x"),
     {"type": "conversation_initiation_metadata", "conversation_initiation_metadata_event": {
         "conversation_id": "conv_x", "agent_output_audio_format": "pcm_16000",
         "user_input_audio_format": "pcm_16000"}}),
    (frames.ping(event_id=3, ping_ms=None), {"type": "ping", "ping_event": {"event_id": 3, "ping_ms": None}}),
    (frames.ping(event_id=4, ping_ms=12), {"type": "ping", "ping_event": {"event_id": 4, "ping_ms": 12}}),
    (frames.agent_response(text="Hi.", event_id=7),
     {"type": "agent_response", "agent_response_event": {"agent_response": "Hi.", "event_id": 7}}),
    (frames.agent_chat_response_part(text="", part="start", event_id=7),
     {"type": "agent_chat_response_part", "text_response_part": {"text": "", "type": "start", "event_id": 7}}),
    (frames.agent_chat_response_part(text="Hi.", part="delta", event_id=7),
     {"type": "agent_chat_response_part", "text_response_part": {"text": "Hi.", "type": "delta", "event_id": 7}}),
    (frames.audio(pcm=PCM, event_id=7),
     {"type": "audio", "audio_event": {"audio_base_64": base64.b64encode(PCM).decode(), "event_id": 7}}),
    (frames.user_transcript(text="yes", event_id=8),
     {"type": "user_transcript", "user_transcription_event": {"user_transcript": "yes", "event_id": 8}}),
    (frames.interruption(event_id=9), {"type": "interruption", "interruption_event": {"event_id": 9}}),
    (frames.agent_response_correction(original="a b c", corrected="a", event_id=7),
     {"type": "agent_response_correction", "agent_response_correction_event": {
         "original_agent_response": "a b c", "corrected_agent_response": "a", "event_id": 7}}),
    (frames.agent_tool_request(tool_name="t", tool_call_id="toolu_1", tool_type="client", event_id=2),
     {"type": "agent_tool_request", "agent_tool_request": {
         "tool_name": "t", "tool_call_id": "toolu_1", "tool_type": "client", "event_id": 2}}),
    (frames.agent_tool_response(tool_name="t", tool_call_id="toolu_1", tool_type="client", is_error=True, event_id=2),
     {"type": "agent_tool_response", "agent_tool_response": {
         "tool_name": "t", "tool_call_id": "toolu_1", "tool_type": "client", "is_error": True, "is_called": True,
         "event_id": 2}}),
    (frames.client_tool_call(tool_name="t", tool_call_id="toolu_1", parameters={"a": "1"}, event_id=2),
     {"type": "client_tool_call", "client_tool_call": {
         "tool_name": "t", "tool_call_id": "toolu_1", "parameters": {"a": "1"}, "event_id": 2}}),
    (frames.error(code=1008, error_type="override_error", message="no"),
     {"type": "error", "error_event": {"code": 1008, "error_type": "override_error", "message": "no",
                                       "reason": "no"}}),
    (frames.error(code=1000, error_type="max_duration_exceeded", message="Maximum duration exceeded",
                  reason="Maximum duration exceeded"),
     {"type": "error", "error_event": {"code": 1000, "error_type": "max_duration_exceeded",
                                       "message": "Maximum duration exceeded", "reason": "Maximum duration exceeded"}}),
]


@pytest.mark.parametrize(("built", "literal"), CASES, ids=[c[1]["type"] for c in CASES])
def test_a_built_frame_is_the_same_json_text_as_the_literal_it_replaced(built, literal) -> None:
    assert json.dumps(built) == json.dumps(literal)
