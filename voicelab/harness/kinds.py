"""The kinds of caller by name: what each is, which modes it plays, whether it runs unattended
in a batch and whether the call console offers it.

A declarative table that loads nothing, so the command line's choices and `--help` do not
import the SDK; how each kind is placed is its runner, and the runner registry
(voicelab/harness/runners/) is built from this table, one runner per name.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Kind:
    name: str
    help: str
    #: Modes this caller can play.
    modes: tuple[str, ...]
    #: Can run unattended in a batch (`voicelab run`, `run_batch`).
    batch: bool
    #: Offered in the call console (a person watches or plays the call).
    console: bool


KINDS: dict[str, Kind] = {kind.name: kind for kind in (
    Kind("scripted", "voicelab's rule-based caller plays the persona (default)", ("text", "voice"),
         batch=True, console=True),
    Kind("human", "you play the persona: type in the console, or talk through the microphone (--mode voice)",
         ("text", "voice"), batch=False, console=True),
    Kind("agent", "a second ElevenLabs agent plays the persona, prompted with it and bridged to the agent under "
         "test by text or voice (hosted: set ELEVENLABS_CALLER_AGENT_ID)", ("text", "voice"),
         batch=True, console=True),
    Kind("platform", "the platform's simulated user plays the persona, through the agent-testing API (text)",
         ("text",), batch=True, console=False),
    # a phone call is voice on the platform's side; the mode only labels the result
    Kind("phone", "the platform dials the persona's phone_number (outbound call via Twilio or a SIP trunk)",
         ("voice", "text"), batch=True, console=False),
)}


def names(*, batch: bool | None = None, console: bool | None = None) -> list[str]:
    """Caller names, optionally only those that run in a batch / appear in the console."""
    return [n for n, k in KINDS.items()
            if (batch is None or k.batch == batch) and (console is None or k.console == console)]
