"""One websocket conversation on the local backend, speaking elevenlabs-protocol.md §2.

Order of a session: read `conversation_initiation_client_data`; refuse (close 1008) an unknown
agent or a missing dynamic variable; send `conversation_initiation_metadata` exactly once; say
the first message; then answer caller turns through the flow, re-prompt on silence, ping
periodically, and close 1000 after an `end_call` step.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import math
import time
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from ..datasets import agent_variables
from .faults import Fault
from .flow import FlowEngine, Reply
from .history import ConversationRecord, new_conversation_id
from .voice import VoiceChannel

if TYPE_CHECKING:
    from .server import LocalBackend

INIT_TIMEOUT_S = 10.0
END_CALL_REASON = "end_call tool was called."


def _text_only(override: dict[str, Any]) -> bool:
    # SDK 2.78 sends a top-level `text_only`; the documented place is conversation.text_only.
    conversation = override.get("conversation") or {}
    return bool(override.get("text_only") or conversation.get("text_only"))


def overridden_fields(override: dict[str, Any]) -> list[str]:
    """The overridable fields a client set (empty values count as not provided)."""
    agent = override.get("agent") or {}
    fields = []
    if (agent.get("prompt") or {}).get("prompt"):
        fields.append("prompt")
    for name in ("first_message", "language"):
        if agent.get(name):
            fields.append(name)
    if (override.get("tts") or {}).get("voice_id"):
        fields.append("voice_id")
    return fields


class Session:
    def __init__(self, backend: LocalBackend, request: web.Request, ws: web.WebSocketResponse) -> None:
        self.backend = backend
        self.request = request
        self.ws = ws
        self.event_id = 0
        self.agent_turns = 0
        self.fault: Fault | None = None
        self.record: ConversationRecord | None = None
        self.engine: FlowEngine | None = None
        self.pending: list[str] = []
        self.reply_task: asyncio.Task | None = None
        self.last_activity = time.monotonic()
        self.ping_sent: dict[int, float] = {}
        self.ping_ms: int | None = None
        self.ping_count = 0
        self.closed = False
        self.voice: VoiceChannel | None = None  # set for audio conversations

    # ------------------------------------------------------------------ sending

    async def send(self, payload: dict[str, Any]) -> None:
        if not self.ws.closed:
            await self.ws.send_str(json.dumps(payload))

    def next_id(self) -> int:
        self.event_id += 1
        return self.event_id

    async def say(self, reply: Reply, not_before: float = 0.0) -> None:
        """One agent turn: streamed text parts and the full response (text mode), or the response
        and its audio (voice mode, first audio no earlier than `not_before`)."""
        assert self.record is not None
        if self.closed:
            return
        event_id = self.next_id()
        if self.voice is not None:
            self.record.add("agent", reply.text)
            self.voice.event_id = event_id
            await self.voice.speak(reply.text, event_id, not_before)
            self.last_activity = self.voice.audio_end
        else:
            await self.send({"type": "agent_chat_response_part",
                             "text_response_part": {"text": "", "type": "start", "event_id": event_id}})
            await self.send({"type": "agent_chat_response_part",
                             "text_response_part": {"text": reply.text, "type": "delta", "event_id": event_id}})
            await self.send({"type": "agent_response",
                             "agent_response_event": {"agent_response": reply.text, "event_id": event_id}})
            await self.send({"type": "agent_chat_response_part",
                             "text_response_part": {"text": "", "type": "stop", "event_id": event_id}})
            self.record.add("agent", reply.text)
            self.last_activity = time.monotonic()
        self.agent_turns += 1
        if self.fault and self.agent_turns == self.fault.after_agent_turns:
            await self.fire(self.fault)
            return
        if reply.end_call:
            if self.voice is not None:
                await self.voice.wait_until_heard()
            self.record.outcome = self.engine.outcome if self.engine else None
            await self.close(1000, END_CALL_REASON)

    async def close(self, code: int, reason: str, *, failed: bool = False) -> None:
        if self.closed:
            return
        self.closed = True
        if self.record:
            if self.engine:
                self.record.outcome = self.engine.outcome
            self.record.finish(reason, failed=failed, code=code)
        await self.ws.close(code=code, message=reason.encode())

    async def fire(self, fault: Fault) -> None:
        assert self.record is not None
        if fault.kind == "drop":
            self.closed = True
            self.record.finish("Connection dropped (injected fault)", failed=True, code=1006)
            transport = self.request.transport
            if transport is not None:
                transport.abort()
        elif fault.kind == "close":
            await self.close(fault.close_code, fault.reason, failed=fault.close_code not in (1000, 1001))
        elif fault.kind == "stall":
            self.closed = True  # say nothing more, answer nothing more
        elif fault.kind == "malformed":
            await self.ws.send_str("this is not json")

    # ------------------------------------------------------------------ the conversation

    async def run(self) -> None:
        try:
            init = await self.read_init()
        except (TimeoutError, ValueError) as exc:
            await self.ws.close(code=1008, message=str(exc).encode())
            return
        if init is None:
            return
        if self.backend.require_key and not self.backend.signature_ok(
                self.request.query.get("conversation_signature")):
            await self.ws.close(code=1008, message=b"Could not authorize the conversation")
            return
        agent_id = self.request.query.get("agent_id", "")
        agent = self.backend.agents.get(agent_id)
        if agent is None:
            await self.ws.close(code=1008, message=b"Agent not found")
            return
        variables = {str(k): str(v) for k, v in (init.get("dynamic_variables") or {}).items()}
        missing = sorted(agent_variables(agent) - set(variables))
        if missing:
            reason = "Missing required dynamic variables: " + ", ".join(missing)
            await self.ws.close(code=1008, message=reason.encode())
            return
        override = init.get("conversation_config_override") or {}
        agent_override = override.get("agent") or {}
        language = agent_override.get("language") or agent.language
        self.engine = FlowEngine(agent, variables, language=language,
                                 first_message=agent_override.get("first_message") or None)
        self.record = ConversationRecord(
            conversation_id=new_conversation_id(), agent_id=agent.id, agent_name=agent.name,
            text_only=_text_only(override), dynamic_variables=variables,
            client_data={**init, "language": language,
                         "authorization_method": "signed_url" if self.backend.require_key else "public"},
            source=self.request.query.get("source", "python_sdk"))
        self.backend.history.add(self.record)
        self.fault = self.backend.faults.take(agent.id)
        await self.send({"type": "conversation_initiation_metadata",
                         "conversation_initiation_metadata_event": {
                             "conversation_id": self.record.conversation_id,
                             "agent_output_audio_format": "pcm_16000",
                             "user_input_audio_format": "pcm_16000"}})
        refused = [f for f in overridden_fields(override) if f not in agent.platform.allowed_overrides]
        if refused:  # as production: metadata, an error event, then close 1008
            reason = f"Override for field '{refused[0]}' is not allowed by config."
            await self.send({"type": "error", "error_event": {"code": 1008, "error_type": "override_error",
                                                               "message": reason, "reason": reason}})
            await self.close(1008, reason, failed=True)
            return
        if not self.record.text_only:
            self.voice = VoiceChannel(self.send, language, silence_s=self.backend.voice_silence_s,
                                      transcribers=self.backend.transcribers)
        pinger = asyncio.create_task(self.ping_loop())
        try:
            if self.voice is not None:  # speaking takes time: keep listening meanwhile
                self.reply_task = asyncio.create_task(self.say(self.engine.first_message()))
            else:
                await self.say(self.engine.first_message())
            await self.loop()
        finally:
            pinger.cancel()
            if self.reply_task:
                self.reply_task.cancel()
            if self.record.ended is None:
                code = self.ws.close_code
                self.record.finish(f"Client disconnected: {code}" if code else "Client disconnected",
                                   failed=code not in (1000, 1001, None))

    async def read_init(self) -> dict | None:
        msg = await self.ws.receive(timeout=INIT_TIMEOUT_S)
        if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING):
            return None
        try:
            data = json.loads(msg.data)
        except (TypeError, ValueError):
            raise ValueError("invalid_message: the first message must be JSON") from None
        if not isinstance(data, dict) or data.get("type") != "conversation_initiation_client_data":
            raise ValueError("missing_fields: expected conversation_initiation_client_data first")
        return data

    async def loop(self) -> None:
        assert self.engine is not None
        silence_after = self.engine.flow.silence.after_s
        while not self.closed and not self.ws.closed:
            waiting_for_agent = self.reply_task is not None and not self.reply_task.done()
            listening = self.voice is not None and self.voice.in_speech
            if listening:
                timeout: float | None = 0.05  # to notice the end of the caller's turn
            elif waiting_for_agent:
                timeout = 0.2 if self.voice is not None else None
            else:
                timeout = max(0.05, silence_after - (time.monotonic() - self.last_activity))
            try:
                msg = await self.ws.receive(timeout=timeout)
            except TimeoutError:
                if listening or waiting_for_agent:
                    self.check_turn_end()
                elif not self.closed:
                    await self.say(self.engine.on_silence())
                continue
            if msg.type != WSMsgType.TEXT:
                return  # close, error or binary: the client is gone
            try:
                data = json.loads(msg.data)
            except ValueError:
                await self.close(1008, "invalid_message: not JSON", failed=True)
                return
            await self.handle(data)

    async def handle(self, data: dict[str, Any]) -> None:
        assert self.record is not None
        kind = data.get("type")
        if kind in ("user_message", "user_activity"):
            self.last_activity = time.monotonic()  # pongs and context updates are not the caller talking
        if kind == "user_message":
            text = str(data.get("text", ""))
            self.record.add("user", text, medium="text")
            self.pending.append(text)
            if self.reply_task and not self.reply_task.done():
                self.reply_task.cancel()  # the caller talked over the agent: answer both at once
            self.reply_task = asyncio.create_task(self.answer())
        elif kind == "contextual_update":
            self.record.contextual_updates.append(str(data.get("text", "")))
        elif kind == "pong":
            sent = self.ping_sent.pop(int(data.get("event_id", -1)), None)
            if sent is not None:
                # at least 1: the SDK skips its latency callback for a falsy ping_ms (0 on loopback)
                self.ping_ms = max(1, math.ceil((time.monotonic() - sent) * 1000))
        elif "user_audio_chunk" in data and self.voice is not None:
            now = time.monotonic()
            if self.voice.on_chunk(base64.b64decode(data["user_audio_chunk"]), now):
                await self.barge_in(now)
            if self.voice.in_speech:
                self.last_activity = now
            self.check_turn_end()
        # user_activity only resets the silence timer (done above).

    def check_turn_end(self) -> None:
        """Voice: when the caller's turn has ended, transcribe and answer it (in order)."""
        ended = self.voice.turn_ended(time.monotonic()) if self.voice is not None else None
        if ended is not None:
            previous = self.reply_task
            self.reply_task = asyncio.create_task(self.voice_answer(*ended, previous))

    async def voice_answer(self, speech: bytes, speech_end: float, previous: asyncio.Task | None) -> None:
        assert self.engine is not None and self.voice is not None and self.record is not None
        text = await self.voice.transcribe(speech)
        if previous is not None and not previous.done():
            with contextlib.suppress(asyncio.CancelledError):
                await previous
        await self.send({"type": "user_transcript",
                         "user_transcription_event": {"user_transcript": text, "event_id": self.next_id()}})
        self.record.add("user", text, medium="audio")
        await self.say(self.engine.on_user(text), not_before=speech_end + self.backend.latency_s)

    async def barge_in(self, now: float) -> None:
        """The caller talks over the agent: stop, say so, and correct the cut-off turn."""
        assert self.voice is not None and self.record is not None
        original = self.voice.spoken_text
        cut_id = self.voice.event_id
        truncated = self.voice.cut(now)
        await self.send({"type": "interruption", "interruption_event": {"event_id": self.next_id()}})
        await self.send({"type": "agent_response_correction", "agent_response_correction_event": {
            "original_agent_response": original, "corrected_agent_response": truncated, "event_id": cut_id}})
        for item in reversed(self.record.transcript):
            if item["role"] == "agent":
                item.update(interrupted=True, message=truncated, original_message=original)
                break

    async def answer(self) -> None:
        assert self.engine is not None
        await asyncio.sleep(self.backend.latency_s)
        text = " ".join(self.pending)
        self.pending.clear()
        # Once the agent starts speaking its turn goes out whole; only the thinking is interruptible.
        await asyncio.shield(self.say(self.engine.on_user(text)))

    async def ping_loop(self) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            while not self.closed:
                await asyncio.sleep(self.backend.ping_interval_s)
                self.ping_count += 1
                ping_id = self.ping_count
                self.ping_sent[ping_id] = time.monotonic()
                await self.send({"type": "ping", "ping_event": {"event_id": ping_id, "ping_ms": self.ping_ms}})
