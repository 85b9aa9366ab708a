"""A call while it runs: the events the driver's loop reacts to, and a voice call's live audio
figures. Plain frozen dataclasses, not pydantic: they are made many times a call and never stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from voicelab.spec.models.result import BargeIn, EndReason


@dataclass(frozen=True)
class AgentSaid:
    """The agent finished a turn (`agent_response`) at `at` s into the call."""

    text: str
    at: float
    latency_ms: float | None = None


@dataclass(frozen=True)
class CallerHeard:
    """The backend transcribed a human caller's spoken turn (`user_transcript`)."""

    text: str
    at: float


@dataclass(frozen=True)
class Disconnected:
    """The connection ended; already mapped to how the call ended."""

    end_reason: EndReason
    error: str | None = None


@dataclass(frozen=True)
class HangUp:
    """The caller's side ends the call (the scripted caller said goodbye, a human pressed Stop)."""

    end_reason: EndReason = "caller_ended"
    error: str | None = None


@dataclass(frozen=True)
class CallerSaid:
    """An agent caller's turn (its conversation's `agent_response`), `at` s into the call."""

    text: str
    at: float


CallEvent = AgentSaid | CallerHeard | CallerSaid | Disconnected | HangUp


@dataclass(frozen=True)
class VoiceStats:
    """A voice call's audio figures, live while it runs and final once it ended."""

    interruptions: int = 0
    caller_speech_s: float = 0.0
    agent_audio_s: float = 0.0
    #: 20 ms ticks that came more than a frame late (the synthetic caller fell out of real time).
    late_frames: int = 0
    #: RMS of the caller's last 20 ms (a level meter for a microphone).
    input_level: float = 0.0
    wer: float | None = None
    audio_path: str | None = None
    #: Per agent turn: end of the caller's speech -> first agent audio chunk / first one with speech.
    first_audio_ms: list[float] = field(default_factory=list)
    first_speech_ms: list[float] = field(default_factory=list)
    #: 20 ms caller frames the audio condition dropped.
    frames_lost: int = 0
    barge_ins: list[BargeIn] = field(default_factory=list)

    @property
    def talk_ratio(self) -> float | None:
        return round(self.caller_speech_s / self.agent_audio_s, 3) if self.agent_audio_s else None
