"""One registry of the kinds of caller, each with a runner that knows how to place its calls.

    scripted   voicelab's rule-based caller over the conversation websocket (text or voice)
    human      a person at the keyboard or microphone, over the same websocket (the console)
    agent      a second ElevenLabs conversation plays the persona, bridged by text or by voice
    platform   the platform's simulated user, through the agent-testing API
    phone      an outbound phone call placed by the platform

Every runner has `preflight(request)` (settings checked before a run exists) and
`run(plan, base_url, concurrency, sink)`. The CLI's choices, the batch's dispatch and the
console's picker are read from the kinds (voicelab/harness/kinds.py, which loads nothing): a new
kind of caller is one line there, one new module here and one line below.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from voicelab.harness.callers.registry import POLICIES
from voicelab.harness.connection import connect
from voicelab.harness.hosted import check_access
from voicelab.harness.kinds import KINDS, names
from voicelab.harness.runners.base import Runner, Sink
from voicelab.harness.runners.conversation import ConversationRunner
from voicelab.harness.runners.phone import PhoneRunner
from voicelab.harness.runners.platform import PlatformRunner
from voicelab.spec.errors import UsageError

if TYPE_CHECKING:
    from voicelab.spec.models import CallRequest, CallResult



def _conversation(name: str) -> ConversationRunner:
    kind = KINDS[name]
    return ConversationRunner(kind.name, kind.help, policy=POLICIES[name], batch=kind.batch, console=kind.console,
                              modes=kind.modes)


#: One runner per kind of caller (voicelab/harness/kinds.py names them).
RUNNERS: dict[str, Runner] = {
    "scripted": _conversation("scripted"),
    "human": _conversation("human"),
    "agent": _conversation("agent"),
    "platform": PlatformRunner(),
    "phone": PhoneRunner(),
}


def runner(name: str) -> Runner:
    if name not in RUNNERS:
        raise UsageError(f"unknown caller {name!r}: use one of {', '.join(RUNNERS)}")
    return RUNNERS[name]


async def place_one(request: CallRequest, base_url: str | None,
                    store: Callable[[CallResult], Awaitable[None]] | None = None) -> CallResult:
    """One call through its caller's runner, the same path as a batch of one (`voicelab call`,
    the REST service). `store` gets the result first, even when the call is being cancelled
    (which then raises here, after the cancelled call was stored)."""
    got: list[CallResult] = []

    class Collect:
        def started(self, request: CallRequest) -> bool:
            return True

        async def finished(self, result: CallResult) -> None:
            if store is not None:
                await store(result)
            got.append(result)

    await runner(request.caller).run([request], base_url, 1, Collect())
    return got[0]


def preflight(requests: list[CallRequest]) -> None:
    """Every setting the calls would trip over, checked before anything exists or is placed."""
    for request in requests:
        r = runner(request.caller)
        if request.mode not in r.modes:
            raise UsageError(f"caller '{r.name}' cannot place {request.mode} calls (it plays: {', '.join(r.modes)})")
        r.preflight(request)
    checked: set[tuple[int, str]] = set()
    for request in requests:  # hosted: the key and agent, once each, by one authenticated request
        if request.backend == "elevenlabs":
            connection = connect(request)
            if (id(connection.client), connection.agent_id) not in checked:
                check_access(connection.client, connection.agent_id)
                checked.add((id(connection.client), connection.agent_id))


__all__ = ["RUNNERS", "Runner", "Sink", "names", "place_one", "preflight", "runner"]
