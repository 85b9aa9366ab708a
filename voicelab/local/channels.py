"""How the agent's turns reach the caller and the caller's audio reaches the agent: one
interface, two channels. The session's turn logic (voicelab/local/session.py) is written once
against `Channel`; `TextChannel` sends text frames, `VoiceChannel` (voice.py) speaks and hears.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from voicelab.local import frames

Send = Callable[[frames.Frame], Awaitable[None]]


class Channel(Protocol):
    #: The caller is speaking now (voice): the turn is not over yet.
    in_speech: bool
    #: The agent's current (or last) spoken turn: its full text and event id, for a correction.
    spoken_text: str
    event_id: int
    #: Voice: how likely the caller's last audio chunk was speech (0 to 1); None: no audio heard.
    vad: float | None

    def set_language(self, language: str) -> None:
        """language_detection switched the conversation's language."""
        ...

    def busy_wait_s(self, silence_after: float) -> float:
        """How long the session may wait for a client frame while the agent has a reply in flight."""
        ...

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

    async def transcribe(self, utterance: Any) -> str:
        """The text of a finished turn that `turn_ended` returned."""
        ...

    def backchannel(self, onset: float, now: float) -> bool:
        """Was the caller's speech that began at `onset` a backchannel, judged at `now`?"""
        ...

    def ignore_turn(self) -> None:
        """The caller's current turn is not to be transcribed or answered (a backchannel)."""
        ...

    def cut(self, now: float) -> str:
        """Stop the agent's current turn; return the part of it that was heard."""
        ...


class TextChannel:
    """A text-only conversation: agent turns as streamed text parts and one `agent_response`."""

    # a text caller never speaks, so never talks over the agent: nothing is ever cut or corrected
    in_speech = False
    spoken_text = ""
    event_id = 0
    vad = None

    def __init__(self, send: Send) -> None:
        self.send = send

    def set_language(self, language: str) -> None:
        return None  # text has no voice to switch

    def busy_wait_s(self, silence_after: float) -> float:
        # silence is counted from the end of the agent's turn, so waking a full silence later is never late
        return silence_after

    async def speak(self, text: str, event_id: int, not_before: float) -> float:
        wait = not_before - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        await self.send(frames.agent_chat_response_part(text="", part="start", event_id=event_id))
        await self.send(frames.agent_chat_response_part(text=text, part="delta", event_id=event_id))
        await self.send(frames.agent_response(text=text, event_id=event_id))
        await self.send(frames.agent_chat_response_part(text="", part="stop", event_id=event_id))
        return time.monotonic()

    def agent_talking(self, now: float) -> bool:
        return False

    async def wait_until_heard(self) -> None:
        return None

    def on_chunk(self, pcm: bytes, now: float) -> bool:
        return False  # audio in a text-only conversation is not listened to

    def turn_ended(self, now: float) -> tuple[Any, float] | None:
        return None

    async def transcribe(self, utterance: Any) -> str:
        return ""  # never asked: a text channel has no spoken turns

    def backchannel(self, onset: float, now: float) -> bool:
        return False

    def ignore_turn(self) -> None:
        return None

    def cut(self, now: float) -> str:
        return ""
