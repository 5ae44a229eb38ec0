"""Saved games (document ``saved``) and the log of finished games (``log:<YYYY-MM>``).

Both are flat maps keyed by game id whose values are *derived* from the game document (players,
seed, canonical moves, result), so when two nodes write the same entry concurrently they write
the same text and it does not matter which write Yjs keeps. A saved game is deleted when it is
resumed (the resumed game is a new game document that starts from its moves). A log period
(one calendar month, by the finishing stamp) is appended to and never otherwise changed.

`games_to_park` is the rule "one live game per player": if a partition let a player start two
games, the game created first is kept and every later one is parked as a saved game.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pycrdt import Doc

from meridian.crdt_models.game import GameInfo
from meridian.crdt_models.records import (
    RecordError,
    decode_record,
    encode_record,
    map_items,
    root_map,
)

SAVED_DOC = "saved"
GAMES = "games"
LOG_PREFIX = "log:"


def log_doc_id(finished_wall_ms: int) -> str:
    month = datetime.fromtimestamp(finished_wall_ms / 1000, tz=UTC).strftime("%Y-%m")
    return f"{LOG_PREFIX}{month}"


@dataclass(frozen=True)
class ArchivedGame:
    """A saved or finished game: enough to show it, replay it with the rules, or resume it."""

    gid: str
    game: str
    players: list[str]
    names: list[str]
    seed: int
    first: int
    moves: list[dict[str, Any]]  # every move from the deal, each with its "player"
    created: str
    result: dict[str, Any] | None = None  # finished games only
    by: str = ""  # saved games: uid of the player who saved (or "merge")
    stamp: str = ""  # when it was saved / finished
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_text(cls, text: Any) -> ArchivedGame:
        record = decode_record(
            text, ("gid", "game", "players", "names", "seed", "first", "moves", "created")
        )
        record["seed"], record["first"] = int(record["seed"]), int(record["first"])
        return cls(**{k: record[k] for k in cls.__dataclass_fields__ if k in record})

    def to_text(self) -> str:
        # Not dataclasses.asdict: it deep-copies every move of the game, once per finished game
        # (5 % of a saturated node's event loop); encoding reads the same values.
        return encode_record({name: getattr(self, name) for name in ARCHIVED_FIELDS})

    @classmethod
    def from_game(cls, info: GameInfo, moves: list[dict[str, Any]], **fields: Any) -> ArchivedGame:
        return cls(
            gid=info.gid,
            game=info.game,
            players=info.players,
            names=info.names,
            seed=info.seed,
            first=info.first,
            moves=info.start_moves + moves,
            created=info.created,
            **fields,
        )


ARCHIVED_FIELDS = tuple(ArchivedGame.__dataclass_fields__)


def read_archive(doc: Doc[Any]) -> dict[str, ArchivedGame]:
    games = {}
    for gid, text in map_items(doc, GAMES):
        try:
            games[gid] = ArchivedGame.from_text(text)
        except (RecordError, TypeError):
            continue
    return games


def archive_has(doc: Doc[Any], gid: str) -> bool:
    return gid in root_map(doc, GAMES)


def put_archived(doc: Doc[Any], game: ArchivedGame) -> None:
    root_map(doc, GAMES)[game.gid] = game.to_text()


def remove_archived(doc: Doc[Any], gid: str) -> None:
    games = root_map(doc, GAMES)
    if gid in games:
        del games[gid]


def games_to_park(live_games: list[GameInfo]) -> list[str]:
    """Ids of live games that break "one live game per player" and must be parked.

    Games are taken in creation order (HLC stamp, then id); a game is kept when neither of its
    players already has a kept game, otherwise it is parked. Every node computes the same list.
    """
    busy: set[str] = set()
    parked = []
    for info in sorted(live_games, key=lambda g: (g.created, g.gid)):
        if busy.intersection(info.players):
            parked.append(info.gid)
        else:
            busy.update(info.players)
    return parked
