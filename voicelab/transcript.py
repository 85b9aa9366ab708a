"""TranscriptRecorder: the one place a call's turns are written, from any thread.

The SDK delivers agent turns on its own thread (sync) or task (async), while the caller's turns
are sent from the driver or a notebook widget; one lock keeps the list, the clock and the turn
timing consistent whatever the interleaving.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from .models import Speaker, TranscriptEntry


class TranscriptRecorder:
    def __init__(self, on_entry: Callable[[TranscriptEntry], None] | None = None) -> None:
        self._lock = threading.Lock()
        self._entries: list[TranscriptEntry] = []
        self._times: list[float] = []  # unrounded, so latencies are exact
        self._t0 = time.monotonic()
        self._on_entry = on_entry
        self.interruptions = 0
        #: Text mode: an agent turn's latency is measured from the caller's last turn. Voice mode
        #: measures from the end of the caller's speech instead and passes it in.
        self.auto_latency = True

    def restart_clock(self) -> None:
        """Make 'now' the call's time zero (called just before the SDK connects)."""
        with self._lock:
            self._t0 = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self._t0

    def at(self, monotonic: float) -> float:
        """A `time.monotonic()` reading on the call's clock."""
        return monotonic - self._t0

    def add(self, speaker: Speaker, text: str, at: float | None = None,
            latency_ms: float | None = None) -> TranscriptEntry:
        """Record a turn (now, or at `at` s from the start, a time taken when it really happened);
        an agent turn answering a user turn gets its response latency."""
        with self._lock:
            now = (time.monotonic() - self._t0) if at is None else at
            last = self._entries[-1] if self._entries else None
            latency = latency_ms
            if self.auto_latency and speaker == "agent" and last is not None and last.speaker == "user":
                latency = round((now - self._times[-1]) * 1000, 1)
            if speaker == "user" and last is not None and last.speaker == "user":
                self.interruptions += 1  # talked again before the agent answered
            entry = TranscriptEntry(speaker=speaker, text=text, timestamp=round(now, 3), latency_ms=latency)
            self._entries.append(entry)
            self._times.append(now)
        if self._on_entry is not None:
            self._on_entry(entry)
        return entry

    def correct(self, original: str, corrected: str) -> None:
        """An agent turn was cut off (agent_response_correction): keep what the caller heard as
        its text and what it meant to say as `original_text`."""
        with self._lock:
            for index in range(len(self._entries) - 1, -1, -1):
                entry = self._entries[index]
                if entry.speaker == "agent" and entry.original_text is None and entry.text.strip() == original.strip():
                    self._entries[index] = entry.model_copy(update={"text": corrected, "original_text": entry.text})
                    return

    def entries(self) -> list[TranscriptEntry]:
        with self._lock:
            return list(self._entries)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
