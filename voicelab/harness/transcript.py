"""TranscriptRecorder: the one place a call's turns are written, from any thread.

The SDK delivers agent turns on its own thread (sync) or task (async), while the caller's turns
are sent from the driver or a notebook widget; one lock keeps the list, the clock and the turn
timing consistent whatever the interleaving.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from voicelab.spec.models import Speaker, TranscriptEntry


class TranscriptRecorder:
    def __init__(self, on_entry: Callable[[TranscriptEntry], None] | None = None) -> None:
        self._lock = threading.Lock()
        self._entries: list[TranscriptEntry] = []
        self._times: list[float] = []  # unrounded, so latencies are exact
        self._t0 = time.monotonic()
        self._on_entry = on_entry
        #: Voice calls: caller turns the persona said that the agent has not reported hearing yet,
        #: and those it has (entry indexes).
        self._awaiting: list[int] = []
        self._heard: set[int] = set()
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
            latency_ms: float | None = None, said: str | None = None) -> TranscriptEntry:
        """Record a turn (now, or at `at` s from the start, a time taken when it really happened);
        an agent turn answering a user turn gets its response latency. `said`: a caller turn a
        voice call's persona speaks, which awaits what the agent hears of it (`hear`)."""
        with self._lock:
            entry = self._append(speaker, text, at, latency_ms, said)
        if self._on_entry is not None:
            self._on_entry(entry)
        return entry

    def _append(self, speaker: Speaker, text: str, at: float | None, latency_ms: float | None,
                said: str | None) -> TranscriptEntry:
        now = (time.monotonic() - self._t0) if at is None else at
        last = self._entries[-1] if self._entries else None
        latency = latency_ms
        if self.auto_latency and speaker == "agent" and last is not None and last.speaker == "user":
            latency = round((now - self._times[-1]) * 1000, 1)
        if speaker == "user" and last is not None and last.speaker == "user":
            self.interruptions += 1  # talked again before the agent answered
        entry = TranscriptEntry(speaker=speaker, text=text, timestamp=round(now, 3), latency_ms=latency, said=said)
        if said is not None:
            self._awaiting.append(len(self._entries))
        self._entries.append(entry)
        self._times.append(now)
        return entry

    def awaiting(self) -> list[tuple[int, str]]:
        """Voice calls: (index, what was said) of the caller turns the agent has not reported
        hearing yet, oldest first."""
        with self._lock:
            return [(i, self._entries[i].said or "") for i in self._awaiting]

    def hear(self, index: int | None, text: str) -> None:
        """The agent's speech recognition reported a caller turn (`user_transcript`): turn `index`
        (one of `awaiting`) now reads what it heard, and the turns awaiting before it were not
        heard at all (""). None: words the persona did not say since the last report; they
        continue the caller's last heard turn when nothing came after it, else make a turn."""
        added = None
        with self._lock:
            if index is None:
                last = len(self._entries) - 1
                if last in self._heard and self._entries[last].speaker == "user":
                    entry = self._entries[last]
                    self._entries[last] = entry.model_copy(update={"text": f"{entry.text} {text}".strip()})
                else:
                    added = self._append("user", text, None, None, None)
                    self._heard.add(len(self._entries) - 1)
            else:
                for earlier in [i for i in self._awaiting if i < index]:
                    self._entries[earlier] = self._entries[earlier].model_copy(update={"text": ""})
                self._awaiting = [i for i in self._awaiting if i > index]
                self._entries[index] = self._entries[index].model_copy(update={"text": text})
                self._heard.add(index)
        if added is not None and self._on_entry is not None:
            self._on_entry(added)

    def stop_hearing(self) -> None:
        """The call is over: caller turns the agent never reported hearing read ""."""
        with self._lock:
            for index in self._awaiting:
                self._entries[index] = self._entries[index].model_copy(update={"text": ""})
            self._awaiting = []

    def correct(self, original: str, corrected: str) -> None:
        """An agent turn was cut off (agent_response_correction): keep what the caller heard as
        its text and what it meant to say as `original_text`, and mark it `interrupted`."""
        with self._lock:
            for index in range(len(self._entries) - 1, -1, -1):
                entry = self._entries[index]
                if entry.speaker == "agent" and entry.original_text is None and entry.text.strip() == original.strip():
                    self._entries[index] = entry.model_copy(update={"text": corrected, "original_text": entry.text,
                                                                    "interrupted": True})
                    return

    def entries(self) -> list[TranscriptEntry]:
        with self._lock:
            return list(self._entries)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
