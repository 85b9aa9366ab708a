"""How the agent's turns reach the caller and the caller's audio reaches the agent: one
interface, two channels. The session's turn logic (voicelab/local/session.py) is written once
against `Channel`; `TextChannel` sends text frames, `VoiceChannel` (voice.py) speaks and hears.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

Send = Callable[[dict[str, Any]], Awaitable[None]]


class Channel(Protocol):
    #: The caller is speaking now (voice): the turn is not over yet.
    in_speech: bool

    async def speak(self, text: str, event_id: int, not_before: float) -> float:
        """Send one agent turn, its first output no earlier than `not_before` (monotonic); return
        the time the caller will have heard all of it."""
        ...

    def agent_talking(self, now: float) -> bool: ...

    async def wait_until_heard(self) -> None: ...

    def on_chunk(self, pcm: bytes, now: float) -> bool:
        """Take caller audio; True when the caller starts speaking over the agent (barge-in)."""
        ...

    def turn_ended(self, now: float) -> tuple[Any, float] | None:
        """The caller's finished spoken turn (its audio, when its speech ended), once silence followed."""
        ...

    def cut(self, now: float) -> str:
        """Stop the agent's current turn; return the part of it that was heard."""
        ...


class TextChannel:
    """A text-only conversation: agent turns as streamed text parts and one `agent_response`."""

    in_speech = False

    def __init__(self, send: Send) -> None:
        self.send = send

    async def speak(self, text: str, event_id: int, not_before: float) -> float:
        wait = not_before - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        await self.send({"type": "agent_chat_response_part",
                         "text_response_part": {"text": "", "type": "start", "event_id": event_id}})
        await self.send({"type": "agent_chat_response_part",
                         "text_response_part": {"text": text, "type": "delta", "event_id": event_id}})
        await self.send({"type": "agent_response",
                         "agent_response_event": {"agent_response": text, "event_id": event_id}})
        await self.send({"type": "agent_chat_response_part",
                         "text_response_part": {"text": "", "type": "stop", "event_id": event_id}})
        return time.monotonic()

    def agent_talking(self, now: float) -> bool:
        return False

    async def wait_until_heard(self) -> None:
        return None

    def on_chunk(self, pcm: bytes, now: float) -> bool:
        return False  # audio in a text-only conversation is not listened to

    def turn_ended(self, now: float) -> tuple[Any, float] | None:
        return None

    def cut(self, now: float) -> str:
        return ""
