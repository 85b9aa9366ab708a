"""Where calls go: the one helper that starts (and always stops) the embedded local backend, or
says that calls go to the hosted platform. The CLI, batches and the console all use it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from voicelab.spec.datasets import Dataset


@contextlib.contextmanager
def backend_url(backend: str, dataset: Dataset, *, latency_ms: float = 0.0,
                local_url: str | None = None) -> Iterator[str | None]:
    """The base URL calls go to: None for the hosted platform (its URL comes from the settings),
    `local_url` for an already running `voicelab serve`, or a local backend started here for the
    duration of the block, serving the dataset's agents and answering simulations as its personas."""
    if backend != "local":
        yield None
        return
    if local_url:
        yield local_url
        return
    from voicelab.local import LocalBackend

    with LocalBackend(dataset.agents, latency_s=latency_ms / 1000, personas=dataset.personas) as local:
        yield local.base_url
