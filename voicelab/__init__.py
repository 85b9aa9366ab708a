"""voicelab: test ElevenLabs voice agents with personas, from notebooks and batches.

The names below are the public API; heavier parts (pandas, matplotlib, papermill) load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from voicelab.spec.version import __version__

_EXPORTS = {
    "Call": "harness.call", "CallRequest": "spec.models", "CallResult": "spec.models", "Persona": "spec.models",
    "AgentSpec": "spec.models", "load_dataset": "spec.datasets", "LocalBackend": "local", "Fault": "local",
    "run_batch": "lab.batch", "resume_batch": "lab.batch", "load_runs": "lab.tables", "build_report": "report.build",
    "RunStore": "lab.store", "VoiceLabError": "spec.errors", "Dataset": "spec.datasets",
    "run_experiment": "lab.experiment", "ConsoleSession": "surfaces.console",
}
__all__ = [
    "AgentSpec", "Call", "CallRequest", "CallResult", "ConsoleSession", "Dataset", "Fault", "LocalBackend", "Persona",
    "RunStore", "VoiceLabError", "__version__", "build_report", "load_dataset", "load_runs", "resume_batch",
    "run_batch", "run_experiment",
]

if TYPE_CHECKING:  # pragma: no cover
    from voicelab.harness.call import Call
    from voicelab.lab.batch import resume_batch, run_batch
    from voicelab.lab.experiment import run_experiment
    from voicelab.lab.store import RunStore
    from voicelab.lab.tables import load_runs
    from voicelab.local import Fault, LocalBackend
    from voicelab.report.build import build_report
    from voicelab.spec.datasets import Dataset, load_dataset
    from voicelab.spec.errors import VoiceLabError
    from voicelab.spec.models import AgentSpec, CallRequest, CallResult, Persona
    from voicelab.surfaces.console import ConsoleSession


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        from importlib import import_module

        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'voicelab' has no attribute {name!r}")
