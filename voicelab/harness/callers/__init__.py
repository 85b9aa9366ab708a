"""Turn policies: what a caller says after each agent turn.

A turn policy is the part of a caller that decides words; how the call is placed is a runner's
job (voicelab/harness/runners/). `scripted.py` plays a persona's reply rules in one of five styles.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass
class Action:
    say: list[str] = field(default_factory=list)
    hang_up: bool = False


class Caller(Protocol):
    def on_agent_turn(self, text: str) -> Action: ...
