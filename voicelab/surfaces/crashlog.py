"""Internal failures: one line for the user, the traceback in a log file for the bug report.

A bug in voicelab is not the user's bad input (exit 2) and not a failed gate (exit 1): the CLI
exits 3 with one line naming the log. The log goes to the system's temporary folder (or
VOICELAB_LOG_DIR), not to the run store, which may be what failed.
"""

from __future__ import annotations

import os
import tempfile
import traceback
from datetime import UTC, datetime
from pathlib import Path

#: The exit status of an internal failure.
INTERNAL = 3


def log_dir() -> Path:
    return Path(os.environ.get("VOICELAB_LOG_DIR") or Path(tempfile.gettempdir()) / "voicelab-logs")


def write(exc: BaseException, context: str = "") -> Path | None:
    """Write `exc`'s traceback (and `context`, e.g. the command line) to a new log file; its path,
    or None when no log can be written anywhere."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    text = (f"{context}\n" if context else "") + "".join(traceback.format_exception(exc))
    for folder in (log_dir(), Path.cwd()):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"voicelab-crash-{stamp}-{os.getpid()}.log"
            with open(path, "a", encoding="utf-8") as f:
                f.write(text)
            return path
        except OSError:
            continue
    return None


def one_line(exc: BaseException, what: str = "internal error") -> str:
    """'internal error (KeyError: 'x'), a bug in voicelab, not in your input: traceback in PATH'."""
    path = write(exc)
    summary = f"{exc.__class__.__name__}: {exc}".strip().rstrip(":")
    summary = summary.splitlines()[0][:200] if summary else exc.__class__.__name__
    where = f"the traceback is in {path}" if path else "no log could be written"
    return f"{what} ({summary}), a bug in voicelab rather than in your input: {where}"
