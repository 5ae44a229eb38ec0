"""The game service in memory: a fake document layer, a hand-driven clock and a seeded rng.

`ServiceHarness` builds the production `GameService` (the facade and its topics) on
`MemoryDocuments` (pycrdt documents in a dict, each write numbered like the sync engine
numbers changes), `InstantProgress` (every change durable at once, none replicated) and a
virtual clock. Players are `Player` objects: an account registered through the shared account
flow with a cheap hasher, a session, and one or more connections whose replies and pushes are
collected. Several harnesses can share one `MemoryDocuments`' documents through `sync_from`,
which copies every document across like replication would.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pycrdt import Doc

from meridian.crdt_models.hlc import HybridLogicalClock
from meridian.games.battleline import rules_module
from meridian.node.account_flow import (
    PULL_POLL_S,
    AccountFlow,
    CheckPassword,
    Effect,
    Flow,
    HashPassword,
    RequestAccounts,
    answer_of,
    run_sync,
)
from meridian.node.delivery import Close, Send
from meridian.node.protocol import (
    HomeBody,
    LoginBody,
    PasswordBody,
    Refused,
    RegisterBody,
    decode_body,
)
from meridian.node.service import GameService

EPOCH_MS = 1_767_225_600_000
PASSWORD = "correct horse battery"


class MemoryDocuments:
    """`node.service.Documents` over plain pycrdt documents, changes numbered from 1."""

    def __init__(self) -> None:
        self.docs: dict[str, Doc[Any]] = {}
        self.event_no = 0
        self.writes: list[str] = []  # doc ids, in write order
        self.listener: Callable[[str, int], None] = lambda doc_id, event_no: None
        self.linked = False  # whether `ask_peers` has a linked region to ask
        self.unanswered: set[str] = set()  # documents asked of the linked regions, unanswered

    def get(self, doc_id: str) -> Doc[Any] | None:
        return self.docs.get(doc_id)

    def ids(self) -> list[str]:
        return list(self.docs)

    def write(self, doc_id: str, change: Callable[[Doc[Any]], Any]) -> int:
        doc = self.docs.setdefault(doc_id, Doc())
        with doc.transaction():
            change(doc)
        self.event_no += 1  # (the engine numbers only real changes; every write is one here)
        self.writes.append(doc_id)
        self.listener(doc_id, self.event_no)
        return self.event_no

    def ask_peers(self, doc_id: str) -> bool:
        if self.linked:
            self.unanswered.add(doc_id)
        return self.linked

    def snapshot(self) -> dict[str, bytes]:
        return {doc_id: doc.get_update() for doc_id, doc in sorted(self.docs.items())}


class InstantProgress:
    """Every change is durable as soon as it is made; `held` regions hold what it says."""

    def __init__(self, documents: MemoryDocuments) -> None:
        self.documents = documents
        self.durable: int | None = None  # None: everything written so far
        self.held = 0
        self.peer_protocol: int | None = None  # the oldest linked peer's protocol version

    def durable_through(self) -> int:
        return self.documents.event_no if self.durable is None else self.durable

    def regions_holding(self, doc_id: str, event_no: int) -> int:
        return self.held

    def oldest_peer_protocol(self) -> int | None:
        return self.peer_protocol

    def asking(self, doc_id: str) -> bool:
        return doc_id in self.documents.unanswered


def cheap_hash(password: str) -> str:
    return "test-sha256:" + hashlib.sha256(password.encode()).hexdigest()


@dataclass
class Connection:
    """One websocket as the harness sees it: what came back on it, in order."""

    conn_id: str
    received: list[dict[str, Any]] = field(default_factory=list)
    closed: tuple[int, str] | None = None

    def replies(self) -> list[dict[str, Any]]:
        return [m for m in self.received if "re" in m]

    def pushes(self, kind: str | None = None) -> list[dict[str, Any]]:
        return [m for m in self.received if "re" not in m and kind in (None, m.get("type"))]

    def last_reply(self) -> dict[str, Any]:
        return self.replies()[-1]


class ServiceHarness:
    """One node's game service in memory (see module docstring)."""

    def __init__(
        self,
        node_id: str = "eu-1",
        region: str = "eu",
        *,
        seed: int = 1,
        documents: MemoryDocuments | None = None,
        ack_regions: int = 0,
        picture_interval_s: float = 0.0,
    ) -> None:
        self.now = 100.0
        self.wall_ms = EPOCH_MS
        self.documents = documents or MemoryDocuments()
        self.progress = InstantProgress(self.documents)
        rng = random.Random(seed)
        self.documents.listener = self._changed
        self.service = GameService(
            node_id=node_id,
            region=region,
            documents=self.documents,
            rules=rules_module(),
            hlc=HybridLogicalClock(node_id, lambda: self.wall_ms),
            wall_ms=lambda: self.wall_ms,
            new_token=lambda: f"{rng.getrandbits(128):032x}",
            rng=rng,
            progress=self.progress,
            ack_regions=ack_regions,
            picture_interval_s=picture_interval_s,
        )
        self.connections: dict[str, Connection] = {}
        self._next_conn = 0
        self.regions = {region}
        self.waits: list[float] = []

    def _changed(self, doc_id: str, event_no: int) -> None:
        if hasattr(self, "service"):
            self.service.doc_changed(doc_id, event_no)

    # --- time -----------------------------------------------------------------------------

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.wall_ms += int(seconds * 1000)
        self.service.tick(self.now)
        self.deliver()

    # --- connections ------------------------------------------------------------------------

    def open(self, address: str = "") -> Connection:
        self._next_conn += 1
        conn = Connection(f"c{self._next_conn}")
        self.connections[conn.conn_id] = conn
        self.service.connect(conn.conn_id, self.now, address)
        self.deliver()
        return conn

    def send(self, conn: Connection, message: dict[str, Any] | str) -> dict[str, Any] | None:
        """Send a frame; the reply to it (if it has an id and got one), after the pushes ran."""
        text = message if isinstance(message, str) else json.dumps(message)
        before = len(conn.received)
        self.service.receive(conn.conn_id, text, self.now)
        self.service.process(self.now)
        self.deliver()
        request_id = message.get("id") if isinstance(message, dict) else None
        for item in conn.received[before:]:
            if "re" in item and (request_id is None or item["re"] == request_id):
                return item
        return None

    def request(self, conn: Connection, kind: str, **fields: Any) -> dict[str, Any]:
        self._next_conn += 1
        reply = self.send(conn, {"id": f"r{self._next_conn}", "type": kind, **fields})
        assert reply is not None, f"no reply to {kind} (closed: {conn.closed})"
        return reply

    def close(self, conn: Connection) -> None:
        self.service.disconnect(conn.conn_id, self.now)
        self.deliver()

    def deliver(self) -> None:
        self.service.process(self.now)
        for item in self.service.take_outgoing(self.now):
            conn = self.connections.get(item.conn)
            if conn is None:
                continue
            if isinstance(item, Close):
                conn.closed = (item.code, item.reason)
            elif isinstance(item, Send):
                text = item.text or json.dumps(item.message)
                conn.received.append(json.loads(text))

    # --- accounts ---------------------------------------------------------------------------

    def http(
        self, path: str, body: dict[str, Any], address: str = "10.0.0.1", token: str = ""
    ) -> tuple[int, dict[str, Any]]:
        """An account route run through the production flow (``node.account_flow``); waits
        advance the clock and are noted in `waits`."""
        flows = AccountFlow(self.service, lambda: self.regions, cheap_hash("stand-in"))
        raw = json.dumps(body).encode()
        try:
            routes: dict[str, Callable[[], Flow]] = {
                "/api/register": lambda: flows.register(
                    decode_body(raw, RegisterBody), address, self.now
                ),
                "/api/login": lambda: flows.login(decode_body(raw, LoginBody), address, self.now),
                "/api/password": lambda: flows.change_password(
                    token, decode_body(raw, PasswordBody), address, self.now
                ),
                "/api/home": lambda: flows.move_home(token, decode_body(raw, HomeBody)),
                "/api/logout": lambda: flows.logout(token),
            }
            answer = run_sync(routes[path](), self._perform)
        except Refused as refused:
            answer = answer_of(refused)
        self.deliver()
        return answer.status, answer.body

    def _perform(self, effect: Effect) -> Any:
        if isinstance(effect, HashPassword):
            return cheap_hash(effect.password)
        if isinstance(effect, CheckPassword):
            return effect.password_hash == cheap_hash(effect.password)
        if isinstance(effect, RequestAccounts):
            return None  # one node: nobody else to ask
        if effect.seconds != PULL_POLL_S:
            self.waits.append(effect.seconds)  # the delays of the login limits
        self.advance(effect.seconds)
        return self.now

    def register(self, name: str, home: str | None = None) -> str:
        account = self.service.register(name, cheap_hash(PASSWORD), home)
        self.deliver()
        return account.uid

    def login(self, name: str) -> str:
        account = self.service.login_candidates(name)[0]
        token = self.service.start_session(account, self.now)
        self.deliver()
        return token

    def online(self, name: str, *, register: bool = True) -> Connection:
        """A player registered, logged in and connected (hello answered)."""
        if register:
            self.register(name)
        token = self.login(name)
        conn = self.open()
        reply = self.request(conn, "hello", token=token)
        assert reply["ok"], reply
        return conn

    def start_game(self, host: Connection, guest: Connection, guest_name: str) -> str:
        invite = self.request(host, "invite", to=guest_name)
        assert invite["ok"], invite
        accepted = self.request(guest, "accept", invite=invite["invite"]["iid"])
        assert accepted["ok"], accepted
        return str(accepted["game"])

    def game_view(self, conn: Connection, gid: str) -> dict[str, Any]:
        return [p for p in conn.pushes("game") if p["game"] == gid][-1]


def replicate(source: ServiceHarness, target: ServiceHarness, but: str = "") -> None:
    """Copy every change `source` holds that `target` lacks, as the sync engines would, but
    for the documents whose id starts with `but` if given (a region outside a game's
    placement under partial replication: ``but=GAME_PREFIX``)."""
    for doc_id, doc in source.documents.docs.items():
        if but and doc_id.startswith(but):
            continue
        mine = target.documents.docs.setdefault(doc_id, Doc())
        update = doc.get_update(mine.get_state())
        before = mine.get_update()
        mine.apply_update(update)
        if mine.get_update() != before:
            target.documents.event_no += 1
            target.service.doc_changed(doc_id, target.documents.event_no)
    target.deliver()
