"""A seeded generator of hostile peer frames, sent by an insider node that holds a valid key.

Three in-memory engines (``tests.sync_harness``: the real sync engine on a virtual clock) form a
mesh; ``ap`` is the insider. Each input is one frame that ap's link delivers to ``eu``, built
from nothing or from eu's real documents: random and truncated bytes, handshake frames after
the handshake, updates the Yjs decoder refuses, document ids outside the namespaces, updates
aimed at the wrong document, updates and frames over the caps, more new documents than the
quota, key-value values of the wrong type or stamped in the future, account records that take
over an account homed on eu (signed with ap's valid key, with the home's key name, unsigned,
with a bad signature, stamped in the year 2286, deleting it), move records that are illegal,
for the wrong player or ply, after a missing parent, rewriting a record or stamped ahead; and,
next to them, valid frames: legal moves, key-value writes, new documents within the quota,
acknowledgements, digests, pulls and pings.

For every frame: the engine raises nothing, a refused frame is named by its rule (never an
"internal" one) and changes none of eu's documents (not their digest, not the set of them).
`finish` links the third node, ``us``, heals every link and lets anti-entropy run: every
document must then be the same on the three nodes, and neither us nor ap refused anything.
The same seed gives the same frames (tests/test_hostile_input.py and bench/hostile.py use it).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import aiohttp
from pycrdt import Doc, Map

import meridian.games.battleline as battleline
from meridian.crdt_models.accounts import ACCOUNTS_DOC, AUTH, USERS, AccountsIndex, AccountsWriter
from meridian.crdt_models.game import GameInfo, GameWriter, MoveRecord
from meridian.crdt_models.hlc import Stamp
from meridian.crdt_models.records import attach_signer, encode_signed
from meridian.sync import codec
from meridian.sync.engine import EMPTY_UPDATE, LinkUp, PeerRefused, SyncEngine
from meridian.sync.identity import Keyring, NodeIdentity
from meridian.sync.settings import SyncSettings
from meridian.sync.transport import peer_ws_url
from tests.sync_harness import MemoryCluster

INSIDER, TARGET, OTHER = "ap", "eu", "us"
VICTIM = "victim-uid-0000000000"
KV_DOCS = tuple(f"test:fuzz-{index}" for index in range(4))
YEAR_2286_MS = 9_999_999_999_000
MAX_PLIES = 40  # then a new game: a refused update makes eu check the next one from the start
# Small caps so that over-the-cap input is cheap to build; the rules are the same at any size.
SETTINGS = SyncSettings(
    coalesce_ms=5,
    max_update_bytes=16 * 1024,
    max_frame_bytes=64 * 1024,
    new_docs_burst=20,
    new_docs_per_s=2.0,
    anti_entropy_s=1.0,  # rounds run in `finish` only: `run` moves no timer
)
BAD_DOC_IDS = (
    "junk:1", "", "x" * 201, "presence:Not A Node", "log:2025-13", "users", "game", "test",
    "kv:x", "../accounts", "game:g1\x00", "\u00e9:1", "presence:", "accounts:x",
)  # fmt: skip
# Rules a refusal may carry: every refusal is named, none is an internal error.
KNOWN_RULES = frozenset(
    {
        "malformed", "unknown_frame", "too_large", "bad_update", "doc_id", "doc_quota",
        "bad_layout", "bad_record", "future_stamp", "not_home", "unsigned", "bad_signature",
        "wrong_signer", "unknown_signer", "stale_record", "duplicate_account", "deleted_account",
        "unknown_account", "illegal_move", "missing_parent", "duplicate_move",
        "missing_dependencies", "unexplained_delete", "bad_compression", "decompression_bomb",
        "compression_not_negotiated", "schema_too_new",
    }
)  # fmt: skip


class PeerFuzz:
    """The generator and the harness (see module docstring)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.cluster = MemoryCluster([TARGET, OTHER, INSIDER], settings=SETTINGS, seed=seed)
        self.cluster.connect(TARGET, INSIDER)  # us joins at the end (`finish`)
        self.cluster.tamper = self._insider_link
        self.counts: Counter[str] = Counter()
        self.seq = 0
        self.games = 0
        self.new_docs = 0
        self.chain: list[MoveRecord] = []
        self.pulls: list[bytes] = []
        self._setup()

    # --- the honest world ------------------------------------------------------------------

    def _setup(self) -> None:
        cluster, eu = self.cluster, self.cluster.engines[TARGET]
        with eu.writing(ACCOUNTS_DOC, cluster.now) as doc:
            AccountsWriter(doc, TARGET).register(
                VICTIM, "victim", "real-hash", TARGET, self.stamp(TARGET)
            )
        for doc_id in KV_DOCS:
            cluster.put(TARGET, doc_id, "k", "v")
        self._new_game()
        cluster.advance(0.05)

    def _new_game(self) -> None:
        self.games += 1
        self.game = f"game:g{self.games}"
        self.seed = self.rng.randrange(2**31)
        info = GameInfo(
            f"g{self.games}", "battleline", ["u0", "u1"], ["a", "b"], self.seed, 0,
            self.stamp(TARGET), TARGET,
        )  # fmt: skip
        with self.cluster.engines[TARGET].writing(self.game, self.cluster.now) as doc:
            GameWriter(doc, TARGET).create(info)
        self.cluster.advance(0.01)  # pushed to the peers now, not at the end
        self.chain = []
        self.state = battleline.new_game(self.seed, 0)

    def stamp(self, node: str, ahead_ms: int = 0) -> str:
        self.cluster.now += 0.0001  # a fresh wall millisecond for every stamp drawn
        return Stamp(self.cluster.wall_ms(node) + ahead_ms, 0, node).encode()

    # --- sending ---------------------------------------------------------------------------

    def run(self, frames: int) -> None:
        makers = self.makers()
        names = sorted(makers)
        for _ in range(frames):
            name = self.rng.choice(names)
            self.send(name, makers[name]())

    def send(self, name: str, frame: bytes) -> None:
        cluster, eu = self.cluster, self.cluster.engines[TARGET]
        link = self._link()
        docs = {doc_id: eu.digest(doc_id) for doc_id in eu.docs}
        seen = len(cluster.events[TARGET])
        eu.receive(link, frame, cluster.now)
        cluster.pump()
        self._answer_pulls(frame)
        events = cluster.events[TARGET][seen:]
        new = [e for e in events if isinstance(e, PeerRefused) and e.node_id == INSIDER]
        if not new:
            self.counts["accepted"] += 1
            self._accepted(name)
            return
        rule = new[0].rule
        assert rule in KNOWN_RULES, (name, rule, new[0].reason)
        self.counts[rule] += 1
        after = {doc_id: eu.digest(doc_id) for doc_id in eu.docs}
        assert after == docs, f"a refused {name} frame ({rule}) changed eu's documents"

    def _insider_link(self, src: str, dst: str, frames: list[bytes]) -> list[bytes]:
        """On the eu-ap link ap's real engine only dials (the handshake and errors pass); the
        fuzzer speaks for ap otherwise, and eu's pulls (STEP1) come to it (digests and pushes
        both ways would make every reconnection a full resync)."""
        if {src, dst} != {TARGET, INSIDER}:
            return frames
        passed = {codec.FrameType.HELLO, codec.FrameType.AUTH_SIG, codec.FrameType.ERROR}
        if src == TARGET:
            self.pulls += [f for f in frames if f[:1] == bytes([codec.FrameType.STEP1])]
        return [frame for frame in frames if frame[:1] and frame[0] in passed]

    def _answer_pulls(self, sent: bytes) -> None:
        """eu pulls a document from ap: the insider answers with what it holds, which is what
        it just sent for that document (or nothing)."""
        pulls, self.pulls = self.pulls, []
        for raw in pulls:
            pull = codec.decode(raw, 1 << 30)
            assert isinstance(pull, codec.Step1)
            last = (
                codec.decode(sent, 1 << 30) if sent[:1] == bytes([codec.FrameType.UPDATE]) else None
            )
            held = (
                last.update
                if isinstance(last, codec.Update) and last.doc_id == pull.doc_id
                else EMPTY_UPDATE
            )
            wire = next((w for w in self.cluster.wires if {w.a, w.b} == {TARGET, INSIDER}), None)
            if wire is None:
                return
            link = wire.link_a if wire.a == TARGET else wire.link_b
            answer = codec.Step2(self._next_seq(), pull.doc_id, held)
            self.cluster.engines[TARGET].receive(link, codec.encode(answer), self.cluster.now)
            self.cluster.pump()

    def _link(self) -> int:
        cluster = self.cluster
        wire = next((w for w in cluster.wires if {w.a, w.b} == {TARGET, INSIDER}), None)
        if wire is None:
            wire = cluster.connect(TARGET, INSIDER)
        return wire.link_a if wire.a == TARGET else wire.link_b

    def _accepted(self, name: str) -> None:
        if name == "legal_move":
            self.chain.append(self._pending_move)
            self.state = self._pending_state
            if battleline.to_move(self.state) is None or len(self.chain) >= MAX_PLIES:
                self._new_game()
        elif name == "new_doc":
            self.new_docs += 1

    def finish(self, rounds: int = 20) -> None:
        """Heal every link and let anti-entropy run (a node redials a closed link, as real
        nodes do): the three nodes must come to hold the same documents."""
        cluster = self.cluster
        cluster.tamper = None
        for _ in range(rounds):
            for a, b in ((TARGET, OTHER), (TARGET, INSIDER), (OTHER, INSIDER)):
                if not any({w.a, w.b} == {a, b} for w in cluster.wires):
                    cluster.connect(a, b)
            cluster.advance(1.0, step=0.05)
            if self._converged():
                break
        doc_ids = set().union(*(engine.docs for engine in cluster.engines.values()))
        for doc_id in sorted(doc_ids):
            holders = [e for e in cluster.engines.values() if doc_id in e.docs]
            assert len(holders) == 3, f"{doc_id} is on {len(holders)} nodes only"
            assert len(cluster.digests(doc_id)) == 1, f"{doc_id} differs between nodes"
        honest = [e for n in (OTHER, INSIDER) for e in cluster.refused(n)]
        assert not honest, [(e.rule, e.reason) for e in honest[:3]]

    def _converged(self) -> bool:
        engines = self.cluster.engines.values()
        doc_ids = set().union(*(engine.docs for engine in engines))
        return all(
            all(doc_id in e.docs for e in engines) and len(self.cluster.digests(doc_id)) == 1
            for doc_id in doc_ids
        )

    # --- frames ------------------------------------------------------------------------------

    def makers(self) -> dict[str, Callable[[], bytes]]:
        return {
            "garbage": self.garbage,
            "truncated": self.truncated,
            "handshake_again": self.handshake_again,
            "bad_doc_id": self.bad_doc_id,
            "bad_update": self.bad_update,
            "misdirected": self.misdirected,
            "oversize": self.oversize,
            "new_doc": self.new_doc,
            "kv_value": self.kv_value,
            "bad_layout": self.bad_layout,
            "forged_account": self.forged_account,
            "legal_move": self.legal_move,
            "bad_move": self.bad_move,
            "compressed": self.compressed,
            "control": self.control,
        }

    def _next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def _update(self, doc_id: str, update: bytes, step2: bool = False) -> bytes:
        kind = codec.Step2 if step2 else codec.Update
        return codec.encode(kind(self._next_seq(), doc_id, update))

    def _kv_update(self, key: str, value: Any, root: str = "kv") -> bytes:
        doc: Doc[Any] = Doc(client_id=self.rng.randrange(10_000, 2**31))
        doc.get(root, type=Map)[key] = value
        return doc.get_update()

    def garbage(self) -> bytes:
        body = self.rng.randbytes(self.rng.randrange(0, 120))
        if self.rng.random() < 0.6:
            return bytes([self.rng.choice(list(codec.FrameType))]) + body
        return bytes([self.rng.randrange(256)]) + body

    def compressed(self) -> bytes:
        """A protocol-3 COMPRESSED frame that lies: a bomb (inflates past what it declares),
        a corrupt stream, trailing bytes, or a wrapped frame that may not be wrapped."""
        inner = self._update(self.rng.choice(KV_DOCS), self._kv_update("z", "v" * 400))
        deflated = zlib.compress(inner)
        lie = self.rng.randrange(4)
        declared = len(inner) if lie else self.rng.randrange(1, len(inner))  # 0: a bomb
        if lie == 1:
            deflated = deflated[: len(deflated) // 2] + self.rng.randbytes(8)
        elif lie == 2:
            deflated += b"trailing"
        elif lie == 3:
            inner = bytes([codec.FrameType.HELLO]) + inner[1:]
            deflated, declared = zlib.compress(inner), len(inner)
        out = bytearray([codec.FrameType.COMPRESSED])
        codec.write_varuint(out, declared)
        return bytes(out + deflated)

    def truncated(self) -> bytes:
        whole = self._update(self.rng.choice(KV_DOCS), self._kv_update("t", "value"))
        return whole[: self.rng.randrange(1, len(whole))]

    def handshake_again(self) -> bytes:
        hello = codec.Hello(INSIDER, INSIDER, "x", 2, 2, self.rng.randbytes(codec.NONCE_BYTES))
        again: list[codec.Frame] = [hello, codec.AuthSig(bytes(64), 2)]
        return codec.encode(self.rng.choice(again))

    def bad_doc_id(self) -> bytes:
        doc_id = self.rng.choice(BAD_DOC_IDS)
        return self._update(doc_id, self._kv_update("k", "v"), step2=self.rng.random() < 0.3)

    def bad_update(self) -> bytes:
        valid = bytearray(self._kv_update("k", "v" * self.rng.randrange(1, 40)))
        for _ in range(self.rng.randrange(1, 4)):
            valid[self.rng.randrange(len(valid))] = self.rng.randrange(256)
        update = bytes(valid) if self.rng.random() < 0.7 else self.rng.randbytes(30)
        return self._update(self.rng.choice(KV_DOCS), update)

    def misdirected(self) -> bytes:
        """A real move record sent as a key-value document, or a kv write into a game."""
        if self.rng.random() < 0.5:
            record = self._move_record(len(self.chain), self._tip(), *self._legal())
            update = self._kv_update(record.key, record.to_text(), root="moves")
            return self._update(self.rng.choice(KV_DOCS), update)
        return self._update(self.game, self._kv_update("k", "v"))

    def oversize(self) -> bytes:
        if self.rng.random() < 0.2:
            size = SETTINGS.max_frame_bytes + 1
            return bytes([codec.FrameType.UPDATE]) + b"\x01" * size
        value = "x" * (SETTINGS.max_update_bytes + self.rng.randrange(1, 1000))
        return self._update(self.rng.choice(KV_DOCS), self._kv_update("big", value))

    def new_doc(self) -> bytes:
        doc_id = f"test:new-{self.rng.randrange(10**9)}"
        return self._update(doc_id, self._kv_update("k", self.rng.randrange(1000)))

    def kv_value(self) -> bytes:
        rng = self.rng
        value: Any = rng.choice(
            [
                "fine",
                rng.randrange(-(2**53), 2**53),
                2**60,
                ["a", "list"],
                {"a": "map"},
                "x" * 100,
                f"see {self.stamp(INSIDER, ahead_ms=rng.choice([1_000, 120_000, 10**9]))}",
            ]
        )
        key = rng.choice(["k", "j", "l", f"{Stamp(YEAR_2286_MS, 0, INSIDER).encode()}"])
        return self._update(rng.choice(KV_DOCS), self._kv_update(key, value))

    def bad_layout(self) -> bytes:
        doc_id = self.rng.choice([*KV_DOCS, self.game, ACCOUNTS_DOC])
        return self._update(doc_id, self._kv_update("k", "v", root=self.rng.choice(["junk", "x"])))

    # --- account records ---------------------------------------------------------------------

    def forged_account(self) -> bytes:
        eu = self.cluster.engines[TARGET]
        base = AccountsIndex(eu.docs[ACCOUNTS_DOC]).version(VICTIM)
        assert base is not None
        copy: Doc[Any] = Doc(client_id=self.rng.randrange(10_000, 2**31))
        copy.apply_update(eu.docs[ACCOUNTS_DOC].get_update())
        before = copy.get_state()
        attach_signer(copy, self.cluster.identities[INSIDER])
        forged = asdict(base) | {"password_hash": "attacker-hash", "stamp": self.stamp(INSIDER)}
        kind = self.rng.choice(["home-claim", "home-key", "non-home", "2286", "unsigned", "sig"])
        root, key = AUTH, f"{VICTIM}|{INSIDER}"
        if kind in ("home-claim", "2286"):
            forged |= {"home": INSIDER, "base": base.stamp, "base_home": INSIDER}
            forged |= {"writer": INSIDER}
            if kind == "2286":
                forged["stamp"] = Stamp(YEAR_2286_MS, 0, INSIDER).encode()
        elif kind == "home-key":
            key = f"{VICTIM}|{TARGET}"
        elif kind == "non-home":
            root, forged = USERS, forged | {"base": base.stamp, "writer": INSIDER}
        text = encode_signed(copy, ACCOUNTS_DOC, root, key, forged)
        if kind == "unsigned":
            text = json.dumps(forged, sort_keys=True)
        elif kind == "sig":
            record = json.loads(text) | {"password_hash": "swapped-after-signing"}
            text = json.dumps(record, sort_keys=True)
        if self.rng.random() < 0.1:
            del copy.get(root, type=Map)[f"{VICTIM}|{TARGET}"]
        else:
            copy.get(root, type=Map)[key] = text
        return self._update(ACCOUNTS_DOC, copy.get_update(before))

    # --- move records ------------------------------------------------------------------------

    def _tip(self) -> str:
        return self.chain[-1].key if self.chain else ""

    def _legal(self) -> tuple[int, dict[str, Any]]:
        player = battleline.to_move(self.state)
        assert player is not None
        moves = [m for m in battleline.legal_moves(self.state) if m["type"] != "give_up"]
        return player, self.rng.choice(moves)

    def _move_record(
        self, ply: int, parent: str, player: int, move: dict[str, Any], ahead_ms: int = 0
    ) -> MoveRecord:
        return MoveRecord(ply, parent, player, move, self.stamp(INSIDER, ahead_ms), INSIDER)

    def _move_update(self, record: MoveRecord) -> bytes:
        return self._update(self.game, self._kv_update(record.key, record.to_text(), "moves"))

    def legal_move(self) -> bytes:
        player, move = self._legal()
        record = self._move_record(len(self.chain), self._tip(), player, move)
        self._pending_move = record
        self._pending_state = battleline.apply_move(self.state, player, move)
        return self._move_update(record)

    def bad_move(self) -> bytes:
        player, move = self._legal()
        ply, tip = len(self.chain), self._tip()
        kind = self.rng.choice(["card", "player", "ply", "parent", "rewrite", "future", "shape"])
        if kind == "card":
            record = self._move_record(ply, tip, player, {"type": "play", "card": 9999})
        elif kind == "player":
            record = self._move_record(ply, tip, 1 - player, move)
        elif kind == "ply":
            record = self._move_record(ply + self.rng.choice([1, 2, 50]), tip, player, move)
        elif kind == "parent":
            record = self._move_record(ply, f"{max(ply - 1, 0):05d}|nowhere", player, move)
        elif kind == "future":
            record = self._move_record(ply, tip, player, move, ahead_ms=3_600_000)
        elif kind == "rewrite" and self.chain:
            return self._rewrite(self.chain[-1])
        else:
            text = self.rng.choice(
                [
                    json.dumps({"ply": ply, "parent": tip, "player": "x", "move": []}),
                    '{"ply": Infinity, "parent": "", "player": 0, "move": {}}',
                    '{"ply": 1e400, "parent": "", "player": NaN, "move": {}}',
                    '{"ply": 0, "move": ' + "[" * 3000 + "]" * 3000 + "}",
                    '{"ply": ' + "9" * 5000 + "}",
                ]
            )
            return self._update(self.game, self._kv_update(f"{ply:05d}|x", text, "moves"))
        return self._move_update(record)

    def _rewrite(self, record: MoveRecord) -> bytes:
        eu = self.cluster.engines[TARGET]
        copy: Doc[Any] = Doc(client_id=self.rng.randrange(10_000, 2**31))
        copy.apply_update(eu.docs[self.game].get_update())
        before = copy.get_state()
        other = MoveRecord(**(asdict(record) | {"move": {"type": "give_up"}}))
        copy.get("moves", type=Map)[record.key] = other.to_text()
        return self._update(self.game, copy.get_update(before))

    # --- control frames --------------------------------------------------------------------

    def control(self) -> bytes:
        rng, eu = self.rng, self.cluster.engines[TARGET]
        doc_id = rng.choice([*KV_DOCS, self.game, ACCOUNTS_DOC, f"test:none-{rng.randrange(9)}"])
        frames: list[codec.Frame] = [
            codec.Ack(rng.randrange(0, self.seq + 5)),
            codec.Ping(rng.randrange(2**32)),
            codec.Pong(rng.randrange(2**32)),
            codec.Links((TARGET, OTHER)),
            codec.Links(("nobody",)),
            codec.Step1(doc_id, eu.docs[doc_id].get_state() if doc_id in eu.docs else b""),
            codec.Step1(doc_id, rng.randbytes(8)),
            codec.Digests(((doc_id, rng.randbytes(32)),)),
        ]
        frame = rng.choice(frames)
        return codec.encode(frame)


def refusals_of(fuzz: PeerFuzz) -> Counter[str]:
    """Refusal events eu reported for ap, by rule (what /metrics counts)."""
    events = [e for e in fuzz.cluster.events[TARGET] if isinstance(e, PeerRefused)]
    return Counter(e.rule for e in events if e.node_id == INSIDER)


# --- the same frames over a real authenticated link -----------------------------------------


class InsiderLink:
    """A real websocket to a node's ``/peer``, authenticated with an insider's real key: the
    production engine does the handshake (and answers the node as an honest, empty node would);
    `send` then puts a raw frame on the socket. A frame the node refuses closes the link: the
    next `send` dials again."""

    def __init__(self, identity: NodeIdentity, keyring: Keyring, url: str) -> None:
        self.engine = SyncEngine(
            identity=identity,
            keyring=keyring,
            settings=SyncSettings(anti_entropy_s=3600.0),  # it pulls nothing of its own
            rng=random.Random(17),
            wall_ms=lambda: int(time.time() * 1000),
            auto_durable=True,
        )
        self.url = url
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.reader: asyncio.Task[None] | None = None
        self.up = asyncio.Event()
        self.pongs: set[int] = set()
        self.dials = 0
        self.token = 0

    async def _dial(self, http: aiohttp.ClientSession) -> aiohttp.ClientWebSocketResponse:
        if self.reader is not None:
            if self.ws is not None:
                await self.ws.close()
            await self.reader
        self.up.clear()
        self.dials += 1
        ws = await http.ws_connect(peer_ws_url(self.url), max_msg_size=0)
        link = self.engine.open_link(time.monotonic(), initiator=True)
        self.ws = ws
        self.reader = asyncio.create_task(self._read(link, ws))
        await self._flush(link, ws)
        await asyncio.wait_for(self.up.wait(), timeout=10)
        return ws

    async def _read(self, link: int, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for message in ws:
            if message.type != aiohttp.WSMsgType.BINARY:
                continue
            if message.data[:1] == bytes([codec.FrameType.PONG]):
                pong = codec.decode(message.data, 1 << 30)
                assert isinstance(pong, codec.Pong)
                self.pongs.add(pong.token)
            self.engine.receive(link, message.data, time.monotonic())
            self.engine.tick(time.monotonic())
            await self._flush(link, ws)
        self.engine.close_link(link, time.monotonic(), "closed by the node")
        self.engine.take_outgoing(link)
        self.engine.take_events()
        self.up.set()  # (a waiter sees the socket closed)

    async def _flush(self, link: int, ws: aiohttp.ClientWebSocketResponse) -> None:
        for frame in self.engine.take_outgoing(link):
            try:
                await ws.send_bytes(frame)
            except (ConnectionResetError, aiohttp.ClientConnectionResetError):
                break  # the node closed the link meanwhile: the reader sees it end
        if any(isinstance(event, LinkUp) for event in self.engine.take_events()):
            self.up.set()

    async def send(self, http: aiohttp.ClientSession, frame: bytes) -> bool:
        """Send `frame`, then a PING; True if the node answered the PING on the same link (it
        took the frame), False if it closed the link first (it refused the frame). A link found
        gone before the frame left (the node closed it over an earlier frame) is dialled again:
        thrown into a dead socket, the frame would reach nothing."""
        while True:
            ws = self.ws
            while ws is None or ws.closed or self._gone():
                ws = await self._dial(http)
            try:
                await ws.send_bytes(frame)
                break
            except (ConnectionResetError, aiohttp.ClientConnectionResetError):
                assert self.reader is not None
                await self.reader  # it ends with the socket; the loop then dials again
        self.token += 1
        try:
            await ws.send_bytes(codec.encode(codec.Ping(self.token)))
        except (ConnectionResetError, aiohttp.ClientConnectionResetError):
            return False
        deadline = time.monotonic() + 10
        while self.token not in self.pongs and not ws.closed and not self._gone():
            assert time.monotonic() < deadline, "the node neither answered nor closed the link"
            await asyncio.sleep(0.001)
        return self.token in self.pongs

    def _gone(self) -> bool:
        return self.reader is None or self.reader.done()

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.reader is not None:
            await self.reader
