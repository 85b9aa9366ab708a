"""The Call: one conversation through the official SDK, on any backend, in text or voice.

    result = await Call(request, base_url=url).arun()       # batches, any running loop
    result = Call(request, base_url=url).run()              # scripts, the CLI
    call = Call(request, base_url=url); call.start()        # the console: send(), stop(), wait()

A call's life is written once, as the async driver `arun()`. The sync API runs that same driver
on a private event-loop thread (as httpx shares one decision layer between its two clients), so
text and voice, scripted and human, sync and async all take the same path. The SDK's callbacks
only push typed events (`AgentSaid`, `Disconnected`, ...) into a queue; the driver takes them in
order, asks the caller's turn policy what to say, owns the time limit and decides how the call
ended. Voice is decided by `request.mode`; the audio source by `voice_call.audio_source`.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from elevenlabs.conversational_ai.conversation import AsyncConversation, DisconnectionDetails

from voicelab.harness import hosted, sdk, transcripts
from voicelab.harness.callers import Caller, lifecycle
from voicelab.harness.callers.registry import policy
from voicelab.harness.connection import Connection, connect, describe_disconnect, initiation_data
from voicelab.harness.transcript import TranscriptRecorder
from voicelab.harness.voice_call import VoiceSide, audio_source
from voicelab.spec import tool_calls
from voicelab.spec.checks import finished_result
from voicelab.spec.datasets import render
from voicelab.spec.errors import BackendError, UsageError
from voicelab.spec.models import (
    AgentSaid,
    CallerHeard,
    CallerSaid,
    CallEvent,
    CallRequest,
    CallResult,
    Disconnected,
    EndReason,
    HangUp,
    ToolCallRecord,
    ToolMock,
    TranscriptEntry,
    VoiceStats,
    utc_now_iso,
)


class ToolFailed(Exception):
    """A mocked client tool's error: the SDK sends its text back with is_error."""

#: How long the sync API waits for `send` to reach the socket.
SEND_TIMEOUT_S = 10.0
_POLICY_FROM_REQUEST: Any = object()


class Dialogue:
    """The decisions of a call: how each event changes it and what the caller says next."""

    def __init__(self, request: CallRequest, caller: Caller | None, recorder: TranscriptRecorder) -> None:
        self.request = request
        self.caller = caller
        self.recorder = recorder
        self.context = render(request.agent.context, request.persona.variables) if request.agent.context else None
        self.context_sent = False
        self.end_reason: EndReason | None = None
        self.error: str | None = None
        self.ended_at: float | None = None

    def finish(self, reason: EndReason, error: str | None = None) -> None:
        if self.end_reason is None:
            self.end_reason, self.error = reason, error
            self.ended_at = self.recorder.elapsed()

    def handle(self, event: CallEvent) -> tuple[str | None, list[str], bool]:
        """Take one event; return (a contextual update to send first, what the caller says, whether
        it hangs up after saying it)."""
        if isinstance(event, Disconnected | HangUp):
            self.finish(event.end_reason, event.error)
        elif isinstance(event, CallerHeard):  # a human's voice turn, as the agent transcribed it
            self.recorder.add("user", event.text, at=event.at)
        elif isinstance(event, CallerSaid):  # an agent caller's turn: typed on (text), or already heard (voice)
            if self.request.mode == "text":
                return None, [event.text], False
            self.recorder.add("user", event.text, at=event.at, said=event.text)  # `text`: what the agent hears
        elif isinstance(event, AgentSaid):
            self.recorder.add("agent", event.text, at=event.at, latency_ms=event.latency_ms)
            context = None
            if self.context and not self.context_sent:
                self.context_sent, context = True, self.context
            if self.caller is None:
                return context, [], False
            action = self.caller.on_agent_turn(event.text)
            return context, action.say, action.hang_up
        return None, [], False


class Call:
    """One conversation: persona x agent x backend x caller x mode -> CallResult."""

    def __init__(self, request: CallRequest, *, base_url: str | None = None, caller: Any = _POLICY_FROM_REQUEST,
                 on_entry: Callable[[TranscriptEntry], None] | None = None, audio: Any = None) -> None:
        """`caller`: the turn policy (default: the one the request's kind of caller plays; None: a
        person). `audio`: an AsyncAudioInterface (e.g. SoundDeviceAudio) for a voice call placed by
        a person; voice calls without one speak with the persona's synthetic voice."""
        self.request = request
        self.base_url = base_url
        self.caller: Caller | None = policy(request) if caller is _POLICY_FROM_REQUEST else caller
        self._lifecycle = lifecycle(self.caller)
        self.recorder = TranscriptRecorder(on_entry=on_entry)
        self._dialogue = Dialogue(request, self.caller, self.recorder)
        self._audio = audio_source(request, audio, self.recorder)
        self._voice = VoiceSide(request, self.recorder, self._audio) if self._audio is not None else None
        self._connection: Connection | None = None
        self._events: asyncio.Queue[CallEvent] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._conversation: AsyncConversation | None = None
        self._turns: list[asyncio.Task] = []
        self._retries: list[dict] = []
        self._tool_calls: list[ToolCallRecord] = []
        #: The backend's stored conversation, when transcripts are compared (`_after_call`).
        self._stored: list[TranscriptEntry] | None = None
        self._started_at = utc_now_iso()
        self._thread: threading.Thread | None = None
        self._connected = threading.Event()
        self._finished = threading.Event()
        self._result: CallResult | None = None
        self._crash: BaseException | None = None

    # ------------------------------------------------------------------ watching a call

    @property
    def transcript(self) -> list[TranscriptEntry]:
        """The transcript so far (safe from any thread)."""
        return self.recorder.entries()

    @property
    def done(self) -> bool:
        return self._finished.is_set()

    @property
    def end_reason(self) -> EndReason | None:
        """None while the call runs."""
        return self._dialogue.end_reason

    @property
    def voice_stats(self) -> VoiceStats | None:
        """Live voice figures (None for a text call)."""
        return self._voice.stats() if self._voice is not None else None

    @property
    def result(self) -> CallResult | None:
        return self._result

    def wait(self, timeout: float | None = None) -> CallResult:
        """The result, once the call has ended; TimeoutError if it is still running after `timeout`."""
        if self._thread is None and self._loop is None:
            raise UsageError("the call was never started: call start(), run() or arun() first")
        if not self._finished.wait(timeout):
            raise TimeoutError(f"the call is still running after {timeout} s")
        if self._crash is not None:
            raise self._crash
        assert self._result is not None
        return self._result

    # ------------------------------------------------------------------ the sync API (same driver)

    def start(self) -> None:
        """Connect and run the call on a private event-loop thread; returns once it is connected
        (or has failed). Raises ConfigError at once for a missing setting."""
        if self._thread is not None or self._loop is not None:
            raise UsageError("this call was already started; place a new Call for another conversation")
        self._connection = self._connect()

        def drive() -> None:
            try:
                asyncio.run(self.arun())
            except BaseException as exc:  # noqa: BLE001 - surfaced by wait()
                self._crash = exc
                self._connected.set()
                self._finished.set()

        self._thread = threading.Thread(target=drive, name=f"voicelab-call-{self.request.persona.id}", daemon=True)
        self._thread.start()
        self._connected.wait()

    def run(self) -> CallResult:
        self.start()
        return self.wait()

    def send(self, text: str) -> None:
        """Say something as the caller (a person typing in the console); from any thread."""
        if self._loop is None or self._conversation is None or self.done or self.end_reason is not None:
            raise UsageError("the call is not running: start it first (or it has ended)")
        if _on_loop(self._loop):
            raise UsageError("send() is the sync API: on the call's own loop, let the turn policy speak")
        asyncio.run_coroutine_threadsafe(self._say(text), self._loop).result(SEND_TIMEOUT_S)

    def stop(self) -> None:
        """Hang up as the caller; from any thread."""
        if self._loop is None or self._events is None:
            return
        if _on_loop(self._loop):
            self._events.put_nowait(HangUp())
        else:
            self._loop.call_soon_threadsafe(self._events.put_nowait, HangUp())

    # ------------------------------------------------------------------ the driver

    async def arun(self) -> CallResult:
        """Place the call on the running loop. Cancelling it ends the call as `cancelled`."""
        if self._loop is not None:
            raise UsageError("this call was already started; place a new Call for another conversation")
        connection = self._connection or self._connect()  # ConfigError: nothing started
        self._loop = asyncio.get_running_loop()
        self._events = asyncio.Queue()
        dialogue = self._dialogue
        try:
            await self._converse(connection)
        except asyncio.CancelledError:
            dialogue.finish("cancelled", "the run was interrupted while this call was in progress")
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()  # handled: closing the call below must still be able to await
        finally:
            self._connected.set()
        for task in self._turns:
            task.cancel()
        conversation_id = None
        if self._conversation is not None:
            await sdk.close(self._conversation)
            conversation_id = sdk.conversation_id(self._conversation)
        await self._lifecycle.close()  # either side hanging up ends both
        if self._voice is not None:
            self._voice.finish()
            self._voice.save(self.request)
        analysis, calls = await asyncio.get_running_loop().run_in_executor(
            None, self._after_call, connection, conversation_id)
        entries = self.recorder.entries()
        # the audio's account (costly: not for a call a stopping run is waiting to store)
        if self._voice is not None and transcripts.wanted(self.request) and dialogue.end_reason != "cancelled":
            entries = await asyncio.get_running_loop().run_in_executor(
                None, transcripts.recognise_agent_turns, entries, self._voice.wav.agent_pcm())
        duration = dialogue.ended_at if dialogue.ended_at is not None else self.recorder.elapsed()
        self._result = finished_result(
            self.request, entries, end_reason=dialogue.end_reason or "error", duration_s=duration,
            started_at=self._started_at, error=dialogue.error, conversation_id=conversation_id,
            interruptions=self.recorder.interruptions, analysis=analysis, retries=self._retries,
            tool_calls=calls, stored_transcript=self._stored,
            voice=self._voice.stats() if self._voice is not None else None)
        if extra := self._lifecycle.result_fields():
            self._result = self._result.model_copy(update=extra)
        self._finished.set()
        return self._result

    def _connect(self) -> Connection:
        """The agent under test's connection; the caller agent's settings are checked too."""
        self._lifecycle.check(self.request, self.base_url)
        return connect(self.request, self.base_url)

    async def _converse(self, connection: Connection) -> None:
        """Connect, then take events until the call has ended."""
        dialogue, events, voice = self._dialogue, self._events, self._voice
        assert events is not None

        async def on_agent(text: str) -> None:
            arrived = sdk.received_at(self._conversation) if self._conversation is not None else None
            at = self.recorder.elapsed() if arrived is None else self.recorder.at(arrived)
            events.put_nowait(AgentSaid(text, at, voice.latency_to(at) if voice else None))

        async def on_heard(text: str) -> None:
            if voice is not None and self.caller is not None:
                voice.on_heard(text)  # what the agent understood of the persona's turn
            else:
                events.put_nowait(CallerHeard(text, self.recorder.elapsed()))

        async def on_correction(original: str, corrected: str) -> None:
            self.recorder.correct(original, corrected)  # the agent was cut off: what was really heard

        async def on_disconnect(details: DisconnectionDetails) -> None:
            events.put_nowait(Disconnected(*describe_disconnect(
                details.reason, details.close_code, details.close_reason, details.message)))

        self._started_at = utc_now_iso()
        self.recorder.restart_clock()
        failed = await self._lifecycle.start(events, self.recorder.elapsed, self.base_url,  # listening before
                                             self._audio if voice is not None else None)  # the agent speaks
        if failed:
            dialogue.finish("error", failed)
            return
        try:
            signed = None
            if connection.requires_auth or connection.branch_id:  # fetched here so its retries show in the result
                signed = await asyncio.get_running_loop().run_in_executor(
                    None, hosted.signed_ws_url, connection.client, connection.agent_id, self._retries,
                    connection.branch_id)
            self._conversation = sdk.open_conversation(
                connection.client, connection.agent_id, initiation_data(self.request), audio=self._audio,
                on_agent_response=on_agent, on_user_transcript=on_heard, on_disconnect=on_disconnect,
                on_correction=on_correction,
                signed_url=signed, tools=self._tool_handlers(), on_tool_event=self._tool_watcher())
            await self._conversation.start_session()
        except BackendError as exc:  # e.g. a private agent's signed URL was refused
            dialogue.finish("error", str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - any failure to connect is a failed call, not a crash
            dialogue.finish("error", f"could not start the call: {exc}")
            return
        self._connected.set()
        deadline = time.monotonic() + self.request.max_duration_s
        while dialogue.end_reason is None:
            try:
                event = await asyncio.wait_for(events.get(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                dialogue.finish("timeout")
                break
            context, say, hang_up = dialogue.handle(event)
            agent_turn = sum(1 for e in self.recorder.entries() if e.speaker == "agent")
            if isinstance(event, AgentSaid) and voice is not None:
                voice.on_agent_turn(agent_turn)
            if context:
                with contextlib.suppress(Exception):
                    await self._conversation.send_contextual_update(context)
            if voice is not None:
                if say or hang_up:  # spoken in real time, after the agent (or over it)
                    self._turns.append(asyncio.create_task(voice.turn(say, hang_up, events, agent_turn)))
                continue
            for text in say:
                try:
                    await self._say(text)
                except Exception:  # noqa: BLE001 - the agent hung up meanwhile; its disconnect follows
                    break
            if hang_up:
                dialogue.finish("caller_ended")

    def _tool_handlers(self) -> dict[str, Callable[[dict], Awaitable[Any]]]:
        """A handler per client tool of the agent: the persona's mock, else the agent spec's
        default, else the SDK's own "not registered" error; each call is recorded either way."""
        request = self.request

        def handler(name: str, mock: ToolMock | None) -> Callable[[dict], Awaitable[Any]]:
            async def answer(parameters: dict) -> Any:
                started = time.monotonic()
                args = {k: v for k, v in parameters.items() if k != "tool_call_id"}
                # recorded when asked, so a call that ends before the answer still shows it
                index = len(self._tool_calls)
                self._tool_calls.append(ToolCallRecord(tool=name, args=args, id=parameters.get("tool_call_id"),
                                                       at=round(self.recorder.elapsed(), 3),
                                                       turn=len(self.recorder.entries())))
                if mock is not None and mock.delay_ms:
                    await asyncio.sleep(mock.delay_ms / 1000)
                error = f"Tool '{name}' is not registered" if mock is None else mock.error
                self._tool_calls[index] = self._tool_calls[index].model_copy(update={
                    "result": error if error is not None else mock.result if mock else None,
                    "is_error": error is not None, "latency_ms": round((time.monotonic() - started) * 1000, 1)})
                if error is not None:
                    raise ToolFailed(error)  # the SDK answers is_error with this text
                return mock.result if mock is not None else None
            return answer

        return {tool.name: handler(tool.name, request.persona.tools.get(tool.name) or tool.default_mock)
                for tool in request.agent.tools if tool.type == "client"}

    async def _say(self, text: str) -> None:
        """One typed caller turn: stamped just before it is sent (the backend does not echo it)."""
        assert self._conversation is not None
        await sdk.until_connected(self._conversation)  # a person may type before the socket is open
        at = self.recorder.elapsed()
        await self._conversation.send_user_message(text)
        self.recorder.add("user", text, at=at)

    def _tool_watcher(self) -> Callable[[str, dict], None] | None:
        """Watch the tool events only where they can say something: an agent spec that declares
        webhook or system tools, or a hosted agent (whose tools the spec may not list). Watching
        costs every message of the call an extra await, which a tool-less agent need not pay."""
        if self.request.backend == "elevenlabs" or any(t.type != "client" for t in self.request.agent.tools):
            return self._on_tool_event
        return None

    def _on_tool_event(self, kind: str, event: dict) -> None:
        """A webhook or system tool call, seen through its agent_tool_request / _response events
        (a client tool's call is recorded by its handler, with its arguments)."""
        if event.get("tool_type") == "client" or not isinstance(event.get("tool_name"), str):
            return
        call_id = str(event.get("tool_call_id") or "")
        record = next((r for r in self._tool_calls if r.id == call_id), None) if call_id else None
        now = round(self.recorder.elapsed(), 3)
        if record is None:
            record = ToolCallRecord(tool=event["tool_name"], type=str(event.get("tool_type") or "system"),
                                    id=call_id or None, at=now, turn=len(self.recorder.entries()))
            self._tool_calls.append(record)
        if kind == "agent_tool_response":
            index = self._tool_calls.index(record)
            self._tool_calls[index] = record.model_copy(update={
                "is_error": bool(event.get("is_error")), "latency_ms": round((now - record.at) * 1000, 1)})

    def _after_call(self, connection: Connection, conversation_id: str | None) -> tuple[Any, list[ToolCallRecord]]:
        """The platform's record of the call, where it is needed: on the hosted platform always
        (its verdict, transcript and tool calls next to ours), on any backend when the call made
        webhook or system tool calls whose arguments only the history has, whenever transcripts
        are compared (its turns become `stored_transcript`) and whenever the persona expects a
        verdict of the backend's (`platform_verdict`: its analysis is then kept on any backend).
        Same code for both."""
        from voicelab.spec.models import PlatformConversation

        live = self._tool_calls
        on_platform = self.request.backend == "elevenlabs"
        compare = transcripts.wanted(self.request)
        verdict = self.request.persona.expect.platform_verdict is not None
        if not conversation_id or not (on_platform or tool_calls.needs_history(live) or compare or verdict):
            return None, live
        try:
            got = hosted.wait_for_conversation(connection.client, conversation_id, self._retries)
        except BackendError as exc:
            return (PlatformConversation(error=str(exc)) if on_platform or verdict else None), live
        if compare:
            self._stored = transcripts.stored_turns(got.transcript or [])
        history = tool_calls.from_history(got.transcript or [])
        merged = tool_calls.merge(live, history)
        if not on_platform and not verdict:
            return None, merged
        analysis = hosted.analysis_of(got).model_copy(update={
            "tool_calls_differ": tool_calls.differences(live, history)})
        return analysis, merged


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
