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

#: Once settled, a full collection waits for this many collections of the middle generation
#: (CPython's default is 10). A full collection scans the calls in flight: 256 of them hold
#: ~50,000 objects, a 70-150 ms pause that every turn in flight waits out (benchmarks/scale.py:
#: three in a 1,000-call run took p95 from +8 to +35 ms, in the client and again in the backend).
#: Young garbage (the SDK makes a class per message) is still collected as usual; what a finished
#: call leaves in cycles (~150 objects: its conversation, executor, tasks) waits for the next full
#: collection, about every 1,500 calls, so memory stays bounded.
FULL_COLLECTION_EVERY = 100


def settle() -> None:
    """Collect what is garbage now, freeze the rest, and make full collections rare (for a process
    that places or serves calls from now on)."""
    gc.collect()
    gc.freeze()
    first, second, third = gc.get_threshold()
    gc.set_threshold(first, second, max(third, FULL_COLLECTION_EVERY))


@contextlib.contextmanager
def frozen() -> Iterator[None]:
    """`settle()` for the duration of a run, undone when it ends."""
    threshold = gc.get_threshold()
    settle()
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()
