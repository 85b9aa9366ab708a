"""`tentative_user_transcript` and `vad_score` in voice mode (agent.asyncapi.yaml): sent when the
conversation's client_events ask for them (the client's `conversation.client_events`, else the
agent's), never otherwise. Driven by the unchanged Python SDK with an AudioInterface that speaks
the caller's PCM in real time (what the SDK received is read along on its websocket: it has no
callbacks for these two events), and by the JavaScript client's connection (js/client.mjs), which
cannot send client_events, for an agent whose own client_events list them. Every frame is also
checked against the contract (tests/contracts.py)."""

from __future__ import annotations

import base64
import json
import threading
import time

import pytest
from elevenlabs import ElevenLabs
from elevenlabs.conversational_ai import conversation as sdk_conversation
from elevenlabs.conversational_ai.conversation import (
    AudioInterface,
    ClientTools,
    Conversation,
    ConversationInitiationData,
)

from voicelab.audio.speech import speak, voice_for

from ..conftest import TOOL_RESULTS
from ..wire import ANNA
from .test_js_client import ANN, first, run_js, ws_origin
from .test_js_client import pytestmark as needs_node

pytestmark = [pytest.mark.slow, pytest.mark.realtime,
              pytest.mark.filterwarnings("ignore:connect\\(\\) must be used:DeprecationWarning")]

CHUNK = 8000  # 250 ms of 16 kHz s16le, as the clients send
#: What a voice client of the chargeback agent needs, plus the two events under test.
ASKED = ["audio", "agent_response", "user_transcript", "interruption", "client_tool_call", "agent_tool_response",
         "tentative_user_transcript", "vad_score"]


class Caller(AudioInterface):
    """Silence until the agent's first turn has played out, then `pcm` in real time, then silence."""

    def __init__(self, pcm: bytes) -> None:
        self.pcm = pcm
        self.last_output = 0.0
        self.agent_spoke = threading.Event()
        self.stopped = threading.Event()

    def start(self, input_callback) -> None:  # noqa: ANN001
        def run() -> None:
            said = False
            while not self.stopped.is_set():
                quiet = self.agent_spoke.is_set() and time.monotonic() - self.last_output > 0.8
                if quiet and not said:
                    said = True
                    for offset in range(0, len(self.pcm), CHUNK):
                        input_callback(self.pcm[offset:offset + CHUNK])
                        time.sleep(0.25)
                input_callback(bytes(CHUNK))
                time.sleep(0.25)

        threading.Thread(target=run, daemon=True).start()

    def stop(self) -> None:
        self.stopped.set()

    def output(self, audio: bytes) -> None:
        self.last_output = time.monotonic()

    def interrupt(self) -> None:
        return None


class Spy:
    """The SDK's websocket, reading along: every frame it receives."""

    def __init__(self, ws, received: list[dict]) -> None:  # noqa: ANN001
        self.ws, self.received = ws, received

    def __enter__(self) -> Spy:
        self.ws.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.ws.__exit__(*exc)

    def __getattr__(self, name: str):  # noqa: ANN204
        return getattr(self.ws, name)

    def recv(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201
        message = self.ws.recv(*args, **kwargs)
        if isinstance(message, str):
            self.received.append(json.loads(message))
        return message


def voice_call(url: str, override: dict, monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """One voice conversation with the chargeback agent: the agent asks, the caller says yes, the
    agent answers. Returns every server frame the SDK received."""
    caller = Caller(speak("Yes, this is Anna.", voice_for("caller", "en")))
    tools = ClientTools()
    for name, result in TOOL_RESULTS.items():
        tools.register(name, lambda _params, r=result: r)
    received: list[dict] = []
    connect = sdk_conversation.connect
    monkeypatch.setattr(sdk_conversation, "connect", lambda *a, **k: Spy(connect(*a, **k), received))
    conv = Conversation(ElevenLabs(base_url=url, api_key="local"), "chargeback", requires_auth=False,
                        audio_interface=caller, client_tools=tools,
                        config=ConversationInitiationData(dynamic_variables=ANNA,
                                                          conversation_config_override=override),
                        callback_agent_response=lambda _text: caller.agent_spoke.set())
    conv.start_session()
    deadline = time.time() + 40
    while time.time() < deadline and sum(m["type"] == "agent_response" for m in received) < 2:
        time.sleep(0.1)
    conv.end_session()
    conv.wait_for_session_end()
    assert sum(m["type"] == "agent_response" for m in received) >= 2, [m["type"] for m in received]
    return received


def test_the_client_that_asks_gets_vad_scores_and_tentative_transcripts_before_the_final_one(backend, monkeypatch):
    received = voice_call(backend.base_url, {"conversation": {"client_events": ASKED}}, monkeypatch)
    kinds = [m["type"] for m in received]
    scores = [m["vad_score_event"]["vad_score"] for m in received if m["type"] == "vad_score"]
    assert len(scores) >= 10 and all(0 <= s <= 1 for s in scores)  # one per caller chunk
    assert min(scores) < 0.5 < max(scores)  # silence, and the caller's words
    final = next(m for m in received if m["type"] == "user_transcript")["user_transcription_event"]
    tentative = [m["tentative_user_transcription_event"] for m in received if m["type"] == "tentative_user_transcript"]
    assert tentative and kinds.index("tentative_user_transcript") < kinds.index("user_transcript")
    assert tentative[-1]["user_transcript"] == final["user_transcript"]  # the pause was the turn's end
    assert tentative[-1]["event_id"] == final["event_id"]
    assert "agent_chat_response_part" not in kinds  # not asked for


def test_a_client_that_does_not_ask_gets_the_default_tentative_transcripts_but_no_vad_scores(backend, monkeypatch):
    kinds = {m["type"] for m in voice_call(backend.base_url, {}, monkeypatch)}  # the contract's default list
    assert {"user_transcript", "tentative_user_transcript"} <= kinds and "vad_score" not in kinds


def test_a_client_that_asks_for_neither_gets_neither(backend, monkeypatch):
    asked = [e for e in ASKED if e not in ("vad_score", "tentative_user_transcript")]
    kinds = {m["type"] for m in voice_call(backend.base_url, {"conversation": {"client_events": asked}}, monkeypatch)}
    assert "user_transcript" in kinds and not kinds & {"vad_score", "tentative_user_transcript"}


@needs_node
def test_an_agent_whose_client_events_list_them_sends_them_to_the_js_client(dataset, local_backend):
    chargeback = dataset.agents["chargeback"]
    events = [*chargeback.platform.client_events, "vad_score"]  # tentative transcripts: in the default
    agent = chargeback.model_copy(update={"platform": chargeback.platform.model_copy(update={"client_events": events})})
    server = local_backend(agents={**dataset.agents, "chargeback": agent})
    answer = speak("Yes, this is me.", voice_for("caller", "en"))
    seen = run_js({"mode": "voice", "origin": ws_origin(server.base_url), "agentId": "chargeback",
                   "dynamicVariables": ANN, "tools": {"lookup_dispute": {"result": {"status": "open"}}},
                   "steps": [{"wait": "agent", "count": 1}, {"silenceMs": 5500},
                             {"pcm": base64.b64encode(answer).decode()}, {"silenceMs": 1000},
                             {"wait": "user", "count": 1}, {"end": True}]})
    scores = [e["score"] for e in seen if e["event"] == "vad_score"]
    assert scores and min(scores) < 0.5 < max(scores)
    heard = first(seen, "tentative_user_transcript")
    final = next(e for e in seen if e["event"] == "message" and e["role"] == "user")
    assert heard["message"] == final["message"] and seen.index(heard) < seen.index(final)
