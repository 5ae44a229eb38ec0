"""The rebalancer: a meta-service that moves players off a process above its load threshold.

Every node runs one (when ``rebalance.enabled``). Every ``rebalance.interval_s`` it builds the
inputs of the pure policy (``node.rebalance.plan``) from what the node already knows, runs it,
and carries out the moves whose source is its own process, with the drain's hand-over
(``node.drain``: a fresh resume token, then a ``drain`` notice naming the target's URL once the
target holds the token). A round is a few steps without I/O (`Rebalancer.plan_round`, `begin`,
`advance`): the node's event loop runs them with a ``/readyz`` probe of the targets between
and a poll every ``node.drain.POLL_S``; the simulator runs the same steps on its virtual clock
(``sim.meta``). It sees the node only through `RebalanceHost`. The game code does not know it
exists: it reads the game service only through ``GameService.players_here`` (who is connected
here, and who is at a safe point) and moves a player only through
``hand_over``/``notify``/``take_back``, as the drain does.

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
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from pycrdt import Doc

from meridian.crdt_models.load import LoadEntry
from meridian.crdt_models.presence import META, presence_doc_id
from meridian.crdt_models.records import root_map
from meridian.node.drain import (
    POLL_S,
    Handover,
    Target,
    Told,
    linked_targets,
    ready_targets,
)
from meridian.node.observer import RATE_WINDOW_S, ClusterLoad
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
from meridian.node.service import GameService, PlayerHere
from meridian.sync.engine import PeerState, SyncEngine
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


# --- what it uses of the node -------------------------------------------------------------------


class Publisher(Protocol):
    """The replicator (``sync.replicator.Replicator``): writes this node's presence document and
    sends what the engine has for its peers now."""

    def write(self, doc_id: str, change: Callable[[Doc[Any]], Any]) -> int: ...

    def pump(self) -> None: ...


class Deliverer(Protocol):
    """The player gateway (``node.player_api.PlayerGateway``): hands what the game service says
    to the players' connections now."""

    def drain(self) -> None: ...


class RebalanceHost(Protocol):
    """What the rebalancer uses of a running node (``node.server.Node``, or a simulated one:
    ``sim.meta``): identity, the sync engine (peers, links, what they hold), the game service
    (only its meta-service part, ``node.service_meta``), the replicator and the player gateway."""

    @property
    def node_id(self) -> str: ...

    @property
    def region(self) -> str: ...

    @property
    def engine(self) -> SyncEngine: ...

    @property
    def service(self) -> GameService: ...

    @property
    def replicator(self) -> Publisher: ...

    @property
    def players(self) -> Deliverer: ...


class LoadView(Protocol):
    """The load observer (``node.observer.LoadObserver``): the cluster's load now."""

    def view(self) -> ClusterLoad: ...


ReadyProbe = Callable[[Sequence[Target]], Awaitable[list[Target]]]


# --- a round, step by step (no I/O: the node's loop or the simulator drives it) -----------------


@dataclass
class Batch:
    """The hand-overs of one round under way: whose they are, who was in a game when told, when
    the round began telling and when it gives up on a player not at a safe point."""

    host: RebalanceHost
    counters: RebalanceCounters
    cpu_clock: Callable[[], float]
    began: float = 0.0
    give_up: float = 0.0
    pending: list[Handover] = field(default_factory=list)
    waiting: list[Handover] = field(default_factory=list)
    told: list[Told] = field(default_factory=list)
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


def target_holds(host: RebalanceHost, handover: Handover, waited_s: float) -> bool:
    """Whether the chosen target may be named now: it holds the presence change with the new
    resume token, or (after TRUST_LINK_S) its link is up (the ack bookkeeping can lag behind
    what a peer holds after a link was replaced). The drain's rule (``node.drain``) without its
    alternatives: the rebalancer takes the hand-over back instead."""
    engine = host.engine
    chosen = handover.target.node_id
    if engine.peer_holds(chosen, presence_doc_id(host.node_id), handover.handed.event_no):
        return True
    return waited_s >= TRUST_LINK_S and chosen in engine.up_peers()


class Rebalancer:
    """The policy on a node, a round at a time (see module docstring).

    A round is `plan_round` (the moves of this process), the targets' readiness (`wanted`, a
    probe, `left_out`), `begin` (the hand-overs) and `advance` until it says done (the notices,
    at safe points). `start` runs rounds on the node's event loop; the simulator calls the
    steps on its virtual clock (``sim.meta``)."""

    def __init__(
        self,
        host: RebalanceHost,
        observer: LoadView,
        settings: RebalanceSettings,
        *,
        wall_ms: Callable[[], int],
        paused: Callable[[], bool] = lambda: False,
        clock: Callable[[], float] = time.monotonic,
        cpu_clock: Callable[[], float] = time.thread_time,
        probe: ReadyProbe = ready_targets,
    ) -> None:
        self.host = host
        self.observer = observer
        self.settings = settings
        self.wall_ms = wall_ms
        self.paused = paused  # True while the node drains: the drain moves everyone
        self.clock = clock
        self.cpu_clock = cpu_clock  # this thread's CPU time: what the rebalancer itself costs
        self.probe = probe  # which targets take players now (their /readyz)
        self.state = RebalanceState()
        self.counters = RebalanceCounters()
        self.unready: dict[str, float] = {}  # node -> until when it is left out
        self.waiting_for: dict[str, int] = {}  # node -> wall ms of the last move from or to it
        self._task: asyncio.Task[None] | None = None

    @property
    def policy(self) -> Policy:
        return self.settings.policy

    def start(self) -> None:
        self.load_counts()
        if self.settings.enabled:
            loop = asyncio.get_running_loop()
            self._task = loop.create_task(self._run(), name="rebalancer")

    def load_counts(self) -> None:
        """Go on counting from the counts this node published before a restart."""
        self.counters.moved_to = self._published_moves()

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
        """One round on the event loop: plan, probe the targets, hand over this process's
        chosen players and tell them at safe points; returns the moves planned here."""
        moves = self.plan_round()
        if not moves:
            return moves
        wanted = self.wanted(moves)
        ready = {t.node_id for t in await self.probe(sorted(wanted, key=lambda t: t.node_id))}
        batch = self.begin(moves, self.left_out(wanted, ready))
        # Polled, as the drain does: what it waits for (a peer's ack, a safe point) has no event.
        while batch is not None and not self.advance(batch):  # noqa: ASYNC110
            await asyncio.sleep(POLL_S)
        return moves

    def plan_round(self) -> list[Move]:
        """The moves whose source is this process (none while paused or settling)."""
        if self.paused():
            return []
        started = self.cpu_clock()
        moves = self._plan()
        self.counters.cpu_seconds += self.cpu_clock() - started
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

    def wanted(self, moves: Sequence[Move]) -> list[Target]:
        """The linked targets the moves name (a target whose link went down is not wanted)."""
        linked = {t.node_id: t for t in linked_targets(self.host.engine)}
        return [linked[n] for n in sorted({m.target for m in moves}) if n in linked]

    def left_out(self, wanted: Sequence[Target], ready: Collection[str]) -> dict[str, Target]:
        """The wanted targets that take players (`ready`, by the probe); the others are left
        out for UNREADY_S."""
        for target in wanted:
            if target.node_id not in ready:
                log.info("rebalance: %s is not taking players; left out", target.node_id)
                self.unready[target.node_id] = self.clock() + UNREADY_S
                self.counters.unready_targets += 1
        return {t.node_id: t for t in wanted if t.node_id in ready}

    def begin(self, moves: Sequence[Move], targets: Mapping[str, Target]) -> Batch | None:
        """Hand over the sessions of each chosen player still here and at a safe point (a fresh
        resume token each); None if there is none."""
        started = self.cpu_clock()
        now = self.clock()
        batch = Batch(self.host, self.counters, self.cpu_clock, now, now + NOTICE_WAIT_S)
        here = {p.uid: p for p in self.host.service.players_here()}
        for move in moves:
            player = here.get(move.uid)
            target = targets.get(move.target)
            if target is None or player is None or not player.safe:
                self._forget_move(move.uid)  # not moved: it may be chosen again
                continue
            for sid, conn_ids in player.sessions.items():
                handed = self.host.service.hand_over(sid)
                if handed is not None:
                    batch.pending.append(Handover(sid, target, handed, conn_ids))
                    batch.owner[sid] = move.uid
        batch.waiting = list(batch.pending)
        self.counters.cpu_seconds += self.cpu_clock() - started
        if not batch.pending:
            return None
        self.counters.moving += len(batch.pending)
        self.host.replicator.pump()  # the new tokens on their way to the targets
        return batch

    def advance(self, batch: Batch) -> bool:
        """Tell each waiting player whose target holds their new token and who is at a safe
        point now (the check and the notice are one step); take back those still waiting at
        `give_up`. True once every hand-over of the batch has ended (and is counted)."""
        now = self.clock()
        waited, late = now - batch.began, now >= batch.give_up
        service = self.host.service
        for handover in list(batch.waiting):
            going_to = None
            if target_holds(self.host, handover, waited) and batch.still_safe(handover):
                going_to = handover.target
                notice = {
                    "type": "drain",
                    "region": going_to.region,
                    "url": going_to.url,
                    "resume": handover.handed.resume,
                    "message": self._message(going_to),
                }
                for conn_id in handover.conn_ids:
                    service.notify(conn_id, notice)
            elif late:
                service.take_back(handover.sid, handover.handed)
            else:
                continue
            batch.told.append(Told(handover, going_to))
            batch.waiting.remove(handover)
        self.host.players.drain()
        if batch.waiting:
            return False
        self.counters.moving -= len(batch.pending)
        started = self.cpu_clock()
        self._count(batch, batch.told)
        self.counters.cpu_seconds += self.cpu_clock() - started
        return True

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
