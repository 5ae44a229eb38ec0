"""Formation scoring and claim proofs, against go-battleline's fixtures and a brute force."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meridian.games.battleline.cards import (
    ALEXANDER,
    COLOR,
    DARIUS,
    MORALE_8,
    MORALE_123,
    MORALE_STRENGTHS,
    STRENGTH,
    troop_card,
)
from meridian.games.battleline.claims import prove_claim, split_side
from meridian.games.battleline.formations import (
    BATTALION,
    HOST,
    PHALANX,
    SKIRMISH_LINE,
    WEDGE,
    best_completion,
    evaluate,
)

DATA = Path(__file__).parent / "data" / "go-battleline"
EVALS = json.loads((DATA / "evals.json").read_text())
FLAGS = json.loads((DATA / "flags.json").read_text())


def test_fixture_counts() -> None:
    assert len(EVALS) == 87
    assert len(FLAGS) == 26


@pytest.mark.parametrize("case", EVALS, ids=[f"{i}-{c['Info']}" for i, c in enumerate(EVALS)])
def test_formation_matches_go_battleline(case: dict[str, Any]) -> None:
    size = 4 if case["IsMud"] else 3
    value = evaluate(case["Troops"], case["Morales"] or [], size, case["IsFog"])
    assert (value // 100, value % 100) == (case["FormValue"], case["Strenght"])


def _unplayed(case: dict[str, Any]) -> set[int]:
    on_flag = {c for side in case["FlagCardixs"] if side for c in side if c <= 60}
    if case["IsNegDef"]:
        return set(range(1, 61)) - set(case["DeckTroops"]) - on_flag
    return set(case["DeckTroops"])


@pytest.mark.parametrize("player", [0, 1])
@pytest.mark.parametrize("case", FLAGS, ids=[f"{i}-{c['Info']}" for i, c in enumerate(FLAGS)])
def test_claim_matches_go_battleline(case: dict[str, Any], player: int) -> None:
    size = 4 if case["IsMud"] else 3
    sides = [case["FlagCardixs"][0] or [], case["FlagCardixs"][1] or []]
    troops, morales = split_side(sides[player])
    if len(troops) + len(morales) < size:
        assert not case["IsClaimables"][player]  # no complete formation: nothing to claim
        return
    proof = prove_claim(sides[player], sides[1 - player], size, case["IsFog"], _unplayed(case))
    assert proof.proved == case["IsClaimables"][player]
    if not proof.proved:
        their = split_side(sides[1 - player])
        beaten = _brute_value(list(proof.counter_example), size, case["IsFog"])
        assert beaten > proof.claimer_value
        assert set(their[0] + their[1]) <= set(proof.counter_example)


@pytest.mark.parametrize("strength", range(6, 11))
@pytest.mark.parametrize("leader", [DARIUS, ALEXANDER])
def test_lone_strong_troop_with_leader_and_123_is_a_battalion(strength: int, leader: int) -> None:
    # The original scores this as the troop alone (6 for a 6); the rules allow a battalion.
    value = evaluate([troop_card(2, strength)], [leader, MORALE_123], 3, False)
    assert value == BATTALION * 100 + strength + 10 + 3


def test_weaker_lone_troop_with_leader_and_123_is_a_wedge() -> None:
    assert evaluate([troop_card(0, 5)], [DARIUS, MORALE_123], 3, False) == WEDGE * 100 + 12
    assert evaluate([troop_card(0, 1)], [DARIUS, MORALE_123], 3, False) == WEDGE * 100 + 6


def test_fog_makes_any_formation_a_host() -> None:
    assert evaluate([10, 9, 8], [], 3, True) == HOST * 100 + 27
    assert evaluate([10, 9, 8], [], 3, False) == WEDGE * 100 + 27


def test_mud_needs_four_cards_and_excess_keeps_the_best_three() -> None:
    assert evaluate([10, 9, 8, 7], [], 4, False) == WEDGE * 100 + 34
    # Mud taken away: four cards on a three-card flag; the best three count.
    assert evaluate([10, 9, 8, 21], [], 3, False) == WEDGE * 100 + 27
    with pytest.raises(ValueError, match="needs 3 cards"):
        evaluate([10, 9], [], 3, False)


def test_best_completion_with_too_few_unplayed_troops_is_none() -> None:
    assert best_completion([10], [], 3, False, [9]) is None
    found = best_completion([10], [], 3, False, [9, 8])
    assert found is not None
    assert found[0] == WEDGE * 100 + 27
    assert sorted(found[1]) == [8, 9]


# ---------------------------------------------------------------- brute force


def _classify(cards: list[tuple[int, int]], fog: bool) -> int:
    """Value of fixed (colour, strength) cards: the textbook definitions, no cleverness."""
    total = sum(s for _, s in cards)
    strengths = sorted(s for _, s in cards)
    same_color = len({c for c, _ in cards}) == 1
    run = all(b == a + 1 for a, b in itertools.pairwise(strengths))
    if fog:
        return HOST * 100 + total
    if same_color and run:
        return WEDGE * 100 + total
    if len(set(strengths)) == 1:
        return PHALANX * 100 + total
    if same_color:
        return BATTALION * 100 + total
    if run:
        return SKIRMISH_LINE * 100 + total
    return HOST * 100 + total


def _brute_value(cards: list[int], size: int, fog: bool) -> int:
    """Best value over every colour and strength the morale cards could take."""
    troops, morales = split_side(cards)
    fixed = [(COLOR[t], STRENGTH[t]) for t in troops]
    options = [
        [(color, s) for color in range(6) for s in sorted(MORALE_STRENGTHS[m])] for m in morales
    ]
    if len(cards) == size + 1:
        return max(_brute_value([c for c in cards if c != drop], size, fog) for drop in cards)
    return max(_classify(fixed + list(jokers), fog) for jokers in itertools.product(*options))


sides = st.tuples(
    st.lists(st.integers(1, 60), max_size=4, unique=True),
    st.lists(st.sampled_from([MORALE_123, MORALE_8, DARIUS]), max_size=2, unique=True),
)


@settings(max_examples=150, deadline=None)
@given(side=sides, mud=st.booleans(), fog=st.booleans())
def test_evaluate_equals_brute_force(
    side: tuple[list[int], list[int]], mud: bool, fog: bool
) -> None:
    size = 4 if mud else 3
    troops, morales = side
    cards = (troops + morales)[:size]
    if len(cards) < size:
        cards = (troops + morales + [c for c in range(1, 61) if c not in troops])[:size]
    assert evaluate(*split_side(cards), size, fog) == _brute_value(cards, size, fog)


@settings(max_examples=150, deadline=None)
@given(
    side=sides,
    pool=st.lists(st.integers(1, 60), min_size=0, max_size=11, unique=True),
    mud=st.booleans(),
    fog=st.booleans(),
)
def test_best_completion_equals_brute_force(
    side: tuple[list[int], list[int]], pool: list[int], mud: bool, fog: bool
) -> None:
    size = 4 if mud else 3
    troops, morales = side
    troops = troops[: max(0, size - 1 - len(morales))]
    pool = [c for c in pool if c not in troops]
    k = size - len(troops) - len(morales)
    found = best_completion(troops, morales, size, fog, pool)
    completions = list(itertools.combinations(pool, k))
    if not completions:
        assert found is None
        return
    assert found is not None
    best = max(_brute_value(troops + morales + list(extra), size, fog) for extra in completions)
    assert found[0] == best
    assert _brute_value(troops + morales + list(found[1]), size, fog) == best  # the witness


@settings(max_examples=150, deadline=None)
@given(
    claimer=st.lists(st.integers(1, 60), min_size=3, max_size=3, unique=True),
    opponent=st.lists(st.integers(1, 60), max_size=2, unique=True),
    morale=st.sampled_from([None, MORALE_123, MORALE_8, DARIUS]),
    pool=st.lists(st.integers(1, 60), max_size=10, unique=True),
    fog=st.booleans(),
)
def test_a_proved_claim_is_never_beaten_by_any_completion(
    claimer: list[int], opponent: list[int], morale: int | None, pool: list[int], fog: bool
) -> None:
    opponent = [c for c in opponent if c not in claimer] + ([morale] if morale else [])
    pool = [c for c in pool if c not in claimer and c not in opponent]
    proof = prove_claim(claimer, opponent, 3, fog, pool)
    mine = evaluate(claimer, [], 3, fog)
    k = 3 - len(opponent)
    completions = [
        _brute_value(opponent + list(x), 3, fog) for x in itertools.combinations(pool, k)
    ]
    assert proof.proved == all(value <= mine for value in completions)
    if not proof.proved:
        assert _brute_value(list(proof.counter_example), 3, fog) > mine
