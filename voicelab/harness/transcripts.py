"""Gathering the accounts `expect.transcripts_agree` compares, once a call has ended.

The live events are the call's transcript already. Here: the conversation the backend stored
(one GET /v1/convai/conversations/{id}, on the hosted platform and the local backend alike), and
in voice calls voicelab's own recognition of each agent turn in the recording. Recognition is
the costly part (pocketsphinx takes ~0.4 s per second of agent speech on one core), so it runs
only when a persona asks for the check or the request says `compare_transcripts`, in a worker
process (pocketsphinx holds the GIL for a whole utterance, which in-process would stall every
other call's 20 ms audio clock in a batch), shared by the calls of a process. The audio side
(numpy, the recogniser) is imported by the functions that use it: every call asks `wanted`, and
a text call needs nothing more.
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from voicelab.spec.models import CallRequest, TranscriptEntry

if TYPE_CHECKING:
    from voicelab.audio.speech import TranscriberPool

#: A turn's audio starts this long before its agent_response arrived (the first chunk comes with it).
LEAD_S = 0.05
#: Audio this quiet (int16 RMS per 20 ms frame) is not speech; a turn with no such frame reads "".
FRAME_S = 0.02

_pool: TranscriberPool | None = None
_pool_lock = threading.Lock()


def wanted(request: CallRequest) -> bool:
    """Whether this call gathers the accounts: its persona asks for the check, or the request does."""
    return request.persona.expect.transcripts_agree is not None or request.compare_transcripts


def stored_turns(items: list[Any]) -> list[TranscriptEntry]:
    """The stored conversation's turns with words, as transcript entries (SDK models or dicts):
    tool-only items carry no message and are left out, as the platform's own transcript view does."""
    def get(item: Any, key: str) -> Any:
        return item.get(key) if isinstance(item, dict) else getattr(item, key, None)

    out = []
    for item in items:
        message, role = get(item, "message"), get(item, "role")
        if message is None or role not in ("agent", "user"):
            continue
        out.append(TranscriptEntry(speaker=role, text=str(message),
                                   timestamp=float(get(item, "time_in_call_secs") or 0),
                                   interrupted=bool(get(item, "interrupted")),
                                   original_text=get(item, "original_message")))
    return out


def shared_transcribe(pcm: bytes) -> str:
    """Recognise one utterance in the process's shared worker (started on first use, stopped at exit)."""
    global _pool
    from voicelab.audio.speech import TranscriberPool

    with _pool_lock:
        if _pool is None:
            _pool = TranscriberPool(workers=1)
            atexit.register(_pool.close)
        pool = _pool
    return pool.submit(pcm).result()


def _speech(pcm: bytes) -> bytes:
    """The part of `pcm` from its first to its last loud 20 ms frame (b"" when none is loud):
    silence costs the recogniser time and adds nothing."""
    import numpy as np

    from voicelab.audio.speech import RATE, SPEECH_RMS

    frame = int(FRAME_S * RATE) * 2  # bytes
    samples = np.frombuffer(pcm[: len(pcm) - len(pcm) % frame], dtype=np.int16).astype(np.float32)
    if not len(samples):
        return b""
    levels = np.sqrt(np.mean(samples.reshape(-1, frame // 2) ** 2, axis=1))
    loud = np.flatnonzero(levels >= SPEECH_RMS)
    return pcm[loud[0] * frame:(loud[-1] + 1) * frame] if len(loud) else b""


def recognise_agent_turns(transcript: list[TranscriptEntry], agent_pcm: bytes,
                          transcribe: Callable[[bytes], str] = shared_transcribe) -> list[TranscriptEntry]:
    """The transcript with each agent turn's `audio_text`: the recording's agent channel from the
    turn's arrival to the next agent turn's (or the end), recognised. Agent turns are separated
    by the caller's, and the agent channel is silent meanwhile, so this window holds the turn's
    audio and only it; a cut-off turn's window ends where its audio stopped."""
    from voicelab.audio.speech import BYTES_PER_S, RATE

    starts = [t.timestamp for t in transcript if t.speaker == "agent"]
    out, k = [], 0
    for entry in transcript:
        if entry.speaker != "agent":
            out.append(entry)
            continue
        begin = max(0.0, starts[k] - LEAD_S)
        end = starts[k + 1] - LEAD_S if k + 1 < len(starts) else None
        k += 1
        first = int(begin * RATE) * 2
        window = agent_pcm[first:int(end * RATE) * 2 if end is not None else len(agent_pcm)]
        speech = _speech(window)
        text = transcribe(speech) if len(speech) >= 0.1 * BYTES_PER_S else ""
        out.append(entry.model_copy(update={"audio_text": text}))
    return out
