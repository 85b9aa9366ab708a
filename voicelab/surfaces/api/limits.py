"""One cap on the calls the service has in flight, shared by everything it places.

A background or waiting call (asyncio, on the server's loop) takes one slot for as long as it
is placed; a run (its own thread and loop, placed by `batch.place_run`) takes as many slots as
its concurrency for as long as it is being placed, since that is how many calls it may have in
flight at once. Waiters are served first come, first served, so a run waiting for its slots is
not overtaken for ever by single calls, and a call is not starved by runs that came after it.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(eq=False)
class _Waiter:
    size: int
    wake: Callable[[], None]


class Slots:
    """A counting semaphore for both threads and event loops (any loop), fair (FIFO)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0
        self._lock = threading.Lock()
        self._waiters: deque[_Waiter] = deque()

    @property
    def waiting(self) -> int:
        """Slots asked for by those still waiting."""
        with self._lock:
            return sum(w.size for w in self._waiters)

    def _take_now(self, size: int) -> bool:
        if not self._waiters and self.used + size <= self.capacity:
            self.used += size
            return True
        return False

    def release(self, size: int = 1) -> None:
        with self._lock:
            self.used -= size
            while self._waiters and self.used + self._waiters[0].size <= self.capacity:
                waiter = self._waiters.popleft()
                self.used += waiter.size
                waiter.wake()

    def _withdraw(self, waiter: _Waiter) -> bool:
        """Stop waiting; False if the slots were granted meanwhile (the caller then holds them)."""
        with self._lock:
            try:
                self._waiters.remove(waiter)
            except ValueError:
                return False
            return True

    async def acquire(self, size: int = 1) -> int:
        """Wait for `size` slots (at most the capacity) on the running loop; how many were taken
        (release that many). A cancelled waiter takes none."""
        size = min(size, self.capacity)
        loop = asyncio.get_running_loop()
        granted: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            try:
                loop.call_soon_threadsafe(lambda: granted.done() or granted.set_result(None))
            except RuntimeError:  # its loop is closed: nobody waits there any more
                pass

        with self._lock:
            if self._take_now(size):
                return size
            waiter = _Waiter(size, wake)
            self._waiters.append(waiter)
        try:
            await granted
        except asyncio.CancelledError:
            if not self._withdraw(waiter):
                self.release(size)
            raise
        return size

    def acquire_blocking(self, size: int, cancel: threading.Event) -> int:
        """Wait in this thread for `size` slots (at most the capacity); how many were taken, 0
        (holding none) once `cancel` is set."""
        size = min(size, self.capacity)
        event = threading.Event()
        with self._lock:
            if self._take_now(size):
                return size
            waiter = _Waiter(size, event.set)
            self._waiters.append(waiter)
        while not event.wait(0.05):
            if cancel.is_set():
                if not self._withdraw(waiter):
                    self.release(size)  # granted just now: give it back
                return 0
        return size


__all__ = ["Slots"]
