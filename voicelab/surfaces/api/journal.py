"""What the service must still answer for after it stops: its journal and an index of its results.

    runs/_api/journal.jsonl   one JSON event per line, appended and fsynced before it is relied on:
                              {"event": "accepted", "id", "run_id", "at", "callback_url"}   before the 202
                              {"event": "callback", "id", "state", "attempts", "last_status", "error"}
                                                                                   once a callback is settled

A restarted service reads it back: an accepted call whose result is in its run is answered with
that result, one without a result as `interrupted` (it is never placed again: on the hosted
platform that would phone the person a second time); a callback that was never settled is
delivered then. The journal is rewritten (atomically) at each start with only the newest calls.

It is compacted the same way while the service runs, whenever it has grown to several times that.

`ResultIndex` finds any call the service stored, in any of its runs (`kind: service`), by call
id or conversation id, reading each run's calls.jsonl once and then only what was added.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voicelab.lab.store import Run, append_durably, not_writable
from voicelab.spec.models import CallResult, RunManifest

log = logging.getLogger("voicelab.surfaces.api")

#: The service's own folder inside the run store (not a run: no run id starts with "_").
FOLDER = "_api"


@dataclass
class Accepted:
    """A call the service accepted with 202, as the journal has it."""

    id: str
    run_id: str
    at: str
    callback_url: str | None = None
    #: The settled callback ({state, attempts, last_status, error}); None while one is owed.
    callback: dict[str, Any] | None = None

    @property
    def owes_callback(self) -> bool:
        return self.callback_url is not None and self.callback is None

    def events(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = [{"event": "accepted", "id": self.id, "run_id": self.run_id, "at": self.at,
                                      "callback_url": self.callback_url}]
        if self.callback is not None:
            out.append({"event": "callback", "id": self.id, **self.callback})
        return out


class Journal:
    def __init__(self, runs_root: str | Path) -> None:
        self.path = Path(runs_root) / FOLDER / "journal.jsonl"
        self._lock = threading.Lock()

    def record(self, event: dict[str, Any]) -> None:
        """Append one event durably (StoreNotWritable naming the journal when it cannot be)."""
        data = (json.dumps(event, separators=(",", ":")) + "\n").encode()
        with self._lock:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise not_writable(self.path, exc) from None
            append_durably(self.path, data)  # no torn event left behind

    def load(self) -> dict[str, Accepted]:
        """Every accepted call in the journal, oldest first (unreadable lines are skipped)."""
        calls: dict[str, Accepted] = {}
        try:
            data = self.path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return calls
        except OSError as exc:  # unreadable: the service still starts; /health shows the store
            log.error("the service's journal %s cannot be read (%s): calls accepted before this start are "
                      "not answered for", self.path, exc.strerror or exc)
            return calls
        for raw in data.split(b"\n"):
            try:
                event = json.loads(raw)
                kind, call_id = event["event"], event["id"]
                if kind == "accepted":
                    calls[call_id] = Accepted(id=call_id, run_id=event["run_id"], at=event.get("at", ""),
                                              callback_url=event.get("callback_url"))
                elif kind == "callback" and call_id in calls:
                    calls[call_id].callback = {k: event.get(k) for k in ("state", "attempts", "last_status", "error")}
            except (ValueError, KeyError, TypeError):
                continue  # a torn last line, or an empty one
        return calls

    def rewrite(self, calls: Callable[[], list[Accepted]]) -> None:
        """Replace the journal by the events of `calls()` (asked while no event can be added;
        written aside, fsynced, then renamed)."""
        tmp = self.path.with_suffix(".tmp")
        with self._lock:
            try:
                with open(tmp, "w", encoding="utf-8") as f:
                    for call in calls():
                        for event in call.events():
                            f.write(json.dumps(event, separators=(",", ":")) + "\n")
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.path)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                raise not_writable(self.path, exc) from None


@dataclass
class _Indexed:
    size: int = 0
    #: call id or conversation id -> (offset, length) of its newest line
    where: dict[str, tuple[int, int]] = field(default_factory=dict)


class ResultIndex:
    """Stored results of the service's runs (`kind: service`) by call id and conversation id,
    read lazily: a run's calls.jsonl is read on the first miss, then only what was appended."""

    def __init__(self, runs_root: str | Path) -> None:
        self.root = Path(runs_root)
        self._kinds: dict[str, str] = {}
        self._files: dict[Path, _Indexed] = {}
        self._lock = threading.Lock()

    def find(self, key: str, run_id: str | None = None) -> CallResult | None:
        """The newest stored result with this call id (or conversation id): in `run_id` if given,
        else in any of the service's runs."""
        with self._lock:
            for path in self._files_to_search(run_id):
                found = self._lookup(path, key)
                if found is not None:
                    return found
        return None

    def _files_to_search(self, run_id: str | None) -> list[Path]:
        if run_id is not None:
            folders = [self.root / run_id]
        else:
            try:
                folders = sorted((p for p in self.root.iterdir()
                                  if p.name.startswith("api-") and p.is_dir() and self._is_service(p)),
                                 key=lambda p: p.name, reverse=True)  # newest first
            except OSError:
                return []
        files = []
        for folder in folders:
            files.append(folder / "calls.jsonl")
            with contextlib.suppress(OSError, ValueError):
                manifest = RunManifest.model_validate_json((folder / "run.json").read_bytes())
                files.append(Run(folder, manifest).unsaved_path)  # results a full store could not take
        return files

    def _is_service(self, folder: Path) -> bool:
        if folder.name not in self._kinds:
            try:
                self._kinds[folder.name] = json.loads((folder / "run.json").read_bytes()).get("kind", "")
            except (OSError, ValueError):
                return False  # not a run (yet): asked again next time
        return self._kinds[folder.name] == "service"

    def _lookup(self, path: Path, key: str) -> CallResult | None:
        indexed = self._files.setdefault(path, _Indexed())
        try:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if key not in indexed.where and size != indexed.size:
                    if size < indexed.size:  # rewritten: start again
                        indexed.size, indexed.where = 0, {}
                    f.seek(indexed.size)
                    self._add(indexed, f.read(size - indexed.size))
                if key not in indexed.where:
                    return None
                offset, length = indexed.where[key]
                f.seek(offset)
                return CallResult.model_validate_json(f.read(length))
        except (OSError, ValueError):
            return None

    @staticmethod
    def _add(indexed: _Indexed, data: bytes) -> None:
        """Index the whole lines of `data` (read from `indexed.size` on); a torn tail waits."""
        offset = indexed.size
        end = data.rfind(b"\n") + 1
        for raw in data[:end].split(b"\n")[:-1]:
            with contextlib.suppress(ValueError, AttributeError):
                head = json.loads(raw)
                for name in ("call_id", "conversation_id"):
                    if isinstance(head.get(name), str):
                        indexed.where[head[name]] = (offset, len(raw))
            offset += len(raw) + 1
        indexed.size += end


__all__ = ["FOLDER", "Accepted", "Journal", "ResultIndex"]
