"""What every runner is and where it reports (the runner registry's contract, in
voicelab/harness/runners/__init__.py)."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from voicelab.spec.models import CallRequest, CallResult


class Sink(Protocol):
    """Where a runner reports: a call is about to start, a call finished (stored before the next
    starts). `started` answers False when the sink takes no more calls (its store cannot be
    written): the runner then does not place that call, and lets the calls in flight finish."""

    def started(self, request: CallRequest) -> bool: ...

    def finished(self, result: CallResult) -> Awaitable[None]: ...


class Runner(Protocol):
    name: str
    help: str
    #: Modes this caller can play.
    modes: tuple[str, ...]
    #: Can run unattended in a batch (`voicelab run`, `run_batch`).
    batch: bool
    #: Offered in the call console (a person watches or plays the call).
    console: bool

    def preflight(self, request: CallRequest) -> None: ...

    async def run(self, plan: list[CallRequest], base_url: str | None, concurrency: int, sink: Sink) -> None: ...
