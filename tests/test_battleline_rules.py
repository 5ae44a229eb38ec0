"""Battleline rules, one behaviour at a time: deal, turn, tactics, guiles, claims, wins, errors."""

from __future__ import annotations

from typing import Any

import pytest

from meridian.games.battleline import (
    IllegalMove,
    apply_move,
    full_view,
    legal_moves,
    new_game,
    player_view,
    position_to_state,
    replay,
    result,
    spectator_view,
    to_move,
)
from meridian.games.battleline.cards import (
    ALEXANDER,
    DARIUS,
    DESERTER,
    FOG,
    MORALE_8,
    MORALE_123,
    MUD,
    REDEPLOY,
    SCOUT,
    TRAITOR,
    side_place,
)
from meridian.games.battleline.state import GO_CONE, GO_DECK, GameState, shuffled_decks

Sides = dict[tuple[int, int], list[int]]


def build(
    hands: tuple[list[int], list[int]] = ([], []),
    sides: Sides | None = None,
    discards: tuple[list[int], list[int]] = ([], []),
    cones: dict[int, int] | None = None,
    to_play: int = 0,
    phase: str = "play",
    troops_elsewhere: int = 0,
    tactics_elsewhere: int = 23,
) -> GameState:
    """A position: cards where given, the other troops / tactics in the given place (a deck by
    default), and ``to_play`` about to play (``phase="play"``) or to claim (``"claim"``)."""
    card_pos = [0] + [troops_elsewhere] * 60 + [tactics_elsewhere] * 10
    for player, hand in enumerate(hands):
        for card in hand:
            card_pos[card] = 21 + player
    for (player, flag), cards in (sides or {}).items():
        for card in cards:
            card_pos[card] = side_place(player, flag - 1)
    for player, pile in enumerate(discards):
        for card in pile:
            card_pos[card] = 10 + 10 * player
    cone_pos = [0] * 10
    for flag, owner in (cones or {}).items():
        cone_pos[flag] = owner + 1
    last = (GO_CONE, to_play) if phase == "play" else (GO_DECK, 1 - to_play)
    return position_to_state(
        {
            "CardPos": card_pos,
            "ConePos": cone_pos,
            "PlayerReturned": 2,
            "CardsReturned": [0, 0],
            "LastMoveType": last[0],
            "LastMover": last[1],
            "LastMoveIx": 10,
        }
    )


def moves_of(state: GameState, kind: str) -> list[dict[str, Any]]:
    return [m for m in legal_moves(state) if m["type"] == kind]


def refused(state: GameState, player: int, move: object) -> IllegalMove:
    with pytest.raises(IllegalMove) as caught:
        apply_move(state, player, move)
    return caught.value


# ---------------------------------------------------------------- deal and turn


def test_the_shuffle_is_pinned_so_every_node_deals_the_same_cards() -> None:
    # SplitMix64 + Fisher-Yates, specified in state.py; changing it would split the cluster.
    troops, tactics = shuffled_decks(0)
    assert troops[:10] == [13, 42, 32, 21, 33, 38, 58, 37, 45, 6]
    assert tactics == [68, 63, 70, 67, 65, 66, 69, 61, 64, 62]
    assert shuffled_decks(2**53 - 1)[0][:3] == [26, 37, 38]


@pytest.mark.parametrize("seed", [-1, 2**53, 1.5, True, "7"])
def test_bad_seeds_are_refused(seed: Any) -> None:
    with pytest.raises(ValueError, match="seed"):
        new_game(seed)


def test_the_deal_gives_seven_troops_each_and_the_first_player_moves() -> None:
    state = new_game(0, first_player=1)
    troops = shuffled_decks(0)[0]
    assert sorted(state.places[22]) == sorted(troops[0:14:2])  # first card to the first player
    assert sorted(state.places[21]) == sorted(troops[1:14:2])
    assert (to_move(state), state.phase, len(state.places[0]), len(state.places[23])) == (
        1,
        "play",
        46,
        10,
    )
    assert all(m["type"] == "play" for m in legal_moves(state))
    assert len(legal_moves(state)) == 63  # 7 troops x 9 flags


def test_a_turn_is_play_then_draw_then_the_opponent() -> None:
    state = new_game(3)
    card = legal_moves(state)[0]["card"]
    state = apply_move(state, 0, {"type": "play", "card": card, "flag": 1})
    assert (to_move(state), state.phase) == (0, "draw")
    assert legal_moves(state) == [
        {"type": "draw", "deck": "tactic"},
        {"type": "draw", "deck": "troop"},
    ]
    state = apply_move(state, 0, {"type": "draw", "deck": "tactic"})
    assert (to_move(state), state.phase, len(state.places[21])) == (1, "play", 7)


def test_apply_move_returns_a_new_state_and_leaves_the_old_one_alone() -> None:
    state = new_game(4)
    before = (list(state.where), [list(p) for p in state.places], state.phase, state.mover)
    move = legal_moves(state)[0]
    after = apply_move(state, 0, move)
    assert (list(state.where), [list(p) for p in state.places], state.phase, state.mover) == before
    assert after.where[move["card"]] == side_place(0, move["flag"] - 1)


# ---------------------------------------------------------------- playing cards


def test_pass_is_offered_only_when_no_troop_can_be_played() -> None:
    with_troop = build(hands=([1, MUD], [2]))
    assert not moves_of(with_troop, "pass")
    assert refused(with_troop, 0, {"type": "pass"}).code == "illegal_move"
    only_tactic = build(hands=([MUD], [2]))
    assert moves_of(only_tactic, "pass") == [{"type": "pass"}]
    state = apply_move(only_tactic, 0, {"type": "pass"})
    assert (to_move(state), state.phase) == (0, "draw")


def test_a_full_side_takes_no_more_troops() -> None:
    state = build(hands=([4, 5], [6]), sides={(0, 1): [1, 2, 3]})
    assert {m["flag"] for m in moves_of(state, "play")} == set(range(2, 10))
    error = refused(state, 0, {"type": "play", "card": 4, "flag": 1})
    assert (error.code, error.message) == ("illegal_move", "your side of flag 1 is full")


def test_tactic_limit_no_more_tactics_played_than_the_opponent() -> None:
    ahead = build(hands=([1, MORALE_8], [2]), sides={(0, 2): [FOG]})
    assert all(m["card"] < 61 for m in moves_of(ahead, "play"))
    assert (
        "more tactics" in refused(ahead, 0, {"type": "play", "card": MORALE_8, "flag": 1}).message
    )
    level = build(hands=([1, MORALE_8], [2]), sides={(0, 2): [FOG]}, discards=([], [MUD]))
    assert {"type": "play", "card": MORALE_8, "flag": 1} in legal_moves(level)


def test_only_one_leader_per_player_per_game() -> None:
    # Player 0's Darius was deserted to their own discard pile: it still counts as played.
    state = build(hands=([1, ALEXANDER], [2]), discards=([DARIUS], [MUD, FOG]))
    assert not [m for m in moves_of(state, "play") if m["card"] == ALEXANDER]
    error = refused(state, 0, {"type": "play", "card": ALEXANDER, "flag": 1})
    assert error.message == "you have already played a leader this game"


def test_mud_makes_a_flag_take_four_cards_and_fog_any_flag() -> None:
    state = build(hands=([4, 30], [6]), sides={(0, 1): [1, 2, 3, MUD]}, discards=([], [FOG]))
    assert {"type": "play", "card": 4, "flag": 1} in legal_moves(state)
    state = build(
        hands=([4, FOG], [6]), sides={(0, 1): [1, 2, 3], (1, 1): [11, 12, 13]}, discards=([], [MUD])
    )
    assert {"type": "play", "card": FOG, "flag": 1} in legal_moves(state)


def test_guile_cards_need_their_own_move_type() -> None:
    state = build(hands=([1, TRAITOR], [2]), sides={(1, 1): [11]})
    assert (
        "own move type" in refused(state, 0, {"type": "play", "card": TRAITOR, "flag": 2}).message
    )


# ---------------------------------------------------------------- guiles


def test_traitor_takes_an_opponent_troop_to_an_own_flag() -> None:
    state = build(hands=([1, TRAITOR], [2]), sides={(1, 1): [11, MORALE_123]}, discards=([], [MUD]))
    offered = moves_of(state, "traitor")
    assert {m["card"] for m in offered} == {11}  # troops only, not the morale card
    assert {m["to_flag"] for m in offered} == set(range(1, 10))  # the same flag included
    after = apply_move(state, 0, {"type": "traitor", "card": 11, "to_flag": 4})
    assert after.where[11] == side_place(0, 3) and after.where[TRAITOR] == 10
    assert (
        refused(state, 0, {"type": "traitor", "card": MORALE_123, "to_flag": 4}).code
        == "illegal_move"
    )


def test_deserter_discards_any_opponent_card_into_its_owners_pile() -> None:
    state = build(
        hands=([1, DESERTER], [2]), sides={(1, 1): [11, MORALE_123, FOG]}, discards=([], [MUD])
    )
    assert {m["card"] for m in moves_of(state, "deserter")} == {11, MORALE_123, FOG}
    after = apply_move(state, 0, {"type": "deserter", "card": MORALE_123})
    assert (after.where[MORALE_123], after.where[DESERTER]) == (20, 10)


def test_redeploy_moves_an_own_card_to_another_flag_or_the_discard_pile() -> None:
    state = build(
        hands=([1, REDEPLOY], [2]), sides={(0, 1): [21], (0, 2): [3, 4, 5]}, discards=([], [MUD])
    )
    targets = {m["to_flag"] for m in moves_of(state, "redeploy") if m["card"] == 21}
    assert targets == {None, 3, 4, 5, 6, 7, 8, 9}  # not its own flag, not the full flag 2
    after = apply_move(state, 0, {"type": "redeploy", "card": 21, "to_flag": None})
    assert after.where[21] == 10
    error = refused(state, 0, {"type": "redeploy", "card": 21, "to_flag": 2})
    assert error.message == "your side of flag 2 is full"


def test_no_guile_on_a_claimed_flag() -> None:
    state = build(
        hands=([1, DESERTER], [2]), sides={(1, 1): [11, 12, 13]}, cones={1: 1}, discards=([], [MUD])
    )
    assert not moves_of(state, "deserter")
    assert "claimed flag 1" in refused(state, 0, {"type": "deserter", "card": 11}).message


def test_scout_draws_three_and_returns_two_to_the_top() -> None:
    state = build(
        hands=([1, 2, 3, 4, 5, 6, SCOUT], [7, 8, 9, 10, 11, 12, 13]), discards=([], [MUD])
    )
    state = apply_move(state, 0, {"type": "scout", "deck": "troop"})
    state = apply_move(state, 0, {"type": "draw", "deck": "troop"})
    state = apply_move(state, 0, {"type": "draw", "deck": "tactic"})
    assert state.phase == "scout_return" and len(state.places[21]) == 9
    assert len(moves_of(state, "scout_return")) == len(legal_moves(state))
    state = apply_move(state, 0, {"type": "scout_return", "cards": [1, 2]})
    assert state.places[0][-2:] == [1, 2]  # 2 returned last: on top
    assert (to_move(state), len(state.places[21])) == (1, 7)
    assert player_view(state, 0)["scout_known"] == [
        {"card": 1, "deck": "troop"},
        {"card": 2, "deck": "troop"},
    ]
    assert player_view(state, 1)["scout_known"] == []
    assert player_view(state, 1)["last_move"]["move"] == {
        "type": "scout_return",
        "decks": ["troop", "troop"],
    }
    state = apply_move(state, 1, {"type": "play", "card": 7, "flag": 1})
    state = apply_move(state, 1, {"type": "draw", "deck": "troop"})
    assert state.where[2] == 22  # the opponent drew the card returned on top


def test_scout_return_must_bring_the_hand_back_to_seven() -> None:
    state = build(hands=([1, 2, 3, 4, 5, 6, SCOUT], [7]), discards=([], [MUD]))
    state = replay_moves(
        state,
        [
            {"type": "scout", "deck": "troop"},
            {"type": "draw", "deck": "troop"},
            {"type": "draw", "deck": "troop"},
        ],
    )
    assert "return 2" in refused(state, 0, {"type": "scout_return", "cards": [1]}).message
    assert (
        "not in your hand" in refused(state, 0, {"type": "scout_return", "cards": [1, 30]}).message
    )


def replay_moves(state: GameState, moves: list[dict[str, Any]]) -> GameState:
    for move in moves:
        state = apply_move(state, state.mover, move)
    return state


# ---------------------------------------------------------------- claims and winning


def test_claim_phase_offers_every_subset_of_complete_flags() -> None:
    state = build(
        hands=([40], [50]),
        sides={(0, 1): [10, 9, 8], (0, 2): [1, 2, 3], (1, 1): [20]},
        phase="claim",
    )
    assert state.phase == "claim"
    assert sorted(m["flags"] for m in legal_moves(state)) == [[], [1], [1, 2], [2]]


def test_a_proved_claim_takes_the_flag() -> None:
    state = build(hands=([40], [50]), sides={(0, 1): [10, 9, 8], (1, 1): [20]}, phase="claim")
    after = apply_move(state, 0, {"type": "claim", "flags": [1]})
    assert after.cones[0] == 0
    assert after.last_claim == {"player": 0, "flags": [1], "won": [1], "failed": []}


def test_a_failed_claim_keeps_the_flag_open_and_gives_a_counter_example() -> None:
    state = build(hands=([40], [50]), sides={(0, 1): [7, 6, 5], (1, 1): [20, 19]}, phase="claim")
    after = apply_move(state, 0, {"type": "claim", "flags": [1]})
    assert after.cones[0] == -1 and after.last_claim is not None
    assert after.last_claim["won"] == []
    assert after.last_claim["failed"] == [{"flag": 1, "counter_example": [20, 19, 18]}]
    assert after.phase == "play"


def test_claiming_without_a_complete_formation_is_refused() -> None:
    state = build(hands=([40], [50]), sides={(0, 1): [10, 9, 8], (0, 2): [1]}, phase="claim")
    error = refused(state, 0, {"type": "claim", "flags": [2]})
    assert (error.code, error.message) == (
        "illegal_move",
        "you have no complete formation on flag 2",
    )


def test_a_tie_goes_to_the_claimer() -> None:
    state = build(
        hands=([40], [50]), sides={(0, 1): [10, 9, 8], (1, 1): [20, 19, 18]}, phase="claim"
    )
    assert apply_move(state, 0, {"type": "claim", "flags": [1]}).cones[0] == 0


def test_three_adjacent_flags_win_by_breakthrough() -> None:
    state = build(hands=([40], [50]), sides={(0, 3): [10, 9, 8]}, cones={1: 0, 2: 0}, phase="claim")
    after = apply_move(state, 0, {"type": "claim", "flags": [3]})
    assert result(after) == {"winner": 0, "reason": "breakthrough"}
    assert to_move(after) is None and legal_moves(after) == []
    assert refused(after, 1, {"type": "pass"}).code == "game_over"


def test_five_flags_win() -> None:
    state = build(
        hands=([40], [50]),
        sides={(0, 9): [10, 9, 8]},
        cones={1: 0, 3: 0, 5: 0, 7: 0},
        phase="claim",
    )
    assert result(apply_move(state, 0, {"type": "claim", "flags": [9]})) == {
        "winner": 0,
        "reason": "flags",
    }


# ---------------------------------------------------------------- give up, pause, errors


def test_either_player_may_give_up_at_any_time() -> None:
    state = new_game(5)
    assert result(apply_move(state, 1, {"type": "give_up"})) == {"winner": 0, "reason": "give_up"}


def test_pause_stops_the_game_until_resume() -> None:
    state = apply_move(new_game(5), 1, {"type": "pause"})
    assert (to_move(state), legal_moves(state)) == (None, [])
    assert refused(state, 0, legal_moves(new_game(5))[0]).code == "paused"
    assert refused(state, 0, {"type": "pause"}).code == "illegal_move"
    resumed = apply_move(state, 0, {"type": "resume"})
    assert to_move(resumed) == 0 and legal_moves(resumed) == legal_moves(new_game(5))
    assert refused(resumed, 0, {"type": "resume"}).message == "the game is not paused"


def test_moving_out_of_turn_is_refused() -> None:
    state = new_game(6)
    move = {"type": "play", "card": state.places[22][0], "flag": 1}
    assert refused(state, 1, move).code == "not_your_turn"


@pytest.mark.parametrize(
    ("move", "fragment"),
    [
        ([1, 2], "JSON object"),
        ({"card": 1}, "unknown move type"),
        ({"type": "teleport"}, "unknown move type"),
        ({"type": "play", "card": 1}, "needs field(s) flag"),
        ({"type": "play", "card": 1, "flag": 1, "colour": "red"}, "unexpected field(s) colour"),
        ({"type": "play", "card": 71, "flag": 1}, "card must be an integer from 1 to 70"),
        ({"type": "play", "card": True, "flag": 1}, "card must be"),
        ({"type": "play", "card": 1, "flag": 10}, "flag must be an integer from 1 to 9"),
        ({"type": "claim", "flags": [1, 1]}, "lists a flag twice"),
        ({"type": "claim", "flags": 3}, "flags must be a list"),
        ({"type": "draw", "deck": "discard"}, 'deck must be "troop" or "tactic"'),
        ({"type": "scout_return", "cards": []}, "one or two cards"),
        ({"type": "traitor", "card": 11, "to_flag": None}, "traitor needs to_flag"),
        ({"type": "pass", "player": 1}, "the move says player 1"),
    ],
)
def test_malformed_moves_get_a_clear_error(move: object, fragment: str) -> None:
    error = refused(new_game(7), 0, move)
    assert error.code == "malformed" and fragment in error.message


def test_a_move_for_the_wrong_phase_names_the_expected_moves() -> None:
    error = refused(new_game(7), 0, {"type": "draw", "deck": "troop"})
    assert error.code == "illegal_move"
    assert error.message.startswith("draw is not a move of the play phase; expected play or pass")


def test_replay_reports_the_ply_of_the_first_illegal_move() -> None:
    state = new_game(8)
    card = state.places[21][0]
    moves: list[dict[str, Any]] = [{"type": "play", "card": card, "flag": 1}, {"type": "pass"}]
    with pytest.raises(IllegalMove) as caught:
        replay(8, moves)
    assert (caught.value.ply, caught.value.code) == (1, "illegal_move")


def test_nobody_able_to_move_ends_in_a_stalemate() -> None:
    # Every card sits in a discard pile except two lone troops: no one can ever move again.
    state = build(sides={(0, 1): [1], (1, 1): [2]}, troops_elsewhere=10, tactics_elsewhere=20)
    assert result(state) == {"winner": None, "reason": "stalemate"}


def test_a_game_that_can_no_longer_change_ends_in_a_stalemate() -> None:
    # Player 0's flag-1 host (orange 1, green 6, yellow 5) can never be proved: their own red 10
    # is unplayed and would beat it for player 1. But no card can move again: player 0's only
    # open flag is full, player 1 holds only a tactic and is over the tactic limit, decks empty.
    cones = {2: 0, 4: 0, 6: 0, 8: 0, 3: 1, 5: 1, 7: 1, 9: 1}
    sides: Sides = {(0, 1): [51, 16, 35], (1, 1): [15, 24]}
    state = build(
        hands=([20], [DARIUS]),
        sides=sides,
        cones=cones,
        phase="claim",
        troops_elsewhere=10,
        tactics_elsewhere=20,
    )
    assert result(state) == {"winner": None, "reason": "stalemate"}
    # With a card still to draw, the same position plays on.
    alive = build(
        hands=([20], [DARIUS]),
        sides=sides,
        cones=cones,
        phase="claim",
        troops_elsewhere=0,
        tactics_elsewhere=20,
    )
    assert result(alive) is None and legal_moves(alive) == [
        {"type": "claim", "flags": []},
        {"type": "claim", "flags": [1]},
    ]


# ---------------------------------------------------------------- views


def test_player_view_shows_own_hand_and_only_counts_of_the_other() -> None:
    state = apply_move(new_game(9), 0, {"type": "pause"})
    state = apply_move(state, 0, {"type": "resume"})
    view = player_view(state, 0)
    assert view["hand"] == sorted(state.places[21])
    assert view["opponent_hand"] == {"troops": 7, "tactics": 0}
    assert view["legal_moves"] == legal_moves(state)
    other = player_view(state, 1)
    assert other["legal_moves"] == [] and other["hand"] == sorted(state.places[22])
    assert "hands" not in view and "deck_order" not in view
    watcher = spectator_view(state)
    assert watcher["hands"] == [{"troops": 7, "tactics": 0}] * 2 and "legal_moves" not in watcher
    full = full_view(state)
    assert full["hands"] == [sorted(state.places[21]), sorted(state.places[22])]
    assert full["deck_order"]["troop"][0] == state.places[0][-1]
