"""The rebalancer: a meta-service that moves players off a process above its load threshold.

Every node runs one (when ``rebalance.enabled``). Every ``rebalance.interval_s`` it builds the
inputs of the pure policy (``node.rebalance.plan``) from what the node already knows, runs it,
and carries out the moves whose source is its own process, with the drain's hand-over
(``node.drain``: a fresh resume token, then a ``drain`` notice naming the target's URL once the
target holds the token). The game code does not know it exists: it reads the game service only
through ``GameService.players_here`` (who is connected here, and who is at a safe point) and
moves a player only through ``hand_over``/``notify``/``take_back``, as the drain does.

**The inputs** (`plan_inputs`, without I/O):

* *load*: the load observer's cluster view (``node.observer``), restricted to this process and
  the peers linked right now that players can reach (a peer link down, no URL, or a ``/readyz``
  that said 503 lately: not a target, and not counted in the mean either);
* *players*: this process's players from the game service, each with its safe point; every
  other process's as that many anonymous idle players (its entry's connections), so that the
  plan, computed alike on every node from the same replicated view, gives each target's room
  to the hottest source first and two sources do not both fill it;
* *RTT*: this node's round trip to each linked peer (`round_trip_s`), between their regions
  both ways (pairs of two other regions are unknown: no move between them is assumed; nor to
  a region whose round trip was not measured yet).

**Safe point, twice.** A player is chosen only while at a safe point (not their turn in any
live game, no open invitation here), and the notice is sent only if they still are at that
instant (the check and the notice are one synchronous step, and the notice leaves after
everything already said to the connection). A player who is no longer at a safe point when the
target is ready waits for the next one, up to NOTICE_WAIT_S; then the hand-over is taken back:
the session's resume token is again the one the client holds, and the player stays.

**Settling.** A round that moved players is followed by rounds that plan nothing until this
process's entry and each target's were published after the moves by ``settle_ms`` (a rate
score needs its averaging window to show them), so a view from before the moves never causes
a second wave.

What it did is counted (`RebalanceCounters`), published per target in this node's presence
``meta`` (``node.rebalance.write_moved``: every node shows every node's moved out and in), and
shown in ``/api/cluster`` (``rebalance``), ``/metrics`` (`rebalance_families`) and the
dashboard.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from meridian.crdt_models.load import LoadEntry
from meridian.crdt_models.presence import META, presence_doc_id
from meridian.crdt_models.records import root_map
from meridian.node.drain import (
    Handover,
    HandoverHost,
    Target,
    Told,
    begin_handover,
    linked_targets,
    ready_targets,
    tell_handovers,
)
from meridian.node.observer import RATE_WINDOW_S, ClusterLoad, LoadObserver
from meridian.node.rebalance import (
    Move,
    PlayerInfo,
    Policy,
    RebalanceSettings,
    RebalanceState,
    connections,
    plan,
    read_moved,
    write_moved,
)
from meridian.node.service import PlayerHere
from meridian.sync.engine import PeerState
from meridian.sync.replicator import DocumentQuarantined

log = logging.getLogger("meridian.rebalance")

NOTICE_WAIT_S = 10.0  # a chosen player not at a safe point by then stays (hand-over taken back)
TRUST_LINK_S = 1.0  # then a target linked all along counts as holding the player's new token
UNREADY_S = 30.0  # a target whose /readyz answered 503 is left out this long
ARRIVAL_MS = 500  # a connections score shows a move once the player arrived (milliseconds)
OTHER = "\x00"  # prefix of the anonymous players of other processes (no uid starts with it)


def settle_ms(policy: Policy) -> int:
    """How long after a round's moves its process's and targets' entries must be published
    before the next round plans (a rate is averaged over the observer's window)."""
    return ARRIVAL_MS if policy.score is connections else int(RATE_WINDOW_S * 1000) + ARRIVAL_MS


# --- the inputs of the policy (no I/O) ---------------------------------------------------------


@dataclass(frozen=True)
class PlanInputs:
    entries: list[LoadEntry]
    players: list[PlayerInfo]
    rtt_ms: dict[tuple[str, str], float]


def plan_inputs(
    view: ClusterLoad,
    here: Sequence[PlayerHere],
    *,
    node_id: str,
    region: str,
    reachable: Iterable[str],
    rtt_s: Mapping[str, float],
) -> PlanInputs | None:
    """`plan`'s inputs as this process sees the cluster (see module docstring); None while its
    own load entry is not in the view (not published yet, or stale).

    `reachable`: the other processes that may take players now; `rtt_s`: this node's round
    trip to each linked peer's region, in seconds."""
    allowed = set(reachable) | {node_id}
    entries = [e for e in view.nodes if e.node in allowed]
    if not any(e.node == node_id for e in entries):
        return None
    players = [PlayerInfo(p.uid, node_id, p.in_game, p.safe, p.connected_since) for p in here]
    for entry in entries:
        if entry.node != node_id:
            players += [
                PlayerInfo(f"{OTHER}{entry.node}:{i}", entry.node, False, True, 0.0)
                for i in range(entry.connections)
            ]
    rtt_ms: dict[tuple[str, str], float] = {}
    for other, seconds in rtt_s.items():
        if other != region:
            rtt_ms[(region, other)] = rtt_ms[(other, region)] = seconds * 1000
    return PlanInputs(entries, players, rtt_ms)


def round_trip_s(peer: PeerState) -> float | None:
    """This node's round trip to a peer: the last ping's, else the quickest recent replication
    lag (a change's way there and its ack's back, plus the peer's commit: an upper bound). A
    busy link is never idle long enough to be pinged. None: not measured yet."""
    if peer.rtt is not None:
        return peer.rtt
    return min(peer.lag_samples, default=None)


def settled(entries: Sequence[LoadEntry], waiting_for: Mapping[str, int], settle: int) -> bool:
    """Whether every process a recent round moved players from or to (`waiting_for`: node ->
    wall ms of its last move) has published an entry `settle` ms after it."""
    published = {e.node: e.at_ms for e in entries}
    return all(
        published.get(node, 0) >= moved_ms + settle or node not in published
        for node, moved_ms in waiting_for.items()
    )


# --- what it did -------------------------------------------------------------------------------


@dataclass
class RebalanceCounters:
    """What this node's rebalancer did since it started (moved_to: since the store began)."""

    rounds: int = 0
    planned: int = 0  # moves of this process the policy chose
    moved_to: dict[str, int] = field(default_factory=dict)  # target node -> players told to go
    moved_idle: int = 0
    moved_in_game: int = 0
    taken_back: int = 0  # chosen, but not at a safe point (or the target silent) in time
    unready_targets: int = 0  # targets left out after their /readyz said 503
    moving: int = 0  # hand-overs under way now
    cpu_seconds: float = 0.0  # its own CPU: building inputs, planning, checking safe points
    last_round_ms: int = 0

    @property
    def moved_out(self) -> int:
        return sum(self.moved_to.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "rounds": self.rounds,
            "planned": self.planned,
            "moved_out": self.moved_out,
            "moved_to": dict(sorted(self.moved_to.items())),
            "moved_idle": self.moved_idle,
            "moved_in_game": self.moved_in_game,
            "taken_back": self.taken_back,
            "unready_targets": self.unready_targets,
            "moving": self.moving,
            "cpu_s": round(self.cpu_seconds, 6),
            "last_round_ms": self.last_round_ms,
        }


# --- the asyncio adapter -----------------------------------------------------------------------


@dataclass
class Batch:
    """The hand-overs of one round: whose they are, and who was in a game when told."""

    host: HandoverHost
    counters: RebalanceCounters
    cpu_clock: Callable[[], float]
    pending: list[Handover] = field(default_factory=list)
    owner: dict[str, str] = field(default_factory=dict)  # session id -> uid
    in_game: set[str] = field(default_factory=set)

    def still_safe(self, handover: Handover) -> bool:
        """The player may be told now: still connected here and at a safe point."""
        started = self.cpu_clock()
        uid = self.owner[handover.sid]
        found = self.host.service.players_here([uid])
        self.counters.cpu_seconds += self.cpu_clock() - started
        if not found or not found[0].safe:
            return False
        if found[0].in_game:  # (counted as the player is when told)
            self.in_game.add(uid)
        return True


class Rebalancer:
    """Runs the policy on the node's event loop (see module docstring)."""

    def __init__(
        self,
        host: HandoverHost,
        observer: LoadObserver,
        settings: RebalanceSettings,
        *,
        wall_ms: Callable[[], int],
        paused: Callable[[], bool] = lambda: False,
        clock: Callable[[], float] = time.monotonic,
        cpu_clock: Callable[[], float] = time.thread_time,
    ) -> None:
        self.host = host
        self.observer = observer
        self.settings = settings
        self.wall_ms = wall_ms
        self.paused = paused  # True while the node drains: the drain moves everyone
        self.clock = clock
        self.cpu_clock = cpu_clock  # this thread's CPU time: what the rebalancer itself costs
        self.state = RebalanceState()
        self.counters = RebalanceCounters()
        self.unready: dict[str, float] = {}  # node -> until when it is left out
        self.waiting_for: dict[str, int] = {}  # node -> wall ms of the last move from or to it
        self._task: asyncio.Task[None] | None = None

    @property
    def policy(self) -> Policy:
        return self.settings.policy

    def start(self) -> None:
        self.counters.moved_to = self._published_moves()
        if self.settings.enabled:
            loop = asyncio.get_running_loop()
            self._task = loop.create_task(self._run(), name="rebalancer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.settings.interval_s)
            try:
                await self.round()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("rebalance: round failed; trying again next interval")

    async def round(self) -> list[Move]:
        """One round: plan, then hand over this process's chosen players; returns the moves
        planned for this process."""
        if self.paused():
            return []
        started = self.cpu_clock()
        moves = self._plan()
        self.counters.cpu_seconds += self.cpu_clock() - started
        if moves:
            await self._carry_out(moves)
        return moves

    def _plan(self) -> list[Move]:
        host, now = self.host, self.clock()
        self.counters.rounds += 1
        self.counters.last_round_ms = self.wall_ms()
        self.unready = {n: until for n, until in self.unready.items() if until > now}
        view = self.observer.view()
        if not settled(view.nodes, self.waiting_for, settle_ms(self.policy)):
            return []
        self.waiting_for = {}
        inputs = self._inputs(view)
        if inputs is None:
            return []
        moves, state = plan(
            inputs.entries, inputs.players, inputs.rtt_ms, self.state, now, self.policy
        )
        # Only this process's players are remembered: the others' are anonymous stand-ins.
        last_moved = {
            uid: at
            for uid, at in state.last_moved.items()
            if not uid.startswith(OTHER) and now - at < self.policy.min_interval_s
        }
        self.state = replace(state, last_moved=last_moved)
        own = [m for m in moves if m.source == host.node_id]
        self.counters.planned += len(own)
        return own

    def _inputs(self, view: ClusterLoad) -> PlanInputs | None:
        host = self.host
        targets = {t.node_id: t for t in linked_targets(host.engine)}
        rtt_s: dict[str, float] = {}  # region -> the quickest round trip to a process there
        for peer in host.engine.peers.values():
            if peer.node_id in targets and (rtt := round_trip_s(peer)) is not None:
                rtt_s[peer.region] = min(rtt, rtt_s.get(peer.region, rtt))
        return plan_inputs(
            view,
            host.service.players_here(),
            node_id=host.node_id,
            region=host.region,
            reachable=[n for n in targets if n not in self.unready],
            rtt_s=rtt_s,
        )

    async def _carry_out(self, moves: Sequence[Move]) -> None:
        linked = {t.node_id: t for t in linked_targets(self.host.engine)}
        ready = await self._ready_targets(
            [linked[n] for n in {m.target for m in moves} if n in linked]
        )
        started = self.cpu_clock()
        batch = self._begin(moves, {n: linked[n] for n in ready})
        self.counters.cpu_seconds += self.cpu_clock() - started
        if not batch.pending:
            return
        self.counters.moving += len(batch.pending)
        try:
            told = await tell_handovers(
                self.host,
                batch.pending,
                message=self._message,
                give_up=time.monotonic() + NOTICE_WAIT_S,
                ready=batch.still_safe,
                trust_link_after=TRUST_LINK_S,
            )
        finally:
            self.counters.moving -= len(batch.pending)
        started = self.cpu_clock()
        self._count(batch, told)
        self.counters.cpu_seconds += self.cpu_clock() - started

    async def _ready_targets(self, wanted: list[Target]) -> set[str]:
        """Those of the wanted targets that take players (the others are left out a while)."""
        ready = {t.node_id for t in await ready_targets(sorted(wanted, key=lambda t: t.node_id))}
        for target in wanted:
            if target.node_id not in ready:
                log.info("rebalance: %s is not taking players; left out", target.node_id)
                self.unready[target.node_id] = self.clock() + UNREADY_S
                self.counters.unready_targets += 1
        return ready

    def _begin(self, moves: Sequence[Move], targets: Mapping[str, Target]) -> Batch:
        """Hand over the sessions of each chosen player still here and at a safe point."""
        batch = Batch(self.host, self.counters, self.cpu_clock)
        here = {p.uid: p for p in self.host.service.players_here()}
        for move in moves:
            player = here.get(move.uid)
            target = targets.get(move.target)
            if target is None or player is None or not player.safe:
                self._forget_move(move.uid)  # not moved: it may be chosen again
                continue
            for sid, conn_ids in player.sessions.items():
                handover = begin_handover(self.host, sid, conn_ids, target)
                if handover is not None:
                    batch.pending.append(handover)
                    batch.owner[sid] = move.uid
        return batch

    def _count(self, batch: Batch, told: Sequence[Told]) -> None:
        moved: set[str] = set()
        moved_ms = self.wall_ms()
        for outcome in told:
            uid = batch.owner[outcome.handover.sid]
            if outcome.target is None:
                self.counters.taken_back += 1
                self._forget_move(uid)  # it may be chosen again
                log.info("rebalance: %s stays (not at a safe point in time)", uid)
                continue
            went_to = outcome.target.node_id
            self.counters.moved_to[went_to] = self.counters.moved_to.get(went_to, 0) + 1
            self.waiting_for[went_to] = self.waiting_for[self.host.node_id] = moved_ms
            if uid not in moved:
                moved.add(uid)
                if uid in batch.in_game:
                    self.counters.moved_in_game += 1
                else:
                    self.counters.moved_idle += 1
        if moved:
            log.info(
                "rebalance: moved %d player(s) (%d in a game, between moves) to %s",
                len(moved),
                len(moved & batch.in_game),
                ", ".join(sorted({t.target.node_id for t in told if t.target is not None})),
            )
            self._publish()

    def _forget_move(self, uid: str) -> None:
        last_moved = {u: at for u, at in self.state.last_moved.items() if u != uid}
        self.state = replace(self.state, last_moved=last_moved)

    def _message(self, target: Target) -> str:
        if target.region == self.host.region:
            return f"moving you to another server of region {target.region} to even out the load"
        return f"moving you to region {target.region} to even out the load"

    def _publish(self) -> None:
        doc_id = presence_doc_id(self.host.node_id)
        counts = dict(self.counters.moved_to)
        try:
            self.host.replicator.write(doc_id, lambda doc: write_moved(root_map(doc, META), counts))
        except DocumentQuarantined as refused:
            log.warning("rebalance: counts not published: %s", refused)

    def _published_moves(self) -> dict[str, int]:
        """The counts this node published before a restart (they keep counting up)."""
        doc = self.host.engine.docs.get(presence_doc_id(self.host.node_id))
        return read_moved(root_map(doc, META)) if doc is not None else {}

    def metric_families(self, view: ClusterLoad) -> list[Metric]:
        return rebalance_families(view, self.counters)

    def to_json(self) -> dict[str, Any]:
        policy = self.policy
        return {
            "enabled": self.settings.enabled,
            "interval_s": self.settings.interval_s,
            "policy": {
                "score": getattr(policy.score, "__name__", "custom"),
                "start_above": policy.start_above,
                "stop_below": policy.stop_below,
                "min_excess": policy.min_excess,
                "min_interval_s": policy.min_interval_s,
                "max_moves_per_round": policy.max_moves_per_round,
                "max_extra_rtt_ms": policy.max_extra_rtt_ms,
                "capacity": None if policy.capacity == float("inf") else policy.capacity,
            },
            "shedding": sorted(self.state.shedding),
            **self.counters.to_json(),
        }


def rebalance_families(view: ClusterLoad, counters: RebalanceCounters) -> list[Metric]:
    """Players moved by every process's rebalancer (as published, like the load figures), and
    this node's own rebalancer's `counters`: hand-overs under way, taken back, rounds."""
    labels = ("node", "region")
    moved_out = CounterMetricFamily(
        "meridian_rebalance_moved_out",
        "players the process's rebalancer moved to another process",
        labels=labels,
    )
    moved_in = CounterMetricFamily(
        "meridian_rebalance_moved_in",
        "players other processes' rebalancers moved to this process",
        labels=labels,
    )
    for entry in view.nodes:
        moved_out.add_metric([entry.node, entry.region], view.moved_out(entry.node))
        moved_in.add_metric([entry.node, entry.region], view.moved_in(entry.node))
    return [
        moved_out,
        moved_in,
        GaugeMetricFamily(
            "meridian_rebalance_moving",
            "hand-overs of this node's rebalancer under way",
            value=counters.moving,
        ),
        CounterMetricFamily(
            "meridian_rebalance_taken_back",
            "players chosen but not at a safe point in time (they stayed)",
            value=counters.taken_back,
        ),
        CounterMetricFamily(
            "meridian_rebalance_rounds", "rounds of this node's rebalancer", value=counters.rounds
        ),
    ]
