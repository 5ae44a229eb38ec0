"""How a node process runs Python's cyclic garbage collector.

With the default thresholds (a young collection every 700 net allocations) a node logging in
players spent about a fifth of its event loop in the collector (py-spy, ``gc_collect_main``):
every login allocates hundreds of objects (aiohttp's request, response and websocket objects,
the session records), nearly all of which live as long as the connection, and each young
collection walks them again. A larger first threshold makes young collections 70 times rarer
for the same work per object; the heap's cyclic garbage (closed connections) is still found by
the older generations' collections. What the node holds once started (its documents, the
accounts index) is frozen out of the collector's walks altogether.
"""

from __future__ import annotations

import gc

# (young, middle, old): collections of a generation per collection of the one below, as in
# `gc.set_threshold`; the default is (700, 10, 10).
GC_THRESHOLDS = (50_000, 10, 10)


def tune_gc() -> None:
    """Call once the node has started: freeze what it holds, then raise the thresholds and
    switch the collector on (``meridian node`` starts with it off)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    gc.enable()
