"""Write documents of each kind with one version of the code, check and read them with another.

``python schema_roundtrip.py write`` prints JSON ``{doc_id: base64 update}``: a game (info,
moves, a mark), a presence document (a session, an invitation, meta), a month of the game log
and a key-value document, written with the record writers of whatever ``meridian`` is on the
path. ``python schema_roundtrip.py check`` reads that JSON on stdin and runs each update
through the peer checks (``sync.checks.UpdateChecker``) and the readers of the ``meridian`` on
its path; it prints ``ok`` or what was refused. tests/test_schema.py runs one side with the
previous release's tree on PYTHONPATH and the other with this code. Only APIs both have.
"""

from __future__ import annotations

import base64
import json
import sys
from typing import Any

from pycrdt import Doc, Map

import meridian.games.battleline as battleline
from meridian.crdt_models.archive import GAMES, ArchivedGame
from meridian.crdt_models.game import GameInfo, GameWriter, read_info, read_moves
from meridian.crdt_models.hlc import Stamp
from meridian.crdt_models.presence import INVITES, META, SESSIONS, Invite, Session
from meridian.sync.checks import KeyringContext, UpdateChecker, UpdateRefused
from meridian.sync.identity import Keyring, NodeIdentity

WALL_MS = 1_780_000_000_000
NODE = "eu-1"


def _stamp(offset: int) -> str:
    return Stamp(WALL_MS + offset, 0, NODE).encode()


def _info() -> GameInfo:
    return GameInfo("g1", "battleline", ["u1", "u2"], ["alice", "bob"], 7, 0, _stamp(0), NODE)


def _legal_opening() -> list[tuple[dict[str, Any], int]]:
    """The first two moves of the game of `_info()`, each legal (peers check them at entry)."""
    info = _info()
    state = battleline.new_game(info.seed, info.first)
    opening = []
    for _ in range(2):
        player = battleline.to_move(state)
        assert player is not None
        move = battleline.legal_moves(state)[0]
        opening.append((move, player))
        state = battleline.apply_move(state, player, move)
    return opening


def write() -> dict[str, str]:
    docs: dict[str, Doc[Any]] = {}
    game = docs["game:g1"] = Doc()
    with game.transaction():
        writer = GameWriter(game, NODE)
        writer.create(_info())
        (one, player_one), (two, player_two) = _legal_opening()
        first = writer.add_move(0, "", player_one, one, _stamp(1))
        writer.add_move(1, first.key, player_two, two, _stamp(2))
        writer.mark("resign", "u1", _stamp(3), 2)
    presence = docs[f"presence:{NODE}"] = Doc()
    session = Session(
        "s1", "u1", "alice", NODE, "eu", "playing", "g1", "bob", _stamp(4), "h", "r", True
    )
    invite = Invite("i1", "u1", "alice", "u2", "bob", "", _stamp(5), NODE)
    with presence.transaction():
        presence.get(SESSIONS, type=Map)["s1"] = session.to_text()
        presence.get(INVITES, type=Map)["i1"] = invite.to_text()
        presence.get(META, type=Map)["heartbeat_ms"] = WALL_MS
    log = docs["log:2026-06"] = Doc()
    (one, player_one), _ = _legal_opening()
    archived = ArchivedGame.from_game(_info(), [{"player": player_one, **one}])
    log.get(GAMES, type=Map)["g1"] = archived.to_text()
    kv = docs["test:kv"] = Doc()
    kv.get("kv", type=Map)["k"] = '{"schema": 99, "text": "just a string"}'
    return {doc_id: base64.b64encode(doc.get_update()).decode() for doc_id, doc in docs.items()}


def check(updates: dict[str, str]) -> list[str]:
    keyring = Keyring([NodeIdentity.generate(NODE, "eu").entry()])
    checker = UpdateChecker(KeyringContext(keyring, lambda: WALL_MS + 60_000, 60_000))
    problems = []
    for doc_id, text in sorted(updates.items()):
        update = base64.b64decode(text)
        try:
            checker.check(doc_id, None, update)
        except UpdateRefused as refused:
            problems.append(f"{doc_id}: refused [{refused.rule}] {refused.message}")
            continue
        doc: Doc[Any] = Doc()
        doc.apply_update(update)
        problems += _read(doc_id, doc)
    return problems


def _read(doc_id: str, doc: Doc[Any]) -> list[str]:
    """What the readers of this code make of the document, compared with what was written."""
    if doc_id.startswith("game:"):
        if read_info(doc) != _info() or len(read_moves(doc)) != 2:
            return [f"{doc_id}: read {read_info(doc)} and {len(read_moves(doc))} moves"]
    elif doc_id.startswith("presence:"):
        session = Session.from_text(doc.get(SESSIONS, type=Map)["s1"])
        invite = Invite.from_text(doc.get(INVITES, type=Map)["i1"])
        if (session.name, invite.to_name) != ("alice", "bob"):
            return [f"{doc_id}: read {session} and {invite}"]
    elif doc_id.startswith("log:"):
        archived = ArchivedGame.from_text(doc.get(GAMES, type=Map)["g1"])
        if archived.gid != "g1" or len(archived.moves) != 1:
            return [f"{doc_id}: read {archived}"]
    return []


def main() -> int:
    if sys.argv[1:] == ["write"]:
        print(json.dumps(write()))
        return 0
    problems = check(json.load(sys.stdin))
    print("\n".join(problems) or "ok")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
