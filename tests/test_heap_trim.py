"""node.gc_tuning.HeapTrimmer: the C heap's free pages go back to the system."""

from __future__ import annotations

import asyncio

import pytest

from meridian.node.gc_tuning import HeapTrimmer

pytestmark = pytest.mark.skipif(not HeapTrimmer().works, reason="needs glibc's malloc_trim")


def test_memory_freed_in_holes_of_the_heap_is_handed_back() -> None:
    trimmer = HeapTrimmer()
    # Blocks below glibc's mmap threshold, every fourth kept: the rest leaves holes that free()
    # does not return (only a free top of the heap is returned on its own).
    blocks = [bytearray(4000) for _ in range(20_000)]
    kept = blocks[::4]
    del blocks
    assert trimmer.free_bytes() >= 40 * 2**20
    assert trimmer.trim_if_worth(min_free=40 * 2**20) >= 20 * 2**20
    assert trimmer.trims == 1 and len(kept) == 5_000


def test_a_heap_with_little_free_is_left_alone() -> None:
    trimmer = HeapTrimmer()
    assert trimmer.trim_if_worth(min_free=2**40) == 0 and trimmer.trims == 0


def test_the_periodic_trim_runs_on_a_worker_thread_until_cancelled() -> None:
    async def scenario() -> int:
        trimmer = HeapTrimmer()
        task = asyncio.create_task(trimmer.run(interval_s=0.01))
        blocks = [bytearray(4000) for _ in range(20_000)][::4]
        await asyncio.sleep(0.3)
        task.cancel()
        assert blocks
        return trimmer.trims

    assert asyncio.run(scenario()) >= 1  # and the cancel ended it (asyncio.run returned)
