"""One websocket conversation on the local backend, speaking elevenlabs-protocol.md §2.

The parts: `handshake.py` decides (purely) whether the conversation starts; `messages.py` checks
every later client frame before it is acted on (a bad one is refused with 1008); a `Channel` (text,
or voice in voice.py) carries the agent's turns and the caller's audio; this module is the turn
logic both share: answer caller turns through the flow, re-prompt on silence, stop for a
barge-in, ping, fire injected faults, and close 1000 after an `end_call` step. It reads a frozen
`SessionConfig`, not the backend that made it. Every frame it (or a channel) sends is built in
`frames.py`; it never asks which kind of channel it has.

Silence is what the platform calls silence: no `user_message`, no `user_activity` and no
*speech* in the caller's audio (a stream of silent audio frames is not activity).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from voicelab.local import frames
from voicelab.local.caller_agent import CALLER_AGENT_ID, engine_for
from voicelab.local.channels import Channel, TextChannel
from voicelab.local.faults import Fault, Faults
from voicelab.local.flow import FlowEngine, Reply
from voicelab.local.handshake import CLIENT_EVENTS, Accepted, Refused, handshake, parse_first_message
from voicelab.local.history import ConversationRecord, History, new_conversation_id, system_variables
from voicelab.local.messages import Invalid, Message, parse
from voicelab.local.webhooks import call_webhook
from voicelab.spec.models import AgentSpec, Tool, ToolMock

if TYPE_CHECKING:
    from voicelab.audio.speech import TranscriberPool

INIT_TIMEOUT_S = 10.0
#: The first message never leaves with the metadata: on the platform it takes generating, and
#: ElevenLabs' JavaScript client (1.25) drops a message that arrives in the same read as the
#: metadata (it attaches its message listener only once the metadata has resolved).
FIRST_MESSAGE_AFTER_S = 0.01
END_CALL_REASON = "end_call tool was called."
#: Assumed by analogy with the observed end_call reason (elevenlabs-protocol.md lists no other).
TRANSFER_REASON = "transfer_to_number tool was called."
#: A send that cannot complete for this long means the client stopped reading: the conversation
#: is closed instead of queueing the agent's words without limit.
SEND_STALL_S = 10.0
#: Most text a conversation keeps from its client (messages, updates) before it is closed.
MAX_CONVERSATION_TEXT = 4 * 1024 * 1024
#: Server events every conversation carries, whatever its client_events say: the SDKs need the
#: metadata (Python's conversation id, the JS client's connection) and the pings (keepalive and
#: latency), and `error` is no ClientEvent in the contract (agent.asyncapi.yaml), so none can list it.
ALWAYS_SENT = ("conversation_initiation_metadata", "ping", "error")
#: Sent too when the agent's own list applies: a client tool needs its call, and an agent spec
#: (spec ClientEvent) cannot name it. A client's list (conversation.client_events) must.
AGENT_ALWAYS_SENT = (*ALWAYS_SENT, "client_tool_call")
#: Unknown ids quoted back in an `error` event are cut to this many characters.
QUOTED_ID_CHARS = 64


def events_for(agent: AgentSpec, requested: tuple[str, ...] | None) -> set[str]:
    """The server events a conversation sends: exactly the ones the client asked for (its
    `conversation.client_events` override), else the agent's `client_events` (its default is the
    spec's), both beside those always sent."""
    if requested is not None:
        return {*ALWAYS_SENT, *requested}
    return {*AGENT_ALWAYS_SENT, *agent.platform.client_events}


def reported_events(agent: AgentSpec) -> list[str]:
    """The agent's client_events as GET agent reports them: the ones its conversations send
    unless the client asks for others, named as the contract's ClientEvent (`error` is none)."""
    return [e for e in (*AGENT_ALWAYS_SENT, *agent.platform.client_events) if e in CLIENT_EVENTS]


def close_reason(text: str) -> bytes:
    """A close frame's reason: at most 123 bytes of UTF-8 (RFC 6455), cut on a character boundary.
    A longer one is a protocol error that clients answer by dropping the connection (1006)."""
    return text.encode()[:123].decode(errors="ignore").encode()


@dataclass(frozen=True)
class SessionConfig:
    """What a conversation needs from the server, fixed when it connects."""

    agents: Mapping[str, AgentSpec]
    history: History
    faults: Faults
    transcribers: Callable[[], TranscriberPool]
    latency_s: float = 0.0
    #: Barge-in reaction time: the agent stops this long after the caller starts talking over it.
    barge_in_s: float = 0.0
    ping_interval_s: float = 5.0
    voice_silence_s: float = 0.5
    #: Private agents: checks a signed URL's token (None: agents are public).
    check_signature: Callable[[str | None], bool] | None = None
    #: Called with the perf_counter of every agent audio chunk sent (benchmarks).
    on_agent_audio: Callable[[float], None] | None = None
    #: The conversation id a conversation token promised for its signature (once), or None.
    reserved_conversation: Callable[[str | None], str | None] | None = None
    #: Voice: recognise the caller biased toward the agent's vocabulary (vocabulary.py); False
    #: hears with the recogniser's default model (benchmarks compare both).
    bias_recognition: bool = True


class Session:
    def __init__(self, config: SessionConfig, query: Mapping[str, str], ws: web.WebSocketResponse,
                 transport: asyncio.BaseTransport | None) -> None:
        self.config = config
        self.query = query
        self.ws = ws
        self.transport = transport
        self.event_id = 0
        self.agent_turns = 0
        self.fault: Fault | None = None
        self.record: ConversationRecord | None = None
        self.engine: FlowEngine | None = None
        self.channel: Channel = TextChannel(self.send)
        self.pending: list[str] = []
        self.reply_task: asyncio.Task | None = None
        self.last_activity = time.monotonic()
        self.ping_sent: dict[int, float] = {}
        self.ping_ms: int | None = None
        self.ping_count = 0
        self.closed = False
        self.deadline = math.inf
        self.events = set(ALWAYS_SENT)  # until the agent is known: begin() sets the conversation's
        self.thinking = False  # the agent is preparing an answer: new input restarts it
        self.text_kept = 0
        self.barge_task: asyncio.Task | None = None  # a barge-in being decided (reaction time)
        self.tool_waiters: dict[str, asyncio.Future] = {}  # client tool calls awaiting their result
        self.tool_calls_sent: set[str] = set()  # every client_tool_call's id: a result for another is unknown
        self.tool_mocks: dict[str, ToolMock] = {}  # webhook mocks the client sent (TOOL_MOCKS_VARIABLE)
        self.secrets: dict[str, str] = {}  # secret__ variables: for webhook headers only

    # ------------------------------------------------------------------ sending

    async def send(self, payload: frames.Frame) -> None:
        """One frame to the client, if the agent's client_events let it out; a client that stops
        reading is dropped, not buffered for."""
        if self.ws.closed or payload["type"] not in self.events:
            return
        data = json.dumps(payload)  # ASCII: as many bytes as characters
        try:
            if len(data) + 16 < self.room():  # the socket takes it without pausing: no timer needed
                await self.ws.send_str(data)
            else:
                async with asyncio.timeout(SEND_STALL_S):  # no task per frame, unlike wait_for
                    await self.ws.send_str(data)
        except TimeoutError:
            self.drop(f"Client stopped reading: nothing could be sent for {SEND_STALL_S:g} s")
        except ConnectionError:
            self.closed = True  # the client is gone; run() stores how it left

    def room(self) -> int:
        """Bytes the connection's write buffer takes before it pauses the sender (asyncio's flow
        control): a frame that fits cannot stall, so only the others pay for a timeout, whose
        timer would otherwise be made and cancelled for every frame of every conversation."""
        transport = self.transport
        if not isinstance(transport, asyncio.WriteTransport) or transport.is_closing():
            return 0
        return transport.get_write_buffer_limits()[1] - transport.get_write_buffer_size()

    def abort(self) -> None:
        """Drop the TCP connection without a close frame."""
        if self.transport is not None:
            self.transport.abort()

    def drop(self, reason: str) -> None:
        """End a conversation whose socket cannot carry a close frame (its send buffer is full)."""
        self.closed = True
        if self.record is not None:
            self.record.finish(reason, failed=True, code=1008)
        self.abort()

    def next_id(self) -> int:
        self.event_id += 1
        return self.event_id

    @property
    def think_s(self) -> float:
        """The agent's response time: the server's, plus this agent's own (`platform.latency_ms`)."""
        extra = self.engine.agent.platform.latency_ms / 1000 if self.engine is not None else 0.0
        return self.config.latency_s + extra

    async def say(self, reply: Reply, not_before: float = 0.0) -> None:
        """One agent turn through the channel (none for a step with nothing to say); then injected
        faults, end_call, and the step's tool call."""
        assert self.record is not None and self.engine is not None
        if self.closed:
            return
        if reply.delay_s:  # a slow step thinks longer, also before a call it makes without words
            ready = max(not_before, time.monotonic()) + reply.delay_s
            if reply.text:
                not_before = ready
            else:
                await asyncio.sleep(ready - time.monotonic())
        if reply.text:
            event_id = self.next_id()
            self.record.add("agent", reply.text, event_id=event_id)
            try:
                self.last_activity = await self.channel.speak(reply.text, event_id, not_before)
            except asyncio.CancelledError:
                if reply.end_call:  # cut off while saying goodbye: the agent still hangs up, as it decided
                    self.last_activity = time.monotonic()
                    await self.end_call()
                raise
            self.agent_turns += 1
            if self.fault and self.agent_turns == self.fault.after_agent_turns:
                await self.fire(self.fault)
                return
        if reply.end_call:
            await self.channel.wait_until_heard()
            await self.end_call()
            return
        if reply.tool is not None:
            ok, result = await self.call_tool(reply.tool, reply.args)
            if self.closed:
                return
            following = self.engine.on_tool_result(ok, result)
            if following is not None:
                await self.say(following)

    async def call_tool(self, name: str, args: dict[str, str]) -> tuple[bool, Any]:
        """The agent calls a tool of its spec, as the platform does: `agent_tool_request`, the
        call itself (client, webhook or system), `agent_tool_response`, both kept in the history.
        Returns (succeeded, result); a timeout is a failure after which the agent carries on."""
        assert self.engine is not None and self.record is not None
        tool = self.engine.agent.tool(name)
        kind = tool.type if tool is not None else "client"
        call_id = "toolu_" + secrets.token_hex(12)
        started = time.monotonic()
        await self.send(frames.agent_tool_request(tool_name=name, tool_call_id=call_id, tool_type=kind,
                                                  event_id=self.event_id))
        self.record.tool_call(call_id, name, kind, args)
        if kind == "client":
            ok, result = await self.client_tool(name, call_id, args)
        elif kind == "webhook":
            assert tool is not None
            ok, result = await self.webhook_tool(tool, args)
        else:
            ok, result = self.system_tool(name, args)
        self.record.tool_result(call_id, name, kind, result, not ok, time.monotonic() - started)
        await self.send(frames.agent_tool_response(tool_name=name, tool_call_id=call_id, tool_type=kind,
                                                   is_error=not ok, event_id=self.event_id))
        if name == "transfer_to_number" and ok:
            await self.channel.wait_until_heard()
            await self.close(1000, TRANSFER_REASON)
        return ok, result

    async def client_tool(self, name: str, call_id: str, args: dict[str, str]) -> tuple[bool, Any]:
        """`client_tool_call` to the client, then its `client_tool_result` (matched by id, in any
        order); no answer within the tool's timeout is an error."""
        assert self.engine is not None
        tool = self.engine.agent.tool(name)
        waiter: asyncio.Future = asyncio.get_running_loop().create_future()
        if tool is None or tool.expects_response:
            self.tool_waiters[call_id] = waiter
        self.tool_calls_sent.add(call_id)
        await self.send(frames.client_tool_call(tool_name=name, tool_call_id=call_id, parameters=args,
                                                event_id=self.event_id))
        if tool is not None and not tool.expects_response:
            return True, None
        timeout = tool.response_timeout_s if tool else 10.0
        try:
            async with asyncio.timeout(timeout):
                answer = await waiter
        except TimeoutError:
            return False, f"No result from the client within {timeout:g} s"
        finally:
            self.tool_waiters.pop(call_id, None)
        return not answer["is_error"], answer.get("result")

    async def webhook_tool(self, tool: Tool, args: dict[str, str]) -> tuple[bool, Any]:
        """The persona's mock (sent by voicelab), else the spec's default mock, else a real HTTP
        request to the tool's URL with the conversation's variables filled in."""
        assert self.engine is not None and tool.webhook is not None
        mock = self.tool_mocks.get(tool.name) or tool.default_mock
        if mock is not None:
            await asyncio.sleep(mock.delay_ms / 1000)
            return (False, mock.error) if mock.error is not None else (True, mock.result)
        return await call_webhook(tool, args, self.engine.variables, self.secrets)

    def system_tool(self, name: str, args: dict[str, str]) -> tuple[bool, Any]:
        """What the platform's own tools do to the conversation (datasets.STEP_SYSTEM_TOOLS)."""
        assert self.engine is not None
        if name == "language_detection":
            language = args.get("language") or self.engine.language
            self.engine.language = language
            self.channel.set_language(language)
            if self.record is not None:
                self.record.client_data["language"] = language
            return True, {"status": "success", "language": language, "reason": "The caller speaks another language."}
        if name == "transfer_to_number":
            tool = self.engine.agent.tool(name)
            number = args.get("transfer_number") or (tool.transfers[0].phone_number if tool and tool.transfers else "")
            return True, {"status": "success", "transfer_number": number, "reason": args.get("reason"),
                          "agent_message": "Transferring the call.", "conference_name": "local-" + number}
        return True, {"status": "success"}  # skip_turn: nothing to do

    async def end_call(self) -> None:
        """As the platform: the end_call tool is called (request and response go out; the JS client
        ends its session on the response), then the server closes 1000."""
        if self.closed:
            return
        call_id = "toolu_" + secrets.token_hex(12)
        event_id = self.next_id()
        await self.send(frames.agent_tool_request(tool_name="end_call", tool_call_id=call_id, tool_type="system",
                                                  event_id=event_id))
        if self.record is not None:
            if self.engine:
                self.record.outcome = self.engine.outcome
            self.record.tool_call(call_id, "end_call", "system", {})
            self.record.tool_result(call_id, "end_call", "system", {"status": "success"}, False, 0.0)
            self.record.finish(END_CALL_REASON)
        await self.send(frames.agent_tool_response(tool_name="end_call", tool_call_id=call_id, tool_type="system",
                                                   is_error=False, event_id=event_id))
        await self.close(1000, END_CALL_REASON)

    async def close(self, code: int, reason: str, *, failed: bool = False) -> None:
        if self.closed:
            return
        self.closed = True
        if self.record:
            if self.engine:
                self.record.outcome = self.engine.outcome
            self.record.finish(reason, failed=failed, code=code)
        await self.ws.close(code=code, message=close_reason(reason))

    async def fire(self, fault: Fault) -> None:
        assert self.record is not None
        if fault.kind == "drop":
            self.closed = True
            self.record.finish("Connection dropped (injected fault)", failed=True, code=1006)
            self.abort()
        elif fault.kind == "close":
            await self.close(fault.close_code, fault.reason, failed=fault.close_code not in (1000, 1001))
        elif fault.kind == "stall":
            self.closed = True  # say nothing more, answer nothing more
        elif fault.kind == "malformed":
            await self.ws.send_str("this is not json")

    # ------------------------------------------------------------------ the conversation

    async def run(self) -> None:
        decision = await self.start()
        if isinstance(decision, Refused):
            await self.ws.close(code=decision.code, message=close_reason(decision.reason))
            return
        if decision is None:
            return
        self.begin(decision)
        assert self.record is not None and self.engine is not None
        await self.send(frames.conversation_initiation_metadata(conversation_id=self.record.conversation_id))
        if decision.refusal:
            await self.refuse_begun(decision.refusal, decision.refusal_type)
            return
        pinger = asyncio.create_task(self.ping_loop())
        try:
            # the first message goes out while the session already listens (speaking takes time)
            self.reply_task = asyncio.create_task(self.respond(
                self.engine.first_message(), not_before=time.monotonic() + FIRST_MESSAGE_AFTER_S))
            await self.loop()
        finally:
            pinger.cancel()
            if self.barge_task:
                self.barge_task.cancel()
            if self.reply_task:
                self.reply_task.cancel()
            self.record.close_audio()
            if self.record.ended is None:
                code = self.ws.close_code
                self.record.finish(f"Client disconnected: {code}" if code else "Client disconnected",
                                   failed=code not in (1000, 1001, None))

    async def refuse_begun(self, reason: str, error_type: str) -> None:
        """As production refuses a conversation that began (a missing variable, a forbidden
        override): after the metadata, an `error` event, then close 1008 with the same reason.
        The event waits as the first message does (FIRST_MESSAGE_AFTER_S), or the JS client,
        still resolving the metadata, may drop it."""
        await asyncio.sleep(FIRST_MESSAGE_AFTER_S)
        await self.send(frames.error(code=1008, error_type=error_type, message=reason))
        await self.close(1008, reason, failed=True)

    async def start(self) -> Accepted | Refused | None:
        """Read the first message and decide; None if the client left first."""
        try:
            msg = await self.ws.receive(timeout=INIT_TIMEOUT_S)
        except TimeoutError:
            return Refused(1008, f"missing_fields: no {'conversation_initiation_client_data'} "
                                 f"within {INIT_TIMEOUT_S:g} s")
        if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING, WSMsgType.ERROR):
            return None
        init = parse_first_message(msg.data if msg.type == WSMsgType.TEXT else None)
        if isinstance(init, Refused):
            return init
        check = self.config.check_signature
        signature_ok = check(self.signature) if check is not None else None
        return handshake(init, self.query, self.config.agents, signature_ok=signature_ok)

    @property
    def signature(self) -> str | None:
        """The URL's signature: a signed URL's conversation_signature, or a conversation token."""
        return self.query.get("conversation_signature") or self.query.get("token")

    def begin(self, accepted: Accepted) -> None:
        """The conversation exists: its record, its flow, its channel, its fault."""
        agent, config = accepted.agent, self.config
        reserved = config.reserved_conversation(self.signature) if config.reserved_conversation else None
        conversation_id = reserved or new_conversation_id()
        self.tool_mocks = accepted.tool_mocks
        self.secrets = {k: v for k, v in accepted.variables.items() if k.startswith("secret__")}
        variables = {k: v for k, v in accepted.variables.items() if not k.startswith("secret__")}
        variables |= system_variables(conversation_id, agent.id)
        self.engine = engine_for(agent, variables, accepted.language, accepted.first_message, accepted.prompt)
        self.deadline = time.monotonic() + agent.platform.max_duration_s
        self.events = events_for(agent, accepted.client_events)
        self.record = ConversationRecord(
            conversation_id=conversation_id, agent_id=agent.id, agent_name=agent.name,
            text_only=accepted.text_only, dynamic_variables=variables,
            client_data={**accepted.client_data,
                         "authorization_method": "signed_url" if config.check_signature else "public"},
            source=self.query.get("source", "python_sdk"),
            criteria=[(c.id, c.conversation_goal_prompt) for c in agent.platform.evaluation_criteria])
        config.history.add(self.record)
        self.fault = None if accepted.refusal else config.faults.take(agent.id)  # kept for a call that runs
        if not accepted.text_only:
            # the audio side (numpy, espeak, recognition) loads with the first voice conversation:
            # a text call, and the backend's start, never need it
            from voicelab.local.recording import Recording
            from voicelab.local.vocabulary import agent_vocabulary
            from voicelab.local.voice import VoiceChannel

            self.record.recording = Recording(config.history.audio_path(conversation_id))
            # what the agent expects to hear, never the persona's lines; the caller agent (which
            # hears the agent under test) keeps the recogniser's default model
            vocabulary = (agent_vocabulary(agent, variables, accepted.language)
                          if config.bias_recognition and agent.id != CALLER_AGENT_ID else None)
            self.channel = VoiceChannel(self.send, accepted.language, silence_s=config.voice_silence_s,
                                        transcribers=config.transcribers, on_audio_sent=config.on_agent_audio,
                                        recorder=self.record.recording.agent_audio,
                                        voice=getattr(self.engine, "voice", None),
                                        tentative=(lambda: self.event_id + 1)
                                        if "tentative_user_transcript" in self.events else None,
                                        vocabulary=vocabulary)

    def agent_busy(self) -> bool:
        return self.reply_task is not None and not self.reply_task.done()

    async def loop(self) -> None:
        assert self.engine is not None
        silence_after = self.engine.flow.silence.after_s
        while not self.closed and not self.ws.closed:
            if self.channel.in_speech:
                timeout = 0.05  # to notice the end of the caller's spoken turn
            elif self.agent_busy():
                timeout = self.channel.busy_wait_s(silence_after)  # voice looks for the caller sooner
            else:
                timeout = max(0.05, silence_after - (time.monotonic() - self.last_activity))
            timeout = min(timeout, max(0.0, self.deadline - time.monotonic()))
            try:
                msg = await self.ws.receive(timeout=timeout)
            except TimeoutError:
                msg = None
            if msg is not None:
                if msg.type == WSMsgType.BINARY:
                    await self.refuse("invalid_message: binary frames are not accepted; send JSON text frames")
                    return
                if msg.type != WSMsgType.TEXT:
                    return  # close or error: the client is gone
                message = parse(msg.data)
                if isinstance(message, Invalid):
                    await self.refuse(message.reason)
                    return
                if message is not None:  # None: not an object, or a type the server does not know
                    await self.handle(message)
            self.check_turn_end()
            now = time.monotonic()
            if now >= self.deadline and not self.closed:
                await self.send(frames.error(code=1000, error_type="max_duration_exceeded",
                                             message="Maximum duration exceeded"))
                await self.close(1000, "Maximum duration exceeded")
                return
            if (not self.closed and not self.agent_busy() and not self.channel.in_speech
                    and not self.channel.agent_talking(now) and now - self.last_activity >= silence_after):
                self.reply_task = asyncio.create_task(self.respond(self.engine.on_silence()))

    async def refuse(self, reason: str) -> None:
        """A client message the platform would refuse: an `error` event, then close 1008."""
        await self.send(frames.error(code=1008, error_type=reason.split(":")[0], message=reason))
        await self.close(1008, reason, failed=True)

    def keep(self, text: str) -> bool:
        """Count text the conversation stores; False once the client has sent too much."""
        self.text_kept += len(text)
        return self.text_kept <= MAX_CONVERSATION_TEXT

    async def handle(self, message: Message) -> None:
        """One client message, checked by messages.py (its fields are the ones promised there)."""
        assert self.record is not None
        kind = message.type
        if kind in ("user_message", "contextual_update", "multimodal_message") and not self.keep(message.text):
            await self.refuse(f"invalid_message: more than {MAX_CONVERSATION_TEXT} characters of messages "
                              "in one conversation")
        elif kind == "user_activity":
            self.last_activity = time.monotonic()
        elif kind == "user_message":
            self.hear_text(message.text)
        elif kind == "multimodal_message":
            await self.hear_multimodal(message)
        elif kind == "contextual_update":
            self.record.contextual_updates.append(message.text)
        elif kind == "feedback":
            self.record.feedback(message.score, message.event_id)
        elif kind == "client_tool_result":
            await self.take_tool_result(message.fields)
        elif kind == "mcp_tool_approval_result":
            await self.not_understood("mcp_tool_approval_result: no MCP tool call awaits approval (the local backend "
                                      "has no MCP tools); ignored")
        elif kind == "pong":
            sent = self.ping_sent.pop(message.event_id, None) if message.event_id is not None else None
            if sent is not None:
                # at least 1: the SDK skips its latency callback for a falsy ping_ms (0 on loopback)
                self.ping_ms = max(1, math.ceil((time.monotonic() - sent) * 1000))
        elif kind == "user_audio_chunk":
            now = time.monotonic()
            if self.record.recording is not None:
                self.record.recording.caller_audio(message.pcm)
            if self.channel.on_chunk(message.pcm, now):
                await self.start_barge_in(now)
            if self.channel.vad is not None and "vad_score" in self.events:
                await self.send(frames.vad_score(score=round(self.channel.vad, 4)))
            if self.channel.in_speech:
                self.last_activity = now  # speech is activity; silent frames are not

    def hear_text(self, text: str) -> None:
        """A typed caller turn, answered (with whatever else the caller says while the agent still
        thinks). Empty text, the contract's text-only mode signal (`text` null or absent), is
        activity but no caller words: nothing is recorded and the agent does not answer it."""
        assert self.record is not None
        self.last_activity = time.monotonic()
        if not text.strip():
            return
        self.record.add("user", text, medium="text")
        self.pending.append(text)
        if not self.agent_busy():
            self.reply_task = asyncio.create_task(self.respond())
        elif self.thinking and self.reply_task is not None:
            self.reply_task.cancel()  # still thinking: answer everything the caller said at once
            self.reply_task = asyncio.create_task(self.respond())
        # else: the agent has a turn to say first; respond() answers what is pending after it

    async def hear_multimodal(self, message: Message) -> None:
        """A multimodal message: its text is a user message; its files cannot be read here (no
        file store), which the client is told rather than left to think the agent saw them."""
        files = message.fields["file_ids"]
        if files:
            quoted = ", ".join(repr(f[:QUOTED_ID_CHARS]) for f in files[:5])
            heard = "; its text is answered" if message.text.strip() else ""
            await self.not_understood(f"multimodal_message: files are not supported by the local backend "
                                      f"(file_id {quoted} ignored){heard}")
        self.hear_text(message.text)

    async def take_tool_result(self, fields: dict[str, Any]) -> None:
        """A client tool's result, matched to its call by id in any order. A late one (after the
        call's timeout) or one for a call that expects none is ignored: the agent went on, and
        the SDKs answer every call. An id no call had is answered with an `error` event."""
        call_id = fields["tool_call_id"]
        waiter = self.tool_waiters.get(call_id)
        if waiter is not None and not waiter.done():
            waiter.set_result(fields)
        elif call_id not in self.tool_calls_sent:
            await self.not_understood(f"client_tool_result: unknown tool_call_id {call_id[:QUOTED_ID_CHARS]!r} "
                                      "(no client_tool_call had it); ignored")

    async def not_understood(self, message: str) -> None:
        """A well-formed client message the backend cannot act on: an `error` event saying so,
        and the conversation goes on. A close would end calls over a detail; silence would leave
        the client waiting for an effect that never comes."""
        await self.send(frames.error(code=1008, error_type="value_error", message=message))

    def check_turn_end(self) -> None:
        """Voice: when the caller's spoken turn has ended, transcribe and answer it (in order)."""
        ended = self.channel.turn_ended(time.monotonic())
        if ended is not None:
            previous = self.reply_task
            self.reply_task = asyncio.create_task(self.voice_answer(*ended, previous))

    async def voice_answer(self, speech: bytes, speech_end: float, previous: asyncio.Task | None) -> None:
        assert self.engine is not None and self.record is not None
        text = await self.channel.transcribe(speech)
        if previous is not None and not previous.done():
            with contextlib.suppress(asyncio.CancelledError):
                await previous
        await self.send(frames.user_transcript(text=text, event_id=self.next_id()))
        self.record.add("user", text, medium="audio")
        await self.respond(self.engine.on_user(text), not_before=speech_end + self.think_s)

    async def start_barge_in(self, onset: float) -> None:
        """The caller started talking over the agent: stop at once, or decide after the reaction
        time (the server's plus the agent's `platform.barge_in_ms`), when a backchannel can be told."""
        assert self.engine is not None
        delay = self.config.barge_in_s + self.engine.agent.platform.barge_in_ms / 1000
        if delay <= 0:
            await self.barge_in(onset)
            return
        self.barge_task = asyncio.create_task(self.decide_barge_in(onset, delay))

    async def decide_barge_in(self, onset: float, delay: float) -> None:
        await asyncio.sleep(max(0.0, onset + delay - time.monotonic()))
        now = time.monotonic()
        if self.closed or not self.channel.agent_talking(now):
            return  # the agent's turn ended meanwhile: nothing to stop
        if self.channel.backchannel(onset, now):
            self.channel.ignore_turn()  # "mm-hm": the agent talks on, and does not answer it
            return
        await self.barge_in(now)

    async def barge_in(self, now: float) -> None:
        """The caller talks over the agent: stop, say so, and correct the cut-off turn."""
        assert self.record is not None
        original = self.channel.spoken_text
        cut_id = self.channel.event_id
        truncated = self.channel.cut(now)
        await self.send(frames.interruption(event_id=self.next_id()))
        await self.send(frames.agent_response_correction(original=original, corrected=truncated, event_id=cut_id))
        for item in reversed(self.record.transcript):
            if item["role"] == "agent" and item["message"] is not None:
                item.update(interrupted=True, message=truncated, original_message=original)
                break

    async def respond(self, reply: Reply | None = None, not_before: float = 0.0) -> None:
        """The agent's turn(s): `reply` if given, then an answer to whatever the caller said
        meanwhile. Thinking (the injected latency) is interruptible; a turn being spoken goes out
        whole, so there is only ever one reply in flight per conversation."""
        assert self.engine is not None
        if reply is not None:
            await self.say(reply, not_before)
        while self.pending and not self.closed:
            self.thinking = True
            try:
                await asyncio.sleep(self.think_s)
            finally:
                self.thinking = False
            text = " ".join(self.pending)
            self.pending.clear()
            await self.say(self.engine.on_user(text))

    async def ping_loop(self) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            while not self.closed:
                await asyncio.sleep(self.config.ping_interval_s)
                self.ping_count += 1
                ping_id = self.ping_count
                self.ping_sent[ping_id] = time.monotonic()
                await self.send(frames.ping(event_id=ping_id, ping_ms=self.ping_ms))

