"""Keep Python's cyclic garbage collector from stalling calls in flight.

A full collection scans every tracked object while the event loop stands still. What a voicelab
process holds for good (the imported SDKs, aiohttp, pydantic models, the dataset) is ~120,000
objects: 55 ms per full collection on the project's box, several times per batch, and every call
on the loop (and every turn the backend is timing) waits for it. Measured in
benchmarks/backend_load.py: a 137 ms pause in a 1,000-call run, most of the p95 excess.
`gc.freeze` moves what is alive now out of the collector's sight; it is still freed by reference
counting, and `frozen` puts it back afterwards so a notebook's kernel does not keep it forever.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


def settle() -> None:
    """Collect what is garbage now, then freeze the rest (for a process that serves until it stops)."""
    gc.collect()
    gc.freeze()


@contextlib.contextmanager
def frozen() -> Iterator[None]:
    """`settle()` for the duration of a run, undone when it ends."""
    settle()
    try:
        yield
    finally:
        gc.unfreeze()
