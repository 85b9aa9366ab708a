"""RunStore: a run on disk, written so that a crash loses nothing already recorded.

    runs/<run_id>/run.json      what was asked (RunManifest), rewritten atomically
    runs/<run_id>/calls.jsonl   one CallResult per line, appended, flushed and fsynced per call

A torn last line (the process died mid-write) is skipped with a warning when loading. A call that
was re-run on resume appears twice in the file; loading keeps the last result per call id.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

from .errors import RunStoreError
from .models import CallResult, RunManifest

log = logging.getLogger(__name__)
RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
DEFAULT_ROOT = Path("runs")


def new_run_id() -> str:
    return datetime.now(UTC).strftime("run-%Y%m%d-%H%M%S")


class Run:
    def __init__(self, path: Path, manifest: RunManifest) -> None:
        self.path = path
        self.manifest = manifest
        self._lock = threading.Lock()

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

    def _write(self, line: str) -> None:
        with open(self.calls_path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    def results(self) -> list[CallResult]:
        """Every call's latest result, in the order first recorded."""
        latest: dict[str, CallResult] = {}
        if not self.calls_path.exists():
            return []
        lines = self.calls_path.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                result = CallResult.model_validate_json(line)
            except (ValidationError, ValueError):
                log.warning("%s: skipping unreadable line %d (a torn write from an interrupted run?)",
                            self.calls_path, number)
                continue
            key = result.call_id or f"line-{number}"
            latest.pop(key, None)  # keep first-seen order for re-runs, but the newest result
            latest[key] = result
        return list(latest.values())

    def finished_call_ids(self) -> set[str]:
        """Calls with a real result; cancelled ones are run again on resume."""
        return {r.call_id for r in self.results() if r.call_id and r.end_reason != "cancelled"}


class RunStore:
    def __init__(self, root: str | Path = DEFAULT_ROOT) -> None:
        self.root = Path(root)

    def create(self, manifest: RunManifest) -> Run:
        if not RUN_ID.match(manifest.run_id):
            raise RunStoreError(f"run id {manifest.run_id!r} is not usable as a folder name: "
                                "use letters, digits, '.', '_' and '-'")
        path = self.root / manifest.run_id
        if (path / "run.json").exists():
            raise RunStoreError(f"run '{manifest.run_id}' already exists in {self.root}: "
                                f"pick another --run-id, or continue it with `voicelab run --resume {manifest.run_id}`")
        path.mkdir(parents=True, exist_ok=True)
        run = Run(path, manifest)
        run.save_manifest()
        return run

    def open(self, run_id: str) -> Run:
        path = Path(run_id) if Path(run_id).is_dir() and (Path(run_id) / "run.json").exists() else self.root / run_id
        manifest_path = path / "run.json"
        if not manifest_path.exists():
            known = ", ".join(self.list()[-5:]) or "none yet"
            raise RunStoreError(f"no run '{run_id}' in {self.root}/ (recent runs: {known})")
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
