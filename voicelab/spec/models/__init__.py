"""Every data model of voicelab (docs/formats.md is the contract these implement), one module per
concept; import them from here (`from voicelab.spec.models import Persona`), not from the modules.

- `base`: what several modules share: the strict base of input models (`_Strict`), ids (`Id`,
  `MAX_ID`, `ID_PATTERN`), languages (`LANGUAGES`, `known_language`), texts by language
  (`LocalText`, `pick_language`), `E164_PATTERN`, the call's `Backend` / `Mode` / `CallerKind`,
  and `utc_now_iso`, the format of every stored timestamp.
- `tools`: tools an agent can call and what a tool answers in a test (`Tool`, `ToolMock`,
  `ToolName`, `SYSTEM_TOOLS`, `TOOL_MOCKS_VARIABLE`); shared by agents (declare) and personas (mock).
- `persona`: a persona file: the caller (`CallerSpec`, `ReplyRule`, `Style`, `AudioCondition`,
  `NOISES`, `Interrupt`) and what the call must show (`Expectations`, `ExpectedCall`).
- `agent`: an agent spec: its flow for the local backend (`Flow`, `FlowStep`, `Intent`, `StepCall`,
  `Silence`, ...) and the platform settings the local backend emulates (`PlatformSettings`).
- `experiment`: an experiment file: `Experiment`, `Variant`, `VariantOverrides`.
- `result`: one finished call as stored (`CallResult`, `TranscriptEntry`, `Metrics`, `Check`,
  `ToolCallRecord`, `BargeIn`, the platform's `Analysis` shapes, `EndReason`).
- `run`: what a run and its calls are asked to do (`CallRequest`, `RunManifest`, `RunSession`).
  `CallRequest` is here, not with the results, because it carries the input models.
- `events`: a call while it runs: the driver's events (`AgentSaid`, ..., `CallEvent`) and `VoiceStats`.

Why the split: one 845-line module mixed the input files, the stored output and the live call;
by concept, each is read (and changed) alone, and the imports say what depends on what:
base < tools < persona < experiment, tools < agent, base < result < events, and run over the input
models. Input models (`Persona`, `AgentSpec`, `Experiment`) forbid unknown keys, because a typo in
a YAML file that silently does nothing is the worst kind of test bug. Output models (`CallResult`)
are plain JSON so that tables, charts and reports are pure functions of what is stored.
"""

from voicelab.spec.models.agent import (
    DEFAULT_CLIENT_EVENTS,
    AgentSpec,
    ClientEvent,
    EvaluationCriterion,
    Flow,
    FlowStep,
    Intent,
    OverrideField,
    PlatformSettings,
    ResultBranch,
    Silence,
    StepCall,
)
from voicelab.spec.models.base import (
    E164_PATTERN,
    ID_PATTERN,
    LANGUAGES,
    MAX_ID,
    Backend,
    CallerKind,
    Id,
    LocalText,
    Mode,
    known_language,
    pick_language,
    utc_now_iso,
)
from voicelab.spec.models.events import (
    AgentSaid,
    CallerHeard,
    CallerSaid,
    CallEvent,
    Disconnected,
    HangUp,
    VoiceStats,
)
from voicelab.spec.models.experiment import Experiment, Variant, VariantOverrides
from voicelab.spec.models.persona import (
    NOISES,
    STYLES,
    AudioCondition,
    CallerSpec,
    Expectations,
    ExpectedCall,
    ImportedFrom,
    Interrupt,
    Persona,
    PlatformVerdict,
    RecordedStep,
    Recording,
    ReplayTurn,
    ReplyRule,
    Style,
    TranscriptsAgree,
)
from voicelab.spec.models.result import (
    Analysis,
    BargeIn,
    CallResult,
    Check,
    EndReason,
    Metrics,
    PlatformConversation,
    PlatformTestRun,
    PlatformToolTest,
    Speaker,
    ToolCallRecord,
    TranscriptEntry,
)
from voicelab.spec.models.run import CallRequest, RunManifest, RunSession
from voicelab.spec.models.tools import (
    SYSTEM_TOOLS,
    TOOL_MOCKS_VARIABLE,
    TOOL_NAME,
    Tool,
    ToolMock,
    ToolName,
    ToolParameter,
    Transfer,
    Webhook,
)

__all__ = [
    # base
    "E164_PATTERN", "ID_PATTERN", "LANGUAGES", "MAX_ID", "Backend", "CallerKind", "Id", "LocalText", "Mode",
    "known_language", "pick_language", "utc_now_iso",
    # tools
    "SYSTEM_TOOLS", "TOOL_MOCKS_VARIABLE", "TOOL_NAME", "Tool", "ToolMock", "ToolName", "ToolParameter",
    "Transfer", "Webhook",
    # persona
    "NOISES", "STYLES", "AudioCondition", "CallerSpec", "Expectations", "ExpectedCall", "ImportedFrom", "Interrupt",
    "Persona", "PlatformVerdict", "RecordedStep", "Recording", "ReplayTurn", "ReplyRule", "Style",
    "TranscriptsAgree",
    # agent
    "DEFAULT_CLIENT_EVENTS", "AgentSpec", "ClientEvent", "EvaluationCriterion", "Flow", "FlowStep", "Intent",
    "OverrideField",
    "PlatformSettings", "ResultBranch", "Silence", "StepCall",
    # experiment
    "Experiment", "Variant", "VariantOverrides",
    # result
    "Analysis", "BargeIn", "CallResult", "Check", "EndReason", "Metrics", "PlatformConversation",
    "PlatformTestRun", "PlatformToolTest", "Speaker", "ToolCallRecord", "TranscriptEntry",
    # run
    "CallRequest", "RunManifest", "RunSession",
    # events
    "AgentSaid", "CallEvent", "CallerHeard", "CallerSaid", "Disconnected", "HangUp", "VoiceStats",
]
