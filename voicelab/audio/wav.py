"""A call's recording: stereo 16 kHz WAV, caller on the left, agent on the right.

Both channels are written on the same clock (the call's, in samples), so what overlapped in the
call overlaps in the file: barge-ins and response gaps can be heard and measured.
"""

from __future__ import annotations

import threading
import wave
from pathlib import Path

import numpy as np

from voicelab.audio.speech import RATE


class StereoRecorder:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._channels = [bytearray(), bytearray()]  # caller, agent (int16 mono each)

    def _put(self, channel: int, at_s: float, pcm: bytes) -> None:
        start = round(at_s * RATE) * 2  # round: frames laid end to end meet exactly
        with self._lock:
            buf = self._channels[channel]
            if len(buf) < start:
                buf.extend(b"\0" * (start - len(buf)))
            end = start + len(pcm)
            if len(buf) < end:
                buf.extend(b"\0" * (end - len(buf)))
            buf[start:end] = pcm

    def caller(self, at_s: float, pcm: bytes) -> None:
        self._put(0, at_s, pcm)

    def agent(self, at_s: float, pcm: bytes) -> None:
        self._put(1, at_s, pcm)

    def agent_pcm(self) -> bytes:
        """The agent channel so far (16 kHz mono int16, on the call's clock): what voicelab's own
        recognition of the agent's audio reads, without writing and re-reading the file."""
        with self._lock:
            return bytes(self._channels[1])

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            left, right = (np.frombuffer(bytes(c), dtype=np.int16) for c in self._channels)
        n = max(len(left), len(right))
        stereo = np.zeros((n, 2), dtype=np.int16)
        stereo[: len(left), 0] = left
        stereo[: len(right), 1] = right
        with wave.open(str(path), "wb") as w:
            w.setnchannels(2)
            w.setsampwidth(2)
            w.setframerate(RATE)
            w.writeframes(stereo.tobytes())
        return path


def channel_rms(path: str | Path) -> tuple[float, float]:
    """RMS energy of the left (caller) and right (agent) channels of a recording."""
    with wave.open(str(path)) as w:
        data = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).reshape(-1, w.getnchannels())
    values = data.astype(np.float32)
    return tuple(float(np.sqrt(np.mean(values[:, i] ** 2))) if len(values) else 0.0 for i in range(2))


#: libsndfile's Opus setting (1.0 is its lowest bitrate): 0.95 is ~36 kb/s for the two channels,
#: clear speech at about 1/14 of the WAV.
OPUS_COMPRESSION = 0.95


def compressed(path: str | Path) -> bytes:
    """The recording as Ogg Opus (what every browser plays), so a report can carry its recordings
    and still be one self-contained file of reasonable size."""
    from voicelab.spec.errors import MissingDependency

    try:
        import soundfile
    except (ImportError, OSError):
        raise MissingDependency("soundfile is needed to embed recordings in reports: pip install -e . "
                                "(or build the report with --audio link)") from None
    import io

    data, rate = soundfile.read(str(path), dtype="int16", always_2d=True)
    out = io.BytesIO()
    soundfile.write(out, data, rate, format="OGG", subtype="OPUS", compression_level=OPUS_COMPRESSION)
    return out.getvalue()
