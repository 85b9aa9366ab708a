"""The local agent's ear, unit by unit: a caller turn's audio is transcribed once, whatever
pauses it has, with tentative transcripts asked for or not. A fake recogniser (it says which
audio it was given) stands in for pocketsphinx."""

from __future__ import annotations

import asyncio
from concurrent.futures import Future

import numpy as np
import pytest

from voicelab.audio.speech import BYTES_PER_S
from voicelab.local.voice import VoiceChannel

CHUNK_S = 0.02


class Recogniser:
    """Every piece of audio it is given, and as its text the piece's number of loud samples."""

    def __init__(self) -> None:
        self.pieces: list[bytes] = []

    def submit(self, pcm: bytes, vocabulary: object) -> Future:
        self.pieces.append(pcm)
        done: Future = Future()
        done.set_result(f"{int(np.count_nonzero(np.frombuffer(pcm, dtype=np.int16)))}")
        return done


def chunks(seconds: float, loud: bool) -> list[bytes]:
    n = int(round(seconds / CHUNK_S))
    samples = int(CHUNK_S * BYTES_PER_S / 2)
    tone = (3000 * np.sin(np.arange(samples) / 3)).astype(np.int16)
    quiet = np.zeros(samples, np.int16)
    # speech has near-silent frames (one in five here), which keep a clean line's noise floor at 0
    return [(tone if loud and i % 5 else quiet).tobytes() for i in range(n)]


def heard_loud_samples(speech: list[tuple[float, bool]], tentative: bool) -> tuple[int, int]:
    """Feed a caller turn (seconds, loud?) then a long quiet; return the loud samples fed and
    the loud samples in the text the turn was transcribed as."""

    async def run() -> tuple[int, int]:
        sent: list[dict] = []

        async def send(frame: dict) -> None:
            sent.append(frame)

        ids = iter(range(1, 1000))
        recogniser = Recogniser()
        channel = VoiceChannel(send, "en", silence_s=0.8, transcribers=lambda: recogniser,
                               tentative=(lambda: next(ids)) if tentative else None)
        now, fed, utterance = 0.0, 0, None
        for seconds, loud in [*speech, (2.0, False)]:
            for pcm in chunks(seconds, loud):
                now += CHUNK_S
                fed += int(np.count_nonzero(np.frombuffer(pcm, dtype=np.int16)))
                channel.on_chunk(pcm, now)
                utterance = utterance or (channel.turn_ended(now) or (None,))[0]
        assert utterance is not None, "the turn never ended"
        text = await channel.transcribe(utterance)
        return fed, sum(int(word) for word in text.split())

    return asyncio.run(run())


@pytest.mark.parametrize("tentative", [True, False], ids=["tentative transcripts", "final only"])
@pytest.mark.parametrize("speech", [
    [(1.2, True)],  # shorter than a piece: a pause then the quiet that makes it one
    [(1.6, True)],
    [(0.9, True), (0.3, False), (0.5, True)],
    [(2.0, True), (0.3, False), (1.0, True), (0.4, False), (0.3, True)],
], ids=["short", "one piece", "a pause inside", "long with pauses"])
def test_every_word_of_a_turn_is_heard_once(speech, tentative) -> None:
    fed, heard = heard_loud_samples(speech, tentative)
    assert heard == fed
