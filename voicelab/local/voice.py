"""Voice mode of a local-backend conversation: hear the caller, speak as the agent.

Hearing: `user_audio_chunk`s are scored by energy against a noise floor (the 10th percentile
of the last 3 s of chunks; speech must be `NOISE_MARGIN` times louder and never below
SPEECH_RMS), so a caller in steady noise (a street, a fan) is heard when they
speak, not all the time. Like any energy detector it cannot tell speech from babble: a caller in
a crowd at low SNR is never done talking, and the agent never answers (the call times out); a
turn ends after `silence_s` of quiet following speech; pocketsphinx transcribes it (off the
event loop), a long turn in pieces as it comes, biased toward what the agent expects to hear
(vocabulary.py: its flow's phrases, its words, the call's variables, `platform.asr_keywords`).
Speaking: espeak-ng renders the agent's turn, sent as 100 ms PCM chunks a little ahead of real
time. If the caller speaks while agent audio
is still playing, the agent decides after its barge-in reaction time (session.py): a short
burst already over by then is a backchannel, ignored; otherwise it stops, sends `interruption`
(a larger event id than the cut-off turn) and an `agent_response_correction` with what was
really said.

What the client may ask for (`conversation.client_events`, or the agent's): `vad_score` for
every caller chunk, level / (level + threshold), so 0.5 is where the detector starts hearing
speech; `tentative_user_transcript` at each pause in a turn (speech, then `SEGMENT_PAUSE_S` of
quiet): the turn so far, transcribed then; when the pause turns out to be the turn's end, that
transcription is the final one's last piece, so asking for them costs a transcription only when the
caller goes on after a pause.

Injected latency is the agent's response time: the first audio of an answer leaves
`latency_s` after the caller's speech ended (or as soon as ASR and TTS allow, if later).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np

from voicelab.audio.bias import Vocabulary
from voicelab.audio.speech import BYTES_PER_S, SPEECH_RMS, TranscriberPool, rms, speak, voice_for
from voicelab.local import frames
from voicelab.local.channels import Send

CHUNK_BYTES = 3200  # 100 ms
#: Speech is this many times louder than the noise floor (about 9.5 dB).
NOISE_MARGIN = 3.0
FLOOR_CHUNKS = 150  # 3 s of 20 ms chunks
#: A long turn is transcribed in pieces as it comes (cut at a pause this long, once this much
#: audio is waiting), so its text is ready soon after it ends, as with a streaming recogniser:
#: pocketsphinx needs ~0.25 s per second of speech, which a whole 10 s turn would add at its end.
SEGMENT_PAUSE_S = 0.25
SEGMENT_MIN_S = 1.5
#: A backchannel ("mm-hm", "okay") over the agent: speech that lasted at most this long and had
#: stopped this long before the agent decided (its barge-in reaction time) whether to stop.
BACKCHANNEL_MAX_S = 0.8
BACKCHANNEL_GAP_S = 0.1
LEAD_S = 0.3  # how far ahead of real time agent audio is sent
#: While the agent has a reply in flight, the session still wakes this often for caller frames.
BUSY_POLL_S = 0.2


@dataclass
class Utterance:
    """A finished caller turn: pieces already being transcribed, and the rest of its audio."""

    segments: list[Future]
    rest: bytes
    #: The last tentative transcript of the turn being sent: the final one goes out after it.
    tentative: asyncio.Task | None = None


class VoiceChannel:
    def __init__(self, send: Send, language: str, *,
                 silence_s: float, transcribers: Callable[[], TranscriberPool],
                 on_audio_sent: Callable[[float], None] | None = None,
                 recorder: Callable[[bytes, float], None] | None = None, voice: str | None = None,
                 tentative: Callable[[], int] | None = None, vocabulary: Vocabulary | None = None) -> None:
        self.send = send
        #: What the agent expects to hear (vocabulary.py): every utterance is recognised biased
        #: toward it; None: the recogniser's default model.
        self.vocabulary = vocabulary
        if vocabulary:  # the workers build its model while the agent says its first words
            transcribers().prepare(vocabulary)
        #: The client wants `tentative_user_transcript`s: this gives the id of the next event.
        self.tentative = tentative
        self.provisional: Future | None = None  # the turn so far, transcribed at a pause (tentative)
        self.tentative_task: asyncio.Task | None = None
        #: The last caller chunk's voice activity, 0 to 1 (0.5: where speech starts being heard).
        self.vad: float | None = None
        self.transcribers = transcribers
        self.voice = voice or voice_for("agent", language, agent=True)
        self.silence_s = silence_s
        self.buffer = bytearray()
        self.levels: deque[float] = deque(maxlen=FLOOR_CHUNKS)
        self.in_speech = False
        self.last_speech = 0.0
        self.quiet_s = 0.0  # quiet since the last speech of this turn
        self.segments: list[Future] = []  # the turn's pieces, already being transcribed
        self.rest_loud = False  # the buffer (the turn's last piece) holds speech
        self.ignoring = False  # this turn was a backchannel: not transcribed, not answered
        # the agent's current turn
        self.speaking: asyncio.Task | None = None
        self.spoken_text = ""
        self.audio_start = 0.0
        self.audio_s = 0.0
        self.audio_end = 0.0
        self.event_id = 0
        #: Called with the perf_counter of every agent audio chunk sent (the harness benchmark).
        self.on_audio_sent = on_audio_sent
        #: Called with every agent chunk and the time it starts playing (the conversation's recording).
        self.recorder = recorder

    def set_language(self, language: str) -> None:
        """language_detection switched the conversation: the agent speaks with that language's voice."""
        self.voice = voice_for("agent", language, agent=True)

    def busy_wait_s(self, silence_after: float) -> float:
        return BUSY_POLL_S  # to notice the caller starting to speak after (or over) the agent

    # ------------------------------------------------------------------ hearing

    def on_chunk(self, pcm: bytes, now: float) -> bool:
        """Take caller audio; return True when speech starts while the agent is talking."""
        barge_in = False
        level = rms(pcm)
        # the last 3 s as they were, quiet included: a clean line's floor stays ~0 (speech has
        # near-silent frames), so only steady noise raises it; lost frames (zeros) under 10% of
        # the window do not lower it
        self.levels.append(level)
        floor = float(np.percentile(self.levels, 10)) if len(self.levels) >= 25 else 0.0
        threshold = max(SPEECH_RMS, NOISE_MARGIN * floor)
        self.vad = level / (level + threshold)
        if level >= threshold:
            self.provisional = None  # the caller goes on: what was heard at the pause is not the turn
            if not self.in_speech:
                self.in_speech = True
                barge_in = self.agent_talking(now)
            self.last_speech = now
            self.buffer += pcm
            self.quiet_s, self.rest_loud = 0.0, True
        elif self.in_speech:
            self.buffer += pcm
            self.quiet_s += len(pcm) / BYTES_PER_S
            if self.quiet_s >= SEGMENT_PAUSE_S and self.rest_loud and len(self.buffer) >= SEGMENT_MIN_S * BYTES_PER_S:
                self.segments.append(self.hear(bytes(self.buffer)))
                self.buffer.clear()
                # this piece holds the audio a provisional transcription (at an earlier pause) had:
                # it is the turn's now, or the turn's words would be heard twice
                self.rest_loud, self.provisional = False, None
                self.send_tentative(list(self.segments))
            elif (self.quiet_s >= SEGMENT_PAUSE_S and self.rest_loud and self.tentative is not None
                  and self.provisional is None and not self.ignoring):
                # a pause: the turn so far, transcribed once; if it was the turn's end, that is its last piece
                self.provisional = self.hear(bytes(self.buffer))
                self.send_tentative([*self.segments, self.provisional])
        return barge_in

    def hear(self, pcm: bytes) -> Future:
        """One piece of the caller's speech, recognised in a worker, biased to the call's vocabulary."""
        return self.transcribers().submit(pcm, self.vocabulary)

    def send_tentative(self, pieces: list[Future]) -> None:
        """tentative_user_transcript: the turn's text so far, once its pieces are transcribed, after
        any earlier one (only when the client asked for them)."""
        if self.tentative is None or self.ignoring:
            return
        event_id, previous = self.tentative(), self.tentative_task

        async def send() -> None:
            if previous is not None:
                with contextlib.suppress(Exception):
                    await previous
            texts = [await asyncio.wrap_future(piece) for piece in pieces]
            text = " ".join(t for t in texts if t)
            if text:
                await self.send(frames.tentative_user_transcript(text=text, event_id=event_id))

        self.tentative_task = asyncio.get_running_loop().create_task(send())

    def backchannel(self, onset: float, now: float) -> bool:
        """Was the speech that began at `onset` a backchannel, judged at `now`?"""
        return now - self.last_speech >= BACKCHANNEL_GAP_S and self.last_speech - onset <= BACKCHANNEL_MAX_S

    def ignore_turn(self) -> None:
        self.ignoring = True

    def turn_ended(self, now: float) -> tuple[Utterance, float] | None:
        """The caller's finished turn (its audio, time its speech ended), once enough silence followed."""
        if self.in_speech and now - self.last_speech >= self.silence_s:
            self.in_speech = False
            provisional, self.provisional = self.provisional, None
            if self.ignoring:
                self.buffer.clear()
                self.segments, self.rest_loud, self.ignoring = [], False, False
                return None
            if provisional is not None:  # nothing was said after the pause: its transcription is the rest
                utterance = Utterance([*self.segments, provisional], b"")
            else:
                utterance = Utterance(self.segments, bytes(self.buffer) if self.rest_loud else b"")
            utterance.tentative = self.tentative_task
            self.buffer.clear()
            self.segments, self.rest_loud = [], False
            return utterance, self.last_speech
        return None

    async def transcribe(self, utterance: Utterance) -> str:
        pieces = list(utterance.segments)
        if utterance.rest or not pieces:
            pieces.append(self.hear(utterance.rest))
        texts = [await asyncio.wrap_future(piece) for piece in pieces]
        if utterance.tentative is not None:  # the tentative transcripts go out before the final one
            with contextlib.suppress(Exception):
                await utterance.tentative
        return " ".join(t for t in texts if t)

    # ------------------------------------------------------------------ speaking

    def agent_talking(self, now: float) -> bool:
        return self.speaking is not None and now < self.audio_end

    async def speak(self, text: str, event_id: int, not_before: float) -> float:
        """Send agent_response and the turn's audio (first chunk no earlier than `not_before`);
        return when its audio ends on the caller's side."""
        pcm = await asyncio.get_running_loop().run_in_executor(None, speak, text, self.voice)
        pcm = pcm[: len(pcm) - len(pcm) % 2]
        delay = not_before - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        self.spoken_text = text
        self.audio_start = time.monotonic()
        self.audio_s = len(pcm) / BYTES_PER_S
        self.audio_end = self.audio_start + self.audio_s
        self.speaking = asyncio.current_task()
        self.event_id = event_id
        await self.send(frames.agent_response(text=text, event_id=event_id))
        for offset in range(0, len(pcm), CHUNK_BYTES):
            ahead = self.audio_start + offset / BYTES_PER_S - time.monotonic()
            if ahead > LEAD_S:
                await asyncio.sleep(ahead - LEAD_S)
            chunk = pcm[offset:offset + CHUNK_BYTES]
            if self.recorder is not None:
                self.recorder(chunk, self.audio_start + offset / BYTES_PER_S)
            if self.on_audio_sent is not None:
                self.on_audio_sent(time.perf_counter())
            await self.send(frames.audio(pcm=chunk, event_id=event_id))
        return self.audio_end

    async def wait_until_heard(self) -> None:
        """Before hanging up: let the last words play out on the caller's side."""
        remaining = self.audio_end - time.monotonic()
        if remaining > 0:
            await asyncio.sleep(remaining)

    def cut(self, now: float) -> str:
        """Stop the current turn; return the part of its text that was spoken by `now`."""
        if self.speaking is not None and not self.speaking.done():
            self.speaking.cancel()
        self.speaking = None
        fraction = max(0.0, min(1.0, (now - self.audio_start) / self.audio_s)) if self.audio_s else 1.0
        self.audio_end = now
        words = self.spoken_text.split()
        return " ".join(words[: max(1, int(len(words) * fraction))])
