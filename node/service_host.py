"""When a node process calls into its game service: one wiring for aiohttp and the simulator.

The service itself is sans-IO (``node.service``): it is told of document changes, asked to
``process`` them, ``tick``ed, and says what to send (``take_outgoing``). This module decides
*when*, the same way in a real node (``node.server``, on the asyncio loop) and in a simulated one
(``sim.node``, on the virtual clock); each supplies only its :class:`Timers` and a ``deliver``
callback that hands the service's output to its players.

The rules:

* a document change is passed on at once (``doc_changed``); one ``process`` follows after the
  changes of this instant (not one per change), except for key-value documents, which the
  service does not read;
* after each ``process`` and each ``tick``, the output is delivered and the service's own
  deadline (a postponed refresh of the public list, a replication wait) is armed: a timer for
  it unless one is armed for that moment or earlier (timers cannot be cancelled: one that a
  nearer deadline overtook does nothing when it fires);
* progress of the engine (a commit is durable, a peer acknowledged) may open the push gate:
  the output is delivered at once, unless the host is inside a call into the service (a write
  that made progress on its own), in which case it is delivered once that call is done;
* ``tick`` runs every ``SERVICE_TICK_S`` of the process's clock.

After :meth:`ServiceHost.stop` every pending timer does nothing (a crash or a clean stop).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from meridian.crdt_models.hlc import HybridLogicalClock
from meridian.crdt_models.kinds import is_kv_document
from meridian.games.base import GameRules
from meridian.node.delivery import EngineProgress
from meridian.node.service import Documents, GameService

SERVICE_TICK_S = 1.0
PICTURE_INTERVAL_S = 0.2  # the public list and invitations are refreshed at most this often


class Timers(Protocol):
    """How a process schedules work: after the current turn, or after a delay of its clock."""

    def soon(self, action: Callable[[], None]) -> None: ...

    def later(self, delay_s: float, action: Callable[[], None]) -> None: ...


def build_service(
    *,
    node_id: str,
    region: str,
    documents: Documents,
    rules: GameRules[Any],
    hlc: HybridLogicalClock,
    wall_ms: Callable[[], int],
    new_token: Callable[[], str],
    rng: Any,
    progress: EngineProgress,
    ack_regions: int,
    service_class: type[GameService] = GameService,
) -> GameService:
    """The game service of one node process, with the process-wide settings every node uses."""
    return service_class(
        node_id=node_id,
        region=region,
        documents=documents,
        rules=rules,
        hlc=hlc,
        wall_ms=wall_ms,
        new_token=new_token,
        rng=rng,
        progress=progress,
        ack_regions=ack_regions,
        picture_interval_s=PICTURE_INTERVAL_S,
    )


class ServiceHost:
    """Calls into one process's game service at the right moments (see module docstring)."""

    def __init__(
        self,
        service: GameService,
        *,
        clock: Callable[[], float],
        timers: Timers,
        deliver: Callable[[], None],
    ) -> None:
        self.service = service
        self.clock = clock
        self.timers = timers
        self.deliver = deliver
        self.running = True
        self._process_scheduled = False
        self._armed_due: float | None = None  # the deadline the newest timer is armed for
        self._in_service = False
        self.ticking = True  # the simulator stops the tick before it takes the final states

    def start(self) -> None:
        """Start the periodic tick."""
        self.timers.later(SERVICE_TICK_S, self._tick)

    def stop(self) -> None:
        """Stop: every timer already scheduled does nothing when it fires."""
        self.running = False

    def doc_changed(self, doc_id: str, event_no: int) -> None:
        if not self.running:
            return
        self.service.doc_changed(doc_id, event_no)
        if not self._process_scheduled and not is_kv_document(doc_id):
            self._process_scheduled = True
            self.timers.soon(self._process_changes)

    def progressed(self) -> None:
        """The engine made progress (a commit, a peer's ack): the push gate may have opened."""
        if not self.running or self._in_service:  # (process_now delivers once the call is done)
            return
        if self.service.holds_output():  # else the gate has nothing to open, no deadline moves
            self.deliver_output()

    def process_now(self) -> None:
        """``process`` what changed, deliver what it says, arm its deadline."""
        self._in_service = True
        try:
            self.service.process(self.clock())
        finally:
            self._in_service = False
        self.deliver_output()

    def _process_changes(self) -> None:
        self._process_scheduled = False
        if self.running:
            self.process_now()

    def deliver_output(self) -> None:
        """Deliver what the service releases now, and arm its next deadline."""
        self.deliver()
        due = self.service.next_deadline()
        if due is not None and (self._armed_due is None or due < self._armed_due):
            self._armed_due = due
            self.timers.later(max(0.0, due - self.clock()), lambda: self._on_deadline(due))

    def _on_deadline(self, due: float) -> None:
        if due != self._armed_due:
            return  # overtaken by a nearer deadline, which armed its own timer
        self._armed_due = None
        if self.running:
            self.process_now()

    def _tick(self) -> None:
        if not (self.running and self.ticking):
            return
        self.service.tick(self.clock())
        self.deliver_output()
        self.timers.later(SERVICE_TICK_S, self._tick)
