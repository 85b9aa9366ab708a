"""What a run and each of its calls is asked to do: the request one call is placed from, and the
run's manifest (runs/<run_id>/run.json) with its sessions. Apart from the results, because a
request carries the input models (persona, agent, variant) and a result must not need them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from voicelab.spec.models.agent import AgentSpec
from voicelab.spec.models.base import Backend, CallerKind, Mode, utc_now_iso
from voicelab.spec.models.experiment import Variant, VariantOverrides
from voicelab.spec.models.persona import Persona


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
    #: Gather the accounts `expect.transcripts_agree` compares (the stored conversation; in voice
    #: calls the recognition of the recorded agent audio) even when the persona does not ask for
    #: the check: recognition costs CPU, so it is off unless asked for.
    compare_transcripts: bool = False


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
    #: `--cluster`: the Dask cluster this session placed its calls on, as given (`local:N` or the
    #: scheduler's address); None when the run's own process placed them. Per session, because a
    #: resume may use another cluster, or none.
    cluster: str | None = None


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
