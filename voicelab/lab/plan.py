"""Planning: which calls a run asks for, each as a CallRequest; an experiment's variants as the
agents the local backend serves and the requests sent to them. Pure functions of the run's
manifest and the dataset, so a resumed run plans exactly the calls it still owes.
"""

from __future__ import annotations

from pathlib import Path

from voicelab.lab.store import Run
from voicelab.spec.datasets import Dataset, load_agent_file
from voicelab.spec.models import AgentSpec, CallRequest, Persona, PlatformSettings, Variant


def served_id(agent_id: str, variant_id: str) -> str:
    """The id a variant's copy of an agent is served under on the local backend."""
    return f"{agent_id}--{variant_id}"


def variant_agent(agent: AgentSpec, variant: Variant) -> AgentSpec:
    """The version of `agent` a variant's calls reach (served under `served_id` locally): the
    variant's agent file where it specs this agent (same id), else the agent itself."""
    spec = agent
    if variant.agent_file:
        other = load_agent_file(Path(variant.agent_file))
        spec = other if other.id == agent.id else agent
    update: dict = {"id": served_id(agent.id, variant.id)}
    if variant.latency_ms:
        update["platform"] = PlatformSettings.model_validate(
            {**spec.platform.model_dump(), "latency_ms": spec.platform.latency_ms + variant.latency_ms})
    if variant.elevenlabs_agent_id:
        update["elevenlabs_agent_id"] = variant.elevenlabs_agent_id
    return spec.model_copy(update=update)


def with_variants(dataset: Dataset, variants: list[Variant]) -> Dataset:
    """The dataset plus every variant's copy of every agent its personas call (what the local
    backend serves for an experiment)."""
    used = {p.agent for p in dataset.personas.values()}
    extra = {served_id(a, v.id): variant_agent(dataset.agents[a], v) for v in variants for a in used}
    return Dataset(personas=dataset.personas, agents={**dataset.agents, **extra},
                   persona_files=dataset.persona_files)


def apply_variant(request: CallRequest, variant: Variant, dataset: Dataset) -> CallRequest:
    """A call of the plan, sent to the variant's version of its agent."""
    agent = dataset.agents[served_id(request.agent.id, variant.id)]
    persona = request.persona
    if variant.caller_audio is not None:
        persona = persona.model_copy(update={"caller": persona.caller.model_copy(
            update={"audio": variant.caller_audio})})
    return request.model_copy(update={"agent": agent, "persona": persona, "variant": variant.id,
                                      "overrides": variant.overrides, "branch_id": variant.branch_id})


def persona_info(persona: Persona, agent: AgentSpec | None = None) -> dict[str, str]:
    """What tables show of a persona (stored in the manifest, so reports need no persona files);
    `tools`: the agent's tools, so a report can say which were never called."""
    return {"name": persona.name, "agent": persona.agent, "style": persona.caller.style,
            "language": persona.language, "tools": ", ".join(t.name for t in agent.tools) if agent else ""}


def call_id(persona_id: str, repeat: int, variant: str | None = None) -> str:
    return f"{variant}/{persona_id}#{repeat}" if variant else f"{persona_id}#{repeat}"


def plan_calls(run: Run, dataset: Dataset) -> list[CallRequest]:
    """Every call the run asks for that has no result yet, in a stable order: repeat by repeat,
    persona by persona, and (experiments) variant by variant innermost, so the variants' calls
    are interleaved and whatever drifts during the run hits each alike."""
    m = run.manifest
    done = run.finished_call_ids()
    plan = []
    for repeat in range(1, m.repeats + 1):
        for persona_id in m.personas:
            for variant in m.variants or [None]:
                cid = call_id(persona_id, repeat, variant.id if variant else None)
                if cid in done:
                    continue
                request = dataset.request(persona_id, backend=m.backend, caller=m.caller, mode=m.mode,
                                          run_id=m.run_id, call_id=cid, max_duration_s=m.max_duration_s,
                                          audio_dir=str(run.path / "audio") if m.mode == "voice" else None)
                plan.append(apply_variant(request, variant, dataset) if variant else request)
    return plan
