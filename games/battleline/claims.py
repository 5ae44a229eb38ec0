"""Claim proofs: may a player take a flag now, and if not, which cards show they may not?

A player may claim a flag on which their formation is complete when the opponent cannot beat it:
either the opponent's side is complete and not stronger, or no way of finishing the opponent's
side with troops still unplayed (both decks and both hands; unplayed tactics do not count)
gives a stronger formation. A tie goes to the claimer. A failed proof returns a counter-example:
the opponent's cards on the flag plus the unplayed troops that would beat the claim.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from meridian.games.battleline.cards import STRENGTH, is_morale, is_troop
from meridian.games.battleline.formations import best_completion, evaluate


@dataclass(frozen=True)
class ClaimProof:
    """The outcome of one claim: proved or not, the values compared, and a counter-example."""

    proved: bool
    claimer_value: int
    best_opponent_value: int | None  # None when the opponent can no longer finish the flag
    counter_example: tuple[int, ...]  # empty when proved


def split_side(cards: Iterable[int]) -> tuple[list[int], list[int]]:
    """A side's troops and morale cards (environment cards are not part of a formation)."""
    troops = [c for c in cards if is_troop(c)]
    morales = [c for c in cards if is_morale(c)]
    return troops, morales


def prove_claim(
    claimer: Sequence[int],
    opponent: Sequence[int],
    size: int,
    fog: bool,
    unplayed_troops: Iterable[int],
) -> ClaimProof:
    """Prove the claimer's complete side against every completion of the opponent's side.

    ``claimer`` and ``opponent`` are the cards on each side (environment cards are ignored);
    ``size`` is 3, or 4 under Mud.
    """
    my_troops, my_morales = split_side(claimer)
    if len(my_troops) + len(my_morales) < size:
        raise ValueError(f"the claimer's formation is not complete ({size} cards needed)")
    mine = evaluate(my_troops, my_morales, size, fog)
    their_troops, their_morales = split_side(opponent)
    their_cards = (*their_troops, *their_morales)
    if len(their_cards) >= size:
        theirs = evaluate(their_troops, their_morales, size, fog)
        proved = theirs <= mine
        return ClaimProof(proved, mine, theirs, () if proved else _strongest_first(their_cards))
    completion = best_completion(their_troops, their_morales, size, fog, unplayed_troops)
    if completion is None:
        return ClaimProof(True, mine, None, ())
    theirs, added = completion
    proved = theirs <= mine
    return ClaimProof(proved, mine, theirs, () if proved else _strongest_first(their_cards + added))


def _strongest_first(cards: tuple[int, ...]) -> tuple[int, ...]:
    """Troops by strength (then number), strongest first, then the morale cards."""
    troops, morales = split_side(cards)
    return (*sorted(troops, key=lambda c: (-STRENGTH[c], c)), *sorted(morales))
