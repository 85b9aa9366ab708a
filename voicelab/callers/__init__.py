"""Who plays the persona. A caller turns each agent turn into an `Action`.

Only `scripted` exists in text mode today; `human` is the notebook console (no caller object:
the person types or speaks), `platform` and `phone` arrive with the hosted-platform features.
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


def caller_for(persona, kind: str) -> Caller | None:  # noqa: ANN001 - Persona, avoids an import cycle
    from ..errors import ConfigError
    from .scripted import ScriptedCaller

    if kind == "scripted":
        return ScriptedCaller(persona)
    if kind == "human":
        return None
    raise ConfigError(f"caller '{kind}' is not available yet; use --caller scripted (or human in the console)")
