"""A scripted persona's voice: the SDK's AsyncAudioInterface, fed by espeak-ng.

Like pipecat's virtual microphone it always sends something every 20 ms, speech or silence, so
the agent hears exactly what a live client would produce (ElevenLabs has no client end-of-turn
event: a turn ends only when silence follows speech). The agent's audio is "played" on the same
20 ms clock, which tells a polite persona when the agent has finished, and feeds the recording.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from elevenlabs.conversational_ai.conversation import AsyncAudioInterface

from ..speech import BYTES_PER_S, SPEECH_RMS, rms, speak
from .wav import StereoRecorder

FRAME_S = 0.02
FRAME_BYTES = int(BYTES_PER_S * FRAME_S)  # 640
SILENCE = b"\0" * FRAME_BYTES


class SyntheticVoice(AsyncAudioInterface):
    def __init__(self, voice: str, clock: Callable[[], float], recorder: StereoRecorder | None = None) -> None:
        self.voice = voice
        self.clock = clock  # seconds since the call started (the transcript's clock)
        self.recorder = recorder
        self._speech = bytearray()
        self._playback = bytearray()
        self._task: asyncio.Task | None = None
        self._frames = 0
        self.speech_end: float | None = None  # when the caller last stopped speaking (call clock)
        self.caller_speech_s = 0.0
        self.agent_audio_s = 0.0
        self.interruptions = 0
        #: 20 ms ticks that came more than a frame late: the virtual speaker would have run dry
        #: (an underrun) and the microphone stream stuttered. Zero means the call kept real time.
        self.late_frames = 0

    # --- AsyncAudioInterface
    async def start(self, input_callback: Callable[[bytes], Awaitable[None]]) -> None:
        self._task = asyncio.get_running_loop().create_task(self._pump(input_callback))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def output(self, audio: bytes) -> None:
        self._playback += audio
        self.agent_audio_s += len(audio) / BYTES_PER_S

    async def interrupt(self) -> None:
        self.interruptions += 1
        self._playback.clear()

    # --- the persona
    @property
    def speaking(self) -> bool:
        return bool(self._speech)

    @property
    def agent_playing(self) -> bool:
        return bool(self._playback)

    async def say(self, text: str) -> None:
        """Queue `text` as speech; it goes out in real time from the next frame on."""
        pcm = await asyncio.get_running_loop().run_in_executor(None, speak, text, self.voice)
        self._speech += pcm
        self.caller_speech_s += len(pcm) / BYTES_PER_S

    async def until_quiet(self, both: bool = True) -> None:
        """Wait until the persona has finished speaking (and, if `both`, the agent too)."""
        while self._speech or (both and self._playback):
            await asyncio.sleep(FRAME_S)

    async def _pump(self, send: Callable[[bytes], Awaitable[None]]) -> None:
        """Every 20 ms: send a frame of speech or silence, and play 20 ms of the agent's audio.
        `speech_end` is the send time of the last loud frame: the same instant the backend's
        energy detector takes as the end of the caller's speech."""
        start = time.monotonic()
        last_loud = 0.0
        while True:
            at = self.clock()
            if self._speech:
                frame = bytes(self._speech[:FRAME_BYTES]).ljust(FRAME_BYTES, b"\0")
                del self._speech[:FRAME_BYTES]
                if rms(frame) >= SPEECH_RMS:
                    last_loud = at  # a frame is "heard" when it is sent, as from a real microphone
                if not self._speech:
                    self.speech_end = last_loud
            else:
                frame = SILENCE
            played = bytes(self._playback[:FRAME_BYTES])
            del self._playback[:FRAME_BYTES]
            await send(frame)
            if self.recorder is not None:
                if frame is not SILENCE:
                    self.recorder.caller(at, frame)
                if played:
                    self.recorder.agent(at, played)
            self._frames += 1
            delay = start + self._frames * FRAME_S - time.monotonic()
            if delay < -FRAME_S:
                self.late_frames += 1
            await asyncio.sleep(max(0.0, delay))
