"""An agent spec: the agent under test, its dialogue flow for the local backend, its emulated
platform settings and its tools (agents/*.yaml). Input models, strict.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from voicelab.spec.models.base import Id, LocalText, _Strict, known_language
from voicelab.spec.models.tools import Tool, ToolName


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
                      "user_transcript", "interruption", "agent_tool_request", "agent_tool_response",
                      # voice mode only: the caller's words as heard so far, the caller's voice activity
                      "tentative_user_transcript", "vad_score"]
#: The platform's default client events: the contract's default list (agent.asyncapi.yaml,
#: ConversationConfigOverride.client_events) with the corrections and tool responses the SDKs
#: read; agent_chat_response_part, agent_tool_request and vad_score are opt-in there too.
DEFAULT_CLIENT_EVENTS: list[ClientEvent] = ["audio", "agent_response", "agent_response_correction",
                                            "user_transcript", "tentative_user_transcript", "interruption",
                                            "agent_tool_response"]


class EvaluationCriterion(_Strict):
    """A success evaluation criterion (`platform_settings.evaluation.criteria` on the platform):
    after each conversation the platform asks a model whether `conversation_goal_prompt` was met;
    the local backend judges it with the check registry's condition grammar (e.g. `The agent
    calls the tool end_call.`) and answers `unknown` for a sentence outside it."""

    id: Annotated[str, Field(min_length=1, max_length=200)]
    conversation_goal_prompt: Annotated[str, Field(min_length=1)]


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
    #: The platform's `conversation_config.asr.keywords`: words and phrases the speech recognition
    #: is biased toward (names, product and domain terms). The local backend's voice mode biases
    #: pocketsphinx toward them, beside the flow's own vocabulary (voicelab/local/vocabulary.py).
    asr_keywords: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(default_factory=list,
                                                                                   max_length=1000)
    #: Judged on every finished conversation: GET conversation's `analysis.evaluation_criteria_results`.
    evaluation_criteria: list[EvaluationCriterion] = Field(default_factory=list, max_length=100)


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
