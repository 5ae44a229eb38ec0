"""Drain: take a node out of service without dropping its players (SIGTERM, or the admin API).

A drain, once started, runs these steps and then lets the process exit 0:

1. **Stop taking players.** ``/readyz`` answers 503 (a load balancer or Kubernetes stops sending
   players here); a new ``/ws``, ``/api/login`` or ``/api/register`` is refused with 503 and the
   error code ``draining``, naming a region to use instead. Players already here keep playing.
2. **Hand every player over.** A target is chosen among the peers linked right now that are not
   draining themselves (their ``/readyz`` does not answer 503), round robin over the sessions.
   Each session gets a fresh resume token (recorded in this node's presence document), and once
   the target region holds that record (after ``PREFERRED_WAIT_S`` any target holding it; after
   ``TARGET_WAIT_S`` the chosen one regardless) each of the session's connections is sent one
   push: ``{"type": "drain", "region", "url", "resume", "message"}``
   (docs/protocol.md). It leaves after everything already said to that connection, so the player
   has seen every move before moving. The client opens ``/ws`` at ``url`` with
   ``hello {"resume": ...}``; the target takes the session over and this node then closes the
   old connection (4104) as for any session continued elsewhere.
3. **Wait** until no player is connected here any more, or ``node.drain_deadline_s`` passed.
4. **Flush.** Wait until the local store holds every change and every linked peer acknowledged
   every change this node wrote (its own presence document aside), for at most
   ``FLUSH_MAX_S``. The node's normal stop then closes whoever is left (4000) and the links.

Without any target (a single node, or every other region down or draining) step 2 is skipped:
the players are closed with 4000 at the stop and reconnect by themselves, as before drains.

The hand-over itself (`begin_handover`, then `tell_handovers`) is shared with the rebalancer
(``node.rebalancer``), which moves single players at a safe point with the same notice. Both
see the node only through `HandoverHost` (identity, engine, replicator, game service, player
gateway); the drain also gets its deadline and a way to flush the store, nothing else.

HTTP (added by `add_drain_routes`): ``GET /readyz``; ``POST /api/admin/drain`` (admin token)
starts a drain and answers 202 at once, or with ``{"wait": true}`` answers the report once the
drain is done; ``GET /api/admin/drain`` tells whether one runs and its report so far.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import aiohttp
from aiohttp import web

from meridian.crdt_models.presence import PRESENCE_PREFIX, presence_doc_id
from meridian.node.http_api import (
    NODE_KEY,
    WEBSOCKET_PATH,
    answered,
    bad_request,
    error_response,
    require_admin,
)
from meridian.node.refusals import ErrorCode
from meridian.sync.engine import DocChanged

if TYPE_CHECKING:
    from meridian.node.player_api import PlayerGateway
    from meridian.node.service import GameService, HandedOver
    from meridian.sync.engine import SyncEngine
    from meridian.sync.replicator import Replicator

log = logging.getLogger("meridian.drain")

POLL_S = 0.05
TARGET_WAIT_S = 3.0  # a notice waits at most this long for a target to hold the resume record
PREFERRED_WAIT_S = 0.5  # then any target holding it will do, not only the one chosen
READY_TIMEOUT_S = 1.0  # the readiness probe of a candidate target
# The flush waits at most this long, after the players: an up-to-date peer acknowledges within
# milliseconds, and the ack bookkeeping can lag behind what a peer holds (after a link was
# replaced), so it is bounded separately from the players' deadline.
FLUSH_MAX_S = 5.0
REFUSED_WHILE_DRAINING = frozenset({WEBSOCKET_PATH, "/api/login", "/api/register"})
DRAIN_KEY: web.AppKey[NodeDrain] = web.AppKey("drain")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class HandoverHost(Protocol):
    """What a hand-over (and so the drain and the rebalancer) uses of a running node."""

    @property
    def node_id(self) -> str: ...

    @property
    def region(self) -> str: ...

    @property
    def engine(self) -> SyncEngine: ...

    @property
    def replicator(self) -> Replicator: ...

    @property
    def service(self) -> GameService: ...

    @property
    def players(self) -> PlayerGateway: ...


@dataclass(frozen=True)
class Target:
    node_id: str
    region: str
    url: str


@dataclass(frozen=True)
class Handover:
    """One session being handed over: its chosen target, the new resume token (and the presence
    change holding it), and its connections here."""

    sid: str
    target: Target
    handed: HandedOver
    conn_ids: list[str]


@dataclass(frozen=True)
class Told:
    """How one hand-over ended: the target named in the notice (None: no notice was sent, and
    the session's old resume token was put back)."""

    handover: Handover
    target: Target | None


def begin_handover(
    host: HandoverHost, sid: str, conn_ids: list[str], target: Target
) -> Handover | None:
    """Give session `sid` a fresh resume token for `target` (None: not a session here)."""
    handed = host.service.hand_over(sid)
    return Handover(sid, target, handed, conn_ids) if handed is not None else None


async def tell_handovers(
    host: HandoverHost,
    pending: Sequence[Handover],
    *,
    message: Callable[[Target], str],
    give_up: float,
    alternatives: Sequence[Target] = (),
    ready: Callable[[Handover], bool] | None = None,
    force: bool = False,
    trust_link_after: float | None = None,
) -> list[Told]:
    """Send each hand-over's ``drain`` notice once its target holds the new resume record and
    `ready` (if given) says the player may go now; returns how each ended.

    After PREFERRED_WAIT_S any of `alternatives` that holds the record will do instead; after
    `trust_link_after` seconds (if given) the chosen target counts as holding it while its link
    is up (the ack bookkeeping can lag behind what a peer holds after a link was replaced, as
    long as an anti-entropy round). At `give_up` (monotonic seconds) a hand-over still waiting
    is either told its chosen target anyway (`force`: the drain; the client falls back to its
    usual failover) or taken back (the rebalancer: the player stays, with the token their
    client holds)."""
    host.replicator.pump()
    began = time.monotonic()
    waiting = list(pending)
    ended: list[Told] = []
    while waiting:
        waited = time.monotonic() - began
        late = time.monotonic() >= give_up
        for handover in list(waiting):
            going_to = _target_for(host, handover, alternatives, waited, trust_link_after)
            if going_to is not None and ready is not None and not ready(handover):
                going_to = None  # the target is ready, the player is not (not at a safe point)
            if going_to is None and late and force:
                log.warning("drain: %s did not acknowledge a session in time", handover.target)
                going_to = handover.target
            if going_to is not None:
                notice = _notice(going_to, handover.handed.resume, message)
                for conn_id in handover.conn_ids:
                    host.service.notify(conn_id, notice)
            elif late:
                host.service.take_back(handover.sid, handover.handed)
            else:
                continue
            ended.append(Told(handover, going_to))
            waiting.remove(handover)
        host.players.drain()
        if waiting:
            await asyncio.sleep(POLL_S)
    return ended


def _target_for(
    host: HandoverHost,
    handover: Handover,
    alternatives: Sequence[Target],
    waited: float,
    trust_link_after: float | None,
) -> Target | None:
    """Where to send the player now (None: wait): the chosen target once it holds the new
    resume record (or, after `trust_link_after`, while its link is up); after PREFERRED_WAIT_S
    any alternative that holds it (a region that just restarted may acknowledge late)."""
    presence = presence_doc_id(host.node_id)
    engine = host.engine
    event_no = handover.handed.event_no
    chosen = handover.target.node_id
    if engine.peer_holds(chosen, presence, event_no):
        return handover.target
    trusted = trust_link_after is not None and waited >= trust_link_after
    if trusted and chosen in engine.up_peers():
        return handover.target
    if waited >= PREFERRED_WAIT_S:
        for target in alternatives:
            if engine.peer_holds(target.node_id, presence, event_no):
                return target
    return None


def _notice(target: Target, resume: str, message: Callable[[Target], str]) -> dict[str, Any]:
    return {
        "type": "drain",
        "region": target.region,
        "url": target.url,
        "resume": resume,
        "message": message(target),
    }


def sessions_here(service: GameService) -> dict[str, list[str]]:
    """Session id -> its connections here (players past hello)."""
    by_sid: dict[str, list[str]] = {}
    for conn in service.conns.values():
        if conn.sid:
            by_sid.setdefault(conn.sid, []).append(conn.conn_id)
    return by_sid


def linked_targets(engine: SyncEngine) -> list[Target]:
    """The peers linked right now that have a URL players can use, by region."""
    up = set(engine.up_peers())
    return [
        Target(p.node_id, p.region, p.url)
        for p in sorted(engine.peers.values(), key=lambda p: (p.region, p.node_id))
        if p.node_id in up and p.url
    ]


async def ready_targets(candidates: Sequence[Target]) -> list[Target]:
    """Those of `candidates` that take players now (their ``/readyz`` does not answer 503)."""
    async with aiohttp.ClientSession() as http:
        ready = await asyncio.gather(*(_is_ready(http, t.url) for t in candidates))
    return [t for t, ok in zip(candidates, ready, strict=True) if ok]


@dataclass
class DrainReport:
    """What a drain did (logged, and answered by ``GET /api/admin/drain``)."""

    sessions: int = 0  # sessions connected here when the drain began
    told: int = 0  # sessions sent a drain notice
    left: int = 0  # sessions still connected at the end (closed with 4000 by the stop)
    flushed: bool = False  # the store and every linked peer hold every change
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "sessions": self.sessions,
            "told": self.told,
            "left": self.left,
            "flushed": self.flushed,
            "seconds": round(self.seconds, 3),
        }


class NodeDrain:
    """The drain of one node (see module docstring); `start` is idempotent."""

    def __init__(
        self,
        host: HandoverHost,
        *,
        deadline_s: float,
        flush_store: Callable[[], Awaitable[None]],
    ) -> None:
        self.host = host
        self.deadline_s = deadline_s
        self.flush_store = flush_store
        self.draining = False
        self.finished = asyncio.Event()
        self.report = DrainReport()
        self.targets: list[Target] = []
        self._task: asyncio.Task[None] | None = None
        self._last_local: dict[str, int] = {}  # doc -> this node's latest own change to it
        host.replicator.listeners.append(self._note_change)

    def _note_change(self, change: DocChanged) -> None:
        # This node's presence is left out of the flush: it describes this process, which is
        # ending, and its sessions that matter were handed over (and waited for) one by one.
        if change.origin is None and not change.doc_id.startswith(PRESENCE_PREFIX):
            self._last_local[change.doc_id] = change.event_no

    def start(self) -> None:
        if self._task is None:
            self.draining = True  # from now on new players are refused
            self._task = asyncio.create_task(self._run(), name="drain")

    async def _run(self) -> None:
        started = time.monotonic()
        deadline = started + self.deadline_s
        sessions = self._sessions()
        self.report.sessions = len(sessions)
        log.info(
            "drain: started; %d player session(s) here, deadline %.0f s",
            len(sessions),
            self.deadline_s,
        )
        try:
            self.targets = await self._ready_targets()
            if self.targets and sessions:
                await self._hand_over(sessions, deadline)
            await self._wait_for_players(deadline)
            self.report.left = len(self._sessions())
            self.report.flushed = await self._flush(time.monotonic() + FLUSH_MAX_S)
        except Exception:
            log.exception("drain: failed; stopping anyway")
        self.report.seconds = time.monotonic() - started
        log.info("drain: done; %s", self.report.to_json())
        self.finished.set()

    # --- step 1: who is here, where they can go -----------------------------------------------

    def _sessions(self) -> dict[str, list[str]]:
        return sessions_here(self.host.service)

    async def _ready_targets(self) -> list[Target]:
        targets = await ready_targets(linked_targets(self.host.engine))
        # Another process of this region first: its players stay near (several per region).
        targets = [t for t in targets if t.region == self.host.region] or targets
        log.info("drain: targets %s", ", ".join(t.node_id for t in targets) or "none")
        return targets

    # --- step 2: the hand-over ---------------------------------------------------------------

    async def _hand_over(self, sessions: dict[str, list[str]], deadline: float) -> None:
        pending = [
            handover
            for target, (sid, conn_ids) in zip(itertools.cycle(self.targets), sessions.items())
            if (handover := begin_handover(self.host, sid, conn_ids, target)) is not None
        ]
        here = self.host.region
        told = await tell_handovers(
            self.host,
            pending,
            message=lambda target: (
                f"region {here} is going down for maintenance; continuing in {target.region}"
            ),
            give_up=min(deadline, time.monotonic() + TARGET_WAIT_S),
            alternatives=self.targets,
            force=True,
        )
        self.report.told += sum(1 for t in told if t.target is not None)

    # --- steps 3 and 4 -------------------------------------------------------------------------

    async def _wait_for_players(self, deadline: float) -> None:
        log.info("drain: told %d session(s); waiting for them to move", self.report.told)
        # Sessions leave through the sans-IO service, which signals nothing: poll, bounded.
        while self._sessions() and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(POLL_S)
        if left := self._sessions():
            log.warning("drain: deadline passed with %d session(s) still here", len(left))

    async def _flush(self, deadline: float) -> bool:
        """Wait until the store and every linked peer hold this node's changes (False: timed
        out, the rest is left to the peers' anti-entropy with this node's store on restart)."""
        latest = dict(self._last_local)
        self.host.replicator.pump()
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                await self.flush_store()  # everything submitted so far is on disk
                # Peers' acks land in the engine's counters, not in an event: poll, bounded.
                while self._not_held(latest):  # noqa: ASYNC110
                    await asyncio.sleep(POLL_S)
                return True
        except TimeoutError:
            missing = self._not_held(latest)
            shown = ", ".join(f"{peer}:{doc_id}" for peer, doc_id in missing[:5])
            log.warning("drain: flush timed out; not acknowledged: %s", shown or "(store)")
            return False

    def _not_held(self, latest: dict[str, int]) -> list[tuple[str, str]]:
        """(peer, document) pairs where a linked peer has not acknowledged this node's latest
        change."""
        engine = self.host.engine
        return [
            (peer, doc_id)
            for peer in engine.up_peers()
            for doc_id, event_no in sorted(latest.items())
            if not engine.peer_holds(peer, doc_id, event_no)
        ]

    # --- HTTP -------------------------------------------------------------------------------

    def suggestion(self) -> str:
        if self.targets:
            return f"; use {self.targets[0].url} (region {self.targets[0].region})"
        return "; use another region"


async def _is_ready(http: aiohttp.ClientSession, url: str) -> bool:
    """A peer can take players unless it is draining (503) or does not answer. An older node
    without /readyz (404) counts as ready: it takes players as it always did."""
    try:
        timeout = aiohttp.ClientTimeout(total=READY_TIMEOUT_S)
        async with http.get(f"{url}/readyz", timeout=timeout) as response:
            return response.status != 503
    except (aiohttp.ClientError, OSError, TimeoutError):
        return False


def add_drain_routes(app: web.Application, drain: NodeDrain) -> None:
    """``GET /readyz``, ``POST|GET /api/admin/drain`` and the refusal of new players."""
    app[DRAIN_KEY] = drain
    app.middlewares.append(refuse_new_players)
    app.router.add_get("/readyz", readyz)
    app.router.add_post("/api/admin/drain", start_drain)
    app.router.add_get("/api/admin/drain", drain_status)


@web.middleware
def refuse_new_players(request: web.Request, handler: Handler) -> Awaitable[web.StreamResponse]:
    """(A plain function: see `node.http_api.answered`.)"""
    drain = request.app[DRAIN_KEY]
    if drain.draining and request.path in REFUSED_WHILE_DRAINING:
        message = "this node is shutting down" + drain.suggestion()
        return answered(error_response(503, ErrorCode.DRAINING, message))
    return handler(request)


async def readyz(request: web.Request) -> web.Response:
    """200 while the node takes players, 503 once it drains (readiness probes, load balancers)."""
    drain = request.app[DRAIN_KEY]
    node = request.app[NODE_KEY]
    body = {"status": "draining" if drain.draining else "ready", "node": node.node_id}
    return web.json_response(body, status=503 if drain.draining else 200)


async def start_drain(request: web.Request) -> web.Response:
    """202 at once; with ``{"wait": true}`` 200 and the report once the drain is done (the
    answer leaves before the node stops)."""
    require_admin(request)
    drain = request.app[DRAIN_KEY]
    try:
        body = await request.json() if request.can_read_body else {}
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise bad_request("bad_request", "body is not JSON") from None
    drain.start()
    if isinstance(body, dict) and body.get("wait") is True:
        await drain.finished.wait()
        node_id = request.app[NODE_KEY].node_id
        return web.json_response({"node": node_id, **drain.report.to_json()})
    return web.json_response(
        {
            "draining": True,
            "node": request.app[NODE_KEY].node_id,
            "deadline_s": drain.deadline_s,
        },
        status=202,
    )


async def drain_status(request: web.Request) -> web.Response:
    require_admin(request)
    drain = request.app[DRAIN_KEY]
    done = drain.finished.is_set()
    return web.json_response({"draining": drain.draining, "done": done, **drain.report.to_json()})
