"""How a node process manages its memory: Python's cyclic garbage collector, and the C heap.

With the default thresholds (a young collection every 700 net allocations) a node logging in
players spent about a fifth of its event loop in the collector (py-spy, ``gc_collect_main``):
every login allocates hundreds of objects (aiohttp's request, response and websocket objects,
the session records), nearly all of which live as long as the connection, and each young
collection walks them again. A larger first threshold makes young collections 70 times rarer
for the same work per object; the heap's cyclic garbage (closed connections) is still found by
the older generations' collections. What the node holds once started (its documents, the
accounts index) is frozen out of the collector's walks altogether.

The C heap (glibc's malloc: aiohttp's buffers, pycrdt's documents, the store's rows) keeps what
is freed for reuse instead of handing it back to the system. After 10,000 logins a node held
about 13 MB that way (1.35 KB per connected player, measured by calling ``malloc_trim`` from
outside): the process looked larger than what it held. `HeapTrimmer` hands it back every
`HEAP_TRIM_S` when more than `HEAP_TRIM_MIN_FREE_BYTES` lie free, on a worker thread (ctypes
releases the GIL, so the event loop runs on; a trim of a heap of a few hundred MB takes 10-30 ms).
Without glibc (musl, macOS) it does nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import logging
import os

log = logging.getLogger("meridian.node")

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


HEAP_TRIM_S = 10.0  # how often the node looks at its C heap's free memory
HEAP_TRIM_MIN_FREE_BYTES = 4 * 2**20  # less than this free is not worth a trim


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            *("arena", "ordblks", "smblks", "hblks", "hblkhd"),
            *("usmblks", "fsmblks", "uordblks", "fordblks", "keepcost"),
        )
    ]


class HeapTrimmer:
    """Hands the C heap's free memory back to the system (see module docstring)."""

    def __init__(self) -> None:
        self._libc: ctypes.CDLL | None = None
        name = ctypes.util.find_library("c")
        try:
            libc = ctypes.CDLL(name) if name else None
            if libc is not None and hasattr(libc, "malloc_trim") and hasattr(libc, "mallinfo2"):
                libc.mallinfo2.restype = _MallInfo2
                self._libc = libc
        except OSError:
            pass
        self.trims = 0
        self.bytes_trimmed = 0

    @property
    def works(self) -> bool:
        return self._libc is not None

    def free_bytes(self) -> int:
        """Bytes free inside the heap (0 without glibc)."""
        return int(self._libc.mallinfo2().fordblks) if self._libc is not None else 0

    def trim_if_worth(self, min_free: int = HEAP_TRIM_MIN_FREE_BYTES) -> int:
        """Trim if at least `min_free` bytes lie free; returns the resident bytes handed back
        (a trim returns the free pages inside the heap's holes, which stay free chunks)."""
        if self._libc is None or self.free_bytes() < min_free:
            return 0
        before = _resident_bytes()
        self._libc.malloc_trim(0)
        trimmed = max(0, before - _resident_bytes())
        self.trims += 1
        self.bytes_trimmed += trimmed
        return trimmed

    async def run(self, interval_s: float = HEAP_TRIM_S) -> None:
        """Every `interval_s`, a trim on a worker thread if it is worth one (until cancelled)."""
        while self.works:
            await asyncio.sleep(interval_s)
            trimmed = await asyncio.to_thread(self.trim_if_worth)
            if trimmed:
                log.debug("heap trimmed: %.1f MB handed back", trimmed / 2**20)


def _resident_bytes() -> int:
    """This process's resident set (Linux; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0
