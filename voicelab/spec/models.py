"""Every data model in one place (docs/formats.md is the contract these implement).

Input models (`Persona`, `AgentSpec`) forbid unknown keys, because a typo in a YAML file that
silently does nothing is the worst kind of test bug. Output models (`CallResult`) are plain JSON
so that tables, charts and reports are pure functions of what is stored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

Speaker = Literal["agent", "user"]
Backend = Literal["local", "elevenlabs"]
Mode = Literal["text", "voice"]
Style = Literal["cooperative", "impatient", "confused", "silent", "interrupting"]
EndReason = Literal["agent_ended", "caller_ended", "timeout", "disconnected", "error", "cancelled"]
STYLES: tuple[str, ...] = ("cooperative", "impatient", "confused", "silent", "interrupting")

#: The languages an ElevenLabs agent speaks (ISO 639-1, and fil); a region may follow: pt-BR.
LANGUAGES = {"en", "ja", "zh", "de", "hi", "fr", "ko", "pt", "it", "es", "id", "nl", "tr", "fil", "pl", "sv", "bg",
             "ro", "ar", "cs", "el", "fi", "hr", "ms", "sk", "da", "ta", "uk", "ru", "hu", "no", "vi"}
ID_PATTERN = re.compile(r"^[a-z0-9-]+$")
E164_PATTERN = re.compile(r"^\+[1-9][0-9]{6,14}$")

def known_language(value: str) -> str:
    if value.split("-")[0].lower() not in LANGUAGES:
        raise ValueError(f"unknown language {value!r}: use a code an ElevenLabs agent speaks "
                         f"({', '.join(sorted(LANGUAGES))})")
    return value


#: Longest persona, agent or variant id: ids become file names (`<variant>-<persona>#<n>.wav`), which
#: a file system allows 255 bytes.
MAX_ID = 64


def _id_shape(value: str) -> str:
    if not ID_PATTERN.match(value):
        raise ValueError("must be lowercase letters, digits and dashes ([a-z0-9-]+)")
    if len(value) > MAX_ID:
        raise ValueError(f"is {len(value)} characters long: use at most {MAX_ID} (ids become file names)")
    return value


#: Persona and agent ids: they become file names, test names and CLI arguments.
Id = Annotated[str, AfterValidator(_id_shape)]


#: Who plays the persona: a name in the runner registry (voicelab/harness/runners/__init__.py).
#: A plain name here: the data models know no code that places calls, so the registry checks it
#: at the edge (a loaded experiment file, the CLI's choices, preflight and `Call`).
CallerKind = str

#: A text that may differ by language: a plain string, or {"en": "...", "de": "..."}.
LocalText = str | dict[str, str]


def pick_language(text: LocalText, language: str) -> str:
    """Choose the variant of `text` for `language`, falling back to English, then the first."""
    if isinstance(text, str):
        return text
    return text.get(language) or text.get("en") or next(iter(text.values()), "")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --------------------------------------------------------------------------- personas


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


class CallerSpec(_Strict):
    """How the scripted caller behaves; see voicelab/spec/script.py for the styles."""

    style: Style = "cooperative"
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


#: Tool names: what the agent calls them and the SDK registers them by.
TOOL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _tool_name(value: str) -> str:
    if not TOOL_NAME.match(value):
        raise ValueError("a tool name is letters, digits and underscores, not starting with a digit")
    return value


ToolName = Annotated[str, AfterValidator(_tool_name)]


class ToolMock(_Strict):
    """What a tool answers in a test: a result (any JSON value), or an error; after `delay_ms`."""

    result: Any = None
    error: str | None = None
    delay_ms: float = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _one_answer(self) -> ToolMock:
        if self.result is not None and self.error is not None:
            raise ValueError("a tool mock answers with a result or an error, not both")
        return self


class ExpectedCall(_Strict):
    """The agent calls `tool`, with at least these arguments (strings compared case-insensitively)."""

    tool: ToolName
    args: dict[str, Any] = Field(default_factory=dict)
    #: Exactly this many calls with these arguments (default: at least one).
    times: int | None = Field(default=None, ge=1)


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


# --------------------------------------------------------------------------- agents


class Intent(_Strict):
    """A caller intent: if any phrase occurs in the caller's turn, move to `goto`."""

    when: list[str] = Field(min_length=1)
    goto: str | None = None
    #: Say the current step again instead of moving (for "what do you mean?").
    repeat: bool = False
    #: Variables this answer sets (what the caller chose: `slot: Tuesday 10:00`), for later texts
    #: and tool arguments.
    set: dict[str, str] = Field(default_factory=dict)
    #: Only while the conversation is in this language (e.g. German words heard in an English call).
    language: str | None = None


class ResultBranch(_Strict):
    """Go to `goto` when the tool's result has `field` (a dotted path) equal to `equals`."""

    field: str = Field(min_length=1)
    equals: str | int | float | bool | None
    goto: str


class StepCall(_Strict):
    """A step that calls a tool after saying its text, then moves on by the outcome: the first
    matching `branches` entry, else `on_success` / `on_error` (a timeout is an error)."""

    tool: ToolName
    #: Arguments: texts that may use {{variables}}.
    args: dict[str, str] = Field(default_factory=dict)
    #: Variables taken from the result: {variable: dotted field of the result}.
    save: dict[str, str] = Field(default_factory=dict)
    branches: list[ResultBranch] = Field(default_factory=list)
    on_success: str | None = None
    on_error: str | None = None


class FlowStep(_Strict):
    say: LocalText = ""
    call: StepCall | None = None
    intents: list[Intent] = Field(default_factory=list)
    reprompt: LocalText | None = None
    #: After this many unmatched caller turns in this step, go to `on_no_match` (if set).
    max_reprompts: int = Field(default=2, ge=0)
    on_no_match: str | None = None
    #: The agent ends the call (end_call) right after saying this step.
    end_call: bool = False
    #: For the backend's own post-call analysis (call_successful).
    outcome: Literal["success", "failure"] | None = None
    #: Local backend: extra thinking time before this step is said (a slow step; mutation tests).
    delay_ms: float = Field(default=0.0, ge=0)


class Silence(_Strict):
    """What the agent does when the caller says nothing (the platform's turn timeout)."""

    after_s: float = Field(default=4.0, gt=0)
    say: LocalText = "Are you still there?"
    #: End the call after this many silent re-prompts in a row; None: keep asking until the
    #: call's own timeout.
    end_after: int | None = Field(default=None, ge=1)
    goodbye: LocalText = "I will try again later. Goodbye."


class Flow(_Strict):
    """The dialogue the local backend follows; the hosted platform uses `prompt` instead."""

    start: str
    steps: dict[str, FlowStep]
    #: Intents checked in every step after the step's own ones (goodbye, repeat, ...).
    any: list[Intent] = Field(default_factory=list)
    reprompt: LocalText = "Sorry, I didn't quite get that."
    silence: Silence = Field(default_factory=Silence)


OverrideField = Literal["prompt", "first_message", "language", "llm", "voice_id", "text_only"]
ClientEvent = Literal["audio", "agent_response", "agent_response_correction", "agent_chat_response_part",
                      "user_transcript", "interruption", "agent_tool_request", "agent_tool_response"]
#: The platform's default client events (agent_chat_response_part is opt-in there too).
DEFAULT_CLIENT_EVENTS: list[ClientEvent] = ["audio", "agent_response", "agent_response_correction",
                                            "user_transcript", "interruption", "agent_tool_response"]


class PlatformSettings(_Strict):
    """How the local backend emulates the hosted agent's settings (the hosted platform has its
    own; these do not change it). GET agent reports exactly these, and the websocket enforces them."""

    #: Security → Overrides: the fields a client may override at conversation start.
    allowed_overrides: list[OverrideField] = Field(
        default_factory=lambda: ["prompt", "first_message", "language", "text_only"])
    #: Defaults of dynamic variables a client may leave out (the platform's placeholders).
    placeholders: dict[str, str] = Field(default_factory=dict)
    #: A text-only agent never sends audio, whatever the client asks.
    text_only: bool = False
    #: The platform ends a conversation after this long (close 1000, max_duration_exceeded).
    max_duration_s: int = Field(default=600, gt=0)
    #: The server events the agent sends (conversation_initiation_metadata, ping and error always go
    #: out). Streaming text parts cost every client a frame per part: opt in with
    #: agent_chat_response_part, as on the platform.
    client_events: list[ClientEvent] = Field(default_factory=lambda: list(DEFAULT_CLIENT_EVENTS))
    #: Added to the server's response time for this agent only (a slower model; an experiment's
    #: `latency_ms` variant).
    latency_ms: float = Field(default=0.0, ge=0)
    #: Added to the server's barge-in reaction time for this agent only: how long after the caller
    #: starts talking over it the agent stops (0: at once; it then cannot tell a backchannel).
    barge_in_ms: float = Field(default=0.0, ge=0)


class ToolParameter(_Strict):
    type: Literal["string", "number", "integer", "boolean"] = "string"
    description: str = ""
    enum: list[str] | None = None


#: The platform's system tools (run by the platform itself, no code of yours).
SYSTEM_TOOLS = ("end_call", "transfer_to_number", "transfer_to_agent", "language_detection", "skip_turn",
                "play_keypad_touch_tone", "voicemail_detection")
#: The dynamic variable through which voicelab hands a persona's webhook-tool mocks to the local
#: backend (a JSON object {tool: {result|error, delay_ms}}); the backend takes it out before the
#: conversation sees its variables, and the hosted platform is never sent it.
TOOL_MOCKS_VARIABLE = "voicelab__tool_mocks"


class Webhook(_Strict):
    """Where a server (webhook) tool sends its request. `url` and header values may use
    {{dynamic variables}} (headers also `secret__` ones); the arguments go as a JSON body (POST, PUT,
    PATCH) or as query parameters (GET, DELETE)."""

    url: str = Field(pattern=r"^(https?://|\{\{)")
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    headers: dict[str, str] = Field(default_factory=dict)


class Transfer(_Strict):
    """A number `transfer_to_number` may transfer to, and when (the platform's `transfers`)."""

    phone_number: Annotated[str, Field(pattern=E164_PATTERN.pattern)]
    condition: str = Field(min_length=1)


class Tool(_Strict):
    """A tool the agent can call. Client tools run in the calling app (the SDK's ClientTools);
    webhook tools are HTTP requests the backend makes; system tools are the platform's own
    (`name` says which). `end_call` is what a flow step's `end_call: true` calls."""

    name: ToolName
    type: Literal["client", "webhook", "system"] = "client"
    description: str = ""
    parameters: dict[str, ToolParameter] = Field(default_factory=dict)
    required: list[str] = Field(default_factory=list)
    #: Client tools: wait for the client's result (else the agent carries on at once).
    expects_response: bool = True
    #: Client and webhook tools: how long the agent waits for a result before it carries on as
    #: for an error.
    response_timeout_s: float = Field(default=10.0, gt=0)
    #: Client and webhook tools: the answer when the persona does not mock the tool (client tools:
    #: voicelab answers with it; webhook tools: the local backend does, instead of the request).
    default_mock: ToolMock | None = None
    #: Webhook tools: the request.
    webhook: Webhook | None = None
    #: transfer_to_number: the numbers it may transfer to.
    transfers: list[Transfer] = Field(default_factory=list)
    #: The hosted platform's id of this tool (`tool_...`), where agent-testing names tools by id
    #: (tool mocks, tool-call tests); the name when not given. The local backend takes either.
    platform_id: str | None = None

    @model_validator(mode="after")
    def _fits_its_type(self) -> Tool:
        if self.type == "webhook" and self.webhook is None:
            raise ValueError(f"webhook tool '{self.name}' needs `webhook: {{url: ...}}`")
        if self.type != "webhook" and self.webhook is not None:
            raise ValueError(f"only a webhook tool has `webhook:` ('{self.name}' is a {self.type} tool)")
        if self.type == "system":
            if self.name not in SYSTEM_TOOLS:
                raise ValueError(f"'{self.name}' is not a system tool: use one of {', '.join(SYSTEM_TOOLS)}, or "
                                 "type: client or webhook for your own tool")
            if self.default_mock is not None:
                raise ValueError(f"system tool '{self.name}' is run by the platform and cannot be mocked")
            if self.name == "transfer_to_number" and not self.transfers:
                raise ValueError("transfer_to_number needs `transfers:` (phone_number and condition)")
        if self.transfers and self.name != "transfer_to_number":
            raise ValueError(f"only transfer_to_number has `transfers:` (not '{self.name}')")
        unknown = sorted(set(self.required) - set(self.parameters))
        if unknown:
            raise ValueError(f"required names '{unknown[0]}', which is not one of its parameters")
        return self


class AgentSpec(_Strict):
    id: Id
    name: str
    language: Annotated[str, AfterValidator(known_language)] = "en"
    first_message: LocalText
    prompt: str
    elevenlabs_agent_id: str | None = None
    overrides: list[Literal["prompt", "first_message", "language"]] = Field(default_factory=list)
    context: str | None = None
    flow: Flow
    platform: PlatformSettings = Field(default_factory=PlatformSettings)
    tools: list[Tool] = Field(default_factory=list)

    def tool(self, name: str) -> Tool | None:
        return next((t for t in self.tools if t.name == name), None)


# --------------------------------------------------------------------------- experiments


class VariantOverrides(_Strict):
    """What a variant sends in `conversation_config_override` (any backend; the agent must allow
    the field, as on the platform)."""

    prompt: str | None = None
    first_message: str | None = None
    language: str | None = None
    voice_id: str | None = None


class Variant(_Strict):
    """One version of the agent under test in an experiment."""

    id: Id
    description: str = ""
    #: Local backend: another agent spec (a path, relative to the experiment file) served in the
    #: place of the personas' agent.
    agent_file: str | None = None
    #: Local backend: extra response time of the agent, in ms.
    latency_ms: float = Field(default=0.0, ge=0)
    overrides: VariantOverrides | None = None
    #: Hosted platform: another agent, or a branch of the agent.
    elevenlabs_agent_id: str | None = None
    branch_id: str | None = None
    #: Voice calls: every persona's caller voice under these conditions (replaces the persona's own).
    caller_audio: AudioCondition | None = None
    #: Mutation runs: what this mutant changed, and what kind of check would catch it.
    mutation: str | None = None
    catch_hint: str | None = None


class Experiment(_Strict):
    """An experiment file (experiments/*.yaml): variants of the agent, one run, compared."""

    id: Id
    description: str = ""
    #: Which personas: ids, all those that call `agent`, or (neither) all.
    personas: list[str] | None = None
    agent: str | None = None
    repeats: int = Field(default=5, ge=1, le=10_000)
    concurrency: int = Field(default=8, ge=1, le=1024)
    backend: Backend = "local"
    caller: CallerKind = "scripted"
    mode: Mode = "text"
    latency_ms: float = Field(default=0.0, ge=0)
    #: Paths relative to the experiment file; default: the bundled datasets.
    personas_path: str | None = None
    agents_path: str | None = None
    variants: list[Variant] = Field(min_length=2)

    @model_validator(mode="after")
    def _distinct_variants(self) -> Experiment:
        ids = [v.id for v in self.variants]
        twice = sorted({i for i in ids if ids.count(i) > 1})
        if twice:
            raise ValueError(f"variant id '{twice[0]}' is used twice: give every variant its own id")
        return self


# --------------------------------------------------------------------------- calls


class CallRequest(BaseModel):
    """Everything one call needs; built by the CLI, the batch runner or the console."""

    persona: Persona
    agent: AgentSpec
    backend: Backend = "local"
    caller: CallerKind = "scripted"
    mode: Mode = "text"
    max_duration_s: float = 60.0
    run_id: str | None = None
    call_id: str | None = None
    #: Voice calls write their stereo recording into this folder.
    audio_dir: str | None = None
    #: The experiment variant this call belongs to, the overrides it sends, its hosted branch.
    variant: str | None = None
    overrides: VariantOverrides | None = None
    branch_id: str | None = None


class TranscriptEntry(BaseModel):
    speaker: Speaker
    text: str
    timestamp: float  # seconds from call start
    #: For agent turns that answer a user turn: ms from that user turn to this one.
    latency_ms: float | None = None
    #: An agent turn cut off by the caller: what it meant to say (`text` is what was heard, from
    #: the platform's agent_response_correction).
    original_text: str | None = None
    #: An agent turn the caller cut off (barge-in): the platform corrected it to what was said.
    interrupted: bool = False
    #: Voice calls, a caller turn the persona spoke (synthetic voice, agent caller): what it said.
    #: `text` is then what the agent's speech recognition heard (its `user_transcript`; "" when
    #: it reported nothing for this turn before the call ended). None in text calls and for a
    #: person at a microphone (only what the agent heard is known).
    said: str | None = None


class BargeIn(BaseModel):
    """One timed barge-in of a voice call (`caller.interrupt`) and how the agent took it."""

    agent_turn: int
    said: str
    backchannel: bool = False
    #: Seconds into the call the caller's speech began (its first loud frame went out).
    onset_s: float | None = None
    #: ms from that onset to the platform's `interruption` event (None: none came).
    interruption_ms: float | None = None
    #: ms from that onset to the agent's audio stopping at the caller (cut, or its turn ended).
    audio_stop_ms: float | None = None
    #: The agent stopped for it (an `interruption` event came).
    stopped: bool = False
    #: The interrupted agent turn was corrected in the transcript to what was really said.
    corrected: bool = False
    #: The agent's next turn came after the caller's words and was not its cut-off turn again.
    answered: bool = False


class ToolCallRecord(BaseModel):
    """One tool call the agent made in a call, as the calling side saw it (client tools: their
    handler; webhook and system tools: the `agent_tool_request` / `agent_tool_response` events,
    their arguments and results from the conversation's history when it was fetched)."""

    tool: str
    type: str = "client"
    #: The platform's id of the call (client_tool_call.tool_call_id / the history's request_id).
    id: str | None = None
    args: dict[str, Any] = Field(default_factory=dict)
    result: Any = None
    is_error: bool = False
    #: Seconds into the call when the agent asked for it, and how long the answer took.
    at: float = 0.0
    latency_ms: float | None = None
    #: How many transcript entries came before it (the turn it follows); None: only its time is known.
    turn: int | None = None


class Check(BaseModel):
    name: str
    passed: bool
    detail: str


class Metrics(BaseModel):
    turns: int = 0
    agent_turns: int = 0
    user_turns: int = 0
    response_latency_ms: list[float] = Field(default_factory=list)
    interruptions: int = 0
    #: Voice calls: seconds the caller spoke / seconds of agent audio received.
    talk_ratio: float | None = None
    #: Voice calls: word error rate of what the agent heard against what the persona said.
    wer: float | None = None
    #: Voice calls, per agent turn: end of the caller's speech -> the first agent audio chunk
    #: arriving, and -> the first chunk with speech in it (time to first audio).
    first_audio_ms: list[float] = Field(default_factory=list)
    first_speech_ms: list[float] = Field(default_factory=list)
    #: Voice calls: the caller's audio condition ('clean' when none) and the frames it dropped.
    condition: str | None = None
    frames_lost: int = 0
    #: Voice calls with `caller.interrupt`: each timed barge-in and the agent's reaction.
    barge_ins: list[BargeIn] = Field(default_factory=list)


class PlatformConversation(BaseModel):
    """`analysis` of a call on the hosted platform: GET /v1/convai/conversations/{id} after the call."""

    source: Literal["platform"] = "platform"
    status: str | None = None
    call_successful: str | None = None
    transcript_summary: str | None = None
    evaluation_criteria_results: dict[str, dict[str, Any]] = Field(default_factory=dict)
    data_collection_results: dict[str, dict[str, Any]] = Field(default_factory=dict)
    call_duration_secs: float | None = None
    cost: float | None = None
    termination_reason: str | None = None
    transcript: list[dict[str, Any]] = Field(default_factory=list)
    #: The tool calls in the platform's history (tool, type, args, result, is_error), and where
    #: they differ from what voicelab saw during the call (empty: they agree).
    tool_calls: list[dict[str, Any]] = Field(default_factory=list)
    tool_calls_differ: list[str] = Field(default_factory=list)
    #: Set when the platform's record could not be fetched; the fields above are then empty.
    error: str | None = None


class PlatformToolTest(BaseModel):
    """One agent-testing tool-call test made from a simulated conversation: does the agent's next
    turn after the first `history_turns` items call (or not call) `tool`?"""

    tool: str
    expect: Literal["called", "not_called"]
    history_turns: int
    #: passed | failed (the platform's verdict) | error | cancelled | not_run (and why, below)
    status: str
    rationale: str | None = None
    test_id: str | None = None
    test_run_id: str | None = None


class PlatformTestRun(BaseModel):
    """`analysis` of a call the platform's simulated user played (agent-testing)."""

    source: Literal["platform-test"] = "platform-test"
    test_run_id: str | None = None
    test_id: str | None = None
    status: str | None = None
    call_successful: str | None = None
    rationale: str | None = None
    transcript: list[dict[str, Any]] = Field(default_factory=list)
    #: The tool-call tests run on the simulated conversation (persona's agent_calls / never_calls).
    tool_tests: list[PlatformToolTest] = Field(default_factory=list)

    def verdict(self) -> tuple[str | None, str | None]:
        """The simulation's verdict, turned to failure by any failed tool-call test (named)."""
        failed = [t for t in self.tool_tests if t.status == "failed"]
        if not failed:
            return self.call_successful, self.rationale
        named = "; ".join(f"{t.tool} {t.expect.replace('_', ' ')} after {t.history_turns} turns: {t.rationale}"
                          for t in failed)
        return "failure", f"{self.rationale or ''} Tool-call tests failed: {named}".strip()


#: The platform's own view of a call, one shape per `source`.
Analysis = Annotated[PlatformConversation | PlatformTestRun, Field(discriminator="source")]


class CallResult(BaseModel):
    """One finished call, as stored (one JSON line in runs/<run_id>/calls.jsonl)."""

    conversation_id: str | None
    status: Literal["completed", "failed"]
    duration_seconds: float
    transcript: list[TranscriptEntry]
    run_id: str | None = None
    call_id: str | None = None
    persona_id: str
    agent_id: str
    backend: Backend
    caller: CallerKind
    mode: Mode
    started_at: str
    end_reason: EndReason
    error: str | None = None
    metrics: Metrics = Field(default_factory=Metrics)
    checks: list[Check] = Field(default_factory=list)
    success: bool = False
    analysis: Analysis | None = None
    audio_path: str | None = None
    #: REST retries made for this call (429 / 5xx), so a flaky platform shows in the results.
    retries: list[dict] = Field(default_factory=list)
    #: Tool calls the agent made, in order.
    tool_calls: list[ToolCallRecord] = Field(default_factory=list)
    #: The experiment variant (None outside experiments).
    variant: str | None = None
    #: `caller: agent`: the caller agent's own conversation, and its transcript (its `agent` turns
    #: are the persona's words, its `user` turns what it heard of the agent under test).
    caller_conversation_id: str | None = None
    caller_transcript: list[TranscriptEntry] | None = None


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class RunSession(BaseModel):
    """One sitting of a run: its first start or a resume, and how it ended."""

    started_at: str = Field(default_factory=utc_now_iso)
    ended_at: str | None = None
    resumed: bool = False
    state: Literal["running", "finished", "interrupted"] = "running"
    #: What stopped an interrupted session: "Ctrl+C", "SIGTERM", "SIGHUP", or "error: ...".
    stopped_by: str | None = None
    calls_planned: int = 0
    calls_stored: int = 0


class RunManifest(BaseModel):
    """What a run was asked to do (runs/<run_id>/run.json), and the sessions that did it."""

    run_id: str
    personas: list[str]
    #: name, agent, style and language of each persona, so tables need no persona files.
    persona_info: dict[str, dict[str, str]] = Field(default_factory=dict)
    agent: str | None = None
    backend: Backend = "local"
    caller: CallerKind = "scripted"
    mode: Mode = "text"
    repeats: int = 1
    concurrency: int = 4
    max_duration_s: float = 60.0
    latency_ms: float = 0.0
    personas_path: str | None = None
    agents_path: str | None = None
    voicelab_version: str = ""
    sdk_version: str = ""
    started_at: str = Field(default_factory=utc_now_iso)
    ended_at: str | None = None
    state: Literal["running", "finished", "interrupted"] = "running"
    sessions: list[RunSession] = Field(default_factory=list)
    #: Experiments and mutation runs: the variants, each call placed once per variant
    #: (call ids `<variant>/<persona>#<repeat>`), interleaved; agent files resolved to paths.
    variants: list[Variant] = Field(default_factory=list)
    experiment: str | None = None
    kind: Literal["batch", "experiment", "mutation", "service"] = "batch"
    #: Each persona's pass_threshold (CI gates without the persona files).
    pass_thresholds: dict[str, float] = Field(default_factory=dict)


# --------------------------------------------------------------------------- a call while it runs


@dataclass(frozen=True)
class AgentSaid:
    """The agent finished a turn (`agent_response`) at `at` s into the call."""

    text: str
    at: float
    latency_ms: float | None = None


@dataclass(frozen=True)
class CallerHeard:
    """The backend transcribed a human caller's spoken turn (`user_transcript`)."""

    text: str
    at: float


@dataclass(frozen=True)
class Disconnected:
    """The connection ended; already mapped to how the call ended."""

    end_reason: EndReason
    error: str | None = None


@dataclass(frozen=True)
class HangUp:
    """The caller's side ends the call (the scripted caller said goodbye, a human pressed Stop)."""

    end_reason: EndReason = "caller_ended"
    error: str | None = None


@dataclass(frozen=True)
class CallerSaid:
    """An agent caller's turn (its conversation's `agent_response`), `at` s into the call."""

    text: str
    at: float


CallEvent = AgentSaid | CallerHeard | CallerSaid | Disconnected | HangUp


@dataclass(frozen=True)
class VoiceStats:
    """A voice call's audio figures, live while it runs and final once it ended."""

    interruptions: int = 0
    caller_speech_s: float = 0.0
    agent_audio_s: float = 0.0
    #: 20 ms ticks that came more than a frame late (the synthetic caller fell out of real time).
    late_frames: int = 0
    #: RMS of the caller's last 20 ms (a level meter for a microphone).
    input_level: float = 0.0
    wer: float | None = None
    audio_path: str | None = None
    #: Per agent turn: end of the caller's speech -> first agent audio chunk / first one with speech.
    first_audio_ms: list[float] = field(default_factory=list)
    first_speech_ms: list[float] = field(default_factory=list)
    #: 20 ms caller frames the audio condition dropped.
    frames_lost: int = 0
    barge_ins: list[BargeIn] = field(default_factory=list)

    @property
    def talk_ratio(self) -> float | None:
        return round(self.caller_speech_s / self.agent_audio_s, 3) if self.agent_audio_s else None
