"""The Call: one conversation through the official SDK, on any backend, sync or async.

    result = Call(request, base_url=backend.base_url).run()       # notebooks, CLI
    result = await Call(request, base_url=...).arun()             # batches

The SDK's callbacks only push events into a queue; one driver (a thread for `Conversation`, a
task for `AsyncConversation`) takes them in order, asks the caller what to say, owns the
timeout and decides how the call ended. `_Dialogue` holds that decision logic once, for both.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from elevenlabs import ElevenLabs
from elevenlabs.conversational_ai.conversation import (
    AsyncConversation,
    ClientTools,
    Conversation,
    ConversationInitiationData,
    DisconnectionDetails,
)

from . import evaluate, hosted, settings
from .callers import Caller, caller_for
from .datasets import render
from .errors import BackendError, ConfigError
from .models import CallRequest, CallResult, EndReason, TranscriptEntry, pick_language, utc_now_iso
from .transcript import TranscriptRecorder

if TYPE_CHECKING:
    from .voice_call import VoiceSide

AGENT, DISCONNECT, STOP, HEARD = "agent", "disconnect", "stop", "heard"
#: How long to wait for the SDK to close its side after we ended the call.
CLOSE_GRACE_S = 2.0


@dataclass
class Connection:
    """What the SDK needs to reach an agent: a client, the agent id and whether to sign."""

    client: ElevenLabs
    agent_id: str
    requires_auth: bool = False


@functools.lru_cache(maxsize=8)
def _client(base_url: str, api_key: str | None) -> ElevenLabs:
    """One SDK client per backend: building one costs ~20 ms of CPU (TLS context), which a batch
    would otherwise spend on its event loop at every call start."""
    return ElevenLabs(base_url=base_url, api_key=api_key)


def connect(request: CallRequest, base_url: str | None = None) -> Connection:
    """Build the SDK client for the request's backend. Raises ConfigError before anything is sent."""
    if request.backend == "local":
        url = base_url or settings.get("VOICELAB_LOCAL_URL")
        if not url:
            raise ConfigError("the local backend's URL is unknown: start one with voicelab.LocalBackend() "
                              "(or `voicelab serve`) and pass its base_url, or set VOICELAB_LOCAL_URL")
        # No key on the local backend: the SDK then sends no xi-api-key header at all.
        return Connection(_client(url, None), request.agent.id)
    key = settings.api_key()
    agent_id = request.agent.elevenlabs_agent_id or settings.get("ELEVENLABS_AGENT_ID")
    if not agent_id:
        raise ConfigError(f"agent '{request.agent.id}' has no hosted agent id: set elevenlabs_agent_id in "
                          "its agent file or the ELEVENLABS_AGENT_ID environment variable")
    client = _client(base_url or settings.hosted_base_url(), key)
    requires_auth = (settings.get("ELEVENLABS_REQUIRES_AUTH", "false") or "").lower() in ("1", "true", "yes")
    return Connection(client, agent_id, requires_auth)


def initiation_data(request: CallRequest) -> ConversationInitiationData:
    """Dynamic variables always; overrides only for the fields the agent spec lists."""
    persona, agent = request.persona, request.agent
    variables = dict(persona.variables)
    override: dict[str, Any] = {}
    agent_part: dict[str, Any] = {}
    if "prompt" in agent.overrides:
        agent_part["prompt"] = {"prompt": render(agent.prompt, variables)}
    if "first_message" in agent.overrides:
        agent_part["first_message"] = render(pick_language(agent.first_message, persona.language), variables)
    if "language" in agent.overrides:
        agent_part["language"] = persona.language
    if agent_part:
        override["agent"] = agent_part
    return ConversationInitiationData(dynamic_variables=variables, conversation_config_override=override)


def describe_disconnect(details: DisconnectionDetails) -> tuple[EndReason, str | None]:
    """Map the SDK's DisconnectionDetails to an end reason and a readable error."""
    if details.reason == "agent":
        return "agent_ended", None
    if details.reason == "user":
        return "caller_ended", None
    if details.close_code == 1006:
        return "disconnected", "the connection dropped mid-call (no close frame, code 1006)"
    reason = details.close_reason or ""
    if reason.startswith("Override for field"):
        field = reason.split("'")[1] if "'" in reason else "?"
        return "error", (f"the agent refused the override of '{field}' (its Security settings do not allow it): "
                         f"allow '{field}' under Security > Overrides for this agent, or remove it from "
                         "`overrides` in the agent file")
    if reason == "Could not authorize the conversation":
        return "error", ("the agent is private and the call had no valid signature: set ELEVENLABS_REQUIRES_AUTH=true "
                         "so voicelab fetches a signed URL")
    if reason == "Agent not found":
        return "error", "the backend has no such agent: check the agent id (close code 1008)"
    if details.close_code is not None:
        return "error", f"the backend closed the call with code {details.close_code}: {reason}"
    return "error", f"the call failed: {details.message or 'connection error'}"


def finished_result(request: CallRequest, transcript: list[TranscriptEntry], *, end_reason: EndReason,
                    duration_s: float, started_at: str, error: str | None = None,
                    conversation_id: str | None = None, interruptions: int = 0, analysis: dict | None = None,
                    retries: list[dict] | None = None, voice: dict | None = None) -> CallResult:
    """The one way any caller (scripted, platform, phone) turns a finished call into a CallResult."""
    status = "failed" if end_reason in ("error", "disconnected", "cancelled") else "completed"
    duration = round(duration_s, 3)
    checks = evaluate.checks(request.persona.expect, transcript, duration_s=duration, end_reason=end_reason)
    return CallResult(
        conversation_id=conversation_id, status=status, duration_seconds=duration, transcript=transcript,
        run_id=request.run_id, call_id=request.call_id, persona_id=request.persona.id, agent_id=request.agent.id,
        backend=request.backend, caller=request.caller, mode=request.mode, started_at=started_at,
        end_reason=end_reason, error=error, checks=checks,
        metrics=evaluate.metrics(transcript, interruptions).model_copy(
            update={k: v for k, v in (voice or {}).items() if k in ("talk_ratio", "wer")}),
        success=evaluate.success(status, checks), analysis=analysis, retries=retries or [],
        audio_path=(voice or {}).get("audio_path"),
    )


class _Dialogue:
    """The decisions of a call, independent of sync/async I/O."""

    def __init__(self, request: CallRequest, caller: Caller | None, recorder: TranscriptRecorder) -> None:
        self.request = request
        self.caller = caller
        self.recorder = recorder
        self.context = render(request.agent.context, request.persona.variables) if request.agent.context else None
        self.context_sent = False
        self.end_reason: EndReason | None = None
        self.error: str | None = None
        self.ended_at: float | None = None
        self.conversation_id: str | None = None
        self.started_at = utc_now_iso()
        self.retries: list[dict] = []
        self.analysis: dict | None = None
        self.voice: VoiceSide | None = None

    def finish(self, reason: EndReason, error: str | None = None) -> None:
        if self.end_reason is None:
            self.end_reason, self.error = reason, error
            self.ended_at = self.recorder.elapsed()

    def handle(self, kind: str, payload: Any) -> tuple[str | None, list[str], bool]:
        """Take one event; return (a contextual update to send first, what the caller says, whether
        it hangs up after saying it)."""
        if kind == DISCONNECT:
            self.finish(*describe_disconnect(payload))
        elif kind == STOP:
            self.finish(payload or "caller_ended")
        elif kind == HEARD:  # a human's voice turn, as the agent transcribed it
            text, at = payload
            self.recorder.add("user", text, at=at)
        elif kind == AGENT:
            text, at, latency = payload
            self.recorder.add("agent", text, at=at, latency_ms=latency)
            context = None
            if self.context and not self.context_sent:
                self.context_sent, context = True, self.context
            if self.caller is None:
                return context, [], False
            action = self.caller.on_agent_turn(text)
            return context, action.say, action.hang_up
        return None, [], False

    def result(self) -> CallResult:
        duration = self.ended_at if self.ended_at is not None else self.recorder.elapsed()
        voice = self.voice.summary(self.request) if self.voice is not None else None
        return finished_result(
            self.request, self.recorder.entries(), end_reason=self.end_reason or "error", duration_s=duration,
            started_at=self.started_at, error=self.error, conversation_id=self.conversation_id,
            interruptions=voice.pop("interruptions") if voice else self.recorder.interruptions,
            analysis=self.analysis, retries=self.retries, voice=voice)

    def fetch_analysis(self, connection: Connection) -> None:
        """On the hosted platform, store its own verdict and transcript next to ours."""
        if self.request.backend != "elevenlabs" or not self.conversation_id:
            return
        try:
            got = hosted.wait_for_conversation(connection.client, self.conversation_id, self.retries)
            self.analysis = hosted.analysis_of(got)
        except BackendError as exc:
            self.analysis = {"source": "platform", "error": str(exc)}


class Call:
    """One conversation: persona x agent x backend x caller x mode -> CallResult."""

    def __init__(self, request: CallRequest, *, base_url: str | None = None, caller: Caller | None = None,
                 on_entry: Callable[[TranscriptEntry], None] | None = None, audio: Any = None) -> None:
        """`audio`: a sync AudioInterface (e.g. SoundDeviceAudio) for a human voice call via `start()`."""
        self.request = request
        self.audio = audio
        self.base_url = base_url
        self.caller = caller if caller is not None else caller_for(request.persona, request.caller)
        self.recorder = TranscriptRecorder(on_entry=on_entry)
        self.dialogue = _Dialogue(request, self.caller, self.recorder)
        self._events: queue.Queue = queue.Queue()
        self._conversation: Conversation | None = None
        self._connection: Connection | None = None
        self._turns: list[asyncio.Task] = []
        self._driver: threading.Thread | None = None
        self._result: CallResult | None = None

    @property
    def transcript(self) -> list[TranscriptEntry]:
        return self.recorder.entries()

    # ------------------------------------------------------------------ sync (notebooks)

    def start(self) -> None:
        """Connect and start the conversation in the background; returns at once."""
        connection = self._connection = connect(self.request, self.base_url)
        voice = None
        if self.audio is not None:
            from .voice_call import VoiceSide

            voice = self.dialogue.voice = VoiceSide(self.request, self.recorder, audio=self.audio)

        def on_agent(text: str) -> None:
            at = self.recorder.elapsed()
            self._events.put((AGENT, (text, at, voice.latency_to(at) if voice else None)))

        self._conversation = Conversation(
            connection.client, connection.agent_id, requires_auth=False,
            config=initiation_data(self.request), audio_interface=self.audio,
            callback_agent_response=on_agent,
            callback_user_transcript=(lambda text: self._events.put((HEARD, (text, self.recorder.elapsed()))))
            if voice else None,
            callback_disconnect=lambda details: self._events.put((DISCONNECT, details)),
        )
        self.dialogue.started_at = utc_now_iso()
        self.recorder.restart_clock()
        try:
            self._sign(self._conversation, connection)
            self._conversation.start_session()
        except BackendError as exc:  # a private agent's signed URL was refused: failed before it began
            self.dialogue.finish("error", str(exc))
        except Exception as exc:
            self.dialogue.finish("error", f"could not start the call: {exc}")
        self._driver = threading.Thread(target=self._drive, name=f"voicelab-call-{self.request.persona.id}",
                                        daemon=True)
        self._driver.start()

    def _sign(self, conv: Conversation | AsyncConversation, connection: Connection) -> None:
        """Private agents: fetch the signed URL here (retries visible in the result), not in the SDK."""
        if connection.requires_auth:
            url = hosted.signed_ws_url(connection.client, connection.agent_id, self.dialogue.retries)
            conv._get_wss_url = lambda: url  # the SDK then connects to the signed URL as given

    def send(self, text: str) -> None:
        """Say something as the caller (a human typing in the console)."""
        if self._conversation is None or self.dialogue.end_reason is not None:
            raise ConfigError("the call is not running: start it first")
        at = self.recorder.elapsed()
        self._conversation.send_user_message(text)
        self.recorder.add("user", text, at=at)

    def stop(self) -> None:
        """Hang up as the caller."""
        self._events.put((STOP, "caller_ended"))

    def wait(self) -> CallResult:
        if self._driver is None:
            raise ConfigError("the call was never started")
        self._driver.join()
        assert self._result is not None
        return self._result

    def run(self) -> CallResult:
        self.start()
        return self.wait()

    def _drive(self) -> None:
        dialogue, conv = self.dialogue, self._conversation
        assert conv is not None
        deadline = time.monotonic() + self.request.max_duration_s
        while dialogue.end_reason is None:
            try:
                kind, payload = self._events.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                dialogue.finish("timeout")
                break
            context, say, hang_up = dialogue.handle(kind, payload)
            if context:
                with contextlib.suppress(Exception):
                    conv.send_contextual_update(context)
            for text in say:
                at = self.recorder.elapsed()
                try:
                    conv.send_user_message(text)
                except Exception:
                    break  # the agent hung up meanwhile; its disconnect event follows
                self.recorder.add("user", text, at=at)
            if hang_up:
                dialogue.finish("caller_ended")
        conv.end_session()
        if conv._thread is not None:
            conv._thread.join(CLOSE_GRACE_S)
        if dialogue.voice is not None:
            dialogue.voice.save(self.request)
        dialogue.conversation_id = conv._conversation_id
        dialogue.fetch_analysis(self._connection)
        self._result = dialogue.result()

    # ------------------------------------------------------------------ async (batches)

    async def arun(self) -> CallResult:
        """Place the call on the running loop. Cancelling it ends the call as `cancelled`."""
        dialogue = self.dialogue
        events: asyncio.Queue = asyncio.Queue()
        connection = connect(self.request, self.base_url)

        if self.request.mode == "voice":
            from .voice_call import VoiceSide

            dialogue.voice = VoiceSide(self.request, self.recorder)
        voice = dialogue.voice

        async def on_agent(text: str) -> None:
            at = self.recorder.elapsed()
            events.put_nowait((AGENT, (text, at, voice.latency_to(at) if voice else None)))

        async def on_disconnect(details: DisconnectionDetails) -> None:
            events.put_nowait((DISCONNECT, details))

        async def on_heard(text: str) -> None:
            if voice is not None:
                voice.heard.append(text)

        conv = AsyncConversation(
            connection.client, connection.agent_id, requires_auth=False,
            config=initiation_data(self.request),
            # One ClientTools on the batch's loop, not a thread and loop per call.
            client_tools=ClientTools(loop=asyncio.get_running_loop()),
            callback_agent_response=on_agent, callback_disconnect=on_disconnect,
            callback_user_transcript=on_heard, audio_interface=voice.audio if voice else None,
        )
        dialogue.started_at = utc_now_iso()
        self.recorder.restart_clock()
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(None, self._sign, conv, connection)
            await conv.start_session()
            await self._adrive(conv, events)
        except BackendError as exc:
            dialogue.finish("error", str(exc))
        except asyncio.CancelledError:
            dialogue.finish("cancelled", "the run was interrupted while this call was in progress")
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()  # we handled it: closing the call below must still be able to await
        except Exception as exc:
            dialogue.finish("error", f"could not start the call: {exc}")
        for task in self._turns:
            task.cancel()
        await self._aclose(conv)
        if voice is not None:
            voice.save(self.request)
        dialogue.conversation_id = conv._conversation_id
        await loop.run_in_executor(None, dialogue.fetch_analysis, connection)
        self._result = dialogue.result()
        return self._result

    async def _adrive(self, conv: AsyncConversation, events: asyncio.Queue) -> None:
        dialogue = self.dialogue
        deadline = time.monotonic() + self.request.max_duration_s
        while dialogue.end_reason is None:
            try:
                kind, payload = await asyncio.wait_for(events.get(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                dialogue.finish("timeout")
                break
            context, say, hang_up = dialogue.handle(kind, payload)
            if context:
                with contextlib.suppress(Exception):
                    await conv.send_contextual_update(context)
            if dialogue.voice is not None:
                if say or hang_up:  # spoken in real time, after the agent (or over it)
                    self._turns.append(asyncio.create_task(dialogue.voice.turn(say, hang_up, events)))
                continue
            for text in say:
                at = self.recorder.elapsed()
                try:
                    await conv.send_user_message(text)
                except Exception:
                    break  # the agent hung up meanwhile; its disconnect event follows
                self.recorder.add("user", text, at=at)
            if hang_up:
                dialogue.finish("caller_ended")

    async def _aclose(self, conv: AsyncConversation) -> None:
        with contextlib.suppress(Exception):
            await conv.end_session()
        if conv._task is not None and not conv._task.done():
            # The SDK's receive loop re-checks its stop flag only every 0.5 s; don't hold the
            # batch slot for that: cancel it, which closes the socket.
            conv._task.cancel()
        if conv._task is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(conv._task, CLOSE_GRACE_S)
