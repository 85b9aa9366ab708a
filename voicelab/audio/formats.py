"""The platform's audio formats (`pcm_<rate>`, `ulaw_8000`) to and from voicelab's 16 kHz PCM.

voicelab's voices, recordings and bridge all work in 16-bit mono PCM at 16 kHz. A conversation
announces its formats in `conversation_initiation_metadata`; a caller-agent bridge between two
conversations converts at its edges, 20 ms at a time (linear resampling: plenty for speech).
"""

from __future__ import annotations

import numpy as np

from voicelab.audio.speech import RATE, resample

_BIAS, _CLIP = 0x84, 32635


def parse(fmt: str) -> tuple[str, int]:
    """('pcm' | 'ulaw', sample rate) of a format name; 16 kHz PCM for anything unknown."""
    kind, _, rate = fmt.partition("_")
    if kind in ("pcm", "ulaw") and rate.isdigit():
        return kind, int(rate)
    return "pcm", RATE


def ulaw_decode(data: bytes) -> np.ndarray:
    """G.711 mu-law bytes to int16 samples."""
    u = ~np.frombuffer(data, dtype=np.uint8).astype(np.int32) & 0xFF
    magnitude = (((u & 0x0F) << 3) + _BIAS) << ((u & 0x70) >> 4)
    return np.where(u & 0x80, _BIAS - magnitude, magnitude - _BIAS).astype(np.int16)


def ulaw_encode(samples: np.ndarray) -> bytes:
    """int16 samples to G.711 mu-law bytes."""
    x = samples.astype(np.int32)
    sign = np.where(x < 0, 0x80, 0)
    magnitude = np.minimum(np.abs(x), _CLIP) + _BIAS
    exponent = np.floor(np.log2(magnitude)).astype(np.int32) - 7
    exponent = np.clip(exponent, 0, 7)
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8).tobytes()


def to_pcm16k(data: bytes, fmt: str) -> bytes:
    kind, rate = parse(fmt)
    if kind == "pcm" and rate == RATE:
        return data
    samples = ulaw_decode(data) if kind == "ulaw" else np.frombuffer(data[: len(data) - len(data) % 2], np.int16)
    return resample(samples, rate, RATE).tobytes()


def from_pcm16k(data: bytes, fmt: str) -> bytes:
    kind, rate = parse(fmt)
    if kind == "pcm" and rate == RATE:
        return data
    samples = resample(np.frombuffer(data[: len(data) - len(data) % 2], np.int16), RATE, rate)
    return ulaw_encode(samples) if kind == "ulaw" else samples.tobytes()


__all__ = ["from_pcm16k", "parse", "to_pcm16k", "ulaw_decode", "ulaw_encode"]
