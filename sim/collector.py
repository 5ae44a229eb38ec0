"""Fewer garbage collections while simulator runs go on (``meridian sim run``, the mutation
suite's worker, and the whole test run: tests/conftest.py).

A run allocates mostly short-lived objects that reference counting frees, so the collector's
default (a collection of the youngest generation every 700 net allocations) mostly walks live
objects for nothing, and every full collection walks the whole loaded code as well. Inside
:func:`fewer_collections` what is loaded by then is frozen out of collections (worker processes
forked inside inherit that), and the youngest generation is collected every
``GC_YOUNG_THRESHOLD`` allocations: about 3 % fewer instructions per run (docs/simulator.md,
*Speed*). A run's history does not depend on when the collector runs: the same seed gives the
same bytes either way.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

GC_YOUNG_THRESHOLD = 10_000  # allocations between collections of the youngest generation
GC_OLDER_EVERY = 20  # collections of one generation between two of the next


@contextmanager
def fewer_collections() -> Iterator[None]:
    """The settings above for the ``with`` block; the previous ones afterwards."""
    threshold = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, GC_OLDER_EVERY, GC_OLDER_EVERY)
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()
