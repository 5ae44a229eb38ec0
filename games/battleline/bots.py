"""Two bots: one that plays any legal move at random, and one that plays to win.

``HeuristicBot`` sees only what its player may see (its hand, the table, and which troops are
still unplayed, which is public). It

* claims every flag it can prove, and only those;
* rates each flag by the margin between its own best reachable formation and the opponent's
  (a formation that still needs unseen cards is marked down for each of them), and plays the
  card that improves that rating most;
* keeps tactics for when they matter: a tactic must beat the best troop play by a clear margin;
* draws troops, and a tactic only while it holds none.

Both bots take a seed; their choices are reproducible. ``random.Random`` is fine here: bots
are not part of the consensus (only their moves are).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

from meridian.games.battleline import rules
from meridian.games.battleline.cards import (
    FOG,
    HAND,
    LEADERS,
    MUD,
    N_FLAGS,
    STRENGTH,
    is_environment,
    is_tactic,
    is_troop,
)
from meridian.games.battleline.claims import split_side
from meridian.games.battleline.formations import TroopPool, best_completion, evaluate
from meridian.games.battleline.state import CLAIM, DRAW, PLAY, SCOUT_DRAW, SCOUT_RETURN, GameState

Move = dict[str, Any]

# A completion that needs a card not in hand is worth this much less per such card
# (a formation class is worth 100), since the card may never come.
_UNSEEN_CARD_COST = 45
# How far (in flag-rating units, -1..1 per flag) a tactic must beat the best troop play.
_TACTIC_COST = 0.35
_SCALE = 120.0


class RandomBot:
    """Plays a uniformly random legal move."""

    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)

    def choose(self, state: GameState, player: int) -> Move:
        moves = rules.legal_moves(state)
        if not moves or state.mover != player:
            raise ValueError(f"player {player} has no move to make")
        return self.random.choice(moves)


@dataclass
class _Outlook:
    """What the bot knows about the table, from its player's seat."""

    player: int
    sides: list[list[list[int]]]  # [player][flag] -> cards
    mud: list[bool]
    fog: list[bool]
    hand: list[int]
    unseen: list[int]  # unplayed troops not in the bot's hand
    pools: dict[frozenset[int], TroopPool]  # completion pools, by the own cards they add
    prospects: dict[tuple[object, ...], float]  # memo for _prospect within one decision

    def pool(self, own: list[int]) -> TroopPool:
        """The unseen troops plus these own troops, indexed once per decision."""
        key = frozenset(c for c in own if is_troop(c))
        if key not in self.pools:
            self.pools[key] = TroopPool([*key, *self.unseen])
        return self.pools[key]

    @classmethod
    def of(cls, state: GameState, player: int) -> _Outlook:
        hand = list(state.places[HAND[player]])
        mine = set(hand)
        return cls(
            player=player,
            sides=[[list(rules.side(state, p, f)) for f in range(N_FLAGS)] for p in (0, 1)],
            mud=[rules.flag_size(state, f) == 4 for f in range(N_FLAGS)],
            fog=[rules.flag_fog(state, f) for f in range(N_FLAGS)],
            hand=hand,
            unseen=[c for c in rules.unplayed_troops(state) if c not in mine],
            pools={},
            prospects={},
        )


def _prospect(cards: list[int], size: int, fog: bool, own: list[int], view: _Outlook) -> float:
    """How strong a side can become: its best completion, marked down per unseen card needed."""
    key = (tuple(sorted(cards)), size, fog, frozenset(own))
    if key not in view.prospects:
        view.prospects[key] = _side_prospect(cards, size, fog, own, view)
    return view.prospects[key]


def _side_prospect(cards: list[int], size: int, fog: bool, own: list[int], view: _Outlook) -> float:
    troops, morales = split_side(cards)
    have = len(troops) + len(morales)
    if have >= size:
        return float(evaluate(troops, morales, size, fog)) if have <= size + 1 else 0.0
    best = best_completion(troops, morales, size, fog, view.pool(own))
    if best is None:
        return 0.0  # can never be finished
    value, added = best
    owned = set(own)
    missing = sum(1 for c in added if c not in owned)
    return value - _UNSEEN_CARD_COST * missing


def _flag_rating(
    view: _Outlook, flag: int, mine: list[int], theirs: list[int], own: list[int]
) -> float:
    """-1..1: how likely the bot is to win this flag, from the two sides' prospects."""
    size = 4 if view.mud[flag] else 3
    fog = view.fog[flag]
    my_value = _prospect(mine, size, fog, own, view)
    their_value = _prospect(theirs, size, fog, [], view)
    return math.tanh((my_value - their_value) / _SCALE)


class HeuristicBot:
    """Builds formations, keeps tactics for when they matter, claims what it can prove."""

    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)

    def choose(self, state: GameState, player: int) -> Move:
        moves = rules.legal_moves(state)
        if not moves or state.mover != player:
            raise ValueError(f"player {player} has no move to make")
        if state.phase == CLAIM:
            return self._claim(state, player)
        if state.phase in (DRAW, SCOUT_DRAW):
            return self._draw(state, player, moves)
        if state.phase == SCOUT_RETURN:
            return self._scout_return(state, player, moves)
        assert state.phase == PLAY
        return self._play(state, player, moves)

    def _claim(self, state: GameState, player: int) -> Move:
        provable = [
            f + 1
            for f in range(N_FLAGS)
            if rules.has_formation(state, player, f) and rules.prove(state, player, f).proved
        ]
        return {"type": "claim", "flags": provable}

    def _draw(self, state: GameState, player: int, moves: list[Move]) -> Move:
        hand = state.places[HAND[player]]
        want_tactic = not any(is_tactic(c) for c in hand) and rules.may_play_tactic(state, player)
        decks = [m["deck"] for m in moves]
        if (want_tactic and "tactic" in decks) or "troop" not in decks:
            return {"type": "draw", "deck": "tactic"}
        return {"type": "draw", "deck": "troop"}

    def _scout_return(self, state: GameState, player: int, moves: list[Move]) -> Move:
        hand = state.places[HAND[player]]
        leader_done = rules.leader_played(state, player)

        def keep_value(card: int) -> int:
            if card in LEADERS and leader_done:
                return -1
            return 11 if is_tactic(card) else STRENGTH[card]

        worst = sorted(hand, key=keep_value)[: len(hand) - 7]
        for move in moves:
            if sorted(move["cards"]) == sorted(worst):
                return move
        return moves[0]

    def _play(self, state: GameState, player: int, moves: list[Move]) -> Move:
        view = _Outlook.of(state, player)
        best_troop: tuple[float, Move] | None = None
        best_tactic: tuple[float, Move] | None = None
        for move in moves:
            score = _score(view, move) + self.random.random() * 1e-6  # random tie-break
            if (move["type"] == "play" and is_troop(move["card"])) or move["type"] == "pass":
                if best_troop is None or score > best_troop[0]:
                    best_troop = (score, move)
            elif best_tactic is None or score > best_tactic[0]:
                best_tactic = (score, move)
        if best_tactic is not None and (
            best_troop is None or best_tactic[0] - _TACTIC_COST > best_troop[0]
        ):
            return best_tactic[1]
        assert best_troop is not None
        return best_troop[1]


def _score(view: _Outlook, move: Move) -> float:
    """The change in the bot's flag ratings the move brings."""
    kind = move["type"]
    if kind in ("pass", "scout"):
        return 0.0
    if kind == "play":
        card, flag = move["card"], move["flag"] - 1
        if is_environment(card):
            return _environment_gain(view, card, flag)
        return _change(view, flag, add_mine=card)
    card = move["card"]
    source = _flag_of(view, card)
    if kind == "deserter":
        return _change(view, source, remove_theirs=card)
    if kind == "traitor":
        target = move["to_flag"] - 1
        if target == source:
            return _change(view, source, remove_theirs=card, add_mine=card)
        return _change(view, source, remove_theirs=card) + _change(view, target, add_mine=card)
    gain = _change(view, source, remove_mine=card)  # redeploy
    if move["to_flag"] is not None:
        gain += _change(view, move["to_flag"] - 1, add_mine=card, from_table=True)
    return gain


def _flag_of(view: _Outlook, card: int) -> int:
    for player in (0, 1):
        for flag in range(N_FLAGS):
            if card in view.sides[player][flag]:
                return flag
    raise ValueError(f"card {card} is not on the table")


def _change(
    view: _Outlook,
    flag: int,
    add_mine: int = 0,
    remove_mine: int = 0,
    remove_theirs: int = 0,
    from_table: bool = False,
) -> float:
    """Rating of a flag after a change minus its rating now."""
    mine = view.sides[view.player][flag]
    theirs = view.sides[1 - view.player][flag]
    own = [c for c in view.hand if c != add_mine]
    before = _flag_rating(view, flag, mine, theirs, view.hand if not from_table else own)
    new_mine = [c for c in mine if c != remove_mine] + ([add_mine] if add_mine else [])
    new_theirs = [c for c in theirs if c != remove_theirs]
    after = _flag_rating(view, flag, new_mine, new_theirs, own)
    return after - before


def _environment_gain(view: _Outlook, card: int, flag: int) -> float:
    mine = view.sides[view.player][flag]
    theirs = view.sides[1 - view.player][flag]
    before = _flag_rating(view, flag, mine, theirs, view.hand)
    changed = _Outlook(
        view.player,
        view.sides,
        list(view.mud),
        list(view.fog),
        view.hand,
        view.unseen,
        view.pools,
        view.prospects,
    )
    if card == MUD:
        changed.mud[flag] = True
    elif card == FOG:
        changed.fog[flag] = True
    own = [c for c in view.hand if c != card]
    return _flag_rating(changed, flag, mine, theirs, own) - before
