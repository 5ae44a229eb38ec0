"""Virtual time: one event queue for the whole simulated world, and each node's own clocks.

The :class:`Scheduler` holds every pending action in a heap keyed by ``(time, seq)``: ``seq`` is
a counter, so actions due at the same instant run in the order they were scheduled and a run
is reproducible from its seed. Time jumps from one event to the next; nothing ever sleeps.

"True" time is the simulator's time. A :class:`NodeClock` maps it to what one node reads: a
monotonic clock (what the sync engine gets as ``now``) that may run fast or slow and may jump
forward, and a wall clock (for the hybrid logical clocks of the game layer) that may also be
stepped backwards.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from typing import Any

Action = Callable[..., object]
PROGRESS_EVERY = 4096  # events between two progress callbacks


class Scheduler:
    """The virtual clock and its event queue."""

    def __init__(self) -> None:
        self.now = 0.0
        self.events_run = 0
        self._queue: list[tuple[float, int, Action, tuple[Any, ...]]] = []
        self._seq = 0

    def at(self, time: float, action: Action, *args: Any) -> None:
        """Run ``action(*args)`` at virtual ``time`` (never in the past)."""
        self._seq += 1
        heapq.heappush(self._queue, (max(time, self.now), self._seq, action, args))

    def after(self, delay: float, action: Action, *args: Any) -> None:
        self.at(self.now + delay, action, *args)

    def run_until(self, end: float, progress: Callable[[float], None] | None = None) -> None:
        """Run every action due up to ``end`` in (time, seq) order; the clock then reads ``end``."""
        queue = self._queue
        while queue and queue[0][0] <= end:
            time, _, action, args = heapq.heappop(queue)
            self.now = time
            action(*args)
            self.events_run += 1
            if progress is not None and self.events_run % PROGRESS_EVERY == 0:
                progress(time)
        self.now = end


class NodeClock:
    """One node's clocks as functions of true time.

    ``monotonic(t) = base_local + (t - base_true) * rate``; changing the rate re-bases it so the
    reading stays continuous. A forward jump (a paused VM, a suspended host) moves both clocks; a
    backward jump can only happen to the wall clock, because a monotonic clock never goes back.
    """

    def __init__(self, offset_s: float = 0.0, rate: float = 1.0) -> None:
        self.rate = rate
        self._base_true = 0.0
        self._base_local = offset_s
        self._wall_offset = 0.0

    def monotonic(self, true_time: float) -> float:
        return self._base_local + (true_time - self._base_true) * self.rate

    def wall(self, true_time: float) -> float:
        return self.monotonic(true_time) + self._wall_offset

    def true_time(self, local: float) -> float:
        """The earliest true time at which the monotonic clock reads at least ``local``."""
        time = self._base_true + (local - self._base_local) / self.rate
        # Float rounding may land a hair early; an engine woken before its deadline does
        # nothing and asks for the same deadline again, so never return a time that reads less.
        while self.monotonic(time) < local:
            time = math.nextafter(time, math.inf)
        return time

    def set_rate(self, true_time: float, rate: float) -> None:
        self._base_local = self.monotonic(true_time)
        self._base_true = true_time
        self.rate = rate

    def jump(self, seconds: float) -> None:
        if seconds >= 0:
            self._base_local += seconds
        else:
            self._wall_offset += seconds
