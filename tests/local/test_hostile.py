"""Hostile and malformed client input against the local backend, over a raw websocket (no SDK
to tidy the frames): every case is refused the platform's way (ignored, or an `error` event and
close 1008 with a reason), never 1011, never a traceback, and the server goes on serving. REST
bodies the same: a 4xx in the platform's error shape, never a 500."""

from __future__ import annotations

import base64
import json
import logging
import os
import socket
import struct
import time

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from voicelab.local.messages import MAX_FRAME_BYTES

from ..wire import ANNA, init, is_agent, open_conversation, read_until

IGNORED = "ignored"
pytestmark = pytest.mark.filterwarnings("ignore:connect\\(\\) must be used:DeprecationWarning")


def outcome_of(ws, frames: list[str | bytes]) -> tuple[str, int | None, str]:
    """Send the frames after the first agent turn; then either the conversation still answers a
    user message (ignored) or it was closed (the code and reason)."""
    try:
        read_until(ws, is_agent)
        for frame in frames:
            ws.send(frame)
        ws.send(json.dumps({"type": "user_message", "text": "Yes, this is Anna."}))
        seen = read_until(ws, is_agent)
        errors = [f for f in seen if f["type"] == "error"]
        return IGNORED, None, errors[0]["error_event"]["message"] if errors else ""
    except ConnectionClosed:
        return "closed", ws.close_code, ws.close_reason or ""


B64 = base64.b64encode(b"\x00\x01" * 800).decode()
#: JSON nested past what Python's parser takes (RecursionError), and deep but parseable.
ABYSS = "[" * 100_000 + "]" * 100_000
DEEP = "[" * 900 + "]" * 900

# (name, frames sent mid-conversation, text-only?, expected: IGNORED or (1008, reason part))
CASES = [
    ("json array", ["[1, 2]"], True, IGNORED),
    ("json string", ['"hello"'], True, IGNORED),
    ("json number", ["42"], True, IGNORED),
    ("json null", ["null"], True, IGNORED),
    ("no type", ['{"text": "hi"}'], True, IGNORED),
    ("unknown type", ['{"type": "launch_missiles"}'], True, IGNORED),
    ("type not a string", ['{"type": 7}'], True, IGNORED),
    ("not json", ["this is not json"], True, (1008, "not JSON")),
    ("binary frame", [b"\x00\x01\x02"], True, (1008, "binary frames")),
    ("oversized frame", [json.dumps({"type": "user_message", "text": "a" * (MAX_FRAME_BYTES + 10)})], True,
     (1008, "larger than")),
    ("user_message text a number", ['{"type": "user_message", "text": 5}'], True, (1008, "user_message.text")),
    ("user_message text null", ['{"type": "user_message", "text": null}'], True, IGNORED),  # text is optional:
    ("user_message without text", ['{"type": "user_message"}'], True, IGNORED),  # the text-only signal
    ("user_message rich_content_id a list", ['{"type": "user_message", "text": "hi", "rich_content_id": []}'],
     True, (1008, "rich_content_id")),
    ("user_message too long", [json.dumps({"type": "user_message", "text": "a" * 20_001})], True,
     (1008, "longer than")),
    ("contextual_update text an object", ['{"type": "contextual_update", "text": {}}'], True,
     (1008, "contextual_update.text")),
    ("pong event_id a string", ['{"type": "pong", "event_id": "1"}'], True, (1008, "pong.event_id")),
    ("pong event_id null", ['{"type": "pong", "event_id": null}'], True, (1008, "pong.event_id")),
    ("pong event_id a boolean", ['{"type": "pong", "event_id": true}'], True, (1008, "pong.event_id")),
    ("pong for a ping never sent", ['{"type": "pong", "event_id": 99999}'], True, IGNORED),
    ("feedback score wrong", ['{"type": "feedback", "score": "meh", "event_id": 1}'], True, (1008, "feedback.score")),
    ("feedback event_id a string", ['{"type": "feedback", "score": "like", "event_id": "x"}'], True,
     (1008, "feedback.event_id")),
    ("feedback on an unknown turn", ['{"type": "feedback", "score": "like", "event_id": 12345}'], True, IGNORED),
    ("client_tool_result without id", ['{"type": "client_tool_result", "result": "x"}'], True,
     (1008, "tool_call_id")),
    ("client_tool_result is_error a string", ['{"type": "client_tool_result", "tool_call_id": "a", '
                                              '"is_error": "no"}'], True, (1008, "is_error")),
    ("mcp approval wrong types", ['{"type": "mcp_tool_approval_result", "tool_call_id": 1, "is_approved": "y"}'],
     True, (1008, "mcp_tool_approval_result")),
    ("multimodal text a string", ['{"type": "multimodal_message", "text": "hi"}'], True,
     (1008, "multimodal_message.text")),
    ("second initiation", [init()], True, (1008, "only be the first")),
    ("audio chunk a number", ['{"user_audio_chunk": 42}'], False, (1008, "base64 string")),
    ("audio chunk not base64", ['{"user_audio_chunk": "%%%not base64%%%"}'], False, (1008, "not valid base64")),
    ("audio chunk odd bytes", [json.dumps({"user_audio_chunk": base64.b64encode(b"\x00\x01\x02").decode()})], False,
     (1008, "even number of bytes")),
    ("audio chunk in a text conversation", [json.dumps({"user_audio_chunk": B64})], True, IGNORED),
    ("user_activity with junk", ['{"type": "user_activity", "extra": [1, {"a": null}]}'], True, IGNORED),
    ("json nested 100,000 deep", [ABYSS], True, (1008, "nested deeper")),
    ("user_message with a field nested 100,000 deep", ['{"type": "user_message", "text": "hi", "x": ' + ABYSS + "}"],
     True, (1008, "nested deeper")),
    ("client_tool_result nested 900 deep", ['{"type": "client_tool_result", "tool_call_id": "a", "result": '
                                            + DEEP + "}"], True, (1008, "nested deeper")),
]


@pytest.fixture()
def no_tracebacks(caplog):
    caplog.set_level(logging.WARNING, logger="voicelab")
    yield
    crashes = [r for r in caplog.records if r.exc_info or "crash" in r.getMessage()]
    assert not crashes, [r.getMessage() for r in crashes]


@pytest.mark.parametrize(("name", "frames", "text_only", "expected"), CASES, ids=[c[0] for c in CASES])
def test_malformed_frame_is_refused_not_crashed(backend, no_tracebacks, name, frames, text_only, expected):
    ws = open_conversation(backend.base_url, text_only=text_only)
    kind, code, reason = outcome_of(ws, frames)
    ws.close()
    if expected == IGNORED:
        assert kind == IGNORED, (kind, code, reason)
    else:
        assert (kind, code) == ("closed", expected[0]) and expected[1] in reason, (kind, code, reason)
        assert reason.startswith("invalid_message")


FIRST_FRAMES = [
    ("not json first", "hello", "must be JSON"),
    ("user_message before initiation", '{"type": "user_message", "text": "hi"}', "expected conversation_initiation"),
    ("array first", "[]", "expected conversation_initiation"),
    ("binary first", b"\x00\x01", "must be JSON"),
    ("variables a list", init(dynamic_variables=["a"]), "dynamic_variables must be an object"),
    ("variable an object", init(dynamic_variables={**ANNA, "first_name": {"x": 1}}), "string, number or boolean"),
    ("client sets system__", init(dynamic_variables={**ANNA, "system__agent_id": "other"}), "reserved prefix"),
    ("override a string", init(conversation_config_override="text_only"), "must be an object"),
    ("override agent a list", init(conversation_config_override={"agent": []}), "override.agent must be"),
    ("first_message a number", init(conversation_config_override={"agent": {"first_message": 5}}),
     "first_message must be a string"),
    ("first frame nested 100,000 deep", '{"type": "conversation_initiation_client_data", "x": ' + ABYSS + "}",
     "nested deeper"),
    ("override nested 900 deep", '{"type": "conversation_initiation_client_data", "conversation_config_override": '
     '{"agent": {"prompt": ' + DEEP + "}}}", "nested deeper"),
]


@pytest.mark.parametrize(("name", "first", "reason"), FIRST_FRAMES, ids=[c[0] for c in FIRST_FRAMES])
def test_bad_first_frame_is_refused_1008(backend, no_tracebacks, name, first, reason):
    ws = open_conversation(backend.base_url, first=first)
    with pytest.raises(ConnectionClosed):
        read_until(ws, is_agent)
    assert ws.close_code == 1008 and reason in (ws.close_reason or ""), (ws.close_code, ws.close_reason)


def test_a_refused_deep_frame_leaves_the_server_serving(backend, no_tracebacks):
    ws = open_conversation(backend.base_url, first=ABYSS)
    with pytest.raises(ConnectionClosed):
        read_until(ws, is_agent)
    assert ws.close_code == 1008
    other = open_conversation(backend.base_url)
    assert "Anna" in read_until(other, is_agent)[-1]["agent_response_event"]["agent_response"]
    other.close()


@pytest.mark.parametrize("path", ["/v1/convai/agent-testing/create", "/v1/convai/agents/chargeback/run-tests",
                                  "/v1/convai/agents/chargeback/simulate-conversation",
                                  "/v1/convai/twilio/outbound-call"])
@pytest.mark.parametrize("body", [ABYSS, '{"name": ' + DEEP + "}"], ids=["100000 deep", "900 deep"])
def test_a_deeply_nested_rest_body_is_a_422_not_a_500(backend, no_tracebacks, path, body):
    got = httpx.post(backend.base_url + path, content=body, headers={"Content-Type": "application/json"})
    assert got.status_code == 422, got.text
    assert "nested deeper" in got.json()["detail"][0]["msg"]


def test_a_deeply_nested_mock_result_is_a_422_not_a_500(backend, no_tracebacks):
    test = {"name": "t", "type": "simulation", "simulation_scenario": "A caller.",
            "tool_mock_overrides": {"lookup_dispute": [{"mock_result": ABYSS}]}}
    got = httpx.post(backend.base_url + "/v1/convai/agent-testing/create", json=test)
    assert got.status_code == 422 and "nested deeper" in got.json()["detail"][0]["msg"], got.text


def test_override_of_a_field_the_agent_does_not_allow(local_backend, dataset):
    agent = dataset.agents["chargeback"]
    locked = agent.model_copy(update={"platform": agent.platform.model_copy(update={"allowed_overrides": []})})
    server = local_backend(agents={"chargeback": locked})
    ws = open_conversation(server.base_url, first=init(conversation_config_override={"agent": {"prompt": {
        "llm": "gpt-4o"}}}))
    frames = []
    with pytest.raises(ConnectionClosed):
        while True:
            frames.append(json.loads(ws.recv(timeout=5)))
    assert frames[0]["type"] == "conversation_initiation_metadata" and frames[1]["type"] == "error"
    assert ws.close_code == 1008 and ws.close_reason == "Override for field 'llm' is not allowed by config."


def test_a_flood_of_messages_is_answered_without_losing_the_server(backend, no_tracebacks):
    ws = open_conversation(backend.base_url)
    read_until(ws, is_agent)
    for i in range(2000):
        ws.send(json.dumps({"type": "user_message", "text": f"message {i}"}))
    seen = read_until(ws, is_agent, timeout=10)
    assert is_agent(seen[-1])  # everything was heard as one turn and answered
    ws.close()
    other = open_conversation(backend.base_url)  # and the server still serves others
    assert "Anna" in read_until(other, is_agent)[-1]["agent_response_event"]["agent_response"]
    other.close()


def test_oversized_text_total_closes_the_conversation(local_backend, no_tracebacks, monkeypatch):
    monkeypatch.setattr("voicelab.local.session.MAX_CONVERSATION_TEXT", 50_000)
    server = local_backend()
    ws = open_conversation(server.base_url)
    read_until(ws, is_agent)
    with pytest.raises(ConnectionClosed):
        for _ in range(100):
            ws.send(json.dumps({"type": "contextual_update", "text": "x" * 1000}))
        read_until(ws, lambda f: False, timeout=5)
    assert ws.close_code == 1008 and "characters of messages" in ws.close_reason


class DeafClient:
    """A websocket client that never reads after the handshake, with a tiny receive buffer: what
    the server sends piles up in TCP, as with a client that hung."""

    def __init__(self, base_url: str, path: str) -> None:
        host, port = base_url.removeprefix("http://").split(":")
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect((host, int(port)))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                          f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
        response = b""
        while b"\r\n\r\n" not in response:
            response += self.sock.recv(1)
        assert response.startswith(b"HTTP/1.1 101"), response

    def send(self, text: str) -> None:
        payload, mask = text.encode(), os.urandom(4)
        n = len(payload)
        if n < 126:
            length = bytes([0x80 | n])
        elif n < 65536:
            length = bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            length = bytes([0x80 | 127]) + struct.pack(">Q", n)
        header = bytes([0x81]) + length
        self.sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def close(self) -> None:
        self.sock.close()


def test_a_client_that_stops_reading_is_dropped_not_buffered_for(local_backend, monkeypatch):
    """The agent's words to a client that reads nothing are not queued without limit: once a send
    has been stuck for SEND_STALL_S the conversation is dropped, stored as failed with the reason."""
    monkeypatch.setattr("voicelab.local.session.SEND_STALL_S", 1.0)
    server = local_backend()
    client = DeafClient(server.base_url, "/v1/convai/conversation?agent_id=chargeback")
    huge = "Hello {{first_name}}, " + "this is a very long greeting. " * 30_000  # ~1 MB per agent turn
    client.send(init(conversation_config_override={"text_only": True, "agent": {"first_message": huge}}))
    for _ in range(40):  # each "repeat" makes the agent say its 1 MB turn again
        try:
            client.send(json.dumps({"type": "user_message", "text": "Sorry, can you repeat that?"}))
        except OSError:
            break  # the server has dropped us already
        time.sleep(0.1)
    deadline = time.time() + 20
    while time.time() < deadline:
        page = server.history.page(page_size=1)["conversations"]
        if page and page[0]["status"] == "failed":
            break
        time.sleep(0.2)
    record = server.history.get(page[0]["conversation_id"])
    assert record.status == "failed" and "stopped reading" in record.termination_reason, record.termination_reason
    agent_turns = sum(1 for t in record.transcript if t["role"] == "agent")
    assert agent_turns < 20  # it stopped speaking into the void long before the 41 turns asked for
    client.close()
