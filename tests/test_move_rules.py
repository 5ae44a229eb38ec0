"""The entry rule for game records (crdt_models.move_rules), run as a node runs it on a peer's
update: on a scratch copy with the update applied, through sync.checks."""

from __future__ import annotations

import random
from dataclasses import asdict, replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycrdt import Doc, Map

import meridian.games.battleline as battleline
from meridian.crdt_models import move_rules
from meridian.crdt_models.game import INFO, INFO_KEY, MOVES, GameInfo, MoveRecord, canonical_chain
from meridian.crdt_models.hlc import Stamp
from meridian.crdt_models.kinds import check_changes
from meridian.crdt_models.move_rules import STATES_KEPT_PER_GAME
from meridian.crdt_models.records import Change, MissingReference, RecordRefused
from meridian.sync.checks import KeyringContext, NeedsPull, UpdateChecker, UpdateRefused
from meridian.sync.identity import Keyring
from tests.sync_harness import EPOCH_MS, identity_for

DOC_ID = "game:g1"
SEED = 11


class Context:
    """The receiver's side for game documents: a clock (no signed records here)."""

    now_wall_ms = EPOCH_MS + 3_600_000
    max_ahead_ms = 60_000
    regions = frozenset({"eu", "us"})

    def signer_region(self, signer: str, message: bytes, signature: bytes, wall_ms: int) -> str:
        raise AssertionError("game records are not signed")

    def node_region(self, node_id: str) -> str | None:
        raise AssertionError("game records name no node's region")


def _info(seed: int = SEED) -> GameInfo:
    created = Stamp(EPOCH_MS, 0, "eu").encode()
    return GameInfo("g1", "battleline", ["u0", "u1"], ["a0", "a1"], seed, 0, created, "eu")


def _records(plies: int, seed: int = SEED, node: str = "eu") -> list[MoveRecord]:
    """A legal game of `plies` moves, each record after the one before."""
    state = battleline.new_game(seed, 0)
    records: list[MoveRecord] = []
    for ply in range(plies):
        player = battleline.to_move(state)
        assert player is not None
        move = battleline.legal_moves(state)[0]
        state = battleline.apply_move(state, player, move)
        parent = records[-1].key if records else ""
        stamp = Stamp(EPOCH_MS + 1000 * (ply + 1), 0, node).encode()
        records.append(MoveRecord(ply, parent, player, move, stamp, node))
    return records


def _doc(records: list[MoveRecord], info: GameInfo | None = None) -> Doc[Any]:
    doc: Doc[Any] = Doc()
    if info is not None:
        doc.get(INFO, type=Map)[INFO_KEY] = info.to_text()
    for record in records:
        doc.get(MOVES, type=Map)[record.key] = record.to_text()
    return doc


def _check(record: MoveRecord, held: list[MoveRecord], info: GameInfo | None = None) -> None:
    """Check `record` as the new key of a document that holds `held` and it."""
    doc = _doc([*held, record], info or _info())
    change = Change(MOVES, record.key, None, record.to_text())
    check_changes(DOC_ID, [change], doc, Context())


def _forged(record: MoveRecord, **fields: Any) -> MoveRecord:
    return MoveRecord(**(asdict(record) | fields))


def _rule(record: MoveRecord, held: list[MoveRecord], info: GameInfo | None = None) -> str:
    with pytest.raises(RecordRefused) as refused:
        _check(record, held, info)
    return refused.value.rule


def test_every_move_of_a_legal_game_passes() -> None:
    records = _records(30)
    for index, record in enumerate(records):
        _check(record, records[:index])


def test_a_resumed_game_is_checked_from_its_start_moves() -> None:
    """A game resumed from the saved games starts (ply 0 in its document) after its moves."""
    played = _records(6)
    info = replace(_info(), resumed_from="g0", start_moves=[r.move for r in played[:4]])
    first = replace(played[4], ply=0, parent="")
    resumed = [first, replace(played[5], ply=1, parent=first.key)]
    _check(resumed[0], [], info)
    _check(resumed[1], resumed[:1], info)
    assert _rule(replace(first, player=1 - first.player), [], info) == "illegal_move"


def test_a_move_the_rules_refuse_is_illegal() -> None:
    records = _records(5)
    bad_card = _forged(records[4], move={"type": "play", "card": 9999, "flag": 0})
    assert _rule(bad_card, records[:4]) == "illegal_move"


def test_a_move_by_the_player_not_to_move_is_illegal() -> None:
    records = _records(5)
    assert _rule(_forged(records[4], player=1 - records[4].player), records[:4]) == "illegal_move"


def test_a_move_whose_ply_does_not_follow_its_parent_is_illegal() -> None:
    records = _records(5)
    skipped = _forged(records[4], parent=records[2].key)  # ply 4 hung after ply 2
    assert _rule(skipped, records[:4]) == "illegal_move"
    first_again = _forged(records[0], ply=3, stamp=Stamp(EPOCH_MS + 9000, 0, "eu").encode())
    assert _rule(first_again, records[:3]) == "illegal_move"


def test_a_move_after_an_illegal_ancestor_is_illegal_too() -> None:
    """A child is judged by replaying its ancestors, even one that got in unchecked."""
    records = _records(4)
    bad = _forged(records[2], move={"type": "play", "card": 9999, "flag": 0})
    child = _forged(records[3], parent=bad.key)
    doc = _doc([*records[:2], bad, child], _info())
    changes = [Change(MOVES, child.key, None, child.to_text())]
    with pytest.raises(RecordRefused, match="ancestor") as refused:
        check_changes(DOC_ID, changes, doc, Context())
    assert refused.value.rule == "illegal_move"


def test_a_missing_parent_or_setup_is_deferred_not_refused() -> None:
    records = _records(4)
    for held, info in (([records[0], records[1]], _info()), (records[:3], None)):
        doc = _doc([*held, records[3]], info)
        change = Change(MOVES, records[3].key, None, records[3].to_text())
        with pytest.raises(MissingReference) as missing:
            check_changes(DOC_ID, [change], doc, Context())
        assert missing.value.rule == "missing_parent"


def test_a_record_under_another_key_or_node_is_malformed() -> None:
    records = _records(2)
    doc = _doc(records[:1], _info())
    moved = Change(MOVES, "00007|" + records[1].stamp, None, records[1].to_text())
    other_node = Change(MOVES, records[1].key, None, _forged(records[1], node="us").to_text())
    for change in (moved, other_node):
        with pytest.raises(RecordRefused) as refused:
            check_changes(DOC_ID, [change], doc, Context())
        assert refused.value.rule == "bad_record"


@pytest.mark.parametrize(
    "ply", ["Infinity", "-Infinity", "NaN", "1e400", "9" * 5000, "[" * 3000 + "]" * 3000]
)
def test_a_record_python_reads_but_json_does_not_hold_is_malformed(ply: str) -> None:
    """Non-JSON constants, an infinite float, a 5,000-digit integer, nesting past Python's
    recursion limit: each named, none an exception out of the check."""
    text = '{"ply": %s, "parent": "", "player": 0, "move": {}, "stamp": "%s", "node": "eu"}'
    text %= (ply, Stamp(EPOCH_MS, 0, "eu").encode())
    doc = _doc([], _info())
    with pytest.raises(RecordRefused) as refused:
        check_changes(DOC_ID, [Change(MOVES, "00000|x", None, text)], doc, Context())
    assert refused.value.rule == "bad_record"


def test_a_record_or_setup_is_written_once() -> None:
    records = _records(2)
    doc = _doc(records, _info())
    other = _forged(records[1], move=battleline.legal_moves(battleline.new_game(SEED, 0))[-1])
    rewrite = Change(MOVES, records[1].key, records[1].to_text(), other.to_text())
    delete = Change(MOVES, records[1].key, records[1].to_text(), None, deleted=True)
    new_info = _info(seed=SEED + 1).to_text()
    setup = Change(INFO, INFO_KEY, _info().to_text(), new_info)
    for change in (rewrite, delete, setup):
        with pytest.raises(RecordRefused) as refused:
            check_changes(DOC_ID, [change], doc, Context())
        assert refused.value.rule == "duplicate_move"
    same = Change(MOVES, records[1].key, records[1].to_text(), records[1].to_text())
    check_changes(DOC_ID, [same], doc, Context())  # the same text again changes nothing


def test_a_fork_from_another_region_passes() -> None:
    """Two moves for one ply after one parent: what a partition makes; the chain rule decides."""
    records = _records(3)
    twin = _forged(records[2], stamp=Stamp(EPOCH_MS + 2500, 0, "us").encode(), node="us")
    _check(twin, records)


def test_a_move_after_the_game_is_over_is_illegal() -> None:
    records = _records(3)
    last = records[-1]
    over = MoveRecord(
        3,
        last.key,
        1 - last.player,
        {"type": "give_up"},
        Stamp(EPOCH_MS + 9000, 0, "eu").encode(),
        "eu",
    )
    _check(over, records)
    after = MoveRecord(
        4, over.key, 0, {"type": "give_up"}, Stamp(EPOCH_MS + 9500, 0, "eu").encode(), "eu"
    )
    assert _rule(after, [*records, over]) == "illegal_move"


# --- every node reaches the same verdict, whatever the order -------------------------------------


def _update(record: MoveRecord, client_id: int) -> bytes:
    doc: Doc[Any] = Doc(client_id=client_id)
    doc.get(MOVES, type=Map)[record.key] = record.to_text()
    return doc.get_update()


def _receive(updates: list[tuple[str, bytes]]) -> tuple[set[str], set[str]]:
    """One node receiving these updates in this order; a deferred one is retried after each
    update that lands (as the engine's pull brings the parent). (kept keys, refused keys)"""
    context = KeyringContext(_keyring(), lambda: Context.now_wall_ms, 60_000)
    checker = UpdateChecker(context)
    doc: Doc[Any] = Doc(client_id=2)
    info_doc: Doc[Any] = Doc(client_id=3)
    info_doc.get(INFO, type=Map)[INFO_KEY] = _info().to_text()
    queue = [("info", info_doc.get_update()), *updates]
    kept: set[str] = set()
    refused: set[str] = set()
    waiting: list[tuple[str, bytes]] = []
    while queue:
        key, update = queue.pop(0)
        try:
            checker.check(DOC_ID, doc, update)
        except NeedsPull:
            waiting.append((key, update))
            continue
        except UpdateRefused:
            refused.add(key)
            continue
        doc.apply_update(update)
        checker.applied(DOC_ID, doc)
        kept.add(key)
        queue, waiting = waiting + queue, []
    return kept, refused | {key for key, _ in waiting}


def _keyring() -> Keyring:
    return Keyring([identity_for("eu").entry()])


@settings(max_examples=40, deadline=None)
@given(
    plies=st.integers(2, 12),
    forgeries=st.lists(st.tuples(st.integers(0, 11), st.sampled_from("ipxf")), max_size=4),
    order=st.randoms(use_true_random=False),
)
def test_the_verdicts_do_not_depend_on_the_order_records_arrive_in(
    plies: int, forgeries: list[tuple[int, str]], order: random.Random
) -> None:
    """Legal moves, later forks by another region and forged ones (illegal, wrong player,
    dangling parent) delivered in any order: the node keeps the same
    records, and the canonical chain of what it kept is the honest game."""
    records = _records(plies)
    forged: list[MoveRecord] = []
    for index, (at, kind) in enumerate(forgeries):
        base = records[at % plies]
        stamp = Stamp(EPOCH_MS + 500 + 1000 * base.ply, index, "us").encode()
        if kind == "i":
            bad = {"type": "play", "card": 9999}
            forged.append(_forged(base, move=bad, stamp=stamp, node="us"))
        elif kind == "p":
            forged.append(_forged(base, player=1 - base.player, stamp=stamp, node="us"))
        elif kind == "x":
            dangling = f"{max(base.ply - 1, 0):05d}|nowhere"
            forged.append(_forged(base, parent=dangling, stamp=stamp, node="us"))
        else:  # a legal fork by another region, stamped after the honest move
            later = Stamp(EPOCH_MS + 1000 * base.ply + 1000, 9 + index, "us").encode()
            forged.append(_forged(base, stamp=later, node="us"))
    updates = [(r.key, _update(r, 100 + i)) for i, r in enumerate([*records, *forged])]
    expected = _receive(sorted(updates, key=lambda u: u[0]))
    shuffled = list(updates)
    order.shuffle(shuffled)
    assert _receive(shuffled) == expected
    assert {r.key for r in records} <= expected[0]
    kept = [r for r in [*records, *forged] if r.key in expected[0]]
    assert all(r.ply == records[r.ply].ply for r in kept)
    chain = canonical_chain(battleline.rules_module(), _info(), kept)
    assert [r.key for r in chain.moves] == [r.key for r in records]  # forks are later: honest wins


def test_states_are_kept_for_a_bounded_number_of_moves() -> None:
    records = _records(STATES_KEPT_PER_GAME + 20)
    checker = UpdateChecker(KeyringContext(_keyring(), lambda: Context.now_wall_ms, 60_000))
    doc: Doc[Any] = Doc(client_id=2)
    info_doc: Doc[Any] = Doc(client_id=3)
    info_doc.get(INFO, type=Map)[INFO_KEY] = _info().to_text()
    checker.check(DOC_ID, doc, info_doc.get_update())
    doc.apply_update(info_doc.get_update())
    for index, record in enumerate(records):
        update = _update(record, 100 + index)
        checker.check(DOC_ID, doc, update)
        doc.apply_update(update)
        checker.applied(DOC_ID, doc)
    kept = [len(states) for states in move_rules._states.values()]
    assert kept and max(kept) <= STATES_KEPT_PER_GAME
