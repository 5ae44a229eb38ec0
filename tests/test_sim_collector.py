"""`sim.collector.fewer_collections`: its collector settings hold only inside the block."""

from __future__ import annotations

import gc

import pytest

from meridian.sim.collector import GC_YOUNG_THRESHOLD, fewer_collections


def test_the_collector_is_as_before_after_the_block_even_when_it_raises() -> None:
    before = gc.get_threshold()
    frozen = gc.get_freeze_count()
    with pytest.raises(RuntimeError), fewer_collections():
        assert gc.get_threshold()[0] == GC_YOUNG_THRESHOLD
        assert gc.get_freeze_count() > frozen
        raise RuntimeError("a run failed")
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
