"""The one door into the `elevenlabs` SDK's private parts.

voicelab needs four things the SDK does not make public: connecting to a signed URL it fetched
itself (so REST retries stay visible), the conversation id after the call, the receive task (the
SDK re-checks its stop flag only every 0.5 s; a batch slot should not wait for that), and a
check that these still exist. Everything private is named in `PRIVATE` and touched only here,
so an SDK upgrade that renames one fails `check()` with a sentence instead of breaking calls
silently (tests/test_sdk.py is the canary).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from importlib.metadata import version
from typing import Any

from elevenlabs.base_client import BaseElevenLabs
from elevenlabs.conversational_ai.conversation import (
    AsyncAudioInterface,
    AsyncConversation,
    ClientTools,
    ConversationInitiationData,
    DisconnectionDetails,
)

from voicelab.spec.errors import SdkError


def _not_a_normal_close(record: logging.LogRecord) -> bool:
    """The SDK logs ERROR when a caller's words cross the agent's hang-up (close 1000) on the wire,
    then raises; the call records that ending itself, so the log line is only noise in a batch."""
    return not str(record.getMessage()).startswith("Error sending user message: received 1000 (OK)")


logging.getLogger("elevenlabs.conversational_ai.conversation").addFilter(_not_a_normal_close)

#: Private attributes of an `AsyncConversation` voicelab relies on, and what for.
PRIVATE = {
    "_get_wss_url": "connect to a signed URL fetched by voicelab (with visible retries)",
    "_conversation_id": "the conversation id, for the result and the platform's analysis",
    "_task": "the receive task, cancelled on hang-up instead of waiting up to 0.5 s",
    "_ws": "know when the websocket is open, so a caller's first words are not sent into nothing, "
           "and when its frames arrive (see `received_at`)",
    "_handle_message": "see the agent_tool_request / agent_tool_response events the SDK ignores (webhook "
                       "and system tool calls: transfers, language switches), and the audio formats",
}
#: Server events the SDK drops that voicelab wants to see.
TOOL_EVENTS = ("agent_tool_request", "agent_tool_response")
#: The first server event: its audio formats are not exposed by the SDK.
METADATA = "conversation_initiation_metadata"
#: How long to wait for the SDK to close its side after the call ended.
CLOSE_GRACE_S = 2.0


def sdk_version() -> str:
    return version("elevenlabs")


def check(conversation: AsyncConversation) -> None:
    """Raise SdkError naming the first private attribute the installed SDK no longer has."""
    for name, why in PRIVATE.items():
        if not hasattr(conversation, name):
            raise SdkError(f"elevenlabs {sdk_version()} has no AsyncConversation.{name} (voicelab uses it to {why}); "
                           "install the tested version: pip install 'elevenlabs>=2.78,<2.79'")


@functools.lru_cache(maxsize=8)
def client(base_url: str, api_key: str | None) -> BaseElevenLabs:
    """One SDK client per backend: building one costs ~20 ms of CPU (TLS context), which a batch
    would otherwise spend on its event loop at every call start. No key: no xi-api-key header.

    The SDK's BaseElevenLabs, which its `ElevenLabs` extends only with the text-to-speech, speech
    to text, music, flows, speech-engine and webhook helpers: constructed alike (same settings,
    same REST clients, same conversations), but without importing those helpers' models, which
    is ~0.25 s of every run's start and nothing a call uses."""
    return BaseElevenLabs(base_url=base_url, api_key=api_key)


def open_conversation(
    client: BaseElevenLabs, agent_id: str, initiation: ConversationInitiationData, *,
    audio: AsyncAudioInterface | None,
    on_agent_response: Callable[[str], Awaitable[None]],
    on_user_transcript: Callable[[str], Awaitable[None]],
    on_disconnect: Callable[[DisconnectionDetails], Awaitable[None]],
    signed_url: str | None = None,
    tools: dict[str, Callable[[dict], Awaitable[Any]]] | None = None,
    on_tool_event: Callable[[str, dict], None] | None = None,
    on_metadata: Callable[[dict], None] | None = None,
    on_correction: Callable[[str, str], Awaitable[None]] | None = None,
) -> AsyncConversation:
    """An AsyncConversation on the running loop (one ClientTools on that loop, not a thread per
    call), connecting to `signed_url` when given; `tools` are registered as client tools;
    `on_tool_event(type, event)` sees each agent_tool_request / agent_tool_response;
    `on_metadata(event)` the conversation_initiation_metadata event (its audio formats)."""
    client_tools = ClientTools(loop=asyncio.get_running_loop())
    for name, handler in (tools or {}).items():
        client_tools.register(name, handler, is_async=True)
    conversation = AsyncConversation(
        client, agent_id, requires_auth=False, config=initiation,
        client_tools=client_tools, audio_interface=audio,
        callback_agent_response=on_agent_response, callback_user_transcript=on_user_transcript,
        callback_disconnect=on_disconnect, callback_agent_response_correction=on_correction)
    check(conversation)
    if signed_url is not None:
        conversation._get_wss_url = lambda: signed_url  # the SDK then connects to it as given
    if on_tool_event is not None or on_metadata is not None:
        handle = conversation._handle_message

        async def handle_message(message: Any, ws: Any) -> None:
            kind = message.get("type") if isinstance(message, dict) else None
            with contextlib.suppress(Exception):  # a watcher's bug must not break the call
                if on_tool_event is not None and kind in TOOL_EVENTS and isinstance(message.get(kind), dict):
                    on_tool_event(kind, message[kind])
                elif on_metadata is not None and kind == METADATA:
                    on_metadata(message.get(f"{METADATA}_event") or {})
            await handle(message, ws)

        conversation._handle_message = handle_message  # type: ignore[method-assign]
    return conversation


def conversation_id(conversation: AsyncConversation) -> str | None:
    return conversation._conversation_id


async def until_connected(conversation: AsyncConversation, timeout_s: float = 10.0) -> bool:
    """Wait until the websocket is open (True) or the session ended or `timeout_s` passed (False)."""
    if conversation._ws is not None:
        return True
    deadline = asyncio.get_running_loop().time() + timeout_s
    while conversation._ws is None:
        task = conversation._task
        if task is None or task.done() or asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.005)
    return True


class _Stamped:
    """Stands in for the websocket's message assembler (websockets' `Assembler`, which the
    connection feeds from its read callback and `recv()` reads from) and notes when each message
    came in, so the one `recv()` just returned can be dated."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        # messages already waiting when the stamp was installed: their arrival is unknown
        waiting = sum(1 for frame in getattr(getattr(inner, "frames", None), "queue", ()) if frame.fin)
        self.arrivals: collections.deque[float | None] = collections.deque([None] * waiting)
        self.current: float | None = None

    def put(self, frame: Any) -> None:
        self.inner.put(frame)
        if frame.fin:  # the last frame of a message: it has arrived
            self.arrivals.append(time.monotonic())

    async def get(self, decode: bool | None = None) -> Any:
        data = await self.inner.get(decode)
        self.current = self.arrivals.popleft() if self.arrivals else None
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def received_at(conversation: AsyncConversation) -> float | None:
    """When (time.monotonic) the message the SDK is handling now reached this process, or None.

    The SDK hands a message to voicelab only after its receive task gets a turn on the event
    loop; with hundreds of calls on one loop that is tens of milliseconds after it arrived, and an
    agent turn stamped then would charge the harness's own queueing to the agent's latency. The
    stamp is taken in the transport's read callback, which runs first in every loop iteration.
    The first call installs it and returns None (that message's arrival is unknown)."""
    ws = conversation._ws
    if ws is None:
        return None
    messages = getattr(ws, "recv_messages", None)
    if isinstance(messages, _Stamped):
        return messages.current
    if messages is not None and hasattr(messages, "put") and hasattr(messages, "get"):
        ws.recv_messages = _Stamped(messages)
    # else a websockets without an assembler: turns are stamped when handled, as before
    return None


async def close(conversation: AsyncConversation) -> None:
    """End the session and stop the receive task now, within CLOSE_GRACE_S."""
    with contextlib.suppress(Exception):
        await conversation.end_session()
    task: Any = conversation._task
    if task is None:
        return
    if not task.done():
        task.cancel()  # closes the socket at once
    with contextlib.suppress(BaseException):
        await asyncio.wait_for(task, CLOSE_GRACE_S)
