"""Offline speech: text to speech with espeak-ng, speech to text with pocketsphinx.

Two small interfaces so either can be swapped: `speak(text, voice) -> PCM` and
`Transcriber().transcribe(PCM) -> text`. PCM is always 16 kHz mono int16 bytes, the format the
ElevenLabs SDK assumes on both directions.

pocketsphinx ships an en-US model only: German speech is transcribed with it too, badly. That is
what the WER metric is for; it measures the audio path, it does not judge the agent.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import threading
import wave
import zlib

import numpy as np

from voicelab.spec.errors import MissingDependency
from voicelab.spec.transcripts import word_error_rate  # noqa: F401 - here since the WER metric; pure, in spec

RATE = 16000
BYTES_PER_S = RATE * 2
VOICES = {"en": "en-us", "de": "de"}
#: int16 frame RMS at or above this is speech (espeak speech is ~2000-5000, digital silence 0).
#: The backend's end-of-turn detector and the synthetic caller's latency clock share it.
SPEECH_RMS = 300.0
VARIANTS = ["f1", "f2", "f3", "f4", "f5"]  # pocketsphinx hears these espeak voices best (WER ~0.4)


def voice_for(persona_id: str, language: str, agent: bool = False) -> str:
    """A stable espeak-ng voice per persona (and one for agents), by language."""
    base = VOICES.get(language, language)
    if agent:
        return f"{base}+m3"
    return f"{base}+{VARIANTS[zlib.crc32(persona_id.encode()) % len(VARIANTS)]}"


def resample(pcm: np.ndarray, rate: int, target: int = RATE) -> np.ndarray:
    """Linear resampling: plenty for speech at these rates, and no SciPy needed."""
    if rate == target or len(pcm) == 0:
        return pcm.astype(np.int16)
    n = int(round(len(pcm) * target / rate))
    return np.interp(np.linspace(0, len(pcm) - 1, n), np.arange(len(pcm)), pcm).astype(np.int16)


def speak(text: str, voice: str = "en-us", words_per_minute: int = 165) -> bytes:
    """Text -> 16 kHz mono int16 PCM through espeak-ng."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise MissingDependency("espeak-ng is not installed: apt-get install espeak-ng (scripts/setup.sh does it)")
    out = subprocess.run([exe, "-v", voice, "-s", str(words_per_minute), "--stdout", text],
                         capture_output=True, check=False)
    if out.returncode != 0 or not out.stdout:
        raise MissingDependency(f"espeak-ng could not speak with voice {voice!r}: {out.stderr.decode().strip()}")
    with wave.open(io.BytesIO(out.stdout)) as w:
        rate = w.getframerate()
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    return trim(resample(pcm, rate)).tobytes()


def trim(pcm: np.ndarray, threshold: int = 300) -> np.ndarray:
    """Cut leading and trailing near-silence, so 'end of speech' means the last audible sound
    (espeak-ng pads its output with ~0.3 s of quiet, which would skew latency measurements)."""
    loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) >= threshold)
    return pcm[loud[0]:loud[-1] + 1] if len(loud) else pcm[:0]


def rms(pcm: bytes) -> float:
    samples = np.frombuffer(pcm, dtype=np.int16).astype(np.float32)
    return float(np.sqrt(np.mean(samples * samples))) if len(samples) else 0.0


class Transcriber:
    """pocketsphinx with its bundled en-US model; one decoder per instance (not thread-safe)."""

    _lock = threading.Lock()

    def __init__(self) -> None:
        try:
            from pocketsphinx import Decoder
        except ImportError:
            raise MissingDependency("pocketsphinx is missing: pip install -e . (it is a voicelab dependency)") \
                from None
        with self._lock:  # model loading is not thread-safe
            self._decoder = Decoder(samprate=RATE, loglevel="FATAL")

    def transcribe(self, pcm: bytes) -> str:
        d = self._decoder
        d.start_utt()
        d.process_raw(pcm, full_utt=True)
        d.end_utt()
        hyp = d.hyp()
        return hyp.hypstr.strip() if hyp is not None else ""


class TranscriberPool:
    """pocketsphinx in worker processes (`python -m voicelab.audio.speech`): it holds the GIL for the
    whole utterance (~0.5-1 s), which in-process would stall every other call's 20 ms audio
    clock. Plain subprocesses, not multiprocessing, so no caller's __main__ is ever re-imported."""

    def __init__(self, workers: int = 2) -> None:
        import queue
        import sys
        from concurrent.futures import ThreadPoolExecutor

        self._free: queue.Queue = queue.Queue()
        self._procs = [subprocess.Popen([sys.executable, "-m", "voicelab.audio.speech"], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE) for _ in range(workers)]
        for proc in self._procs:
            self._free.put(proc)
        self._threads = ThreadPoolExecutor(workers, thread_name_prefix="voicelab-asr")

    def _run(self, pcm: bytes) -> str:
        proc = self._free.get()
        try:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(len(pcm).to_bytes(4, "big") + pcm)
            proc.stdin.flush()
            return proc.stdout.readline().decode("utf-8").strip()
        finally:
            self._free.put(proc)

    def submit(self, pcm: bytes):  # noqa: ANN201 - concurrent.futures.Future[str]
        return self._threads.submit(self._run, pcm)

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)
        for proc in self._procs:
            proc.kill()
            proc.wait()


def _worker() -> None:
    """Read length-prefixed PCM utterances on stdin, write one transcript line each."""
    import sys

    transcriber = Transcriber()
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while header := stdin.read(4):
        pcm = stdin.read(int.from_bytes(header, "big"))
        stdout.write(transcriber.transcribe(pcm).replace("\n", " ").encode("utf-8") + b"\n")
        stdout.flush()


if __name__ == "__main__":
    _worker()
