"""The virtual network: TCP-like ordered connections between simulated nodes, and their faults.

A :class:`Connection` models one peer websocket over TCP. Each direction is a :class:`Pipe`:
frames written together leave as one batch, are serialised at the path's bandwidth, travel for
the path's latency plus jitter, and arrive in the order they were sent. What TCP does with trouble
is modelled the way an application sees it:

* **loss** costs time, not data: a batch that loses a segment waits a retransmission timeout
  (doubling while the retransmissions are lost too), and everything behind it waits as well;
* **resets**: a connection may be reset (``resets_per_hour``); both ends see it closed;
* **blocked paths** (partitions): bytes written on an open connection stay in the sender's TCP
  buffer and are delivered, still in order, when the path heals, unless an end gives up first
  (the engine's idle timeout); a new connection cannot be set up across a blocked path: the
  dialer's SYNs are retransmitted after 1, 3, 7 and 15 s and it gives up at ``connect_timeout_s``.
  A one-way block keeps the connection open while nothing gets through in that direction;
* **broken paths** (an explicit fault for robustness tests): frames silently dropped,
  duplicated or reordered on a connection that stays up, which TCP never does.

Connection set-up takes what TCP plus the websocket upgrade take: the acceptor's end opens after
SYN, SYN-ACK and the upgrade request (1.5 round trips), the dialer's when the upgrade answer
arrives (2 round trips). A node whose process is down refuses at once (RST); a machine that is
gone does not answer at all.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Protocol

from meridian.sim.clock import Scheduler
from meridian.sim.history import Retransmission

SYN_RETRY_S = (1.0, 3.0, 7.0, 15.0, 31.0)  # Linux: initial RTO 1 s, doubling
MIN_RTO_S = 0.2  # Linux's lower bound for the retransmission timeout
MAX_RTO_S = 60.0
REORDER_DELAY_S = 0.05
RESET = (
    "connection reset by peer"  # how far a reordered frame may fall behind the ones sent after it
)


@dataclass(frozen=True)
class PathProfile:
    """How one direction between two regions behaves when nothing is wrong."""

    latency_s: float  # one-way
    jitter_s: float = 0.0  # extra delay, uniform in [0, jitter_s], order still kept
    bandwidth_bytes_s: float = 0.0  # 0: unlimited
    loss: float = 0.0  # chance that a batch loses a segment and waits for its retransmission
    resets_per_hour: float = 0.0  # mean rate at which a connection on this path is reset

    @property
    def retransmit_s(self) -> float:
        # RTO is about one round trip plus four times its variation, at least 200 ms.
        return max(MIN_RTO_S, 2 * self.latency_s + 4 * self.jitter_s)


@dataclass(frozen=True)
class Breakage:
    """A broken network on one direction: what TCP would never let an application see."""

    drop: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0


class Host(Protocol):
    """What the network needs of a simulated node."""

    node_id: str
    incarnation: int
    up: bool  # the process runs (it accepts connections)
    reachable: bool  # the machine answers (a down process on a live machine refuses)

    def open_end(self, end: End, *, initiator: bool) -> None: ...

    def deliver(self, end: End, frames: list[bytes]) -> None: ...

    def end_closed(self, end: End, reason: str) -> None: ...


class Dialing(Protocol):
    """The dialer that asked for a connection (its node reports how the link ended)."""

    def dial_failed(self, reason: str) -> None: ...

    def link_ended(self, *, was_up: bool, peer_named: bool) -> None: ...


@dataclass(frozen=True)
class Closing:
    """The end of a byte stream: a FIN, or an RST from a crashed process."""

    reason: str


Batch = list[bytes] | Closing


@dataclass(eq=False)
class Pipe:
    """One direction of a connection: keeps arrivals in order and holds bytes while blocked."""

    ready_at: float
    free_at: float = 0.0
    last_arrival: float = 0.0
    held: list[Batch] = field(default_factory=list)
    retransmitted_s: float = 0.0  # how long the last batch waited for a retransmission

    def __post_init__(self) -> None:
        self.free_at = self.last_arrival = self.ready_at

    def arrival(self, now: float, size: int, profile: PathProfile, rng: random.Random) -> float:
        start = max(now, self.free_at)
        sent = start + (size / profile.bandwidth_bytes_s if profile.bandwidth_bytes_s else 0.0)
        self.free_at = sent
        delay = profile.latency_s + (rng.uniform(0, profile.jitter_s) if profile.jitter_s else 0.0)
        self.retransmitted_s = 0.0
        if profile.loss and rng.random() < profile.loss:
            self.retransmitted_s = _retransmission_wait(profile, rng)
            delay += self.retransmitted_s
        self.last_arrival = max(sent + delay, self.last_arrival)
        return self.last_arrival


def _retransmission_wait(profile: PathProfile, rng: random.Random) -> float:
    rto = profile.retransmit_s
    wait = rto
    while rng.random() < profile.loss and rto < MAX_RTO_S:
        rto *= 2
        wait += rto
    return wait


@dataclass(eq=False)
class End:
    """One node's end of a connection."""

    host: Host
    incarnation: int
    out: Pipe
    connection_id: int
    dialer: Dialing | None = None
    peer: End | None = None
    link_id: int = 0
    opened: bool = False
    closed: bool = False  # this end's node is done with it
    severed: bool = False  # reset: nothing more arrives here
    got_up: bool = False  # the engine reported LinkUp on it

    @property
    def route(self) -> tuple[str, str]:
        assert self.peer is not None
        return self.host.node_id, self.peer.host.node_id

    def alive(self) -> bool:
        return self.host.up and self.host.incarnation == self.incarnation


class Network:
    """All paths between the nodes, their faults, and every connection's bytes in flight."""

    def __init__(
        self,
        scheduler: Scheduler,
        rng: random.Random,
        profiles: dict[tuple[str, str], PathProfile],
        connect_timeout_s: float,
    ) -> None:
        self.scheduler = scheduler
        self.rng = rng
        self.profiles = profiles
        self.connect_timeout_s = connect_timeout_s
        self._blocked: dict[tuple[str, str], int] = {}
        self._blocked_since: dict[tuple[str, str], float] = {}
        self._holding: dict[tuple[str, str], list[End]] = {}
        self._breakage: dict[tuple[str, str], list[Breakage]] = {}
        self._next_connection = 1
        self.frames_sent = 0
        self.bytes_sent = 0
        # (sent, src, dst, wait, arrival) of every batch that lost a segment: the bounds on
        # convergence move by what such a batch waited (sim.bounds.retransmission_s)
        self.retransmissions: list[Retransmission] = []

    # --- faults ------------------------------------------------------------------------

    def is_open(self, src: str, dst: str) -> bool:
        return (src, dst) not in self._blocked

    def block(self, src: str, dst: str) -> bool:
        """Stop bytes from src reaching dst; True if the path was open (faults may overlap:
        each block needs its unblock)."""
        route = (src, dst)
        newly = route not in self._blocked
        if newly:
            self._blocked_since[route] = self.scheduler.now
        self._blocked[route] = self._blocked.get(route, 0) + 1
        return newly

    def unblock(self, src: str, dst: str) -> bool:
        """Undo one block; True if the path is open again."""
        route = (src, dst)
        count = self._blocked.get(route, 0) - 1
        if count > 0:
            self._blocked[route] = count
            return False
        self._blocked.pop(route, None)
        blocked_for = self.scheduler.now - self._blocked_since.pop(route, self.scheduler.now)
        for end in self._holding.pop(route, []):
            self._release(end, blocked_for)
        return True

    def add_breakage(self, src: str, dst: str, breakage: Breakage) -> None:
        self._breakage.setdefault((src, dst), []).append(breakage)

    def remove_breakage(self, src: str, dst: str, breakage: Breakage) -> None:
        active = self._breakage.get((src, dst), [])
        if breakage in active:
            active.remove(breakage)
        if not active:
            self._breakage.pop((src, dst), None)

    # --- connections -------------------------------------------------------------------

    def dial(self, source: Host, target: Host, dialer: Dialing) -> None:
        """Start connecting; the dialer hears ``dial_failed`` or, later, ``link_ended``."""
        self._syn(source, source.incarnation, target, dialer, self.scheduler.now, 0)

    def _syn(
        self, source: Host, incarnation: int, target: Host, dialer: Dialing, started: float, n: int
    ) -> None:
        if not (source.up and source.incarnation == incarnation):
            return
        a, b = source.node_id, target.node_id
        if self.is_open(a, b) and self.is_open(b, a) and target.reachable:
            if target.up:
                self._establish(source, target, dialer)
            else:
                self.scheduler.after(self._rtt(a, b), dialer.dial_failed, "connection refused")
            return
        deadline = started + self.connect_timeout_s
        if n < len(SYN_RETRY_S) and started + SYN_RETRY_S[n] < deadline:
            retry = started + SYN_RETRY_S[n]
            self.scheduler.at(retry, self._syn, source, incarnation, target, dialer, started, n + 1)
        else:
            self.scheduler.at(deadline, dialer.dial_failed, "connect timed out")

    def _rtt(self, a: str, b: str) -> float:
        return self.profiles[a, b].latency_s + self.profiles[b, a].latency_s

    def _establish(self, source: Host, target: Host, dialer: Dialing) -> None:
        now = self.scheduler.now
        a, b = source.node_id, target.node_id
        accept_at = now + self._rtt(a, b) + self.profiles[a, b].latency_s
        open_at = accept_at + self.profiles[b, a].latency_s
        connection_id = self._next_connection
        self._next_connection += 1
        dialing = End(source, source.incarnation, Pipe(accept_at), connection_id, dialer)
        accepting = End(target, target.incarnation, Pipe(open_at), connection_id)
        dialing.peer, accepting.peer = accepting, dialing
        # Scheduled now, so at equal times the dialer's end opens before the acceptor's first
        # frame (sent when its end opens, arriving no earlier than open_at) is delivered.
        self.scheduler.at(accept_at, self._open, accepting, False)
        self.scheduler.at(open_at, self._open, dialing, True)
        profile = self.profiles[a, b]
        if profile.resets_per_hour:
            delay = self.rng.expovariate(profile.resets_per_hour / 3600)
            self.scheduler.at(open_at + delay, self.reset, dialing, "connection reset by network")

    def _open(self, end: End, initiator: bool) -> None:
        peer = end.peer
        assert peer is not None
        if end.closed:
            return
        if not end.alive():
            end.closed = True
            if initiator and peer.opened and end.host.reachable:
                # The dialer died during set-up: its kernel resets the acceptor's connection.
                self._schedule(end, Closing(RESET))
            return
        if initiator and (peer.closed or not peer.opened):
            end.closed = True
            if end.dialer is not None:
                end.dialer.dial_failed("connection refused")
            return
        end.opened = True
        end.host.open_end(end, initiator=initiator)

    def send(self, end: End, frames: list[bytes]) -> None:
        if end.closed or not frames:
            return
        self.frames_sent += len(frames)
        breakages = self._breakage.get(end.route)
        if breakages:
            frames = self._mangle(end, frames, breakages)
        if frames:
            self._transmit(end, frames)

    def close(self, end: End, *, how: str) -> None:
        """This end is done: ``fin`` (orderly, after queued bytes), ``rst`` (process died: not
        retransmitted, lost on a blocked path) or ``silent`` (the machine is gone)."""
        if end.closed:
            return
        end.closed = True
        peer = end.peer
        if peer is None or peer.closed or not end.opened or how == "silent":
            return
        if how == "fin":
            self._transmit(end, Closing("connection closed"))
        elif self.is_open(*end.route):
            self._schedule(end, Closing(RESET))

    def reset(self, end: End, reason: str) -> None:
        """Both ends see the connection reset at once; bytes in flight are lost."""
        for side in (end, end.peer):
            assert side is not None
            side.severed = True
            if side.opened and not side.closed and side.alive():
                side.host.end_closed(side, reason)

    # --- bytes in flight ---------------------------------------------------------------

    def _transmit(self, end: End, batch: Batch) -> None:
        route = end.route
        if route in self._blocked:
            if not end.out.held:
                self._holding.setdefault(route, []).append(end)
            end.out.held.append(batch)
            return
        self._schedule(end, batch)

    def _schedule(self, end: End, batch: Batch, not_before: float | None = None) -> None:
        size = sum(len(frame) for frame in batch) if isinstance(batch, list) else 0
        self.bytes_sent += size
        start = self.scheduler.now if not_before is None else not_before
        arrival = end.out.arrival(start, size, self.profiles[end.route], self.rng)
        if end.out.retransmitted_s:
            src, dst = end.route
            self.retransmissions.append(
                Retransmission(start, src, dst, end.out.retransmitted_s, arrival)
            )
        self.scheduler.at(arrival, self._arrive, end.peer, batch)

    def _release(self, end: End, blocked_for: float) -> None:
        # TCP retransmits with exponential backoff, so after a blackout the next retry comes
        # somewhere within an interval about as long as the blackout so far.
        resume = self.scheduler.now + self.rng.uniform(0, min(blocked_for, MAX_RTO_S))
        held, end.out.held = end.out.held, []
        for batch in held:
            self._schedule(end, batch, not_before=resume)

    def _arrive(self, end: End, batch: Batch) -> None:
        if end.closed or end.severed or not end.alive():
            return
        if isinstance(batch, Closing):
            end.host.end_closed(end, batch.reason)
        else:
            end.host.deliver(end, batch)

    def _mangle(self, end: End, frames: list[bytes], breakages: list[Breakage]) -> list[bytes]:
        kept: list[bytes] = []
        rng = self.rng
        for frame in frames:
            copies = [frame]
            for breakage in breakages:
                if rng.random() < breakage.drop:
                    copies = []
                elif rng.random() < breakage.duplicate:
                    copies.append(frame)
            for copy in copies:
                if any(rng.random() < b.reorder for b in breakages):
                    late = self.scheduler.now + self.profiles[end.route].latency_s
                    late += rng.uniform(0, REORDER_DELAY_S)
                    self.scheduler.at(late, self._arrive, end.peer, [copy])
                else:
                    kept.append(copy)
        return kept
