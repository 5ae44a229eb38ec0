"""Formation strength of one side of a flag, and the strongest completion of an unfinished side.

A formation is scored as one integer ``value = class * 100 + strength`` so that comparing two
values compares class first and strength second (the rule's tie-break). Classes: 5 wedge
(same colour, consecutive), 4 phalanx (same strength), 3 battalion (same colour),
2 skirmish line (consecutive), 1 host (anything). Fog makes every formation a host; Mud makes
formations four cards long.

Morale tactics are jokers: a leader is any colour and any strength, "123" is any colour with
strength 1, 2 or 3, "8" is any colour with strength 8. A side is scored as the best value any
choice of joker values gives, exactly (so a lone 6 with a leader and "123" is a 19-point
battalion; the original server scored it 6).

``best_completion`` answers the question a claim proof asks: what is the strongest formation the
opponent could still reach on this flag by adding ``k`` cards from the unplayed troops? It does
not enumerate the up to C(50, 4) completions; it walks the classes from the top down and, for
each class, builds the strongest completion directly (runs by their top card, phalanxes by their
strength, battalions by colour), stopping at the first class that can be reached. That is exact
because every class strictly outranks the ones below it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache
from itertools import permutations

from meridian.games.battleline.cards import (
    COLOR,
    MORALE_MAX,
    MORALE_STRENGTHS,
    STRENGTH,
    troop_card,
)

HOST = 1
SKIRMISH_LINE = 2
BATTALION = 3
PHALANX = 4
WEDGE = 5

FORMATION_NAMES = {
    HOST: "host",
    SKIRMISH_LINE: "skirmish line",
    BATTALION: "battalion",
    PHALANX: "phalanx",
    WEDGE: "wedge",
}


def formation_class(value: int) -> int:
    """The class (1 host .. 5 wedge) of a formation value."""
    return value // 100


def formation_strength(value: int) -> int:
    """The strength (sum of card values) of a formation value."""
    return value % 100


def describe(value: int) -> str:
    """``wedge 27`` style text for a formation value."""
    return f"{FORMATION_NAMES[formation_class(value)]} {formation_strength(value)}"


_STRONGEST_FIRST = sorted(range(1, 61), key=lambda c: (-STRENGTH[c], c))


class TroopPool:
    """The troops a completion may draw from, indexed (lazily) the ways the searches need.

    Build one and pass it to several ``best_completion`` calls to save the indexing.
    """

    __slots__ = ("_by_color", "_by_strength", "_strongest", "cards")

    def __init__(self, cards: Iterable[int]) -> None:
        self.cards = frozenset(cards)
        self._strongest: list[int] | None = None
        self._by_strength: list[list[int]] | None = None
        self._by_color: list[list[int]] | None = None

    @property
    def strongest(self) -> list[int]:
        """The pool's troops, strongest first."""
        if self._strongest is None:
            self._strongest = [c for c in _STRONGEST_FIRST if c in self.cards]
        return self._strongest

    def of_strength(self, strength: int) -> list[int]:
        """The pool's troops of this strength."""
        if self._by_strength is None:
            self._by_strength = [[] for _ in range(11)]
            for card in self.strongest:
                self._by_strength[STRENGTH[card]].append(card)
        return self._by_strength[strength]

    def of_color(self, color: int) -> list[int]:
        """The pool's troops of this colour, strongest first."""
        if self._by_color is None:
            self._by_color = [[] for _ in range(6)]
            for card in self.strongest:
                self._by_color[COLOR[card]].append(card)
        return self._by_color[color]


_EMPTY_POOL = TroopPool(())


def _fill_run(
    run: range,
    taken: set[int],
    morales: Sequence[int],
    card_for: dict[int, int],
) -> tuple[int, ...] | None:
    """Cards completing a run: morales take some missing strengths, pool cards the rest.

    ``taken`` holds the strengths troops already cover; ``card_for`` maps a strength to a pool
    card that can stand there. Returns the pool cards used, or None when no placement works.
    """
    missing = [s for s in run if s not in taken]
    for placed in permutations(missing, len(morales)):
        if all(s in MORALE_STRENGTHS[m] for m, s in zip(morales, placed, strict=True)):
            rest = [s for s in missing if s not in placed]
            if all(s in card_for for s in rest):
                return tuple(card_for[s] for s in rest)
    return None


def _best_run(
    troops: Sequence[int],
    morales: Sequence[int],
    size: int,
    pool: TroopPool,
    same_color: bool,
) -> tuple[int, tuple[int, ...]] | None:
    """Strongest wedge (``same_color``) or skirmish line; returns (run strength, pool cards)."""
    strengths = {STRENGTH[t] for t in troops}
    if len(strengths) != len(troops):
        return None
    colors = {COLOR[t] for t in troops}
    if same_color and len(colors) > 1:
        return None
    color_choices = sorted(colors) if colors else list(range(6))
    for top in range(10, size - 1, -1):
        run = range(top - size + 1, top + 1)
        if any(s not in run for s in strengths):
            continue
        for color in color_choices if same_color else [-1]:
            card_for = _run_cards(run, strengths, pool, color)
            used = _fill_run(run, strengths, morales, card_for)
            if used is not None:
                return sum(run), used
    return None


def _run_cards(run: range, taken: set[int], pool: TroopPool, color: int) -> dict[int, int]:
    """For each missing strength of a run, one pool card that fits (of ``color`` if >= 0)."""
    found: dict[int, int] = {}
    for strength in run:
        if strength in taken:
            continue
        if color >= 0:
            card = troop_card(color, strength)
            if card in pool.cards:
                found[strength] = card
        elif pool.of_strength(strength):
            found[strength] = pool.of_strength(strength)[0]
    return found


def _best_phalanx(
    troops: Sequence[int], morales: Sequence[int], size: int, pool: TroopPool, k: int
) -> tuple[int, tuple[int, ...]] | None:
    """Strongest phalanx; returns (strength, pool cards)."""
    strengths = {STRENGTH[t] for t in troops}
    if len(strengths) > 1:
        return None
    candidates = sorted(strengths) if strengths else range(10, 0, -1)
    for strength in candidates:
        if not all(strength in MORALE_STRENGTHS[m] for m in morales):
            continue
        cards = pool.of_strength(strength)
        if len(cards) >= k:
            return strength * size, tuple(cards[:k])
    return None


def _best_battalion(
    troops: Sequence[int], morales: Sequence[int], pool: TroopPool, k: int
) -> tuple[int, tuple[int, ...]] | None:
    """Strongest battalion; returns (strength, pool cards)."""
    colors = {COLOR[t] for t in troops}
    if len(colors) > 1:
        return None
    fixed = sum(STRENGTH[t] for t in troops) + sum(MORALE_MAX[m] for m in morales)
    best: tuple[int, tuple[int, ...]] | None = None
    for color in sorted(colors) if colors else range(6):
        cards = pool.of_color(color)
        if len(cards) >= k:
            strength = fixed + sum(STRENGTH[c] for c in cards[:k])
            if best is None or strength > best[0]:
                best = (strength, tuple(cards[:k]))
    return best


def _best_host(
    troops: Sequence[int], morales: Sequence[int], pool: TroopPool, k: int
) -> tuple[int, tuple[int, ...]]:
    """Strongest host (the k strongest pool cards); returns (strength, pool cards)."""
    cards = tuple(pool.strongest[:k])
    fixed = sum(STRENGTH[t] for t in troops) + sum(MORALE_MAX[m] for m in morales)
    return fixed + sum(STRENGTH[c] for c in cards), cards


def _search(
    troops: Sequence[int], morales: Sequence[int], size: int, fog: bool, pool: TroopPool
) -> tuple[int, tuple[int, ...]]:
    """The best (value, pool cards) over all completions (the caller checks the pool size)."""
    k = size - len(troops) - len(morales)
    if not fog:
        wedge = _best_run(troops, morales, size, pool, same_color=True)
        if wedge is not None:
            return WEDGE * 100 + wedge[0], wedge[1]
        phalanx = _best_phalanx(troops, morales, size, pool, k)
        if phalanx is not None:
            return PHALANX * 100 + phalanx[0], phalanx[1]
        battalion = _best_battalion(troops, morales, pool, k)
        if battalion is not None:
            return BATTALION * 100 + battalion[0], battalion[1]
        line = _best_run(troops, morales, size, pool, same_color=False)
        if line is not None:
            return SKIRMISH_LINE * 100 + line[0], line[1]
    host = _best_host(troops, morales, pool, k)
    return HOST * 100 + host[0], host[1]


@lru_cache(maxsize=65536)
def _evaluate_sorted(
    troops: tuple[int, ...], morales: tuple[int, ...], size: int, fog: bool
) -> int:
    if len(troops) + len(morales) == size + 1:
        # Mud was taken away and left this side one card over: the best `size` of them count.
        cards = troops + morales
        return max(
            _evaluate_sorted(
                tuple(c for c in troops if c != drop),
                tuple(m for m in morales if m != drop),
                size,
                fog,
            )
            for drop in cards
        )
    if len(troops) + len(morales) != size:
        raise ValueError(f"a {size}-card formation needs {size} cards, got {troops + morales}")
    return _search(troops, morales, size, fog, _EMPTY_POOL)[0]


def evaluate(troops: Iterable[int], morales: Iterable[int], size: int, fog: bool) -> int:
    """The value of a complete side: ``size`` cards (or one more, left over when Mud went away)."""
    return _evaluate_sorted(tuple(sorted(troops)), tuple(sorted(morales)), size, fog)


def best_completion(
    troops: Sequence[int],
    morales: Sequence[int],
    size: int,
    fog: bool,
    pool: Iterable[int] | TroopPool,
) -> tuple[int, tuple[int, ...]] | None:
    """The strongest formation this unfinished side can become with cards from ``pool``.

    Returns ``(value, cards taken from the pool)``, or None when the pool holds too few cards
    to finish the side at all. ``pool`` must not contain the side's own troops.
    """
    k = size - len(troops) - len(morales)
    if k < 0:
        raise ValueError(f"side already has more than {size} cards")
    indexed = pool if isinstance(pool, TroopPool) else TroopPool(pool)
    if len(indexed.cards) < k:
        return None
    return _search(troops, morales, size, fog, indexed)
