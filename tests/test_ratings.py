"""Ratings derived from the game log: the same finished games give the same table, whatever
order they arrive in, with Elo's arithmetic (crdt_models/ratings.py)."""

from __future__ import annotations

import math
import random
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from meridian.crdt_models.archive import ArchivedGame
from meridian.crdt_models.ratings import (
    INITIAL_RATING,
    K_FACTOR,
    expected_score,
    ranking,
    ratings,
    table_digest,
)

UIDS = [f"u{i}" for i in range(5)]
REASONS = {0: "flags", 1: "breakthrough", None: "stalemate"}


def game(
    gid: str, a: int, b: int, winner: int | None, stamp: int, reason: str = ""
) -> ArchivedGame:
    return ArchivedGame(
        gid=gid,
        game="battleline",
        players=[UIDS[a], UIDS[b]],
        names=[f"name{a}", f"name{b}"],
        seed=1,
        first=0,
        moves=[],
        created=f"{stamp:016d}.00000.eu-1",
        result={"winner": winner, "reason": REASONS[winner]},
        stamp=f"{stamp:016d}.00001.eu-1",
    )


@st.composite
def game_logs(draw: st.DrawFn) -> list[ArchivedGame]:
    count = draw(st.integers(0, 30))
    games = []
    for i in range(count):
        a, b = draw(st.lists(st.integers(0, len(UIDS) - 1), min_size=2, max_size=2, unique=True))
        winner = draw(st.sampled_from([0, 1, None]))
        stamp = draw(st.integers(1, 10**6))  # equal stamps happen: the game id breaks the tie
        games.append(game(f"g{i:03d}", a, b, winner, stamp))
    return games


@settings(max_examples=150, deadline=None)
@given(game_logs(), st.randoms(use_true_random=False))
def test_the_same_games_in_any_order_give_the_same_ratings(
    games: list[ArchivedGame], rng: random.Random
) -> None:
    shuffled = games[:]
    rng.shuffle(shuffled)
    table = ratings(games)
    assert ratings(shuffled) == table
    assert table_digest(ratings(shuffled)) == table_digest(table)
    # A game listed twice (in two log documents) counts once.
    assert ratings(shuffled + games[: len(games) // 2]) == table


@settings(max_examples=150, deadline=None)
@given(game_logs())
def test_ratings_are_zero_sum_and_count_every_game(games: list[ArchivedGame]) -> None:
    table = ratings(games)
    assert sum(r.rating for r in table.values()) == INITIAL_RATING * len(table)
    assert sum(r.games for r in table.values()) == 2 * len(games)
    assert sum(r.won for r in table.values()) == sum(r.lost for r in table.values())
    for r in table.values():
        assert r.won + r.lost + r.drawn == r.games
    ranked = ranking(table)
    assert [r.rating for r in ranked] == sorted((r.rating for r in ranked), reverse=True)


@settings(max_examples=100, deadline=None)
@given(game_logs(), st.integers(0, len(UIDS) - 1), st.integers(0, len(UIDS) - 1))
def test_a_win_never_lowers_a_rating_and_a_loss_never_raises_it(
    games: list[ArchivedGame], a: int, b: int
) -> None:
    if a == b:
        return
    before = ratings(games)
    after = ratings([*games, game("last", a, b, 0, 10**7)])
    start = [before[UIDS[i]].rating if UIDS[i] in before else INITIAL_RATING for i in (a, b)]
    assert after[UIDS[a]].rating >= start[0] and after[UIDS[b]].rating <= start[1]
    assert after[UIDS[a]].rating - start[0] == start[1] - after[UIDS[b]].rating


def test_elo_figures_for_two_new_players() -> None:
    table = ratings([game("g1", 0, 1, 0, 1)])
    assert (table["u0"].rating, table["u1"].rating) == (Decimal(1516), Decimal(1484))
    assert (table["u0"].won, table["u1"].lost) == (1, 1)
    # Again: the favourite gains less; the figure agrees with floating point Elo.
    table = ratings([game("g1", 0, 1, 0, 1), game("g2", 0, 1, 0, 2)])
    gain = 32 * (1 - 1 / (1 + 10 ** ((1484 - 1516) / 400)))
    assert math.isclose(float(table["u0"].rating), 1516 + gain, abs_tol=0.01)
    # A draw between equals changes nothing; a stalemate is a draw.
    even = ratings([game("g1", 0, 1, None, 1)])
    assert even["u0"].rating == even["u1"].rating == INITIAL_RATING
    assert even["u0"].drawn == 1
    assert expected_score(Decimal(1500), Decimal(1500)) == Decimal("0.5")
    assert K_FACTOR == 32


def test_unfinished_games_and_games_against_oneself_do_not_count() -> None:
    unfinished = ArchivedGame("g1", "battleline", ["u0", "u1"], ["a", "b"], 1, 0, [], "c")
    lonely = game("g2", 0, 0, 0, 2)
    other_game = ArchivedGame(
        "g3", "chess", ["u0", "u1"], ["a", "b"], 1, 0, [], "c", result={"winner": 0}, stamp="s"
    )
    assert ratings([unfinished, lonely, other_game]) == {}


def test_the_log_order_decides_and_the_game_id_breaks_a_tie() -> None:
    # u0 beats u1, and u1 beats u2: which came first changes u1's and u2's ratings.
    same_stamp = ratings([game("b", 1, 2, 0, 5), game("a", 0, 1, 0, 5)])  # "a" sorts first
    a_first = ratings([game("a", 0, 1, 0, 5), game("b", 1, 2, 0, 6)])
    b_first = ratings([game("a", 0, 1, 0, 6), game("b", 1, 2, 0, 5)])
    assert same_stamp == a_first
    assert a_first["u2"].rating != b_first["u2"].rating
