"""SIGINT, SIGTERM and SIGHUP all mean what Ctrl+C means.

CI runners, `timeout` and `docker stop` send SIGTERM; a closed terminal sends SIGHUP. Both are
turned into `Stopped`, a KeyboardInterrupt, so every path that already handles Ctrl+C (in-flight
calls recorded as cancelled, the run marked interrupted, the summary and the resume hint) handles
them too, and the exit status says which signal it was (128 + its number: 130, 143, 129).

SIGINT is installed explicitly as well: a command started in the background by a non-interactive
shell (`voicelab run ... &` in a script) inherits SIGINT as ignored, and Python then leaves it
ignored, so `kill -INT` would do nothing at all.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

#: The signals treated as Ctrl+C (SIGINT itself too: it may have been inherited as ignored).
HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Stopped(KeyboardInterrupt):
    """A stop signal arrived; `signum` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_received: list[int] = []


def _raise(signum: int, _frame: FrameType | None) -> None:
    _received.append(signum)
    raise Stopped(signum)


def install() -> dict[int, object]:
    """Route SIGINT, SIGTERM and SIGHUP to `Stopped` (main thread only; elsewhere a no-op).
    Returns the handlers it replaced, for `restore`."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {signum: signal.signal(signum, _raise) for signum in HANDLED}


def restore(previous: dict[int, object]) -> None:
    """Put back the handlers `install` replaced (a notebook or test that called the CLI in-process
    keeps its own)."""
    for signum, handler in previous.items():
        signal.signal(signum, handler)  # type: ignore[arg-type]


def exit_code(exc: BaseException | None = None) -> int:
    """128 + the signal that stopped us: from `exc` if it is a `Stopped`, else the last one
    received, else SIGINT (Ctrl+C)."""
    if isinstance(exc, Stopped):
        return 128 + exc.signum
    return 128 + (_received[-1] if _received else signal.SIGINT)


def name(code: int) -> str:
    """'Ctrl+C' or 'SIGTERM' for an exit code made by `exit_code`."""
    signum = code - 128
    return "Ctrl+C" if signum == signal.SIGINT else signal.Signals(signum).name


def exiting() -> None:
    """The command is done and about to exit: another stop signal changes nothing now (and would
    otherwise, arriving while Python shuts down, kill the process with its default action and
    lose the exit status)."""
    if threading.current_thread() is threading.main_thread():
        for signum in HANDLED:
            signal.signal(signum, signal.SIG_IGN)
