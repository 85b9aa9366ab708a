"""A persona: who calls, how the caller behaves and sounds, and what the call must show
(personas/*.yaml). Input models, strict: a typo in a persona file must not silently do nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from voicelab.spec.models.base import E164_PATTERN, Id, _Strict, known_language
from voicelab.spec.models.tools import ToolMock, ToolName

Style = Literal["cooperative", "impatient", "confused", "silent", "interrupting", "replay"]
#: Every caller style; `replay` says a recorded call's caller turns (`caller.turns`), the others
#: play reply rules (voicelab/spec/script.py).
STYLES: tuple[str, ...] = ("cooperative", "impatient", "confused", "silent", "interrupting", "replay")


class ReplyRule(_Strict):
    when: list[str] = Field(min_length=1)
    say: str


#: The built-in noise beds of `caller.audio.noise` (voicelab/audio/conditions.py makes them); any
#: other value is the path of a WAV file.
NOISES = ("white", "pink", "babble", "street")


class AudioCondition(_Strict):
    """What the agent hears of a synthetic caller's voice (voicelab/audio/conditions.py): noise,
    channel, loss, level, speaking rate and voice."""

    #: white | pink | babble | street, or the path of a WAV file (looped).
    noise: str | None = None
    #: Speech-to-noise ratio of the mix (only with `noise`).
    snr_db: float = Field(default=20.0, ge=-10, le=60)
    channel: Literal["clean", "phone"] = "clean"
    #: Share of 20 ms frames lost, in bursts.
    loss: float = Field(default=0.0, ge=0, lt=1)
    #: Speaking rate, 1 = espeak-ng's 165 words per minute.
    rate: float = Field(default=1.0, ge=0.3, le=3)
    volume_db: float = Field(default=0.0, ge=-40, le=20)
    #: An espeak-ng voice (`en-us+f3`, `en-gb`, `de+m2`, ...) instead of the persona's own.
    voice: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_+-]{1,40}$")

    def label(self) -> str:
        """Short and stable, for tables and charts: 'babble 10 dB, phone, loss 5%' ('clean' if none)."""
        parts = []
        if self.noise is not None:
            parts.append(f"{Path(self.noise).stem if '/' in self.noise else self.noise} {self.snr_db:g} dB")
        if self.channel != "clean":
            parts.append(self.channel)
        if self.loss:
            parts.append(f"loss {self.loss:.0%}")
        if self.rate != 1.0:
            parts.append(f"rate {self.rate:g}x")
        if self.volume_db:
            parts.append(f"{self.volume_db:+g} dB")
        if self.voice:
            parts.append(self.voice)
        return ", ".join(parts) or "clean"


class Interrupt(_Strict):
    """A timed barge-in (voice calls): the caller starts saying `say` `after_ms` after the agent
    begins its `agent_turn`-th turn (1: its first message), whether or not the agent is done."""

    after_ms: float = Field(ge=0)
    say: str = Field(min_length=1)
    agent_turn: int = Field(default=1, ge=1)
    #: A backchannel ("mm-hm"): not a bid for the floor. A good agent talks on, and the caller
    #: still answers the turn once it ends; after a real interruption it waits for the agent's answer.
    backchannel: bool = False


class ReplayTurn(_Strict):
    """One caller turn of a recorded call (`style: replay`): what the caller said, and how many
    agent turns it let pass before saying it, as the recording shows. A turn without `say` that
    hangs up is a caller who let `after` agent turns pass and then hung up without a word."""

    say: str | None = None
    #: Agent turns (with words) the caller waits for before this turn; 0: right after its
    #: previous turn, in the same breath.
    after: int = Field(default=1, ge=0)
    #: The caller hangs up after this turn, as in the recording.
    hang_up: bool = False

    @model_validator(mode="after")
    def _says_or_hangs_up(self) -> ReplayTurn:
        if not self.say and not self.hang_up:
            raise ValueError("a replay turn needs `say` (what the caller said) or `hang_up: true`")
        return self


class CallerSpec(_Strict):
    """How the scripted caller behaves; see voicelab/spec/script.py for the styles."""

    style: Style = "cooperative"
    #: `style: replay`: the recorded caller turns, said in this order (voicelab import-calls).
    turns: list[ReplayTurn] = Field(default_factory=list)
    replies: list[ReplyRule] = Field(default_factory=list)
    fallback: str = "Sorry, could you say that again?"
    hang_up_after_turns: int = Field(default=12, ge=1)
    #: The call's hard time limit for this persona (ends it with end_reason `timeout`); None
    #: means the run's default. A good agent ends a silent call itself (`flow.silence.end_after`),
    #: and a silent caller hangs up after `hang_up_after_turns`, so no persona needs one to end.
    timeout_s: float | None = Field(default=None, gt=0)
    #: Voice calls: the conditions the caller's synthetic voice reaches the agent under.
    audio: AudioCondition | None = None
    #: Voice calls: talk over one agent turn at a set moment, and measure how the agent stops.
    interrupt: Interrupt | None = None

    @model_validator(mode="after")
    def _turns_are_for_replay(self) -> CallerSpec:
        # turns under another style would silently do nothing: the reply rules play instead
        if self.turns and self.style != "replay":
            raise ValueError(f"caller.turns are the recorded turns of `style: replay`; this caller's style is "
                             f"{self.style!r}: set style: replay, or write replies instead")
        return self


class ExpectedCall(_Strict):
    """The agent calls `tool`, with at least these arguments (strings compared case-insensitively)."""

    tool: ToolName
    args: dict[str, Any] = Field(default_factory=dict)
    #: Exactly this many calls with these arguments (default: at least one).
    times: int | None = Field(default=None, ge=1)


class RecordedStep(_Strict):
    """One step of a recorded call, in order: an agent turn, a caller turn, or a tool call."""

    agent: str | None = None
    caller: str | None = None
    tool: ToolName | None = None
    #: The tool call's arguments (only with `tool`).
    args: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_kind(self) -> RecordedStep:
        given = [k for k in ("agent", "caller", "tool") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("a recorded step is exactly one of `agent: <words>`, `caller: <words>` or "
                             f"`tool: <name>` (this one has {', '.join(given) or 'none'})")
        if self.args and self.tool is None:
            raise ValueError("`args` belong to a `tool` step")
        return self


class Recording(_Strict):
    """The path a recorded call took (`expect.recording`): what a replay of its caller turns is
    compared with, turn by turn (voicelab/spec/replay.py)."""

    #: The recorded conversation (its backend's id).
    conversation_id: str | None = None
    steps: list[RecordedStep] = Field(default_factory=list)
    #: Who ended the recorded call; None: neither (a timeout, an error).
    ended_by: Literal["agent", "caller"] | None = None


class TranscriptsAgree(_Strict):
    """`expect.transcripts_agree`: the accounts of what the agent said agree turn by turn (the
    live events, the backend's stored conversation and, in voice calls, voicelab's recognition of
    the recorded agent audio; voicelab/spec/transcripts.py). Written `true` (the defaults), a
    number (`max_wer`), or this mapping."""

    #: Live vs stored words of a turn: at most this word error rate (they should be copies).
    max_wer: float = Field(default=0.25, ge=0)
    #: The audio's recognition against the texts: at most this word error rate. Looser, because
    #: voicelab's recogniser mishears even a perfect recording (pocketsphinx on a synthetic voice:
    #: 0.4-1.0 on a correct turn); lower it with a better recogniser.
    max_audio_wer: float = Field(default=1.0, ge=0)


class PlatformVerdict(_Strict):
    """`expect.platform_verdict`: what the backend's own analysis of the call must say (GET
    /v1/convai/conversations/{id}, `analysis`): its overall verdict, each evaluation criterion's
    result, each data collection item's value (compared as text, case and surrounding space
    ignored). `voicelab import-calls` writes the recorded call's verdicts here for review. The
    call's record is fetched after the call when this is set, on any backend."""

    call_successful: Literal["success", "failure"] | None = None
    evaluation_criteria: dict[Annotated[str, Field(min_length=1)], Literal["success", "failure"]] = Field(
        default_factory=dict)
    data_collection: dict[Annotated[str, Field(min_length=1)], str | int | float | bool] = Field(
        default_factory=dict)


class Expectations(_Strict):
    agent_says: list[str] = Field(default_factory=list)
    agent_never_says: list[str] = Field(default_factory=list)
    #: These phrases, in this order, in the agent's turns (voicelab/spec/checks.py `in_order`).
    agent_says_in_order: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)
    agent_calls: list[ExpectedCall] = Field(default_factory=list)
    agent_never_calls: list[ToolName] = Field(default_factory=list)
    max_duration_s: float | None = Field(default=None, gt=0)
    #: Every agent answer within this many ms of the caller's turn (the slowest one is checked).
    max_latency_ms: float | None = Field(default=None, gt=0)
    min_turns: int | None = Field(default=None, ge=0)
    ended_by: Literal["agent", "caller", "any"] | None = None
    #: The recorded call this persona replays: differences are reported per caller turn, and the
    #: check fails when a recorded tool call or the recorded end is no longer reached.
    recording: Recording | None = None
    #: The live events, the stored conversation and (voice) the recorded audio say the same per
    #: agent turn (`TranscriptsAgree`); `true` for the defaults, a number for `max_wer`.
    transcripts_agree: TranscriptsAgree | None = None
    #: The backend's analysis of the call says this (`PlatformVerdict`).
    platform_verdict: PlatformVerdict | None = None

    @field_validator("transcripts_agree", mode="before")
    @classmethod
    def _agree_shorthand(cls, v: object) -> object:
        # `transcripts_agree: true` asks for the check with its defaults, `false` for none, and a
        # bare number is the text threshold (the one most personas set)
        if v is True:
            return {}
        if v is False:
            return None
        if isinstance(v, int | float):
            return {"max_wer": v}
        return v


class ImportedFrom(_Strict):
    """Where an imported persona came from, and the platform's own verdicts on that call (kept
    for a person to review: they are what the recording was judged to be, not checks)."""

    conversation_id: str
    #: The agent id the backend knows the call by (a hosted agent_..., or the local spec id).
    agent_id: str | None = None
    started_at: str | None = None
    duration_s: float | None = None
    status: str | None = None
    termination_reason: str | None = None
    #: The platform's verdict: success | failure | unknown.
    call_successful: str | None = None
    summary: str | None = None
    #: {criterion id: {result, rationale}}
    evaluation_criteria: dict[str, dict[str, Any]] = Field(default_factory=dict)
    #: {data collection id: {value, rationale}}
    data_collection: dict[str, dict[str, Any]] = Field(default_factory=dict)


class Persona(_Strict):
    id: Id
    name: str
    summary: str
    #: The language the caller speaks.
    language: str = "en"
    #: The language the call starts in (sent as the `language` override where the agent allows
    #: it); default: `language`. A German caller reached by an English call: `start_language: en`.
    start_language: str | None = None
    agent: str
    variables: dict[str, str] = Field(default_factory=dict)
    caller: CallerSpec = Field(default_factory=CallerSpec)
    expect: Expectations = Field(default_factory=Expectations)
    #: What the persona's world answers when the agent calls a client or webhook tool (wins over
    #: the agent spec's default mock).
    tools: dict[ToolName, ToolMock] = Field(default_factory=dict)
    #: CI gates: the share of this persona's repeats that must succeed (default: all of them).
    pass_threshold: float = Field(default=1.0, ge=0, le=1)
    #: What a person should confirm before trusting this persona: expectations inferred from a
    #: recording (voicelab import-calls) are listed here, never silently trusted.
    review: list[str] = Field(default_factory=list)
    #: An imported persona's source call and the platform's verdicts on it.
    imported: ImportedFrom | None = None

    @field_validator("variables", mode="before")
    @classmethod
    def _variables_as_strings(cls, v: object) -> object:
        # YAML turns 42 into an int and yes into True; dynamic variables are strings on the wire.
        # A mapping or list is refused, never str()-ed (an alias bomb would expand in str()).
        if isinstance(v, dict):
            for key, val in v.items():
                if isinstance(val, dict | list):
                    raise ValueError(f"variable {key!r} is a {'mapping' if isinstance(val, dict) else 'list'}; "
                                     "dynamic variables are single values (text, a number, true/false)")
            return {str(k): ("" if val is None else str(val)) for k, val in v.items()}
        return v

    @field_validator("language", "start_language")
    @classmethod
    def _known_language(cls, v: str | None) -> str | None:
        return known_language(v) if v is not None else None

    @property
    def call_language(self) -> str:
        """The language the call starts in."""
        return self.start_language or self.language

    @field_validator("variables")
    @classmethod
    def _phone_is_e164(cls, v: dict[str, str]) -> dict[str, str]:
        phone = v.get("phone_number")
        if phone is not None and not E164_PATTERN.match(phone):
            raise ValueError(
                f"phone_number {phone!r} is not E.164; write it as + country code and number, "
                "digits only, e.g. \"+48601234567\""
            )
        return v
