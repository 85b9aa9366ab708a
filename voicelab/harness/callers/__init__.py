"""Turn policies: what a caller says after each agent turn, and the lifecycle of a live one.

A turn policy is the part of a caller that decides words; how the call is placed is a runner's
job (voicelab/harness/runners/). `scripted.py` plays a persona's reply rules in one of five styles
(the engine is voicelab/spec/script.py); `agent.py` bridges to a caller agent.

A `Call` asks its caller for words (`on_agent_turn`) and, around the call, drives its
`Lifecycle`: `check` before connecting, `start` before the agent under test speaks, `close`
when either side hung up, `result_fields` for what the caller adds to the result. A plain turn
policy has no lifecycle (the defaults below), so the Call never asks which kind of caller it has.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from voicelab.spec.script import Action

if TYPE_CHECKING:
    from voicelab.spec.models import CallRequest

__all__ = ["Action", "Caller", "Lifecycle", "lifecycle"]


class Caller(Protocol):
    def on_agent_turn(self, text: str) -> Action: ...


class Lifecycle:
    """What a call does with its caller besides asking for words; these defaults do nothing (a
    plain turn policy). A live caller (one with a conversation of its own) subclasses it."""

    def check(self, request: CallRequest, base_url: str | None) -> None:
        """Raise a ConfigError before anything connects when the caller cannot play this call."""

    async def start(self, events: asyncio.Queue, clock: Callable[[], float], base_url: str | None,
                    audio: Any) -> str | None:
        """Start before the agent under test first speaks; an error message when it could not."""
        return None

    async def close(self) -> None:
        """The call has ended, on either side."""

    def result_fields(self) -> dict[str, Any]:
        """What the caller adds to the call's result."""
        return {}


_PLAIN = Lifecycle()


def lifecycle(caller: Caller | None) -> Lifecycle:
    """The caller's lifecycle (the do-nothing one for a plain turn policy or a person)."""
    return caller if isinstance(caller, Lifecycle) else _PLAIN
