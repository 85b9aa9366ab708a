"""Conversation audio the local backend serves from `GET /v1/convai/conversations/{id}/audio`.

A voice conversation is recorded as it happens into two raw PCM files on disk (the caller's
audio as it arrives, the agent's placed at the time it was sent), so memory does not grow with
call length; a phone conversation, whose caller is simulated, is rendered from its transcript
when first asked for. Either way the answer is one stereo WAV: caller left, agent right. (The
platform serves MP3; the SDKs do not look at the codec, and WAV needs no encoder here.)
"""

from __future__ import annotations

import io
import time
import wave
from pathlib import Path

import numpy as np

from voicelab.audio.speech import BYTES_PER_S, RATE, speak, voice_for


class Recording:
    """The two sides of one voice conversation, written as they happen."""

    def __init__(self, base: Path) -> None:
        self.caller_path = base.with_suffix(".caller.pcm")
        self.agent_path = base.with_suffix(".agent.pcm")
        self.caller = self.caller_path.open("wb")
        self.agent = self.agent_path.open("wb")
        self.started = time.monotonic()

    def caller_audio(self, pcm: bytes) -> None:
        if not self.caller.closed:
            self.caller.write(pcm)

    def agent_audio(self, pcm: bytes, at: float) -> None:
        """Agent audio that starts playing at monotonic time `at`."""
        if self.agent.closed:
            return
        offset = int((at - self.started) * BYTES_PER_S) & ~1
        position = self.agent.tell()
        if offset > position:
            self.agent.write(bytes(offset - position))
        self.agent.write(pcm)

    def close(self) -> None:
        self.caller.close()
        self.agent.close()

    def flush(self) -> None:
        for side in (self.caller, self.agent):
            if not side.closed:
                side.flush()

    def wav(self) -> bytes:
        """The recording so far (a conversation still running is served up to now)."""
        return stereo_wav(self.caller_path.read_bytes(), self.agent_path.read_bytes())

    def delete(self) -> None:
        self.close()
        self.caller_path.unlink(missing_ok=True)
        self.agent_path.unlink(missing_ok=True)


def stereo_wav(left: bytes, right: bytes) -> bytes:
    a = np.frombuffer(left[: len(left) & ~1], dtype="<i2")
    b = np.frombuffer(right[: len(right) & ~1], dtype="<i2")
    frames = np.zeros((max(len(a), len(b)), 2), dtype="<i2")
    frames[: len(a), 0] = a
    frames[: len(b), 1] = b
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(frames.tobytes())
    return out.getvalue()


def render_transcript(transcript: list[dict], language: str = "en") -> bytes:
    """A simulated call's audio: each turn spoken at its time in the call, on its side."""
    sides = {"user": bytearray(), "agent": bytearray()}
    voices = {"user": voice_for("caller", language), "agent": voice_for("agent", language, agent=True)}
    for item in transcript:
        role = item.get("role")
        if role not in sides or not item.get("message"):
            continue
        track = sides[role]
        start = int(float(item.get("time_in_call_secs") or 0) * BYTES_PER_S) & ~1
        if start > len(track):
            track.extend(bytes(start - len(track)))
        track.extend(speak(str(item["message"]), voices[role]))
    return stereo_wav(bytes(sides["user"]), bytes(sides["agent"]))
