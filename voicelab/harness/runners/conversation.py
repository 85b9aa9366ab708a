"""Callers that talk over the conversation websocket (scripted and human): each call is a `Call`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from voicelab.harness.connection import check_secrets, connect
from voicelab.spec.errors import UsageError

if TYPE_CHECKING:
    from voicelab.harness.callers import Caller
    from voicelab.harness.runners.base import Sink
    from voicelab.spec.models import CallRequest


@dataclass(frozen=True)
class ConversationRunner:
    name: str
    help: str
    #: The turn policy that plays the persona; None: a person does.
    policy: Callable[[CallRequest], Caller] | None
    batch: bool
    console: bool
    modes: tuple[str, ...] = ("text", "voice")


    def preflight(self, request: CallRequest) -> None:
        check_secrets(request)  # the webhooks' secret__ variables, on any backend
        if request.backend != "local":
            connect(request)  # API key and hosted agent id
            extra = getattr(self.policy, "preflight", None)
            if extra is not None:
                extra(request)  # e.g. the hosted caller agent's id

    async def run(self, plan: list[CallRequest], base_url: str | None, concurrency: int, sink: Sink) -> None:
        """Place the calls, at most `concurrency` at once; each is stored before its slot is reused.
        Cancelling ends in-flight calls as `cancelled` (and records them); queued ones never start."""
        from voicelab.harness.call import Call

        if not self.batch:
            raise UsageError(f"caller '{self.name}' needs a person: place it from the console "
                             "(notebooks/live_call.ipynb) or with `voicelab call --caller human`")
        slots = asyncio.Semaphore(concurrency)

        async def one(request: CallRequest) -> None:
            async with slots:
                if not sink.started(request):
                    return
                await sink.finished(await Call(request, base_url=base_url).arun())

        tasks = [asyncio.create_task(one(r)) for r in plan]
        try:
            await asyncio.gather(*tasks)
        except asyncio.CancelledError:
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
