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

from voicelab.audio.conditions import Conditioner, words_per_minute
from voicelab.audio.speech import BYTES_PER_S, SPEECH_RMS, rms, speak
from voicelab.audio.wav import StereoRecorder
from voicelab.spec.models import AudioCondition

FRAME_S = 0.02
FRAME_BYTES = int(BYTES_PER_S * FRAME_S)  # 640
SILENCE = b"\0" * FRAME_BYTES


class SyntheticVoice(AsyncAudioInterface):
    def __init__(self, voice: str, clock: Callable[[], float], recorder: StereoRecorder | None = None, *,
                 condition: AudioCondition | None = None, seed: str = "") -> None:
        self.condition = condition
        self.voice = (condition.voice if condition and condition.voice else None) or voice
        self.words_per_minute = words_per_minute(condition)
        #: What the agent receives of each frame (noise, channel, loss, level); None: as spoken.
        self.conditioner = Conditioner(condition, seed) if condition is not None else None
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
        #: Per agent turn: ms from the end of the caller's speech to the first agent audio chunk
        #: arriving, and to the first one with speech in it (Coval's time to first audio).
        self.first_audio_ms: list[float] = []
        self.first_speech_ms: list[float] = []
        self._waiting_audio: float | None = None
        self._waiting_speech: float | None = None
        #: Timed barge-ins (`caller.interrupt`): per barge-in, on the call's clock, when its first
        #: loud frame went out (`onset`), when the `interruption` event came, when the agent's
        #: audio stopped playing here (`audio_stop`).
        self.barge_ins: list[dict[str, float | None]] = []
        self._barge_skip = 0
        self._was_playing = False
        #: A caller-agent bridge: gets every 20 ms of the agent's audio as the persona hears it
        #: (silence included), on the same tick the persona's frame goes out.
        self.on_played: Callable[[bytes], Awaitable[None]] | None = None

    # --- AsyncAudioInterface
    async def start(self, input_callback: Callable[[bytes], Awaitable[None]]) -> None:
        self._task = asyncio.get_running_loop().create_task(self._pump(input_callback))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def output(self, audio: bytes) -> None:
        if self._waiting_audio is not None or self._waiting_speech is not None:
            now = self.clock()
            if self._waiting_audio is not None:
                self.first_audio_ms.append(round((now - self._waiting_audio) * 1000, 1))
                self._waiting_audio = None
            if self._waiting_speech is not None and rms(audio) >= SPEECH_RMS:
                self.first_speech_ms.append(round((now - self._waiting_speech) * 1000, 1))
                self._waiting_speech = None
        self._playback += audio
        self.agent_audio_s += len(audio) / BYTES_PER_S

    async def interrupt(self) -> None:
        self.interruptions += 1
        barge = self.barge_ins[-1] if self.barge_ins else None
        # a barge-in's stop is an interruption of the turn it talked over (closed once the next began)
        open_barge = barge is not None and not barge.get("closed")
        if open_barge and barge["onset"] is not None and barge["interruption"] is None:
            barge["interruption"] = now = self.clock()
            if barge["audio_stop"] is None and self._playback:
                barge["audio_stop"] = now
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
        pcm = await asyncio.get_running_loop().run_in_executor(None, speak, text, self.voice, self.words_per_minute)
        self._speech += pcm
        self.caller_speech_s += len(pcm) / BYTES_PER_S

    def feed(self, pcm: bytes) -> None:
        """Speech from outside (a caller agent's audio, 16 kHz PCM): it goes out in real time."""
        self._speech += pcm[: len(pcm) - len(pcm) % 2]
        self.caller_speech_s += len(pcm) / BYTES_PER_S

    async def render(self, text: str) -> bytes:
        """`text` in the persona's voice, ready to go out at once (for a barge-in on time)."""
        return await asyncio.get_running_loop().run_in_executor(None, speak, text, self.voice, self.words_per_minute)

    def barge_in(self, pcm: bytes) -> None:
        """Start saying `pcm` now, over whatever the agent is saying, and time how it stops."""
        self._barge_skip = len(self._speech)
        self.barge_ins.append({"onset": None, "interruption": None, "audio_stop": None,
                               "seconds": len(pcm) / BYTES_PER_S})
        self._speech += pcm
        self.caller_speech_s += len(pcm) / BYTES_PER_S

    def cut_speech(self) -> None:
        """The caller is interrupted: what it had still to say is dropped."""
        self._speech.clear()

    async def until_quiet(self, both: bool = True) -> None:
        """Wait until the persona has finished speaking (and, if `both`, the agent too)."""
        while self._speech or (both and self._playback):
            await asyncio.sleep(FRAME_S)

    async def _pump(self, send: Callable[[bytes], Awaitable[None]]) -> None:
        """Every 20 ms: send a frame of speech or silence, and play 20 ms of the agent's audio.
        `speech_end` is the send time of the last loud frame: the same instant the backend's
        energy detector takes as the end of the caller's speech."""
        start = time.monotonic()
        stream_start = self.clock()
        last_loud = 0.0
        while True:
            at = self.clock()
            if self._speech:
                frame = bytes(self._speech[:FRAME_BYTES]).ljust(FRAME_BYTES, b"\0")
                del self._speech[:FRAME_BYTES]
                if rms(frame) >= SPEECH_RMS:
                    last_loud = at  # a frame is "heard" when it is sent, as from a real microphone
                    if self.barge_ins and self.barge_ins[-1]["onset"] is None and self._barge_skip <= 0:
                        self.barge_ins[-1]["onset"] = at
                        if not self._playback and not self._was_playing:  # the agent had already stopped
                            self.barge_ins[-1]["audio_stop"] = at
                self._barge_skip -= FRAME_BYTES
                if not self._speech:
                    self.speech_end = self._waiting_audio = self._waiting_speech = last_loud
            else:
                frame = SILENCE
            if self.conditioner is not None and (frame is not SILENCE or not self.conditioner.passthrough):
                frame = self.conditioner(None if frame is SILENCE else frame)  # what the agent receives
            played = bytes(self._playback[:FRAME_BYTES])
            del self._playback[:FRAME_BYTES]
            if self._was_playing and not played and self.barge_ins:
                barge = self.barge_ins[-1]
                if barge["onset"] is not None and barge["audio_stop"] is None:
                    barge["audio_stop"] = at  # the agent's audio ran out here
            self._was_playing = bool(played)
            await send(frame)
            if self.on_played is not None:
                await self.on_played(played.ljust(FRAME_BYTES, b"\0"))
            if self.recorder is not None:  # on the stream's clock: one frame after another, no seams
                on_stream = stream_start + self._frames * FRAME_S
                if frame is not SILENCE:
                    self.recorder.caller(on_stream, frame)
                if played:
                    self.recorder.agent(on_stream, played)
            self._frames += 1
            delay = start + self._frames * FRAME_S - time.monotonic()
            if delay < -FRAME_S:
                self.late_frames += 1
            await asyncio.sleep(max(0.0, delay))
