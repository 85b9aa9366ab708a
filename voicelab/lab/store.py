"""RunStore: a run on disk, written so that a crash loses nothing already recorded.

    runs/<run_id>/run.json      what was asked (RunManifest) and its sessions, rewritten atomically
    runs/<run_id>/calls.jsonl   one CallResult per line, appended, flushed and fsynced per call
    runs/<run_id>/.lock         held (flock) by the one process placing the run's calls

A store that cannot be written (read-only, full disk) is found before a run places anything
(`Run.check_writable`) where it can be, and otherwise raises `StoreNotWritable` naming the path
and the fix: a failed append is rolled back to the last whole line, never left torn. A run whose
process died while placing (kill -9, power loss) still says `running` in run.json; `RunStore.open`
sees that nobody holds its lock and repairs the record from what calls.jsonl holds.

A line that cannot be read (a torn write from a killed process, cut anywhere, even inside a
multi-byte character) is skipped with a warning when loading; the file is read as bytes so no
cut can stop the rest from loading. A call that was re-run on resume appears twice in the file;
loading keeps the last result per call id.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

from voicelab.spec.errors import RunNotFound, RunStoreError, StoreNotWritable
from voicelab.spec.models import CallResult, RunManifest, utc_now_iso

log = logging.getLogger(__name__)
#: A run id is a folder name: at most 128 characters, so its files' names stay far below the
#: 255 bytes a file system allows.
RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
#: Room a run needs before it starts placing calls (a result is a few kB; a voice call's WAV ~2 MB).
MIN_FREE_BYTES = 4 * 1024 * 1024
DEFAULT_ROOT = Path("runs")
_WARNED: set[tuple[str, int]] = set()


def run_id_problem(run_id: str) -> str | None:
    """Why `run_id` cannot name a run folder, or None when it can."""
    if len(run_id) > 128:
        return f"run id of {len(run_id)} characters is too long: use at most 128"
    if not RUN_ID.match(run_id):
        return (f"{run_id!r} is not usable as a run id (a folder name): use letters, digits, '.', '_' and '-', "
                "starting with a letter or digit")
    return None


def not_writable(path: Path | str, exc: OSError, *, kept: str | None = None) -> StoreNotWritable:
    """The one-line StoreNotWritable for an OSError while writing `path`, with the fix."""
    reason = exc.strerror or exc.__class__.__name__
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        fix = "free some disk space there, or store runs on another disk with --runs DIR"
    elif exc.errno == errno.ENAMETOOLONG:
        fix = "use a shorter --run-id or persona id"
    else:
        fix = "make it writable (check its permissions and mount), or store runs elsewhere with --runs DIR"
    message = f"{path} cannot be written ({reason}): {fix}"
    if kept:
        message += f"; the results that could not be stored are in {kept}"
    return StoreNotWritable(message, path=str(path), kept=kept)


def append_durably(path: Path, data: bytes) -> None:
    """Append `data` to `path` durably (fsync), or nothing: a failed write (a full disk mid-line)
    is cut back to where the file ended, so no torn line is left, and raised as StoreNotWritable.
    Every append-only record voicelab keeps goes through here (calls.jsonl, the service's journal)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as exc:
        raise not_writable(path, exc) from None
    try:
        size = os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
            raise not_writable(path, exc) from None
    finally:
        os.close(fd)


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
                for attempt in range(100):  # a reader's probe or repair holds it a moment (< 2 s)
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if attempt == 99:
                            raise
                        time.sleep(0.02)
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
        """Rewrite run.json atomically; StoreNotWritable (and no stray temporary file) when it cannot
        be. The temporary file is the writer's own, so two writers never replace each other's."""
        tmp = self.path / f"run.json.{os.getpid()}-{threading.get_ident()}.tmp"
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(self.manifest.model_dump_json(indent=2))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path / "run.json")
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise not_writable(self.path / "run.json", exc) from None

    def check_writable(self) -> None:
        """Refuse to start placing calls whose results could not be stored: calls.jsonl must take an
        append and the disk must have room (`MIN_FREE_BYTES`). StoreNotWritable names the path."""
        # The probe is this writer's own: two resumes checking at once never remove each other's.
        probe = self.path / f".write-probe.{os.getpid()}-{threading.get_ident()}"
        try:
            with open(self.calls_path, "ab"):
                pass
            with open(probe, "wb") as f:  # a real write: some full or read-only disks accept an open
                f.write(b"\0" * 4096)
                f.flush()
                os.fsync(f.fileno())
            probe.unlink()
            free = os.statvfs(self.path).f_bavail * os.statvfs(self.path).f_frsize
        except OSError as exc:
            with contextlib.suppress(OSError):
                probe.unlink()
            raise not_writable(self.calls_path, exc) from None
        if free < MIN_FREE_BYTES:
            raise not_writable(self.calls_path, OSError(errno.ENOSPC, f"only {free // 1024} kB free"))

    @property
    def unsaved_path(self) -> Path:
        """Where results go that this run's store could not take: outside the store, in the system's
        temporary folder (VOICELAB_UNSAVED_DIR overrides), one JSON line each as in calls.jsonl; the
        name has a digest of the run's folder, so another store's run of the same id never takes them."""
        root = Path(os.environ.get("VOICELAB_UNSAVED_DIR") or Path(tempfile.gettempdir()) / "voicelab-unsaved")
        digest = hashlib.sha1(str(self.path.resolve()).encode()).hexdigest()[:10]
        return root / f"{self.run_id}-{digest}.jsonl"

    def keep_unsaved(self, line: str) -> str | None:
        """Keep a result the store refused at `unsaved_path`; that path, or None when it cannot be
        written either (the line then goes to stderr, the last place it can be read from)."""
        path = self.unsaved_path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a", encoding="utf-8") as f:
                f.write(line.rstrip("\n") + "\n")
                f.flush()
                os.fsync(f.fileno())
            return str(path)
        except OSError:
            print(f"voicelab: a result that could not be stored: {line}", file=sys.stderr, flush=True)
            return None

    def take_unsaved(self) -> int:
        """Store the results `keep_unsaved` kept (before a resume plans, so they are not placed
        again) and remove that file; how many were stored."""
        path = self.unsaved_path
        try:
            lines = [raw for raw in path.read_text(encoding="utf-8", errors="replace").splitlines() if raw.strip()]
        except FileNotFoundError:
            return 0
        for line in lines:
            self.append(line)
        path.unlink()
        log.warning("%s: stored %d result(s) kept in %s while the store could not be written",
                    self.calls_path, len(lines), path)
        return len(lines)

    def lock_held(self) -> bool:
        """True while some live process is placing this run's calls (holds .lock)."""
        with self._unlocked() as free:
            return not free

    @contextlib.contextmanager
    def _unlocked(self) -> Iterator[bool]:
        """Hold the run's lock for a moment if nobody else does: yields True while holding it
        (a placing process waits for it, see `placing`), False when a live process holds it."""
        try:
            fd = os.open(self.path / ".lock", os.O_RDONLY)
        except OSError:  # never placed: nobody can hold it
            yield True
            return
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                yield False
                return
            yield True
        finally:
            os.close(fd)  # releases it

    def repair(self) -> bool:
        """A run whose process died while placing (run.json and one of its sessions say running,
        and nobody holds the lock): mark both interrupted, count the results that session stored,
        and save that when the store can be written. True if anything was repaired. Done holding
        the lock, on run.json as it is then, so it never overwrites a placing process's record."""
        if self.manifest.state != "running" or not any(s.state == "running" for s in self.manifest.sessions):
            return False
        with self._unlocked() as free:
            if not free:
                return False
            try:
                self.manifest = RunManifest.model_validate_json((self.path / "run.json").read_bytes())
            except (OSError, ValueError):
                return False
            return self._repair_unlocked()

    def _repair_unlocked(self) -> bool:
        m = self.manifest
        open_sessions = [s for s in m.sessions if s.state == "running"]
        if m.state != "running" or not open_sessions:
            return False
        stored = self._count_results()
        earlier = sum(s.calls_stored for s in m.sessions if s.state != "running")
        try:
            mtime = datetime.fromtimestamp(self.calls_path.stat().st_mtime, UTC)
            ended = mtime.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        except OSError:
            ended = utc_now_iso()
        for session in open_sessions:
            session.state = "interrupted"
            session.stopped_by = "crash: the placing process ended without closing the run"
            session.calls_stored = max(stored - earlier, 0)
            session.ended_at = session.ended_at or ended
            earlier += session.calls_stored
        m.state, m.ended_at = "interrupted", m.ended_at or ended
        try:
            self.save_manifest()
        except StoreNotWritable:
            log.warning("%s: repaired in memory only (run.json cannot be written)", self.path)
        return True

    def _count_results(self) -> int:
        """Readable result lines in calls.jsonl (re-runs count again, as `appended` does)."""
        try:
            data = self.calls_path.read_bytes()
        except OSError:
            return 0
        count = 0
        for raw in data.split(b"\n"):
            if raw.strip():
                try:
                    json.loads(raw)
                except ValueError:
                    continue
                count += 1
        return count

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
        append_durably(self.calls_path, line.encode("utf-8"))

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
        self.warn_unreadable()
        return list(latest.values())

    def warn_unreadable(self) -> None:
        """Tell the terminal which lines were skipped: once per file and count, not per read
        (a notebook reads a run many times)."""
        said = (str(self.calls_path), len(self.unreadable_lines))
        if self.unreadable_lines and said not in _WARNED:
            _WARNED.add(said)
            log.warning("%s: skipped %s", self.calls_path, self.unreadable_summary())

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
        """A new run under `manifest.run_id`; RunStoreError if that id is taken or unusable,
        StoreNotWritable if the store cannot take it."""
        problem = run_id_problem(manifest.run_id)
        if problem:
            raise RunStoreError(problem)
        path = self.root / manifest.run_id
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise not_writable(path, exc) from None
        try:  # claimed atomically: two processes creating one id cannot both succeed
            os.close(os.open(path / "run.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        except FileExistsError:
            raise RunStoreError(f"run '{manifest.run_id}' already exists in {self.root}: pick another --run-id, "
                                f"or continue it with `voicelab run --resume {manifest.run_id}`") from None
        except OSError as exc:
            raise not_writable(path / "run.json", exc) from None
        run = Run(path, manifest)
        try:
            run.save_manifest()
        except StoreNotWritable:
            with contextlib.suppress(OSError):  # leave no half-made run behind
                (path / "run.json").unlink()
                path.rmdir()
            raise
        return run

    def create_new(self, manifest: RunManifest) -> Run:
        """A new run under `manifest.run_id`, or the first free `<id>-2`, `<id>-3`, ...: for
        generated ids, so runs started in the same second never collide."""
        base = manifest.run_id
        for n in range(1, 1000):
            manifest.run_id = base if n == 1 else f"{base}-{n}"
            try:
                return self.create(manifest)
            except StoreNotWritable:
                raise
            except RunStoreError:
                continue
        raise RunStoreError(f"no free run id near '{base}' in {self.root}: pass --run-id")

    def require_inside(self, ref: str) -> None:
        """The CLI's rule: a run is named by its id, or by its folder inside this store (as a shell
        completes `runs/<id>`), never by a folder elsewhere, where a report's notebook would be
        written. (Python callers may open any run folder: `load_runs("/data/nightly-3")`.)"""
        given = Path(ref)
        if len(given.parts) <= 1 and not given.is_absolute():
            return
        try:
            inside = given.resolve().relative_to(self.root.resolve())
        except ValueError:
            raise RunNotFound(f"{ref} is outside the run store {self.root}/: give its run id, or pass "
                              f"--runs {given.parent} to use that store") from None
        if len(inside.parts) != 1:
            raise RunNotFound(f"{ref} is not a run folder of {self.root}/: give a run id")

    def open(self, run_id: str) -> Run:
        """The stored run `run_id`, or the run folder at that path (a crashed run is repaired, see
        `Run.repair`)."""
        given = Path(run_id)
        if (len(given.parts) > 1 or given.is_absolute()) and (given / "run.json").exists():
            path = given
        elif run_id_problem(run_id):
            raise RunNotFound(f"no run '{run_id[:80]}' in {self.root}/: {run_id_problem(run_id)}")
        else:
            path = self.root / run_id
        manifest_path = path / "run.json"
        if not manifest_path.exists():
            known = ", ".join(self.list()[-5:]) or "none yet"
            raise RunNotFound(f"no run '{run_id}' in {self.root}/ (recent runs: {known})")
        try:
            manifest = RunManifest.model_validate(json.loads(manifest_path.read_text(encoding="utf-8")))
        except (ValueError, ValidationError) as exc:
            raise RunStoreError(f"{manifest_path} is unreadable ({exc.__class__.__name__}); "
                                "the run's calls.jsonl is still intact") from None
        run = Run(path, manifest)
        run.repair()
        return run

    def list(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / "run.json").exists())
