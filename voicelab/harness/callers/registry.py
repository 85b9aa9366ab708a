"""Which turn policy plays each kind of caller that talks over the conversation websocket.

A `Call` placed without a policy of its own takes its request's from here; the runner registry
(voicelab/harness/runners/) reads the same table, so a kind of caller's words are defined once.
`None`: a person plays the persona (the console). Callers placed another way (the platform's
simulated user, a phone call) have no turn policy: a Call for one is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from voicelab.harness.callers.agent import AgentCaller
from voicelab.harness.callers.scripted import ScriptedCaller
from voicelab.spec.errors import UsageError

if TYPE_CHECKING:
    from voicelab.harness.callers import Caller
    from voicelab.spec.models import CallRequest

POLICIES: dict[str, Callable[[CallRequest], Caller] | None] = {
    "scripted": lambda request: ScriptedCaller(request.persona),
    "human": None,
    "agent": AgentCaller,
}


def policy(request: CallRequest) -> Caller | None:
    """The turn policy of the request's kind of caller (None: a person). A kind placed another way
    (the platform's simulated user, a phone call) is a UsageError saying how to place it."""
    if request.caller not in POLICIES:
        raise UsageError(f"caller '{request.caller}' is not a websocket conversation: place it with "
                         f"run_batch(caller='{request.caller}') or `voicelab call --caller {request.caller}`")
    make = POLICIES[request.caller]
    return make(request) if make is not None else None
