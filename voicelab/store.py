"""RunStore: a run on disk, written so that a crash loses nothing already recorded.

    runs/<run_id>/run.json      what was asked (RunManifest) and its sessions, rewritten atomically
    runs/<run_id>/calls.jsonl   one CallResult per line, appended, flushed and fsynced per call
    runs/<run_id>/.lock         held (flock) by the one process placing the run's calls

A line that cannot be read (a torn write from a killed process, cut anywhere, even inside a
multi-byte character) is skipped with a warning when loading; the file is read as bytes so no
cut can stop the rest from loading. A call that was re-run on resume appears twice in the file;
loading keeps the last result per call id.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

from .errors import RunNotFound, RunStoreError
from .models import CallResult, RunManifest

log = logging.getLogger(__name__)
RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
DEFAULT_ROOT = Path("runs")
_WARNED: set[tuple[str, int]] = set()


def new_run_id() -> str:
    """run-<UTC date>-<time>; `RunStore.create_new` adds -2, -3, ... when that is taken."""
    return datetime.now(UTC).strftime("run-%Y%m%d-%H%M%S")


class Run:
    def __init__(self, path: Path, manifest: RunManifest) -> None:
        self.path = path
        self.manifest = manifest
        self._lock = threading.Lock()
        #: Lines of calls.jsonl the last `results()` could not read (torn or foreign).
        self.unreadable_lines: list[int] = []
        #: Results this object has written (a session's count, whatever cancelled its awaiters).
        self.appended = 0

    @contextlib.contextmanager
    def placing(self) -> Iterator[None]:
        """Hold the run's lock while placing its calls: one writer per run. An OS lock (flock),
        so it dies with its process: a kill -9'd holder never blocks a later resume."""
        lock_path = self.path / ".lock"
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
                raise RunStoreError(
                    f"run '{self.run_id}' is being placed right now by {holder}: wait for it to finish, "
                    "or stop that process (Ctrl+C or kill; what it finished is kept) and resume then") from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"process {os.getpid()} (since {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC)".encode(), 0)
            yield
        finally:
            os.close(fd)  # releases the lock

    @property
    def run_id(self) -> str:
        return self.manifest.run_id

    @property
    def calls_path(self) -> Path:
        return self.path / "calls.jsonl"

    def save_manifest(self) -> None:
        tmp = self.path / "run.json.tmp"
        tmp.write_text(self.manifest.model_dump_json(indent=2), encoding="utf-8")
        os.replace(tmp, self.path / "run.json")

    def _ends_torn(self) -> bool:
        """True if the file's last line was cut off (a crash mid-write): no final newline."""
        try:
            with open(self.calls_path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                return f.read(1) != b"\n"
        except OSError:  # missing or empty
            return False

    def append(self, result: CallResult | str) -> None:
        """Write one finished call durably before anything else happens (`result` may come
        already serialized: `model_dump_json()`)."""
        line = (result if isinstance(result, str) else result.model_dump_json()) + "\n"
        with self._lock:
            if self._ends_torn():
                line = "\n" + line  # never glue a good result onto a torn one
            self._write(line)
            self.appended += 1

    def _write(self, line: str) -> None:
        with open(self.calls_path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    def results(self) -> list[CallResult]:
        """Every call's latest result, in the order first recorded; unreadable lines are skipped
        (with a warning) and listed in `unreadable_lines`."""
        latest: dict[str, CallResult] = {}
        self.unreadable_lines = []
        try:
            data = self.calls_path.read_bytes()
        except FileNotFoundError:
            return []
        for number, raw in enumerate(data.split(b"\n"), 1):
            if not raw.strip():
                continue
            try:
                result = CallResult.model_validate_json(raw.decode("utf-8"))
            except (ValidationError, ValueError):  # UnicodeDecodeError is a ValueError
                self.unreadable_lines.append(number)
                continue
            key = result.call_id or f"line-{number}"
            latest.pop(key, None)  # keep first-seen order for re-runs, but the newest result
            latest[key] = result
        said = (str(self.calls_path), len(self.unreadable_lines))
        if self.unreadable_lines and said not in _WARNED:  # once per file and count, not per read
            _WARNED.add(said)
            log.warning("%s: skipped %s", self.calls_path, self.unreadable_summary())
        return list(latest.values())

    def unreadable_summary(self) -> str:
        """'3 unreadable lines (7, 12, 40): ...' for terminals and report headers."""
        lines = self.unreadable_lines
        numbers = ", ".join(map(str, lines[:10])) + (" ..." if len(lines) > 10 else "")
        return (f"{len(lines)} unreadable line{'s' if len(lines) != 1 else ''} ({numbers}): torn writes from "
                "an interrupted run, or not voicelab results")

    def finished_call_ids(self) -> set[str]:
        """Calls with a real result; cancelled ones are run again on resume."""
        return {r.call_id for r in self.results() if r.call_id and r.end_reason != "cancelled"}


class RunStore:
    def __init__(self, root: str | Path = DEFAULT_ROOT) -> None:
        self.root = Path(root)

    def create(self, manifest: RunManifest) -> Run:
        """A new run under `manifest.run_id`; RunStoreError if that id is taken."""
        if not RUN_ID.match(manifest.run_id):
            raise RunStoreError(f"run id {manifest.run_id!r} is not usable as a folder name: "
                                "use letters, digits, '.', '_' and '-'")
        path = self.root / manifest.run_id
        path.mkdir(parents=True, exist_ok=True)
        try:  # claimed atomically: two processes creating one id cannot both succeed
            os.close(os.open(path / "run.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        except FileExistsError:
            raise RunStoreError(f"run '{manifest.run_id}' already exists in {self.root}: pick another --run-id, "
                                f"or continue it with `voicelab run --resume {manifest.run_id}`") from None
        run = Run(path, manifest)
        run.save_manifest()
        return run

    def create_new(self, manifest: RunManifest) -> Run:
        """A new run under `manifest.run_id`, or the first free `<id>-2`, `<id>-3`, ...: for
        generated ids, so runs started in the same second never collide."""
        base = manifest.run_id
        for n in range(1, 1000):
            manifest.run_id = base if n == 1 else f"{base}-{n}"
            with contextlib.suppress(RunStoreError):
                return self.create(manifest)
        raise RunStoreError(f"no free run id near '{base}' in {self.root}: pass --run-id")

    def open(self, run_id: str) -> Run:
        path = Path(run_id) if Path(run_id).is_dir() and (Path(run_id) / "run.json").exists() else self.root / run_id
        manifest_path = path / "run.json"
        if not manifest_path.exists():
            known = ", ".join(self.list()[-5:]) or "none yet"
            raise RunNotFound(f"no run '{run_id}' in {self.root}/ (recent runs: {known})")
        try:
            manifest = RunManifest.model_validate(json.loads(manifest_path.read_text(encoding="utf-8")))
        except (ValueError, ValidationError) as exc:
            raise RunStoreError(f"{manifest_path} is unreadable ({exc.__class__.__name__}); "
                                "the run's calls.jsonl is still intact") from None
        return Run(path, manifest)

    def list(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / "run.json").exists())
