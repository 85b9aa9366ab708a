"""Who plays the persona.

- scripted (scripted.py): voicelab's rule-based caller; turns each agent turn into an `Action`.
- human: the notebook console; no caller object, the person types or speaks.
- platform (platform.py): the platform's simulated user, through the agent-testing API.
- phone (phone.py): an outbound phone call placed by the platform.
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
    raise ConfigError(f"caller '{kind}' is not played call by call: run it as a batch "
                      f"(voicelab run --caller {kind}); single calls take scripted or human")
