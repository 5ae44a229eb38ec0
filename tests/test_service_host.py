"""ServiceHost, in memory: when the game service is processed (its own deadlines armed in time)."""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import cast

from meridian.node.service import GameService
from meridian.node.service_host import ServiceHost


class VirtualTimers:
    """Timers on a virtual clock: `run_until` fires what is due, in order."""

    def __init__(self) -> None:
        self.now = 0.0
        self._due: list[tuple[float, int, Callable[[], None]]] = []
        self._count = 0

    def soon(self, action: Callable[[], None]) -> None:
        self.later(0.0, action)

    def later(self, delay_s: float, action: Callable[[], None]) -> None:
        self._count += 1
        heapq.heappush(self._due, (self.now + delay_s, self._count, action))

    def run_until(self, until: float) -> None:
        while self._due and self._due[0][0] <= until:
            at, _, action = heapq.heappop(self._due)
            self.now = at
            action()
        self.now = until


class DeadlineService:
    """A service whose deadlines are set by the test; it notes when it was processed."""

    def __init__(self) -> None:
        self.deadlines: list[float] = []
        self.processed: list[float] = []

    def process(self, now: float) -> None:
        self.processed.append(now)
        self.deadlines = [d for d in self.deadlines if d > now]

    def next_deadline(self) -> float | None:
        return min(self.deadlines, default=None)

    def tick(self, now: float) -> None:
        pass


def started() -> tuple[ServiceHost, DeadlineService, VirtualTimers]:
    timers = VirtualTimers()
    service = DeadlineService()
    host = ServiceHost(
        cast(GameService, service), clock=lambda: timers.now, timers=timers, deliver=lambda: None
    )
    return host, service, timers


def test_a_nearer_deadline_is_kept_although_a_later_one_is_armed() -> None:
    host, service, timers = started()
    service.deadlines = [5.0]  # a replication wait
    host.process_now()
    timers.run_until(0.1)
    service.deadlines.append(0.3)  # a postponed refresh of the public list, nearer
    host.process_now()
    timers.run_until(1.0)
    assert 0.3 in service.processed, service.processed
    timers.run_until(6.0)
    assert service.processed.count(5.0) == 1, "the later deadline is still served, once"


def test_an_overtaken_timer_does_nothing_when_it_fires() -> None:
    host, service, timers = started()
    service.deadlines = [2.0]
    host.process_now()
    service.deadlines.append(1.0)
    host.process_now()
    timers.run_until(3.0)
    assert service.processed == [0.0, 0.0, 1.0, 2.0], service.processed
