"""Failures the local backend can be told to inject, so tests and benchmarks have ground truth.

A fault is armed on the backend (`backend.faults.add(Fault(...))`) and taken by the next
conversation(s) it matches; it fires after the agent's n-th turn.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Literal

FaultKind = Literal["drop", "close", "stall", "malformed"]


@dataclass
class Fault:
    #: drop: abort TCP with no close frame (the client sees 1006); close: close with `close_code`;
    #: stall: stop answering; malformed: send a frame that is not JSON.
    kind: FaultKind
    after_agent_turns: int = 1
    close_code: int = 1011
    reason: str = "Injected fault"
    agent_id: str | None = None
    times: int = 1


@dataclass
class HttpFault:
    """Answer the next `times` REST requests whose path contains `path` with `status`."""

    status: int = 429
    path: str = ""
    times: int = 1
    retry_after: float | None = None


class Faults:
    """A thread-safe list of armed faults (tests arm them from another thread than the server's)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._armed: list[Fault] = []
        self._http: list[HttpFault] = []

    def add(self, fault: Fault | HttpFault) -> None:
        with self._lock:
            (self._http if isinstance(fault, HttpFault) else self._armed).append(fault)

    def clear(self) -> None:
        with self._lock:
            self._armed.clear()
            self._http.clear()

    def take_http(self, path: str) -> HttpFault | None:
        with self._lock:
            for fault in self._http:
                if fault.path in path:
                    fault.times -= 1
                    if fault.times <= 0:
                        self._http.remove(fault)
                    return fault
        return None

    def take(self, agent_id: str) -> Fault | None:
        with self._lock:
            for fault in self._armed:
                if fault.agent_id in (None, agent_id):
                    fault.times -= 1
                    if fault.times <= 0:
                        self._armed.remove(fault)
                    return fault
        return None
