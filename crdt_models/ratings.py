"""Elo ratings of accounts, derived from the log of finished games (``crdt_models.archive``).

Every region holds the same game log once it has replicated, and a rating is a pure function of
that log: no region decides a rating, and no rating is stored or replicated. Two regions that
hold the same finished games derive the same table, byte for byte, whatever order the games
reached them in.

The rules:

* A game counts when it is a finished game of two different accounts with a result. A win
  scores 1, a loss 0, a draw (stalemate) 0.5; giving up is a loss.
* Games are taken in the log's own order: by the stamp of their last move (HLC text, whose
  order is time order), then by game id. A game id listed twice (the same game in two log
  documents) counts once.
* Every account starts at `INITIAL_RATING`. After each game both players move by
  ``K * (score - expected)``, where ``expected = 1 / (1 + 10 ** ((opponent - own) / 400))``;
  the two changes are exact opposites, so the ratings always sum to INITIAL_RATING per player.
* The arithmetic is decimal with a fixed context (`CONTEXT`) and each rating is rounded to
  `RATING_STEP` after every game (half to even, which is symmetric, so the sum stays exact).
  Binary floating point would do, but its ``pow`` comes from the platform's C library, which
  may differ in the last bit between machines; Python's decimal module is the same code
  everywhere.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Context, Decimal
from typing import Any

from meridian.crdt_models.archive import ArchivedGame

INITIAL_RATING = Decimal(1500)
K_FACTOR = Decimal(32)
SCALE = Decimal(400)
RATING_STEP = Decimal("0.01")
CONTEXT = Context(prec=34, rounding=ROUND_HALF_EVEN)
RATED_GAMES = frozenset({"battleline"})
SCORES = {"won": Decimal(1), "drawn": Decimal("0.5"), "lost": Decimal(0)}


@dataclass(frozen=True)
class Rating:
    """One account's rating and record."""

    uid: str
    name: str  # the name in the account's latest rated game
    rating: Decimal
    games: int
    won: int
    lost: int
    drawn: int

    def to_json(self) -> dict[str, Any]:
        return {
            "uid": self.uid,
            "name": self.name,
            "rating": int(self.rating.to_integral_value(rounding=ROUND_HALF_EVEN)),
            "exact": str(self.rating),
            "games": self.games,
            "won": self.won,
            "lost": self.lost,
            "drawn": self.drawn,
        }


def rated(game: ArchivedGame) -> bool:
    """Whether a logged game counts (see module docstring)."""
    return (
        game.game in RATED_GAMES
        and game.result is not None
        and len(game.players) == 2
        and game.players[0] != game.players[1]
        and game.result.get("winner") in (0, 1, None)
    )


def log_order(games: Iterable[ArchivedGame]) -> list[ArchivedGame]:
    """The rated games once each, in the log's order (see module docstring)."""
    by_gid: dict[str, ArchivedGame] = {}
    for game in games:
        if not rated(game):
            continue
        known = by_gid.get(game.gid)
        # The same id twice: keep one by a rule that does not depend on the order of arrival.
        if known is None or (game.stamp, game.to_text()) > (known.stamp, known.to_text()):
            by_gid[game.gid] = game
    return sorted(by_gid.values(), key=lambda g: (g.stamp, g.gid))


def expected_score(own: Decimal, opponent: Decimal) -> Decimal:
    """Elo's expected score of a player rated `own` against `opponent`."""
    power = CONTEXT.power(Decimal(10), CONTEXT.divide(opponent - own, SCALE))
    return CONTEXT.divide(Decimal(1), CONTEXT.add(Decimal(1), power))


def ratings(games: Iterable[ArchivedGame]) -> dict[str, Rating]:
    """uid -> Rating, from the finished games of the log (in any order; see module docstring)."""
    table: dict[str, Rating] = {}
    for game in log_order(games):
        assert game.result is not None  # rated() checked it
        seats = [_current(table, game, seat) for seat in (0, 1)]
        expected = expected_score(seats[0].rating, seats[1].rating)
        outcome = _outcomes(game.result.get("winner"))
        change = _step(CONTEXT.multiply(K_FACTOR, CONTEXT.subtract(SCORES[outcome[0]], expected)))
        for seat, delta in ((0, change), (1, -change)):
            table[seats[seat].uid] = _after(seats[seat], game.names[seat], delta, outcome[seat])
    return table


def ranking(table: dict[str, Rating]) -> list[Rating]:
    """Best first; equal ratings by more games, then by uid (a total order)."""
    return sorted(table.values(), key=lambda r: (-r.rating, -r.games, r.uid))


def table_digest(table: dict[str, Rating]) -> str:
    """A short hash of the whole table: equal on two regions exactly when their tables are."""
    rows = [[r.uid, r.name, str(r.rating), r.games, r.won, r.lost, r.drawn] for r in ranking(table)]
    return hashlib.sha256(json.dumps(rows, separators=(",", ":")).encode()).hexdigest()[:16]


def _current(table: dict[str, Rating], game: ArchivedGame, seat: int) -> Rating:
    uid = game.players[seat]
    return table.get(uid) or Rating(uid, game.names[seat], INITIAL_RATING, 0, 0, 0, 0)


def _outcomes(winner: object) -> tuple[str, str]:
    if winner is None:
        return "drawn", "drawn"
    return ("won", "lost") if winner == 0 else ("lost", "won")


def _step(value: Decimal) -> Decimal:
    return value.quantize(RATING_STEP, rounding=ROUND_HALF_EVEN, context=CONTEXT)


def _after(before: Rating, name: str, delta: Decimal, outcome: str) -> Rating:
    return Rating(
        before.uid,
        name,
        CONTEXT.add(before.rating, delta),
        before.games + 1,
        before.won + (outcome == "won"),
        before.lost + (outcome == "lost"),
        before.drawn + (outcome == "drawn"),
    )
