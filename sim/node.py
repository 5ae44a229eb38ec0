"""A simulated node: the production ``SyncEngine`` wired to a virtual clock, disk and network.

It plays the part of ``sync.replicator`` and ``sync.transport`` for one node: it calls the engine
with the node's own (possibly skewed) monotonic clock, wakes it at ``engine.next_deadline``,
hands every change to the :class:`~sim.disk.VirtualDisk` (the production SQLite store under a
simulated fsync time and crash) and reports commits back with ``durable_through``, moves frames
between the engine and the network, and dials every other node with the same capped, jittered
backoff as ``sync.transport.PeerDialer``.

Received frames and closes go through a FIFO processing queue: each frame costs ``frame_s``
times the node's slow factor, so a slow node falls behind, and its peers see the effects (late
acks, timeouts) that a lagging event loop causes.

Crash and restart: :meth:`SimNode.crash` drops the engine (and, with ``keep_disk=False``, the
disk); :meth:`SimNode.start` builds a new engine from a fresh random stream, so the restarted
process writes under fresh Yjs client ids, and loads what survived on its disk through the
production load path (``DocumentStore.load``, then ``sync.replicator.load_stored``).

The game service: every process also runs the production ``GameService`` on its engine, built
and driven by the production ``node.service_host`` (``build_service`` and ``ServiceHost``, as
``node.server`` does) on timers of the node's own clock; ``sim.gamehost`` supplies the document
handle, tokens and merge recording. What the service says to players goes to the listener
(``service_output``); ``sim.players`` delivers it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pycrdt import Doc

from meridian.crdt_models.hlc import HybridLogicalClock, Stamp
from meridian.games.base import GameRules
from meridian.games.battleline import rules_module
from meridian.node.delivery import EngineProgress
from meridian.node.game_placement import NodePlacement
from meridian.node.placement_hooks import PlacementHooks
from meridian.node.rebalance import RebalanceSettings
from meridian.node.server import HLC_META_KEY
from meridian.node.service import GameService
from meridian.node.service_host import ServiceHost, build_service
from meridian.sim.clock import NodeClock, Scheduler
from meridian.sim.disk import VirtualDisk
from meridian.sim.gamehost import EPOCH_MS, EngineDocuments, RecordingMerges, token_source
from meridian.sim.history import History
from meridian.sim.ledger import RecordingClock
from meridian.sim.meta import MetaServices, node_url
from meridian.sim.network import End, Network
from meridian.sync.codec import FrameType
from meridian.sync.engine import DocChanged, LinkClosed, LinkUp, SyncEngine
from meridian.sync.identity import Keyring, NodeIdentity
from meridian.sync.replicator import load_stored
from meridian.sync.settings import SyncSettings

ACK_FRAME = int(FrameType.ACK)
MIN_TICK_GAP_S = 1e-6  # after a tick, the next one is strictly later (no zero-time loops)


class NodeListener(Protocol):
    """What the simulation wants to hear from a node."""

    def doc_changed(self, node: SimNode, event: DocChanged) -> None: ...

    def link_event(self, node: SimNode, event: LinkUp | LinkClosed, was_up: bool) -> None: ...

    def durable(self, node: SimNode, event_no: int) -> None: ...

    def acks_arrived(self, node: SimNode) -> None: ...

    def service_output(self, node: SimNode) -> None: ...

    def merge(self, node: SimNode, kind: str, detail: str) -> None: ...


@dataclass(frozen=True)
class NodeSpec:
    """One node of a scenario."""

    node_id: str
    region: str
    fsync_s: float = 0.003
    frame_s: float = 0.0
    clock_offset_s: float = 0.0
    clock_rate: float = 1.0
    rebalance: RebalanceSettings | None = None  # the meta-services on (sim.meta), if given


class SimNode:
    """One region's node in the simulation (see module docstring)."""

    def __init__(
        self,
        spec: NodeSpec,
        *,
        seed: int,
        settings: SyncSettings,
        identity: NodeIdentity,
        keyring: Keyring,
        scheduler: Scheduler,
        network: Network,
        listener: NodeListener,
        disk_folder: Path,
    ) -> None:
        self.node_id = spec.node_id
        self.region = spec.region
        self.spec = spec
        self.seed = seed
        self.settings = settings
        self.identity = identity
        self.keyring = keyring
        self.scheduler = scheduler
        self.network = network
        self.listener = listener
        self.clock = NodeClock(spec.clock_offset_s, spec.clock_rate)
        self.disk = VirtualDisk(
            disk_folder / spec.node_id,
            scheduler,
            spec.fsync_s,
            self._on_durable,
            random.Random(f"meridian-sim:{seed}:{spec.node_id}:disk"),
        )
        self.peers: list[SimNode] = []
        self.incarnation = 0
        self.up = False
        self.reachable = True
        self.slow_factor = 1.0
        self._engine: SyncEngine | None = None
        self._ends: dict[int, End] = {}
        self._dialers: list[Dialer] = []
        self._busy_until = 0.0
        self._tick_at: float | None = None
        self._tick_generation = 0
        # Tests swap these for one node to inject a bug in the game layer (a broken merge rule).
        self.service_class: type[GameService] = GameService
        self.rules: GameRules[Any] = rules_module()
        self._service: GameService | None = None
        self._host: ServiceHost | None = None
        self.history: History | None = None  # set by the simulation: the HLC's stamps go there
        self.service_timers = True  # the run stops them before taking the final states
        self.durable_event = 0  # the engine's changes up to this one are on disk
        self.ack_regions = 0  # replication.ack_regions of the run
        self.game_backups: int | None = None  # replication.game_backups of the run
        self.placement: NodePlacement | None = None
        self.meta: MetaServices | None = None  # the load observer and rebalancer (sim.meta)

    @property
    def engine(self) -> SyncEngine:
        if self._engine is None:
            raise RuntimeError(f"node {self.node_id} is down")
        return self._engine

    @property
    def service(self) -> GameService:
        if self._service is None:
            raise RuntimeError(f"node {self.node_id} is down")
        return self._service

    def wall_ms(self) -> int:
        """The node's wall clock as the HLC reads it (milliseconds since the epoch)."""
        return EPOCH_MS + math.floor(self.clock.wall(self.scheduler.now) * 1000)

    def local_now(self) -> float:
        return self.clock.monotonic(self.scheduler.now)

    def after_local(self, seconds: float, action: Callable[..., object], *args: Any) -> None:
        """Run ``action`` once this node's own clock has advanced by ``seconds``."""
        self.scheduler.at(self.clock.true_time(self.local_now() + seconds), action, *args)

    # --- life cycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Start the process: a new engine, the disk's documents loaded, dialers running."""
        self.incarnation += 1
        self.up = self.reachable = True
        self.durable_event = 0
        self.placement = (
            None if self.game_backups is None else NodePlacement(self.game_backups, self.keyring)
        )
        self._engine = SyncEngine(
            identity=self.identity,
            keyring=self.keyring,
            settings=self.settings,
            rng=self._rng("engine"),
            wall_ms=self.wall_ms,
            auto_durable=False,
            url=node_url(self.node_id) if self.spec.rebalance is not None else "",
            wants=None if self.placement is None else self.placement.wants,
        )
        if self.placement is not None:
            self.placement.engine = self._engine
        loaded = self.disk.open()
        load_stored(self._engine, loaded)
        self._start_service(loaded.meta.get(HLC_META_KEY))
        if self.spec.rebalance is not None:
            self.meta = MetaServices(self, self.spec.rebalance)
            self.meta.start()
        dial_rng = self._rng("dial")
        self._dialers = [Dialer(self, peer, dial_rng) for peer in self.peers]
        for dialer in self._dialers:
            dialer.start()
        self._busy_until = self.scheduler.now
        self._pump()

    def _start_service(self, hlc_last: str | None) -> None:
        last = Stamp.decode(hlc_last) if hlc_last else None
        hlc = (
            HybridLogicalClock(self.node_id, self.wall_ms, last=last)
            if self.history is None
            else RecordingClock(
                self.node_id,
                self.wall_ms,
                last=last,
                history=self.history,
                now=lambda: self.scheduler.now,
                incarnation=self.incarnation,
            )
        )
        self._service = service = build_service(
            node_id=self.node_id,
            region=self.region,
            documents=EngineDocuments(self),
            rules=self.rules,
            hlc=hlc,
            wall_ms=self.wall_ms,
            new_token=token_source(self._rng("tokens")),
            rng=self._rng("service"),
            progress=EngineProgress(self.engine),
            ack_regions=self.ack_regions,
            service_class=self.service_class,
        )
        if self.placement is not None:
            hooks = PlacementHooks(self.placement.place, self.fetch, self.engine.unfollow)
            service.games_topic.placement.hooks = hooks
        # Merges found while loading were found before the crash too: only later ones are news.
        recording = RecordingMerges(lambda kind, detail: self.listener.merge(self, kind, detail))
        recording.counts = service.merges.counts
        service.merges = recording
        self._host = ServiceHost(
            service,
            clock=self.local_now,
            timers=NodeTimers(self),
            deliver=lambda: self.listener.service_output(self),
        )
        self._host.ticking = self.service_timers
        self._host.start()

    @property
    def host(self) -> ServiceHost:
        if self._host is None:
            raise RuntimeError(f"node {self.node_id} is down")
        return self._host

    def stop_service_timers(self) -> None:
        """No more ticks (the run stops them before it takes the final states)."""
        self.service_timers = False
        if self._host is not None:
            self._host.ticking = False

    def process_now(self) -> None:
        """``process`` and hand over what it says (``ServiceHost.process_now``)."""
        self.host.process_now()

    def deliver_output(self) -> None:
        """Hand over what the service releases now and arm its deadline."""
        self.host.deliver_output()

    def crash(self, *, keep_disk: bool, silent: bool) -> None:
        """Kill the process (``silent``: the whole machine, so no RST reaches the peers)."""
        if not self.up:
            return
        self._stop_dialing()
        for end in list(self._ends.values()):
            self.network.close(end, how="silent" if silent else "rst")
        self.disk.crash(keep=keep_disk)
        self._down(reachable=not silent)

    def stop(self) -> None:
        """Stop cleanly: SHUTDOWN to every peer, pending changes committed."""
        if not self.up:
            return
        self._stop_dialing()
        self.service.shutdown()
        self.host.deliver_output()
        # The HLC reading outlives the process (node.server.Node.stop keeps it the same way).
        self.disk.submit_meta(HLC_META_KEY, self.service.hlc.now().encode())
        self.engine.shutdown(self.local_now())
        self._pump()
        self.disk.flush()
        for end in list(self._ends.values()):
            self.network.close(end, how="fin")
        self._down(reachable=True)

    def _stop_dialing(self) -> None:
        for dialer in self._dialers:
            dialer.active = False
        self._dialers = []

    def _down(self, *, reachable: bool) -> None:
        self._ends.clear()
        self._engine = None
        self._service = None
        self.meta = None
        if self._host is not None:
            self._host.stop()
            self._host = None
        self.up = False
        self.reachable = reachable
        self._tick_at = None
        self._tick_generation += 1

    def _rng(self, purpose: str) -> random.Random:
        return random.Random(
            f"meridian-sim:{self.seed}:{self.node_id}:{purpose}:{self.incarnation}"
        )

    # --- local operations ------------------------------------------------------------------

    def write(self, doc_id: str, change: Callable[[Doc[Any]], Any]) -> int:
        event_no = self.engine.write(doc_id, change, self.local_now())
        self._pump()
        return event_no

    def fetch(self, doc_id: str) -> None:
        """Partial replication: keep a document this region is no replica of."""
        if self.placement is not None and self.placement.needs_fetch(doc_id):
            self.engine.follow(doc_id, self.local_now())
            self._pump()

    def request_sync(self, doc_id: str) -> None:
        """Ask the linked peers for what this node lacks of a document."""
        self.engine.request_sync(doc_id, self.local_now())
        self._pump()

    # --- the network's side (sim.network.Host) ---------------------------------------------

    def open_end(self, end: End, *, initiator: bool) -> None:
        end.link_id = self.engine.open_link(self.local_now(), initiator=initiator)
        self._ends[end.link_id] = end
        self._pump()

    def deliver(self, end: End, frames: list[bytes]) -> None:
        self._queue(len(frames), self._receive, end, frames)

    def end_closed(self, end: End, reason: str) -> None:
        self._queue(1, self._close_end, end, reason)

    def _queue(self, frames: int, action: Callable[..., None], *args: Any) -> None:
        """Process inputs in arrival order, each taking frame_s times the slow factor."""
        now = self.scheduler.now
        cost = self.spec.frame_s * self.slow_factor * frames
        if now >= self._busy_until:
            self._busy_until = now + cost
            action(*args)
        else:
            start = self._busy_until
            self._busy_until += cost
            self.scheduler.at(start, action, *args)

    def _receive(self, end: End, frames: list[bytes]) -> None:
        if not end.alive() or self._ends.get(end.link_id) is not end:
            return
        engine = self.engine
        now = self.local_now()
        for frame in frames:
            engine.receive(end.link_id, frame, now)
        self._pump()
        if any(frame[0] == ACK_FRAME for frame in frames if frame):
            self.listener.acks_arrived(self)
        if self._host is not None:
            self._host.progressed()  # as the replicator after every frame: acks open the gate

    def _close_end(self, end: End, reason: str) -> None:
        if end.alive() and self._ends.get(end.link_id) is end:
            self.engine.close_link(end.link_id, self.local_now(), reason)
            self._pump()

    # --- after every call into the engine ---------------------------------------------------

    def _pump(self, *, just_ticked: bool = False) -> None:
        engine = self.engine
        for link_id in engine.links_with_output():
            frames = engine.take_outgoing(link_id)
            end = self._ends.get(link_id)
            if end is not None:
                self.network.send(end, frames)
        for event in engine.take_events():
            if isinstance(event, DocChanged):
                self.disk.submit(event.event_no, event.doc_id, event.update)
                if self._host is not None:
                    self._host.doc_changed(event.doc_id, event.event_no)
                if self.meta is not None:
                    self.meta.doc_changed(event)
                self.listener.doc_changed(self, event)
            elif isinstance(event, LinkUp | LinkClosed):
                self._on_link_event(event)  # a PeerRefused is followed by its LinkClosed
        if self._engine is not None:
            self._schedule_tick(just_ticked)

    def _on_link_event(self, event: LinkUp | LinkClosed) -> None:
        if isinstance(event, LinkUp):
            end = self._ends.get(event.link_id)
            if end is not None:
                end.got_up = True
            self.listener.link_event(self, event, True)
            return
        closed = self._ends.pop(event.link_id, None)
        if closed is not None:
            self.network.close(closed, how="fin")
            if closed.dialer is not None:
                # The peer named itself in its HELLO even if the link was then refused.
                closed.dialer.link_ended(was_up=closed.got_up, peer_named=event.node_id is not None)
        self.listener.link_event(self, event, closed is not None and closed.got_up)

    def _schedule_tick(self, just_ticked: bool) -> None:
        now = self.scheduler.now
        due = self.clock.true_time(self.engine.next_deadline(self.local_now()))
        if just_ticked:
            due = max(due, now + MIN_TICK_GAP_S)
        if self._tick_at is not None and self._tick_at <= due:
            return
        self._tick_at = due
        self._tick_generation += 1
        self.scheduler.at(due, self._tick, self._tick_generation)

    def _tick(self, generation: int) -> None:
        if generation != self._tick_generation:
            return
        self._tick_at = None
        self.engine.tick(self.local_now())
        self._pump(just_ticked=True)

    def _on_durable(self, event_no: int) -> None:
        if self._engine is None:
            return
        self.durable_event = max(self.durable_event, event_no)
        self._engine.durable_through(event_no, self.local_now())
        self._pump()
        self.listener.durable(self, event_no)
        if self._host is not None:
            self._host.progressed()


class NodeTimers:
    """``ServiceHost`` timers on a simulated node's own (possibly skewed) clock (a stopped
    host ignores the ones that fire after its process ended)."""

    def __init__(self, node: SimNode) -> None:
        self.node = node

    def soon(self, action: Callable[[], None]) -> None:
        self.node.scheduler.after(0.0, action)

    def later(self, delay_s: float, action: Callable[[], None]) -> None:
        self.node.after_local(delay_s, action)


class Dialer:
    """Keeps one outgoing link to a peer, like ``sync.transport.PeerDialer._dial_loop``."""

    def __init__(self, node: SimNode, target: SimNode, rng: random.Random) -> None:
        self.node = node
        self.target = target
        self.rng = rng
        self.backoff = node.settings.reconnect_min_s
        self.known = False  # the real dialer learns who answers a URL from a HELLO
        self.active = True

    def start(self) -> None:
        self.node.scheduler.after(0.0, self._dial)

    def _dial(self) -> None:
        if not self.active:
            return
        settings = self.node.settings
        if self.known and self.target.node_id in self.node.engine.up_peers():
            # Linked through the peer's own dial: idle instead of dialing a duplicate.
            self.node.after_local(settings.reconnect_max_s * self.rng.uniform(0.5, 1.0), self._dial)
            return
        self.node.network.dial(self.node, self.target, self)

    def dial_failed(self, reason: str) -> None:
        if self.active:
            self._redial_later()

    def link_ended(self, *, was_up: bool, peer_named: bool) -> None:
        if not self.active:
            return
        self.known = self.known or peer_named
        if was_up:
            self.backoff = self.node.settings.reconnect_min_s
        self._redial_later()

    def _redial_later(self) -> None:
        self.node.after_local(self.backoff * self.rng.uniform(0.5, 1.0), self._dial)
        self.backoff = min(self.node.settings.reconnect_max_s, self.backoff * 2)
