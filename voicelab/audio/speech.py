"""Offline speech: text to speech with espeak-ng, speech to text with pocketsphinx.

Two small interfaces so either can be swapped: `speak(text, voice) -> PCM` and
`Transcriber().transcribe(PCM) -> text`. PCM is always 16 kHz mono int16 bytes, the format the
ElevenLabs SDK assumes on both directions.

pocketsphinx ships an en-US model only: German speech is transcribed with it too, badly. That is
what the WER metric is for; it measures the audio path, it does not judge the agent.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import threading
import wave
import zlib
from collections import OrderedDict

import numpy as np

from voicelab.audio.bias import Vocabulary, common_words, domain_arpa, pronunciations, unknown_words
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
    """pocketsphinx with its bundled en-US model; one decoder per instance (not thread-safe).

    `bias(vocabulary)` switches it to a language model built from that vocabulary (bias.py), the
    local backend's counterpart of a hosted agent's `asr.keywords`; `bias(None)` back to the
    default model. Built models are kept (the last `MAX_MODELS`), so the calls of one agent share
    theirs; a recogniser that cannot bias (another engine behind this interface) may ignore it."""

    _lock = threading.Lock()
    #: Biased models a decoder keeps (one per vocabulary: per agent and its call's variables).
    MAX_MODELS = 32

    def __init__(self, vocabulary: Vocabulary | None = None) -> None:
        try:
            from pocketsphinx import Decoder
        except ImportError:
            raise MissingDependency("pocketsphinx is missing: pip install -e . (it is a voicelab dependency)") \
                from None
        with self._lock:  # model loading is not thread-safe
            self._decoder = Decoder(samprate=RATE, loglevel="FATAL")
        self._models: OrderedDict[str, str] = OrderedDict()  # vocabulary key -> search name
        self._known: dict[str, bool] = {}
        self.bias(vocabulary)

    def known(self, word: str) -> bool:
        """The dictionary can pronounce `word` (so a model may contain it)."""
        hit = self._known.get(word)
        if hit is None:
            hit = self._known[word] = self._decoder.lookup_word(word) is not None
        return hit

    def bias(self, vocabulary: Vocabulary | None) -> None:
        """Recognise toward `vocabulary` from the next utterance on (None or empty: the default model)."""
        if not vocabulary:
            self._decoder.activate_search()
            return
        name = self._models.get(vocabulary.key)
        if name is None:
            name = self._add_model(vocabulary)
        self._models.move_to_end(vocabulary.key)
        self._decoder.activate_search(name)

    def _add_model(self, vocabulary: Vocabulary) -> str:
        import os
        import tempfile

        from pocketsphinx import NGramModel

        d = self._decoder
        new = pronunciations(unknown_words(vocabulary, self.known), VOICES.get(vocabulary.language, "en-us"))
        for i, (word, phones) in enumerate(new.items()):  # the dictionary learns names, products, foreign words
            d.add_word(word, phones, update=i == len(new) - 1)
            self._known[word] = True
        arpa = domain_arpa(vocabulary, self.known, common_words())
        fd, path = tempfile.mkstemp(suffix=".arpa", prefix="voicelab-bias-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(arpa)
            lm = NGramModel(self._decoder.config, self._decoder.get_logmath(), path)
        finally:
            os.unlink(path)
        name = f"bias_{vocabulary.key}"
        self._decoder.add_lm(name, lm)
        self._models[vocabulary.key] = name
        while len(self._models) > self.MAX_MODELS:
            _, old = self._models.popitem(last=False)
            if old != name:
                self._decoder.remove_search(old)
        return name

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
    clock. Plain subprocesses, not multiprocessing, so no caller's __main__ is ever re-imported.
    Each job carries its call's vocabulary (a few KB of JSON), so any worker can take any call's
    utterance; a worker builds a vocabulary's model once and keeps it."""

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

    def _run(self, pcm: bytes, vocabulary: Vocabulary | None) -> str:
        proc = self._free.get()
        try:
            assert proc.stdin is not None and proc.stdout is not None
            meta = json.dumps({"vocabulary": vocabulary.to_json() if vocabulary else None}).encode("utf-8")
            proc.stdin.write(len(meta).to_bytes(4, "big") + meta + len(pcm).to_bytes(4, "big") + pcm)
            proc.stdin.flush()
            return proc.stdout.readline().decode("utf-8").strip()
        finally:
            self._free.put(proc)

    def submit(self, pcm: bytes, vocabulary: Vocabulary | None = None):  # noqa: ANN201 - Future[str]
        """Recognise one utterance in a worker, biased toward `vocabulary` (None: the default model)."""
        return self._threads.submit(self._run, pcm, vocabulary)

    def prepare(self, vocabulary: Vocabulary | None) -> None:
        """Build `vocabulary`'s model in every worker now (best effort: one empty job each, which
        run side by side), so a call's first caller turn does not wait for it (0.5-1.5 s on
        the standard machine; call this when the agent starts its first turn)."""
        if vocabulary:
            for _ in self._procs:
                self._threads.submit(self._run, b"", vocabulary)

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)
        for proc in self._procs:
            proc.kill()
            proc.wait()


def _worker() -> None:
    """Read jobs on stdin (length-prefixed JSON with the vocabulary, then length-prefixed PCM),
    write one transcript line each."""
    import sys

    transcriber = Transcriber()
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while header := stdin.read(4):
        meta = json.loads(stdin.read(int.from_bytes(header, "big")) or b"{}")
        pcm = stdin.read(int.from_bytes(stdin.read(4), "big"))
        vocabulary = meta.get("vocabulary")
        transcriber.bias(Vocabulary.from_json(vocabulary) if vocabulary else None)
        text = transcriber.transcribe(pcm) if pcm else ""  # no audio: only the model was wanted (prepare)
        stdout.write(text.replace("\n", " ").encode("utf-8") + b"\n")
        stdout.flush()


if __name__ == "__main__":
    _worker()
