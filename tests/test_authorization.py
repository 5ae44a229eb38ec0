"""Who may do what: every client message type and every account route against every caller
role, each cell with its expected answer (in memory, a fresh world per cell).

The world: alice and bob play game G (alice to move), carol watches it, dave is online and at
no table, gina has invited dave (I1) and dave has invited hank (I2); eve is disabled. Roles:
the player to move, the opponent, a watcher, a stranger (dave), a logged-out socket (no
hello), the disabled account, and the admin (its token is no player session).

A cell is ``ok``, an error code, or ``closed:<code>`` (the connection was closed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from meridian.node.protocol import MESSAGE_TYPES
from tests.service_harness import PASSWORD, Connection, ServiceHarness

ROLES = ("mover", "opponent", "watcher", "stranger", "logged_out", "disabled", "admin")
ADMIN_TOKEN = "the-admin-token-0123456789"


@dataclass
class World:
    harness: ServiceHarness
    gid: str
    conns: dict[str, Connection]
    tokens: dict[str, str]
    invites: dict[str, str]
    legal: dict[str, Any]


def build_world() -> World:
    h = ServiceHarness()
    tokens: dict[str, str] = {}
    conns: dict[str, Connection] = {}
    for name in ("alice", "bob", "carol", "dave", "gina", "hank", "eve"):
        h.register(name)
        tokens[name] = h.login(name)
        conns[name] = h.open()
        assert h.request(conns[name], "hello", token=tokens[name])["ok"]
    gid = h.start_game(conns["alice"], conns["bob"], "bob")
    view = h.game_view(conns["alice"], gid)
    if view["to_move"] != view["you"]:  # make alice the player to move
        conns["alice"], conns["bob"] = conns["bob"], conns["alice"]
        tokens["alice"], tokens["bob"] = tokens["bob"], tokens["alice"]
    assert h.request(conns["carol"], "watch", game=gid)["ok"]
    i1 = h.request(conns["gina"], "invite", to="dave")["invite"]["iid"]
    i2 = h.request(conns["dave"], "invite", to="hank")["invite"]["iid"]
    eve = h.service.login_candidates("eve")[0].uid
    h.service.disable_account(eve)
    h.deliver()
    h.advance(5)  # full message allowances
    legal = h.game_view(conns["alice"], gid)["legal"][0]
    return World(h, gid, conns, tokens, {"I1": i1, "I2": i2}, legal)


def fields(world: World, kind: str, variant: str) -> dict[str, Any]:
    gid = world.gid
    by_kind: dict[str, dict[str, Any]] = {
        "hello": {"token": "again"},
        "invite": {"to": "gina"},
        "retract": {"invite": world.invites["I2"]},
        "accept": {"invite": world.invites["I1"]},
        "decline": {"invite": world.invites["I1"]},
        "move": {"game": gid, "move": world.legal},
        "save": {"game": gid},
        "give_up": {"game": gid},
        "watch": {"game": gid},
        "unwatch": {},
        "chat": {"game": gid, "text": "hi"} if variant == "table" else {"to": "gina", "text": "hi"},
        "saved": {},
        "rename": {"name": "newname"},
        "ping": {},
        "lobby_page": {"after": "bob"},
    }
    return by_kind[kind]


def connection_of(world: World, role: str) -> Connection:
    """The role's connection; the disabled and admin roles first try a hello, which fails."""
    h = world.harness
    named = {"mover": "alice", "opponent": "bob", "watcher": "carol", "stranger": "dave"}
    if role in named:
        return world.conns[named[role]]
    conn = h.open()
    if role == "disabled":
        h.send(conn, {"id": "h", "type": "hello", "token": world.tokens["eve"]})
    elif role == "admin":
        h.send(conn, {"id": "h", "type": "hello", "token": ADMIN_TOKEN})
    return conn


def answer(world: World, role: str, kind: str, variant: str = "") -> str:
    h = world.harness
    conn = connection_of(world, role)
    before = conn.closed
    reply = h.send(conn, {"id": "x", "type": kind, **fields(world, kind, variant)})
    if conn.closed is not None:
        return f"closed:{conn.closed[0]}" if before is None or reply is None else "?"
    assert reply is not None, (role, kind)
    return "ok" if reply["ok"] else str(reply["error"]["code"])


# Expected answers: type -> one cell per role, in ROLES order.
CLOSED_4103 = "closed:4103"
OUT = {"logged_out": CLOSED_4103, "disabled": "closed:4102", "admin": "closed:4101"}
PLAYING = ("mover", "opponent", "watcher", "stranger")
TABLE: dict[str, dict[str, str]] = {
    "hello": {**dict.fromkeys(PLAYING, "bad_request"), "logged_out": "closed:4101"},
    "invite": {"mover": "busy", "opponent": "busy", "watcher": "ok", "stranger": "ok"},
    "retract": {
        "mover": "not_found",
        "opponent": "not_found",
        "watcher": "not_found",
        "stranger": "ok",
    },
    "accept": {
        "mover": "not_found",
        "opponent": "not_found",
        "watcher": "not_found",
        "stranger": "ok",
    },
    "decline": {
        "mover": "not_found",
        "opponent": "not_found",
        "watcher": "not_found",
        "stranger": "ok",
    },
    "move": {
        "mover": "ok",
        "opponent": "not_your_turn",
        "watcher": "not_player",
        "stranger": "not_player",
    },
    "save": {"mover": "ok", "opponent": "ok", "watcher": "not_player", "stranger": "not_player"},
    "give_up": {"mover": "ok", "opponent": "ok", "watcher": "not_player", "stranger": "not_player"},
    "watch": dict.fromkeys(PLAYING, "ok"),
    "unwatch": dict.fromkeys(PLAYING, "ok"),
    "chat/table": {"mover": "ok", "opponent": "ok", "watcher": "ok", "stranger": "not_player"},
    "chat/player": dict.fromkeys(PLAYING, "ok"),
    "saved": dict.fromkeys(PLAYING, "ok"),
    "rename": dict.fromkeys(PLAYING, "ok"),
    "ping": dict.fromkeys(PLAYING, "ok"),
    "lobby_page": dict.fromkeys(PLAYING, "ok"),
}
CELLS = [(row, role) for row in TABLE for role in ROLES]


def test_the_table_covers_every_message_type() -> None:
    assert {row.split("/")[0] for row in TABLE} == MESSAGE_TYPES


@pytest.mark.parametrize(("row", "role"), CELLS)
def test_each_message_type_against_each_role(row: str, role: str) -> None:
    world = build_world()
    kind, _, variant = row.partition("/")
    variant = variant.replace("player", "")
    expected = TABLE[row].get(role) or OUT[role]
    writes = len(world.harness.documents.writes)
    assert answer(world, role, kind, variant) == expected
    if expected != "ok" and not expected.startswith("closed"):
        assert len(world.harness.documents.writes) == writes, "a refusal changes nothing"


# --- account routes -------------------------------------------------------------------------

ROUTE_ROLES = ("player", "logged_out", "disabled", "admin")
ROUTES: dict[str, tuple[dict[str, Any], dict[str, int]]] = {
    "/api/logout": ({}, {"player": 200, "logged_out": 401, "disabled": 401, "admin": 401}),
    "/api/password": (
        {"old": PASSWORD, "new": "another password"},
        {"player": 200, "logged_out": 401, "disabled": 401, "admin": 401},
    ),
    "/api/home": (
        {"region": "eu"},
        {"player": 200, "logged_out": 401, "disabled": 401, "admin": 401},
    ),
    "/api/login": (
        {"name": "alice", "password": PASSWORD},
        {"player": 200, "logged_out": 200, "disabled": 200, "admin": 200},
    ),
    "/api/register": (
        {"name": "newcomer", "password": PASSWORD},
        {"player": 201, "logged_out": 201, "disabled": 201, "admin": 201},
    ),
}


@pytest.mark.parametrize(("route", "role"), [(r, role) for r in ROUTES for role in ROUTE_ROLES])
def test_each_account_route_against_each_caller(route: str, role: str) -> None:
    world = build_world()
    token = {"player": world.tokens["alice"], "logged_out": "", "disabled": world.tokens["eve"]}
    body, expected = ROUTES[route]
    status, _ = world.harness.http(route, body, token=token.get(role, ADMIN_TOKEN))
    assert status == expected[role]


def test_a_disabled_account_cannot_log_in() -> None:
    world = build_world()
    status, reply = world.harness.http("/api/login", {"name": "eve", "password": PASSWORD})
    assert status == 401 and reply["error"]["code"] == "bad_credentials"
