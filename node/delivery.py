"""The push gate: what the game service says to a player leaves only once it cannot be lost.

A reply that acknowledges a change, and every push that shows a change to anyone (the opponent,
watchers, the mover's other sessions, a rollback notice), is released under one rule: the change
is durable in this node's store and, with ``replication.ack_regions = k``, held by k other
regions. Messages for one connection leave in the order the service produced them, so a message
behind a held one waits too; everything waiting on one commit is released by the same call. The
hello reply of a player arriving from another node also waits until every linked region has
answered this node's ask for the player's live games (`Gate.caught_up`, bounded like a
replicated wait; docs/architecture.md, *A failover waits for the catch-up*).

This is sans-IO: the service owns a `Delivery`, the adapters (aiohttp in ``node.player_api``,
the simulator in ``sim.players``) call ``GameService.take_outgoing(now)`` whenever the store
commits or a peer acknowledges, and send what comes out. A replicated wait is bounded by
``REPLICATION_WAIT_S``: a reply still waiting then becomes a ``not_replicated`` refusal (the
change is durable here and will replicate), and a push is released as it is, so that a region
cut off from the others does not freeze its players' games (docs/protocol.md, "Delivery").
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from meridian.sync.engine import SyncEngine

REPLICATION_WAIT_S = 5.0


@dataclass(frozen=True)
class Gate:
    """What must hold before a message may leave."""

    doc_id: str
    durable_event: int  # this node's change number that must be committed to its store
    replicated_event: int = 0  # this node's own change that k other regions must hold (0: none)
    caught_up: tuple[str, ...] = ()  # documents asked of the linked regions: answered first


@dataclass(frozen=True)
class Send:
    conn: str
    message: dict[str, Any]
    gate: Gate | None = None  # None: nothing to wait for
    text: str = ""  # the message already serialized (shared by many connections), or ""


@dataclass(frozen=True)
class Close:
    conn: str
    code: int
    reason: str


Outgoing = Send | Close


class Progress(Protocol):
    """How far this node's changes have got: the adapters answer from the store and the engine."""

    def durable_through(self) -> int:
        """Every change numbered up to this one is committed to the local store."""
        ...

    def regions_holding(self, doc_id: str, event_no: int) -> int:
        """How many other regions acknowledged holding change `event_no` of `doc_id`."""
        ...

    def oldest_peer_protocol(self) -> int | None:
        """The lowest peer protocol version among the linked regions (None: none linked)."""
        ...

    def asking(self, doc_id: str) -> bool:
        """A linked region has not yet answered this node's ask for the document."""
        ...


class EngineProgress:
    """`Progress` read off a node's sync engine (the same for aiohttp and the simulator)."""

    def __init__(self, engine: SyncEngine) -> None:
        self.engine = engine

    def durable_through(self) -> int:
        return self.engine.durable_event_no

    def regions_holding(self, doc_id: str, event_no: int) -> int:
        return self.engine.regions_holding(doc_id, event_no)

    def oldest_peer_protocol(self) -> int | None:
        return self.engine.oldest_link_version()

    def asking(self, doc_id: str) -> bool:
        return self.engine.asking(doc_id)


@dataclass
class _Queue:
    opened: int  # queues are released in the order they were opened (deterministic)
    items: deque[Outgoing] = field(default_factory=deque)
    held_since: float | None = None  # when the head started waiting for replication
    parked_on: int = 0  # the durable change its head waits for, while in `_durable_waits`


class Delivery:
    """Per-connection queues of outgoing messages, released under the gate's rule.

    A release looks only at the queues that may move: new ones, those whose head waited for a
    change that is now durable (a heap by change number) and those waiting for replication.
    Queues stuck behind a later commit cost nothing, so a release does not grow with the number
    of connections that have something on the way."""

    def __init__(self, ack_regions: int, replication_wait_s: float = REPLICATION_WAIT_S) -> None:
        self.ack_regions = ack_regions
        self.replication_wait_s = replication_wait_s
        self._queues: dict[str, _Queue] = {}
        self._opened = itertools.count()
        self._new: list[str] = []  # queues opened since the last release
        self._durable_waits: list[tuple[int, int, str]] = []  # heap: (change, opened, conn)
        self._replication_waits: set[str] = set()  # queues whose head waits for other regions
        self.released_late = 0  # messages released after the replication wait ran out

    def put(self, items: Iterable[Outgoing]) -> None:
        for item in items:
            queue = self._queues.get(item.conn)
            if queue is None:
                queue = self._queues[item.conn] = _Queue(next(self._opened))
                self._new.append(item.conn)
            # (An open queue is already listed: new, or filed under what its head waits for.)
            queue.items.append(item)

    def holds_any(self) -> bool:
        return bool(self._queues)

    def waiting(self) -> int:
        return sum(len(queue.items) for queue in self._queues.values())

    def release(self, now: float, progress: Progress) -> list[Outgoing]:
        """Every message whose gate is open, in order per connection."""
        out: list[Outgoing] = []
        for conn_id in self._may_move(progress.durable_through()):
            queue = self._queues[conn_id]
            self._replication_waits.discard(conn_id)
            self._release_queue(queue, now, progress, out)
            if queue.items:
                self._park(conn_id, queue, progress)
            else:
                del self._queues[conn_id]
        return out

    def _may_move(self, durable: int) -> list[str]:
        """The queues that may release something, in the order they were opened."""
        looking = set(self._new)
        self._new = []
        waits = self._durable_waits
        while waits and waits[0][0] <= durable:
            change, _opened, conn_id = heapq.heappop(waits)
            queue = self._queues.get(conn_id)
            if queue is not None and queue.parked_on == change:
                queue.parked_on = 0
                looking.add(conn_id)
        looking |= self._replication_waits
        return sorted(looking, key=lambda conn_id: self._queues[conn_id].opened)

    def _park(self, conn_id: str, queue: _Queue, progress: Progress) -> None:
        """File a queue whose head may not leave yet under what it waits for."""
        head = queue.items[0]
        assert isinstance(head, Send) and head.gate is not None  # else it would have left
        change = head.gate.durable_event
        if progress.durable_through() >= change:
            self._replication_waits.add(conn_id)
        elif queue.parked_on != change:
            queue.parked_on = change
            heapq.heappush(self._durable_waits, (change, queue.opened, conn_id))

    def _release_queue(
        self, queue: _Queue, now: float, progress: Progress, out: list[Outgoing]
    ) -> None:
        while queue.items:
            ready = self._ready(queue, queue.items[0], now, progress)
            if ready is None:
                return
            queue.items.popleft()
            queue.held_since = None
            out.append(ready)
            if isinstance(ready, Close):
                queue.items.clear()  # nothing reaches a closed connection

    def _ready(
        self, queue: _Queue, item: Outgoing, now: float, progress: Progress
    ) -> Outgoing | None:
        if isinstance(item, Close) or item.gate is None:
            return item
        gate = item.gate
        if progress.durable_through() < gate.durable_event:
            return None
        caught_up = not any(progress.asking(doc_id) for doc_id in gate.caught_up)
        if caught_up and self._held_enough(gate, progress):
            return item
        if queue.held_since is None:
            queue.held_since = now
        # The same sum as `next_deadline`: `now - held_since` can fall short of the wait by a
        # rounding error at exactly that deadline, and the adapter would wake again at once.
        if now < queue.held_since + self.replication_wait_s:
            return None
        self.released_late += 1
        if self._held_enough(gate, progress):
            return item  # a region that never answered: the reply goes as this node has it
        return _not_replicated(item, progress.regions_holding(gate.doc_id, gate.replicated_event))

    def _held_enough(self, gate: Gate, progress: Progress) -> bool:
        """Whether k other regions hold the gate's change (or it waits for none)."""
        if not self.ack_regions or not gate.replicated_event or not gate.doc_id:
            return True
        return progress.regions_holding(gate.doc_id, gate.replicated_event) >= self.ack_regions

    def next_deadline(self) -> float | None:
        """When a replication wait runs out (the adapter must call `release` then)."""
        queues = (self._queues[conn_id] for conn_id in self._replication_waits)
        started = [q.held_since for q in queues if q.held_since is not None]
        return min(started) + self.replication_wait_s if started else None


def _not_replicated(item: Send, held: int) -> Send:
    """A reply still short of its regions becomes a refusal; a push goes as it is."""
    if "ok" not in item.message:
        return item
    message = {
        "re": item.message.get("re"),
        "ok": False,
        "error": {
            "code": "not_replicated",
            "message": f"durable here but held by {held} other region(s) of those required; "
            "it will replicate",
        },
    }
    return replace(item, message=message, text="")
