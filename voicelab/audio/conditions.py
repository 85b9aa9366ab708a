"""Real-world audio conditions for a synthetic caller's voice, made offline (no downloads).

A `Conditioner` turns each 20 ms frame the caller's microphone would send (speech, or None for
silence) into what the agent receives, in this order: background noise mixed at `snr_db`, the
line's level (`volume_db`, voice and noise alike), the channel (`phone`: 300-3400 Hz, 8 kHz,
mu-law and back), then frame loss in bursts. Speaking rate and voice are applied where the
speech is made (espeak-ng's words per minute and voice). Noise plays all the time, as a room or
a street does, not only while the persona speaks.

SNR is relative to the synthetic voice's active speech level (`SPEECH_LEVEL`, espeak-ng's
average over its voices), so one `snr_db` means the same for every persona.

Noise beds are a few seconds long, made once per kind and seed and looped from a random point:
white and pink noise; babble (six espeak-ng voices talking over each other); street (rumble,
passing traffic and a horn now and then); or any WAV file (mono or stereo, any rate).
"""

from __future__ import annotations

import functools
import zlib
from pathlib import Path

import numpy as np

from voicelab.audio.speech import RATE
from voicelab.spec.errors import DatasetError
from voicelab.spec.models import NOISES, AudioCondition

FRAME = 320  # samples in 20 ms at 16 kHz
#: RMS of espeak-ng's voiced frames (measured over its en/de voices: 2850-4500): the level SNR is relative to.
SPEECH_LEVEL = 3000.0
BED_S = 8.0
BABBLE_LINES = [
    "I told him we would meet at the station after lunch on Friday.",
    "The new prices start next month, so we should order now.",
    "She said the printer on the second floor is broken again.",
    "Can you believe how long the queue was this morning?",
    "We went to the coast last weekend and the weather was lovely.",
    "My brother is moving to a bigger flat near the park.",
]
BABBLE_VOICES = ["en-us+f1", "en-us+m2", "en-us+f4", "en-us+m4", "en-gb+f2", "en-us+m1"]


# --------------------------------------------------------------------------- filters


def _fir(cutoff_hz: float | tuple[float, float], taps: int = 161) -> np.ndarray:
    from scipy.signal import firwin

    if isinstance(cutoff_hz, tuple):
        return firwin(taps, cutoff_hz, pass_zero=False, fs=RATE, window=("kaiser", 8.0))
    return firwin(taps, cutoff_hz, fs=RATE, window=("kaiser", 8.0))


class StreamFir:
    """An FIR filter over a stream of frames: the tail of the last input carries over, so frame
    edges are seamless (the same output as filtering the whole signal at once)."""

    def __init__(self, taps: np.ndarray) -> None:
        self.taps = taps
        self.tail = np.zeros(len(taps) - 1)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        joined = np.concatenate([self.tail, x])
        self.tail = joined[len(joined) - len(self.tail):]
        return np.convolve(joined, self.taps, mode="valid")


def mu_law(x: np.ndarray, mu: float = 255.0) -> np.ndarray:
    """G.711 mu-law round trip: compress to 8 bits and expand (x in int16 units)."""
    y = np.clip(x / 32768.0, -1.0, 1.0)
    code = np.round((np.sign(y) * np.log1p(mu * np.abs(y)) / np.log1p(mu)) * 127.0) / 127.0
    return np.sign(code) * np.expm1(np.abs(code) * np.log1p(mu)) / mu * 32768.0


class PhoneChannel:
    """A narrowband call: band-limited to 300-3400 Hz, sampled at 8 kHz, mu-law coded, and
    brought back to 16 kHz with an anti-imaging filter (so nothing above 4 kHz survives)."""

    def __init__(self) -> None:
        self.band = StreamFir(_fir((300.0, 3400.0)))
        self.image = StreamFir(_fir(3500.0, taps=255) * 2.0)  # gain 2: zero-stuffing halves the level

    def __call__(self, x: np.ndarray) -> np.ndarray:
        narrow = mu_law(self.band(x)[::2])  # 8 kHz
        up = np.zeros(len(narrow) * 2)
        up[::2] = narrow
        return self.image(up)


class BurstLoss:
    """Frames lost in bursts (a Gilbert-Elliott channel): on average `rate` of all frames, in
    runs of `mean_burst` frames."""

    def __init__(self, rate: float, rng: np.random.Generator, mean_burst: float = 4.0) -> None:
        self.leave = 1.0 / mean_burst
        self.enter = rate * self.leave / (1.0 - rate) if rate < 1 else 1.0
        self.rng = rng
        self.bad = False
        self.lost = self.frames = 0

    def __call__(self) -> bool:
        self.bad = self.rng.random() < (1.0 - self.leave if self.bad else self.enter)
        self.frames += 1
        self.lost += self.bad
        return self.bad


# --------------------------------------------------------------------------- noise beds


def _normalized(x: np.ndarray) -> np.ndarray:
    x = x - x.mean()
    return x / (np.sqrt(np.mean(x * x)) or 1.0)


@functools.lru_cache(maxsize=16)
def noise_bed(kind: str, seed: int = 0) -> np.ndarray:
    """`BED_S` seconds of noise at unit RMS, float64 at 16 kHz (cached per kind and seed)."""
    rng = np.random.default_rng(seed)
    n = int(BED_S * RATE)
    if kind == "white":
        return _normalized(rng.standard_normal(n))
    if kind == "pink":  # 1/f power: white noise shaped in the frequency domain
        spectrum = np.fft.rfft(rng.standard_normal(n))
        f = np.fft.rfftfreq(n, 1 / RATE)
        spectrum[1:] /= np.sqrt(f[1:])
        spectrum[0] = 0
        return _normalized(np.fft.irfft(spectrum, n))
    if kind == "babble":
        from voicelab.audio.speech import speak

        bed = np.zeros(n)
        for i, (line, voice) in enumerate(zip(BABBLE_LINES, BABBLE_VOICES, strict=True)):
            talk = np.frombuffer(speak(line, voice), dtype=np.int16).astype(float)
            start = int(rng.integers(0, RATE)) + i * RATE // 3
            while start < n:  # each talker starts again after a short pause, all through the bed
                piece = talk[: n - start]
                bed[start:start + len(piece)] += piece
                start += len(talk) + int(rng.integers(RATE // 4, RATE))
        return _normalized(bed)
    if kind == "street":
        from scipy.signal import butter, sosfilt

        rumble = sosfilt(butter(2, 150, fs=RATE, output="sos"), rng.standard_normal(n))
        hiss = sosfilt(butter(2, (300, 2500), btype="band", fs=RATE, output="sos"), rng.standard_normal(n))
        t = np.arange(n) / RATE
        passing = (0.3 + 0.7 * np.sin(np.pi * t / 2.7) ** 4) * hiss  # cars going by
        horn = np.zeros(n)
        at = int(rng.integers(RATE, n - RATE))
        beep = np.arange(int(0.4 * RATE)) / RATE
        horn[at:at + len(beep)] = 0.5 * (np.sin(2 * np.pi * 420 * beep) + np.sin(2 * np.pi * 500 * beep))
        return _normalized(_normalized(rumble) + 0.8 * _normalized(passing) + horn)
    return _wav_bed(kind)


def _wav_bed(path: str) -> np.ndarray:
    import soundfile

    from voicelab.audio.speech import resample

    file = Path(path)
    if not file.is_file():
        raise DatasetError(f"noise file {path} not found", field="caller.audio.noise",
                           fix=f"use one of {', '.join(NOISES)}, or the path of a WAV file")
    try:
        data, rate = soundfile.read(str(file), dtype="int16", always_2d=True)
    except RuntimeError as exc:
        raise DatasetError(f"noise file {path} is not a readable WAV file ({exc})", field="caller.audio.noise") \
            from None
    mono = data.astype(float).mean(axis=1)
    if not len(mono) or not np.any(mono):
        raise DatasetError(f"noise file {path} is silent", field="caller.audio.noise")
    return _normalized(resample(mono, rate).astype(float))


# --------------------------------------------------------------------------- the chain


class Conditioner:
    """What the agent receives of the caller's microphone, frame by frame, under `condition`.
    Deterministic for a given `seed` (the call id), so a re-run hears the same noise."""

    def __init__(self, condition: AudioCondition, seed: str = "") -> None:
        self.condition = condition
        rng = np.random.default_rng(zlib.crc32(seed.encode()))
        self.gain = 10 ** (condition.volume_db / 20)
        self.bed: np.ndarray | None = None
        if condition.noise is not None:
            self.bed = noise_bed(condition.noise, zlib.crc32(condition.noise.encode()) % 1000)
            self.noise_rms = SPEECH_LEVEL / 10 ** (condition.snr_db / 20)
            self.position = int(rng.integers(0, len(self.bed)))
        self.phone = PhoneChannel() if condition.channel == "phone" else None
        self.loss = BurstLoss(condition.loss, rng) if condition.loss > 0 else None

    @property
    def passthrough(self) -> bool:
        """Nothing to do for silence (no noise, no channel): silent frames may be sent as they are."""
        return self.bed is None and self.phone is None

    def __call__(self, frame: bytes | None) -> bytes:
        x = np.frombuffer(frame, dtype=np.int16).astype(float) if frame else np.zeros(FRAME)
        if self.bed is not None:
            end = self.position + len(x)
            idx = np.arange(self.position, end) % len(self.bed)
            x = x + self.bed[idx] * self.noise_rms
            self.position = end % len(self.bed)
        x = x * self.gain
        if self.phone is not None:
            x = self.phone(x)
        if self.loss is not None and self.loss():
            x = np.zeros(len(x))
        return np.clip(np.round(x), -32768, 32767).astype(np.int16).tobytes()


def words_per_minute(condition: AudioCondition | None, base: int = 165) -> int:
    return int(round(base * (condition.rate if condition else 1.0)))


__all__ = ["NOISES", "Conditioner", "PhoneChannel", "mu_law", "noise_bed", "words_per_minute"]
