"""Experiments: variants of the agent under test placed in one run, interleaved, then compared.

A variant is a version of the agent: on the local backend a served copy of the personas' agent
(`<agent>--<variant>`: another spec file, an extra response time), on any backend the
variant's overrides, on the hosted platform another agent id or a branch. The run is an ordinary
run (one store, resume, report) whose manifest lists the variants; its call ids are
`<variant>/<persona>#<repeat>`, planned repeat by repeat and persona by persona with the variants
innermost, so drift of the machine or the platform hits every variant alike.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from voicelab.harness.runners import RUNNERS
from voicelab.spec.datasets import Dataset, _build, _read_yaml, load_agent_file, load_dataset
from voicelab.spec.errors import DatasetError, UsageError
from voicelab.spec.models import NOISES, Experiment

DEFAULT_PERSONAS, DEFAULT_AGENTS = "datasets/personas", "datasets/agents"


def load_experiment(path: str | Path) -> Experiment:
    """An experiment file, validated; agent files resolved against the file's folder and checked."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError("experiment file not found", file=str(path),
                           fix="pass a YAML file such as experiments/chargeback-reason.yaml")
    raw = _read_yaml(path)
    if not isinstance(raw, dict):
        raise DatasetError("an experiment file must be a YAML mapping (id, variants, ...)", file=str(path))
    experiment = _build(Experiment, raw, file=path)
    if experiment.caller not in RUNNERS:
        raise DatasetError(f"unknown caller {experiment.caller!r}", file=str(path), field="caller",
                           fix=f"use one of {', '.join(RUNNERS)}")
    base = path.parent
    variants = []
    for i, variant in enumerate(experiment.variants):
        if variant.agent_file is not None:
            agent_file = (base / variant.agent_file).resolve()
            if not agent_file.is_file():
                raise DatasetError(f"agent file {variant.agent_file} not found (relative to the experiment file)",
                                   file=str(path), field=f"variants[{i}].agent_file")
            load_agent_file(agent_file)  # a broken spec is named now, not as failed calls later
            variant = variant.model_copy(update={"agent_file": str(agent_file)})
        audio = variant.caller_audio
        if audio is not None and audio.noise is not None and audio.noise not in NOISES:
            wav = (base / audio.noise).resolve()
            if not wav.is_file():
                raise DatasetError(f"noise file {audio.noise} not found (relative to the experiment file)",
                                   file=str(path), field=f"variants[{i}].caller_audio.noise",
                                   fix=f"use one of {', '.join(NOISES)}, or the path of a WAV file")
            variant = variant.model_copy(update={"caller_audio": audio.model_copy(update={"noise": str(wav)})})
        if experiment.backend == "local" and (variant.elevenlabs_agent_id or variant.branch_id):
            raise DatasetError("elevenlabs_agent_id and branch_id choose hosted agents: use them with "
                               "backend: elevenlabs (on the local backend use agent_file)", file=str(path),
                               field=f"variants[{i}]")
        if experiment.backend != "local" and (variant.agent_file or variant.latency_ms):
            raise DatasetError("agent_file and latency_ms change the local backend's agent: on the hosted "
                               "platform use elevenlabs_agent_id, branch_id or overrides", file=str(path),
                               field=f"variants[{i}]")
        variants.append(variant)
    updates: dict = {"variants": variants}
    for name in ("personas_path", "agents_path"):
        value = getattr(experiment, name)
        if value is not None:
            updates[name] = str((base / value).resolve())
    return experiment.model_copy(update=updates)


def choose_personas(experiment: Experiment, dataset: Dataset) -> list[str]:
    if experiment.personas:
        for persona_id in experiment.personas:
            dataset.persona(persona_id)  # DatasetError naming the unknown id
        return list(experiment.personas)
    chosen = [p.id for p in dataset.personas.values() if experiment.agent is None or p.agent == experiment.agent]
    if not chosen:
        raise UsageError(f"no personas call agent '{experiment.agent}' (agents: {', '.join(dataset.agents)})")
    return chosen


def run_experiment(path: str | Path, *, progress: bool = True, cancel_event: threading.Event | None = None,
                   local_url: str | None = None, cluster: str | None = None, **options: Any):  # noqa: ANN201
    """Run every variant of the experiment in one run (a BatchOutcome); `options`: those of
    `new_experiment`; `cluster`: on a Dask cluster (as `batch.run_batch`)."""
    from voicelab.lab.batch import on_cluster, place_run

    if local_url:
        raise UsageError("an experiment serves its variants' agents itself: drop --local-url")
    with on_cluster(cluster) as on:  # reached (or refused) before the run exists
        run, dataset = new_experiment(path, **options)
        return place_run(run, dataset, progress=progress, cancel_event=cancel_event, placement=on)


def new_experiment(path: str | Path, *, run_id: str | None = None, runs_root: str = "runs",
                   repeats: int | None = None, concurrency: int | None = None):  # noqa: ANN201
    """Check the experiment and create its run, nothing placed yet (a (Run, Dataset));
    `repeats` and `concurrency` override the file's."""
    from voicelab.lab.batch import new_run

    experiment = load_experiment(path)
    personas = experiment.personas_path or DEFAULT_PERSONAS
    agents = experiment.agents_path or DEFAULT_AGENTS
    dataset = load_dataset(personas, agents)
    chosen = choose_personas(experiment, dataset)
    called = {dataset.personas[p].agent for p in chosen}
    for i, variant in enumerate(experiment.variants):
        if variant.agent_file and (spec := load_agent_file(Path(variant.agent_file))).id not in called:
            raise DatasetError(f"the agent file specs agent '{spec.id}', which none of the experiment's personas "
                               f"call ({', '.join(sorted(called))}): give it the id of the agent it replaces",
                               file=str(path), field=f"variants[{i}].agent_file")
    run = new_run(dataset, chosen, personas_path=personas, agents_path=agents, kind="experiment",
                  variants=experiment.variants, experiment=str(path), agent=experiment.agent,
                  repeats=repeats or experiment.repeats, concurrency=concurrency or experiment.concurrency,
                  backend=experiment.backend, caller=experiment.caller, mode=experiment.mode,
                  latency_ms=experiment.latency_ms, run_id=run_id or f"{experiment.id}-{_stamp()}",
                  unique_id=run_id is None, runs_root=runs_root)
    return run, dataset


def _stamp() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S")


def resume_or_run(path: str | Path, *, run_id: str | None = None, runs_root: str = "runs",
                  repeats: int | None = None, concurrency: int | None = None, progress: bool = True):  # noqa: ANN201
    """The notebook's entry: continue `run_id` when it is stored already (an interrupted run),
    else start the experiment under that id."""
    from voicelab.lab.batch import resume_batch

    if run_id and (Path(runs_root) / run_id / "run.json").exists():
        return resume_batch(run_id, runs_root=runs_root, progress=progress)
    return run_experiment(path, run_id=run_id, runs_root=runs_root, repeats=repeats, concurrency=concurrency,
                          progress=progress)
