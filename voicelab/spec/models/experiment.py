"""An experiment file (experiments/*.yaml): variants of the agent under test, compared in one
run. Input models, strict. It names its personas and agents by id or path; of their models it
needs only a variant's caller audio (a persona's `AudioCondition`).
"""

from __future__ import annotations

from pydantic import Field, model_validator

from voicelab.spec.models.base import Backend, CallerKind, Id, Mode, _Strict
from voicelab.spec.models.persona import AudioCondition


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
