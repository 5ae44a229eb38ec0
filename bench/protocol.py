"""Peer protocol 3 against 2: wire bytes and time of replicating Battleline games.

Two sync engines wired in memory (no sockets: this measures the protocol, not the network).
The same games are replicated twice in one run, once on a protocol 2 link (what a node of the
previous release speaks) and once on a protocol 3 link (COMPRESSED data frames):

1. live play: node A writes each game's info and then every move as it is made (one UPDATE
   per move, as a game host does), node B receives them; frame bytes A -> B;
   and the time per move (writing, encoding, compressing, sending, checking and applying, both
   nodes: one process, so it is CPU time);
2. catch-up: node C joins late with nothing and pulls every game document (DIGESTS, STEP1,
   STEP2: what a new or long-partitioned region does); frame bytes both ways and the time
   until C holds every document (encoding, compression, checks and applying included).

Each figure is printed next to its protocol 2 baseline with the saving in percent. It is not a
test: it asserts nothing. ``--games N`` sets the number of games (default 200); ``--json``
prints the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from dataclasses import dataclass
from typing import Any

from meridian.crdt_models.game import GameInfo, GameWriter, game_doc_id
from meridian.crdt_models.hlc import Stamp
from meridian.games.battleline.selfplay import play_game
from meridian.sync.engine import SyncEngine
from meridian.sync.identity import Keyring, NodeIdentity
from meridian.sync.settings import SyncSettings

EPOCH_MS = 1_780_000_000_000
VERSIONS = {2: (2, 2), 3: (2, 3)}
MOVE_INTERVAL_S = 0.05  # virtual time between two moves (longer than the coalescing window)


@dataclass
class Pair:
    """Two engines and the link between them, frames counted per direction."""

    a: SyncEngine
    b: SyncEngine
    link_a: int
    link_b: int
    now: float = 0.0
    bytes_ab: int = 0
    bytes_ba: int = 0
    frames_ab: int = 0

    def pump(self) -> None:
        while True:
            out_a = self.a.take_outgoing(self.link_a)
            out_b = self.b.take_outgoing(self.link_b)
            if not out_a and not out_b:
                return
            self.bytes_ab += sum(len(f) for f in out_a)
            self.frames_ab += len(out_a)
            self.bytes_ba += sum(len(f) for f in out_b)
            for frame in out_a:
                self.b.receive(self.link_b, frame, self.now)
            for frame in out_b:
                self.a.receive(self.link_a, frame, self.now)

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.a.tick(self.now)
        self.b.tick(self.now)
        self.pump()


def _engine(identity: NodeIdentity, keyring: Keyring, versions: tuple[int, int]) -> SyncEngine:
    return SyncEngine(
        identity=identity,
        keyring=keyring,
        settings=SyncSettings(anti_entropy_s=3600),
        rng=random.Random(identity.node_id),
        wall_ms=lambda: EPOCH_MS + 10_000_000,
        versions=versions,
        auto_durable=True,
    )


def _connect(a: SyncEngine, b: SyncEngine) -> Pair:
    pair = Pair(a, b, a.open_link(0.0, initiator=True), b.open_link(0.0, initiator=False))
    pair.pump()
    assert b.node_id in a.up_peers(), "the link did not come up"
    return pair


def _play_live(pair: Pair, games: list[list[dict[str, Any]]]) -> int:
    """Every game written move by move on A; returns the number of moves."""
    moves = 0
    for seed, played in enumerate(games):
        gid = f"g{seed:05d}"
        doc_id = game_doc_id(gid)
        stamp = Stamp(EPOCH_MS + seed * 1000, 0, "eu-1").encode()
        info = GameInfo(gid, "battleline", ["u1", "u2"], ["alice", "bob"], seed, 0, stamp, "eu-1")
        with pair.a.writing(doc_id, pair.now) as doc:
            GameWriter(doc, "eu-1").create(info)
        parent = ""
        for ply, move in enumerate(played):
            stamp = Stamp(EPOCH_MS + seed * 1000 + ply + 1, 0, "eu-1").encode()
            body = {k: v for k, v in move.items() if k != "player"}
            with pair.a.writing(doc_id, pair.now) as doc:
                record = GameWriter(doc, "eu-1").add_move(ply, parent, move["player"], body, stamp)
            parent = record.key
            pair.advance(MOVE_INTERVAL_S)
            moves += 1
    return moves


def self_play(games: int) -> list[list[dict[str, Any]]]:
    """The moves of `games` random Battleline games (played before anything is timed)."""
    return [list(play_game(seed, ("random", "random")).moves) for seed in range(games)]


def measure(version: int, games: list[list[dict[str, Any]]]) -> dict[str, Any]:
    ids = [NodeIdentity.generate(f"{r}-1", r) for r in ("eu", "us", "ap")]
    keyring = Keyring([identity.entry() for identity in ids])
    a = _engine(ids[0], keyring, VERSIONS[3])
    live = _connect(a, _engine(ids[1], keyring, VERSIONS[version]))
    start = time.perf_counter()
    moves = _play_live(live, games)
    live_s = time.perf_counter() - start
    start = time.perf_counter()
    late = _connect(a, _engine(ids[2], keyring, VERSIONS[version]))  # pulls on link-up
    while len(late.b.docs) < len(a.docs) or any(late.b.digest(d) != a.digest(d) for d in a.docs):
        late.advance(0.01)
    catchup_s = time.perf_counter() - start
    return {
        "protocol": version,
        "games": len(games),
        "moves": moves,
        "live_bytes": live.bytes_ab,
        "live_bytes_per_move": round(live.bytes_ab / max(moves, 1), 1),
        "live_ms_per_move": round(1000 * live_s / max(moves, 1), 3),
        "catchup_bytes": late.bytes_ab + late.bytes_ba,
        "catchup_ms": round(1000 * catchup_s, 1),
    }


def _saving(new: float, old: float) -> str:
    return f"{100 * (old - new) / old:+.0f}%" if old else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--games", type=int, default=200, help="games to replicate (200)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    games = self_play(args.games)
    v2, v3 = measure(2, games), measure(3, games)
    if args.json:
        print(json.dumps({"v2": v2, "v3": v3}, indent=2))
        return
    print(f"{args.games} Battleline games, {v3['moves']} moves, replicated between two engines")
    print(f"{'':32} {'protocol 2':>12} {'protocol 3':>12} {'saving':>8}")
    for name, label in [
        ("live_bytes_per_move", "live play, bytes per move"),
        ("live_bytes", "live play, bytes A -> B"),
        ("live_ms_per_move", "live play, CPU ms per move"),
        ("catchup_bytes", "catch-up, bytes both ways"),
        ("catchup_ms", "catch-up, ms until converged"),
    ]:
        print(f"{label:32} {v2[name]:>12} {v3[name]:>12} {_saving(v3[name], v2[name]):>8}")


if __name__ == "__main__":
    main()
