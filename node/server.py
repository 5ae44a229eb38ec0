"""One Meridian node: store, sync engine, peer links, discovery and the HTTP surface, wired up.

`Node.start()` reloads every document from the local SQLite store, starts the replicator, the
HTTP server (players, admin, metrics, and the ``/peer`` websocket) and the dialers for the
static seeds (and zeroconf discovery when enabled). `Node.stop()` closes links with a reason,
flushes the store and stops in the reverse order. `Node.drain` (``node.drain``) hands the
players over to other regions first; ``meridian node`` runs it on SIGTERM. The meta-services,
the load observer (``node.observer``) and the rebalancer (``node.rebalancer``, when
``rebalance.enabled``), start after the game service and stop before it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web
from pycrdt import Doc

from meridian.crdt_models.hlc import HybridLogicalClock, Stamp
from meridian.games.battleline import rules_module
from meridian.node.admin_api import add_admin_routes
from meridian.node.config import NodeConfig, load_identity
from meridian.node.delivery import EngineProgress
from meridian.node.drain import NodeDrain, add_drain_routes
from meridian.node.game_placement import NodePlacement
from meridian.node.metrics import node_registry
from meridian.node.observer import LoadObserver
from meridian.node.password_pool import DEFAULT_PASSWORD_COST, PASSWORD_COST_ENV
from meridian.node.placement_hooks import PlacementHooks
from meridian.node.player_api import PlayerGateway
from meridian.node.rebalancer import Rebalancer
from meridian.node.service import GameService
from meridian.node.service_host import ServiceHost, build_service
from meridian.node.web import add_web_routes
from meridian.sync.engine import PROTOCOL_VERSION, DocChanged, SyncEngine
from meridian.sync.replicator import Replicator, load_stored
from meridian.sync.store import DocumentStore, GroupCommitStore, StoreError
from meridian.sync.transport import PeerAcceptor, PeerDialer

if TYPE_CHECKING:  # zeroconf is imported only by a node that uses it (cluster.zeroconf)
    from meridian.sync.discovery import DiscoveredPeer, ZeroconfDiscovery

log = logging.getLogger("meridian.node")

SOFTWARE_VERSION = "meridian/0.1.0"
STORE_FILE = "meridian.sqlite3"
HLC_META_KEY = "hlc_last"
MAX_HTTP_BODY_BYTES = 1024 * 1024  # the backup import streams its own, larger body


class ReplicatorDocuments:
    """The service's view of the replicated documents (see node.service.Documents)."""

    def __init__(self, replicator: Replicator) -> None:
        self.replicator = replicator

    def get(self, doc_id: str) -> Doc[Any] | None:
        return self.replicator.engine.docs.get(doc_id)

    def ids(self) -> list[str]:
        return list(self.replicator.engine.docs)

    def write(self, doc_id: str, change: Callable[[Doc[Any]], Any]) -> int:
        return self.replicator.write(doc_id, change)

    def ask_peers(self, doc_id: str) -> bool:
        return self.replicator.ask_peers(doc_id)


class LoopTimers:
    """``ServiceHost`` timers on the running asyncio loop."""

    def soon(self, action: Callable[[], None]) -> None:
        asyncio.get_running_loop().call_soon(action)

    def later(self, delay_s: float, action: Callable[[], None]) -> None:
        asyncio.get_running_loop().call_later(delay_s, action)


class Node:
    """A running region node (see module docstring)."""

    def __init__(
        self,
        config: NodeConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_ms: Callable[[], int] = lambda: int(time.time() * 1000),
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.rng = rng or random.Random(secrets.randbits(64))
        self.started_at = clock()
        self.wall_ms = wall_ms
        self.hlc: HybridLogicalClock
        self.replicator: Replicator
        self.store: GroupCommitStore
        self.dialer: PeerDialer
        self.discovery: ZeroconfDiscovery | None = None
        self._runner: web.AppRunner | None = None
        self.app = web.Application(client_max_size=MAX_HTTP_BODY_BYTES)
        self.service: GameService
        self.players: PlayerGateway
        self.drain: NodeDrain  # SIGTERM and POST /api/admin/drain (node.drain)
        self.host: ServiceHost
        self.observer: LoadObserver  # the load meta-service (node.observer)
        self.rebalancer: Rebalancer  # moves players off a hot process (node.rebalancer)

    # --- what the routes see (node.context.NodeContext) ---------------------------------------

    @property
    def node_id(self) -> str:
        return self.config.node_id

    @property
    def region(self) -> str:
        return self.config.region

    @property
    def public_url(self) -> str:
        return self.config.public_url

    @property
    def ack_regions(self) -> int:
        return self.config.ack_regions

    @property
    def admin_token(self) -> str:
        return self.config.admin_token

    @property
    def engine(self) -> SyncEngine:
        return self.replicator.engine

    async def start(self) -> None:
        self._open_store_and_engine()
        await self.store.start()
        await self.replicator.start()
        self._start_service()
        self.observer = LoadObserver(self)
        self.observer.start()
        self._build_http()
        self.rebalancer = Rebalancer(
            self,
            self.observer,
            self.config.rebalance,
            wall_ms=self.wall_ms,
            paused=lambda: self.drain.draining,
            clock=self.clock,
        )
        self.rebalancer.start()
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.listen_host, self.config.listen_port)
        await site.start()
        log.info(
            "node %s (region %s) listening on %s:%d, public URL %s",
            self.config.node_id,
            self.config.region,
            self.config.listen_host,
            self.config.listen_port,
            self.config.public_url,
        )
        if self.config.password_cost != DEFAULT_PASSWORD_COST:
            log.warning(
                "new passwords are hashed at the %r cost (%s): for test clusters only",
                self.config.password_cost,
                PASSWORD_COST_ENV,
            )
        self._start_peering()
        if self.config.zeroconf:
            await self._start_discovery()

    def _open_store_and_engine(self) -> None:
        """Load the store into a fresh engine; raises StoreError if the file is unusable."""
        config = self.config
        config.data_dir.mkdir(parents=True, exist_ok=True)
        identity, keyring = load_identity(config)
        document_store = DocumentStore(Path(config.data_dir) / STORE_FILE)
        try:
            loaded = document_store.load()
        except StoreError:
            document_store.close()
            raise
        self.placement = (
            None if config.game_backups is None else NodePlacement(config.game_backups, keyring)
        )
        engine = SyncEngine(
            identity=identity,
            keyring=keyring,
            settings=config.sync,
            rng=self.rng,
            wall_ms=self.wall_ms,
            max_ahead_ms=config.max_clock_ahead_ms,
            software=SOFTWARE_VERSION,
            url=config.public_url,
            wants=None if self.placement is None else self.placement.wants,
        )
        if self.placement is not None:
            self.placement.engine = engine
        self.store = GroupCommitStore(document_store)
        self.replicator = Replicator(engine, self.store, clock=self.clock)
        for corrupt in loaded.corrupt:
            log.error(
                "store: %s; document quarantined: served read-only from its intact rows, local "
                "writes refused, /healthz degraded until a peer holding it refills it",
                corrupt,
            )
            self.replicator.quarantine(
                corrupt.doc_id, f"row {corrupt.row_id} ({corrupt.kind}): {corrupt.detail}"
            )
        load_stored(engine, loaded)
        last = loaded.meta.get(HLC_META_KEY)
        self.hlc = HybridLogicalClock(
            config.node_id,
            self.wall_ms,
            max_ahead_ms=config.max_clock_ahead_ms,
            last=Stamp.decode(last) if last else None,
        )
        log.info(
            "store: loaded %d documents from %s (%d quarantined)",
            len(loaded.updates) + len(loaded.salvaged),
            config.data_dir,
            len(loaded.salvaged),
        )

    def _start_service(self) -> None:
        self.service = build_service(
            node_id=self.config.node_id,
            region=self.config.region,
            documents=ReplicatorDocuments(self.replicator),
            rules=rules_module(),
            hlc=self.hlc,
            wall_ms=self.wall_ms,
            new_token=lambda: secrets.token_urlsafe(24),
            rng=self.rng,
            progress=EngineProgress(self.engine),
            ack_regions=self.config.ack_regions,
        )
        if self.placement is not None:
            hooks = PlacementHooks(self.placement.place, self._fetch, self.engine.unfollow)
            self.service.games_topic.placement.hooks = hooks
        self.players = PlayerGateway(self, self.service)
        self.host = ServiceHost(
            self.service, clock=self.clock, timers=LoopTimers(), deliver=self.players.drain
        )
        self.replicator.listeners.append(self._note_change)
        self.replicator.progress_listeners.append(self.host.progressed)
        self.host.start()

    def _fetch(self, doc_id: str) -> None:
        """Partial replication: keep a document this region is no replica of."""
        if self.placement is not None and self.placement.needs_fetch(doc_id):
            self.engine.follow(doc_id, self.clock())
            self.replicator.pump()

    def _note_change(self, change: DocChanged) -> None:
        self.host.doc_changed(change.doc_id, change.event_no)

    def _build_http(self) -> None:
        from meridian.node.http_api import add_routes

        acceptor = PeerAcceptor(self.replicator, self.config.sync.max_frame_bytes)
        self.app.router.add_get("/peer", acceptor.handle)
        add_routes(self.app, self, node_registry(self))
        self.players.add_routes(self.app)
        add_web_routes(self.app, self)
        add_admin_routes(self.app)
        self.drain = NodeDrain(
            self, deadline_s=self.config.drain_deadline_s, flush_store=self.store.flush
        )
        add_drain_routes(self.app, self.drain)

    def _start_peering(self) -> None:
        settings = self.config.sync
        self.dialer = PeerDialer(
            self.replicator,
            min_backoff_s=settings.reconnect_min_s,
            max_backoff_s=settings.reconnect_max_s,
            max_frame_bytes=settings.max_frame_bytes,
            connect_timeout_s=settings.connect_timeout_s,
            rng=self.rng,
        )
        for url in self.config.peers:
            self.dialer.add(url)

    async def _start_discovery(self) -> None:
        from meridian.sync.discovery import ZeroconfDiscovery

        self.discovery = ZeroconfDiscovery(
            node_id=self.config.node_id,
            region=self.config.region,
            proto=str(PROTOCOL_VERSION),
            url=self.config.public_url,
            port=self.config.listen_port,
            on_found=self._on_discovered,
        )
        await self.discovery.start()

    def _on_discovered(self, peer: DiscoveredPeer) -> None:
        if peer.node_id in self.engine.up_peers():
            return
        log.info("zeroconf: found %s (region %s) at %s", peer.node_id, peer.region, peer.url)
        self.dialer.add(peer.url)

    def stamp(self) -> Stamp:
        """A fresh HLC stamp, persisted with the next commit so it survives a restart."""
        stamp = self.hlc.now()
        self.store.submit_meta(HLC_META_KEY, stamp.encode())
        return stamp

    async def stop(self) -> None:
        await self.rebalancer.stop()
        await self.observer.stop()
        self.host.stop()
        self.service.shutdown()
        self.players.drain()
        if self.discovery is not None:
            await self.discovery.close()
        await self.dialer.close()
        await self.replicator.stop()
        self.store.submit_meta(HLC_META_KEY, self.hlc.now().encode())
        if self._runner is not None:
            await self._runner.cleanup()
        await self.store.close()
        log.info("node %s stopped", self.config.node_id)
