"""Turn policies: what a caller says after each agent turn.

A turn policy is the part of a caller that decides words; how the call is placed is a runner's
job (voicelab/harness/runners/). `scripted.py` plays a persona's reply rules in one of five styles
(the engine is voicelab/spec/script.py); `agent.py` bridges to a caller agent.
"""

from __future__ import annotations

from typing import Protocol

from voicelab.spec.script import Action

__all__ = ["Action", "Caller"]


class Caller(Protocol):
    def on_agent_turn(self, text: str) -> Action: ...
