"""A seeded generator of hostile player input: websocket frames, player and admin HTTP bodies.

Each input is built from a valid one and then damaged, or made from nothing: wrong types in
every field, unknown fields and message types, lone surrogates, overlong strings, integers far
past any range (4,400 digits), values nested 1,200 deep, truncated or non-JSON text, and now and
then a valid message, so that the refusals are checked next to the normal path. The same seed
gives the same inputs (tests/test_hostile_input.py and bench/hostile.py use it).
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable
from typing import Any

from meridian.node.account_flow import (
    AccountFlow,
    CheckPassword,
    Effect,
    HashPassword,
    RequestAccounts,
    run_sync,
)
from meridian.node.delivery import Close, Send
from meridian.node.protocol import (
    HTTP_STATUS,
    MESSAGE_TYPES,
    BackupBody,
    DocBatchBody,
    DocValueBody,
    HomeBody,
    LoginBody,
    LogoutBody,
    PasswordBody,
    ProtocolViolation,
    Refused,
    RegisterBody,
    decode_body,
    read_frame,
)
from tests.service_harness import Connection, ServiceHarness, cheap_hash

DEEP = 1200
HUGE_INT_DIGITS = 4400
LONE_SURROGATES = ('"\\ud800"', '"\\udfff"', '"a\\ud83d"', '"\\ude00b"')

VALID_FIELDS: dict[str, dict[str, Any]] = {
    "hello": {"token": "t"},
    "invite": {"to": "bob"},
    "retract": {"invite": "i"},
    "accept": {"invite": "i"},
    "decline": {"invite": "i"},
    "move": {"game": "g", "move": {"type": "play", "card": 17, "flag": 3}},
    "save": {"game": "g"},
    "give_up": {"game": "g"},
    "watch": {"game": "g"},
    "unwatch": {},
    "chat": {"to": "bob", "text": "hi"},
    "saved": {},
    "rename": {"name": "newname"},
    "ping": {},
}
PLAYERS = ("alice", "bob", "carol", "dave", "erin")
BODIES: dict[str, dict[str, Any]] = {
    "register": {"name": "someone", "password": "a long password", "home": "eu"},
    "login": {"name": "someone", "password": "a long password"},
    "password": {"old": "a long password", "new": "another password"},
    "home": {"region": "eu"},
    "logout": {},
    "admin_account": {"name": "someone", "password": "a long password", "home": "eu"},
    "doc_value": {"value": "v"},
    "doc_batch": {"items": [["k", 1]]},
    "backup": {"format": "meridian-backup-1", "documents": {"test:x": "AAA="}},
}


class Hostile:
    """The generator (see module docstring)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.games: list[str] = ["g"]  # ids worth aiming at (real games of the run)
        self.names: list[str] = ["bob"]
        self.invites: list[str] = ["i"]

    # --- values ------------------------------------------------------------------------------

    def value_text(self) -> str:
        """One JSON value as text, often hostile."""
        rng = self.rng
        makers: list[Callable[[], str]] = [
            lambda: json.dumps(rng.choice([None, True, False, 0, -1, 2**53, 1.5, 1e308])),
            lambda: json.dumps(rng.choice(self.games + self.names + self.invites + ["", "x"])),
            lambda: json.dumps("x" * rng.choice([65, 129, 501, 1025, 20_000])),
            lambda: rng.choice(LONE_SURROGATES),
            lambda: "9" * HUGE_INT_DIGITS,
            lambda: "-" + "1" * rng.randrange(20, 400),
            lambda: "[" * DEEP + "]" * DEEP,
            lambda: '{"a":' * DEEP + "1" + "}" * DEEP,
            lambda: json.dumps([rng.randrange(100) for _ in range(rng.randrange(0, 80))]),
            lambda: json.dumps({"type": "play", "card": rng.randrange(-5, 80), "flag": "x"}),
            lambda: json.dumps({str(i): i for i in range(rng.randrange(0, 40))}),
            lambda: "1e999",
            lambda: '"\\u0000\\n"',
            lambda: json.dumps(rng.choice(["admin", "bob\n", "ROOT", "a b", "é" * 10])),
        ]
        return rng.choice(makers)()

    def _object_text(self, fields: dict[str, Any]) -> str:
        """A JSON object from `fields` with some of them replaced, dropped or added."""
        rng = self.rng
        parts = {key: json.dumps(value) for key, value in fields.items()}
        for key in list(parts):
            roll = rng.random()
            if roll < 0.3:
                parts[key] = self.value_text()
            elif roll < 0.4:
                del parts[key]
        if rng.random() < 0.3:
            parts[rng.choice(["x", "type2", "id", "__proto__", "ply", "é"])] = self.value_text()
        return "{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in parts.items()) + "}"

    # --- websocket frames --------------------------------------------------------------------

    def frame(self) -> str:
        rng = self.rng
        roll = rng.random()
        if roll < 0.05:
            return rng.choice(["", "null", "[]", "{}", "not json", "{", '{"type":', "\x00", "1"])
        if roll < 0.08:
            return self.value_text()
        if roll < 0.1:
            return json.dumps({"type": "ping", "pad": "x" * 17_000})
        kind = rng.choice([*sorted(MESSAGE_TYPES), "teleport", "Hello", "", "x" * 40])
        fields = dict(VALID_FIELDS.get(kind, {}))
        for key in ("game", "invite"):
            if key in fields:
                fields[key] = rng.choice(self.games if key == "game" else self.invites)
        if "to" in fields:
            fields["to"] = rng.choice(self.names)
        envelope: dict[str, Any] = {"type": kind, **fields}
        if rng.random() < 0.9:
            envelope["id"] = f"h{rng.randrange(10**6)}"
        if rng.random() < 0.25:
            return json.dumps(envelope)  # a valid-looking message, aimed at the real world
        text = self._object_text(envelope)
        return text if rng.random() < 0.9 else text[: rng.randrange(len(text) + 1)]

    # --- HTTP bodies -------------------------------------------------------------------------

    def body(self, route: str) -> bytes:
        rng = self.rng
        roll = rng.random()
        if roll < 0.1:
            return rng.choice([b"", b"[", b"[]", b"null", b"1", b"{", b"\xff\xfe", b'"x"'])
        if roll < 0.15:
            return self.value_text().encode()
        if roll < 0.25:
            return json.dumps(BODIES[route]).encode()
        return self._object_text(BODIES[route]).encode()


class FuzzedNode:
    """An in-memory node with players at a table, a watcher and idle players."""

    def __init__(self, seed: int) -> None:
        self.h = ServiceHarness(seed=seed)
        self.hostile = Hostile(seed)
        self.tokens = {name: "" for name in PLAYERS}
        self.conns: dict[str, Connection] = {}
        self.uids = {name: self.h.register(name) for name in PLAYERS}
        for name in PLAYERS:
            self.reconnect(name)
        gid = self.h.start_game(self.conns["alice"], self.conns["bob"], "bob")
        self.h.request(self.conns["carol"], "watch", game=gid)
        self.hostile.games.append(gid)
        self.hostile.names.extend(PLAYERS)
        self.counts: Counter[str] = Counter()

    def reconnect(self, name: str) -> None:
        if self.h.service.session_by_token(self.tokens[name]) is None:
            account = self.h.service.accounts.account(self.uids[name])  # (it may be renamed)
            assert account is not None
            self.tokens[name] = self.h.service.start_session(account, self.h.now)
        conn = self.h.open()
        reply = self.h.request(conn, "hello", token=self.tokens[name])
        assert reply["ok"], reply
        self.conns[name] = conn

    def send(self, text: str) -> None:
        h, state = self.h, self.h.service.state
        rng = self.hostile.rng
        try:
            read_frame(text)
            fatal = False
        except ProtocolViolation:
            fatal = True  # mostly on fresh sockets: logging in again after each costs time
        if rng.random() < (0.9 if fatal else 0.2):
            conn_id = h.open().conn_id  # a socket that has not said hello
        else:
            name = rng.choice(PLAYERS)
            if self.conns[name].conn_id not in state.conns:
                self.reconnect(name)
            conn_id = self.conns[name].conn_id
        writes, said = len(h.documents.writes), len(state.out)
        h.service.receive(conn_id, text, h.now)
        changed = len(h.documents.writes) != writes
        for item in state.out[said:]:
            if isinstance(item, Close) and item.conn == conn_id:
                self.counts[f"close {item.code}"] += 1
                return  # a closed socket may mark its session dropped: not a refusal's change
            if isinstance(item, Send) and item.conn == conn_id and "re" in item.message:
                self.check_reply(item.message, changed)
                return
        self.counts["no answer"] += 1

    def check_reply(self, reply: dict[str, Any], changed: bool) -> None:
        if reply["ok"]:
            self.counts["ok"] += 1
            return
        code = reply["error"]["code"]
        self.counts[code] += 1
        assert code != "internal", reply
        assert not changed, f"a refusal ({code}) changed a document"

    def run(self, frames: int) -> None:
        for index in range(frames):
            self.h.now += 0.012  # under the per-account message allowance, mostly
            self.send(self.hostile.frame())
            if index % 64 == 0:
                self.h.deliver()
            if index % 400 == 0:
                self.h.advance(0.0)  # a tick: heartbeats, deadlines, grace periods


BODY_TYPES: dict[str, type[Any]] = {
    "register": RegisterBody,
    "login": LoginBody,
    "password": PasswordBody,
    "home": HomeBody,
    "logout": LogoutBody,
    "admin_account": RegisterBody,
    "doc_value": DocValueBody,
    "doc_batch": DocBatchBody,
    "backup": BackupBody,
}


ADMIN_ROUTES = frozenset({"admin_account", "doc_value", "doc_batch", "backup"})
OK_STATUSES = {200, 201}
REFUSAL_STATUSES = set(HTTP_STATUS.values()) - {500}


def fuzz_bodies(count: int, seed: int, kinds: Counter[str] | None = None) -> Counter[int]:
    """`count` hostile player and admin bodies through the schema and the account flow of an
    in-memory node; returns the HTTP statuses, and counts in `kinds` how many were ``admin``
    and ``player`` bodies. A refusal must change no document."""
    h = ServiceHarness()
    h.register("someone")
    token = h.login("someone")
    flows = AccountFlow(h.service, lambda: {"eu", "us"}, cheap_hash("stand-in"))
    hostile = Hostile(seed)
    statuses: Counter[int] = Counter()
    for index in range(count):
        route = hostile.rng.choice(sorted(BODY_TYPES))
        raw = hostile.body(route)
        if kinds is not None:
            kinds["admin" if route in ADMIN_ROUTES else "player"] += 1
        h.now += 0.5
        h.service.process(h.now)  # what earlier requests caused is written before we count
        writes = len(h.documents.writes)
        status = _serve(flows, route, raw, f"10.0.{index % 50}.1", token, h)
        statuses[status] += 1
        assert status in OK_STATUSES | REFUSAL_STATUSES, (route, raw[:80], status)
        # The node is available throughout: bad input is a 4xx, never "unavailable" (503).
        assert status < 500, (route, raw[:80], status)
        if status >= 400:
            assert len(h.documents.writes) == writes, (route, raw[:80])
        if index % 100 == 0 and h.service.session_by_token(token) is None:
            token = h.login("someone")
    return statuses


def _serve(
    flows: AccountFlow, route: str, raw: bytes, address: str, token: str, h: ServiceHarness
) -> int:
    now = h.now
    try:
        body = decode_body(raw, BODY_TYPES[route])
        if route in ("register", "admin_account"):
            flow = flows.register(body, "" if route == "admin_account" else address, now)
        elif route == "login":
            flow = flows.login(body, address, now)
        elif route == "password":
            flow = flows.change_password(token, body, address, now)
        elif route == "home":
            flow = flows.move_home(token, body)
        elif route == "logout":
            flow = flows.logout(token)
        else:
            return 200  # an admin document body that decoded: the route takes it
        return run_sync(flow, lambda effect: _perform(effect, h)).status
    except Refused as refused:
        return refused.status


def _perform(effect: Effect, h: ServiceHarness) -> Any:
    if isinstance(effect, HashPassword):
        return cheap_hash(effect.password)
    if isinstance(effect, CheckPassword):
        return effect.password_hash == cheap_hash(effect.password)
    if isinstance(effect, RequestAccounts):
        return None
    h.now += effect.seconds  # a wait: the virtual clock moves on (no tick needed)
    return h.now
