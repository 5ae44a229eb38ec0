"""The simulator's reference rules: independent of production, and in agreement with it.

The checkers judge production by re-implementations of its rules (``sim/reference.py``) that
read the documents through the public data formats only (``sim/refdocs.py``). These tests pin
both halves: the checker modules import no production code but the rules engine's public API,
and on random inputs (hypothesis) the reference and production agree, so a checker failure means
production broke a rule, not that the two readings drifted apart. Hand-made histories show the
ack-rule, HLC and dedup checkers fail with a message naming the violation.
"""

from __future__ import annotations

import ast
import json
import random
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from pycrdt import Doc, Map

import meridian.games.battleline as battleline
from meridian.crdt_models.accounts import AccountsIndex, AccountVersion, resolve
from meridian.crdt_models.game import GameInfo, GameWriter, MoveRecord, canonical_chain
from meridian.crdt_models.hlc import HybridLogicalClock
from meridian.crdt_models.presence import PRESENCE_TTL_MS, Presence, Session, newest_sessions
from meridian.sim import refdocs, reference
from meridian.sim.gamecheck import _newest_closed
from meridian.sim.history import History, StampRecord, WriteRecord
from meridian.sim.refcheck import check_ack_rule, check_dedup, check_hlc
from meridian.sync.codec import Reader
from meridian.sync.digest import read_state_vector

ROOT = Path(__file__).resolve().parents[1]
CHECKER_MODULES = (
    "refdocs",
    "reference",
    "refclock",
    "gamecheck",
    "refcheck",
    "clockcheck",
    "checkers",
    "bounds",
    "presencecheck",
    "presence_watch",
)
ALLOWED_PRODUCTION = ("meridian.games", "meridian.sync.settings")
EPOCH = 1_767_225_600_000


def test_the_checkers_import_no_production_code_but_the_rules_engine() -> None:
    wrong = []
    for name in CHECKER_MODULES:
        tree = ast.parse((ROOT / "sim" / f"{name}.py").read_text())
        for node in ast.walk(tree):
            modules = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            for module in modules:
                production = module.startswith(("meridian.crdt_models", "meridian.node"))
                production |= module.startswith("meridian.sync")
                production |= module == "meridian.games.clock"  # the reference has its own
                if production and not module.startswith(ALLOWED_PRODUCTION):
                    wrong.append(f"sim/{name}.py imports {module}")
    assert not wrong, "\n".join(wrong)


# --- the canonical chain ------------------------------------------------------------------


def random_game(seed: int, rng: random.Random, forks: int) -> tuple[GameInfo, list[MoveRecord]]:
    """A main line of legal moves and, at random plies, rival records: legal alternatives, the
    same move by another node, illegal moves, records hung on the wrong parent or ply."""
    info = GameInfo("g1", "battleline", ["a", "b"], ["A", "B"], seed, seed % 2, "", "eu")
    state = battleline.new_game(seed, seed % 2)
    records: list[MoveRecord] = []
    parent = ""
    for ply in range(rng.randrange(4, 30)):
        player, legal = battleline.to_move(state), battleline.legal_moves(state)
        if player is None or not legal:
            break
        stamp = f"{EPOCH + 1000 * ply + rng.randrange(500):016d}.00000.eu"
        record = MoveRecord(ply, parent, player, rng.choice(legal), stamp, "eu")
        records.append(record)
        for _ in range(forks if rng.random() < 0.4 else 0):
            twin = f"{EPOCH + 1000 * ply + rng.randrange(1000):016d}.{rng.randrange(9):05d}.us"
            kind = rng.randrange(5)
            move = rng.choice(legal) if kind < 2 else {"type": "play", "card": 999, "flag": 0}
            rival_parent = parent if kind != 3 else "00000|nowhere"
            rival_ply = ply if kind != 4 else ply + 1
            rival_player = player if kind != 1 else 1 - player
            records.append(MoveRecord(rival_ply, rival_parent, rival_player, move, twin, "us"))
        state = battleline.apply_move(state, player, record.move)
        parent = record.key
    return info, records


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), shuffle=st.integers(0, 2**31), forks=st.integers(0, 3))
def test_the_reference_chain_is_productions_on_random_forks(
    seed: int, shuffle: int, forks: int
) -> None:
    rng = random.Random(shuffle)
    info, records = random_game(seed, rng, forks)
    rng.shuffle(records)
    production = canonical_chain(battleline.rules_module(), info, records)
    parsed = [reference.move_record_of(r.to_text()) for r in records]
    start = battleline.new_game(info.seed, info.first)
    chain, _state = reference.chain_of(battleline, start, [p for p in parsed if p is not None])
    assert [r.key for r in chain] == [r.key for r in production.moves]


def random_timed_game(seed: int, rng: random.Random) -> tuple[GameInfo, list[MoveRecord]]:
    """A game with a 20 s + 2 clock: moves a random time apart (some later than the mover's
    time allows), with rival records and time-outs (early, late, for either seat) at random."""
    info = GameInfo(
        "g1", "battleline", ["a", "b"], ["A", "B"], seed, seed % 2, f"{EPOCH:016d}.00000.eu",
        "eu", clock_ms=20_000, increment_ms=2000,
    )  # fmt: skip
    state = battleline.new_game(seed, seed % 2)
    records: list[MoveRecord] = []
    parent, at = "", EPOCH
    for ply in range(rng.randrange(4, 30)):
        player, legal = battleline.to_move(state), battleline.legal_moves(state)
        if player is None or not legal:
            break
        at += rng.choice([0, 300, 2000, 6000, 15_000])
        record = MoveRecord(ply, parent, player, rng.choice(legal), f"{at:016d}.00000.eu", "eu")
        records.append(record)
        if rng.random() < 0.3:
            when = at + rng.randrange(-3000, 30_000)
            stamp = f"{when:016d}.{rng.randrange(9):05d}.us"
            seat = player if rng.random() < 0.8 else 1 - player
            records.append(MoveRecord(ply, parent, seat, {"type": "timeout"}, stamp, "us"))
        if rng.random() < 0.1:  # a pause, which a timed game refuses
            stamp = f"{at - 1:016d}.00000.ap"
            records.append(MoveRecord(ply, parent, player, {"type": "pause"}, stamp, "ap"))
        state = battleline.apply_move(state, player, record.move)
        parent = record.key
    return info, records


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31), shuffle=st.integers(0, 2**31))
def test_the_reference_clock_is_productions_on_random_timed_games(seed: int, shuffle: int) -> None:
    rng = random.Random(shuffle)
    info, records = random_timed_game(seed, rng)
    rng.shuffle(records)
    production = canonical_chain(battleline.rules_module(), info, records)
    doc: Doc[Any] = Doc()
    writer = GameWriter(doc, "eu")
    with doc.transaction():
        writer.create(info)
        for record in records:
            root = doc.get("moves", type=Map)
            root[record.key] = record.to_text()
    game = reference.game(doc.get_update())
    assert game is not None
    assert [r.key for r in game.chain] == [r.key for r in production.moves]
    assert game.result == battleline.result(production.state)
    assert production.clock is not None and game.timing is not None
    assert game.timing.left == production.clock.remaining_ms
    assert game.timing.owner == production.clock.running


def test_an_illegal_or_misplaced_record_never_enters_the_reference_chain() -> None:
    state = battleline.new_game(7, 0)
    first = battleline.legal_moves(state)[0]
    stamp = f"{EPOCH:016d}.00000.eu"
    forged = [
        MoveRecord(0, "", 0, {"type": "play", "card": 999, "flag": 0}, stamp, "ap"),
        MoveRecord(0, "00000|x", 0, first, f"{EPOCH - 5:016d}.00000.ap", "ap"),
        MoveRecord(1, "", 0, first, f"{EPOCH - 9:016d}.00000.ap", "ap"),
        MoveRecord(0, "", 1, first, f"{EPOCH - 7:016d}.00000.ap", "ap"),
    ]
    honest = MoveRecord(0, "", 0, first, f"{EPOCH + 50:016d}.00000.eu", "eu")
    parsed = [reference.move_record_of(r.to_text()) for r in [*forged, honest]]
    chain, _ = reference.chain_of(battleline, state, [p for p in parsed if p is not None])
    assert [r.key for r in chain] == [honest.key]


# --- names and accounts ------------------------------------------------------------------


def stamp_text(wall: int, counter: int, node: str) -> str:
    return f"{EPOCH + wall:016d}.{counter:05d}.{node}"


versions = st.lists(
    st.tuples(
        st.sampled_from(["eu", "us", "ap"]),  # writer
        st.integers(0, 50),  # stamp
        st.integers(-1, 50),  # base (-1: registration)
        st.sampled_from(["eu", "us", "ap"]),  # base_home
        st.sampled_from(["eu", "us", "ap"]),  # home written
    ),
    min_size=1,
    max_size=4,
    unique_by=lambda v: v[0],
)


@settings(max_examples=80, deadline=None)
@given(found=versions)
def test_the_reference_resolves_accounts_as_production(found: list[tuple[Any, ...]]) -> None:
    written = [
        AccountVersion(
            uid="u1",
            name="alice",
            home=home,
            password_hash=f"h-{writer}",
            status="active",
            created=stamp_text(0, 0, "eu"),
            stamp=stamp_text(stamp, 1, writer),
            base="" if base < 0 else stamp_text(base, 1, base_home),
            base_home=base_home,
            writer=writer,
        )
        for writer, stamp, base, base_home, home in found
    ]
    theirs = resolve(written)
    mine = reference.resolve(
        [v for v in map(reference.version_of, map(AccountVersion.to_text, written)) if v]
    )
    assert (mine.writer, mine.home, mine.password_hash) == (
        theirs.writer,
        theirs.home,
        theirs.password_hash,
    )


@settings(max_examples=60, deadline=None)
@given(
    claims=st.lists(
        st.tuples(st.sampled_from(["Bob", "bob", "carol"]), st.text("abc", min_size=2, max_size=3),
                  st.integers(0, 30), st.sampled_from(["eu", "us"])),
        min_size=1,
        max_size=6,
        unique_by=lambda c: (c[0].lower(), c[1]),
    )
)  # fmt: skip
def test_the_reference_names_the_owner_production_names(claims: list[tuple[Any, ...]]) -> None:
    doc: Doc[Any] = Doc()
    names = doc.get("names", type=Map)
    for name, uid, wall, region in claims:
        record = {"uid": uid, "name": name, "stamp": stamp_text(wall, 0, region), "region": region}
        names[f"{name.lower()}|{uid}"] = json.dumps(record)
    index = AccountsIndex(doc)
    owners = reference.owners(doc.get_update())
    assert owners == {lower: index.name_owner(lower) for lower in index.claims}


# --- presence and the HLC ----------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    docs=st.lists(
        st.tuples(
            st.integers(-40_000, 0),  # heartbeat, relative to the reader's wall clock
            st.lists(st.tuples(st.sampled_from(["u1", "u2"]), st.integers(0, 20)), max_size=3),
        ),
        min_size=1,
        max_size=3,
    )
)
def test_the_reference_counts_the_sessions_production_counts(docs: list[Any]) -> None:
    wall = EPOCH + 100_000
    nodes = ["eu", "us", "ap"]
    presences, records = [], []
    for index, (age, sessions) in enumerate(docs):
        node = nodes[index]
        mine = [
            Session(
                f"{node}{i}",
                uid,
                uid,
                node,
                node,
                "idle",
                "",
                "",
                stamp_text(s, i, node),
                "",
                "",
                True,
            )
            for i, (uid, s) in enumerate(sessions)
        ]
        presences.append(Presence(node, wall + age, mine, []))
        doc: Doc[Any] = Doc()
        doc.get("meta", type=Map)["heartbeat"] = wall + age
        for session in mine:
            doc.get("sessions", type=Map)[session.sid] = session.to_text()
        records.append(reference.presence(node, doc.get_update()))
    live = [p for p in presences if p.node == "eu" or p.live(wall)]
    theirs = {
        uid: s.sid for uid, s in newest_sessions([s for p in live for s in p.sessions]).items()
    }
    counted = {uid: s.sid for uid, s in reference.counted_sessions(records, "eu", wall).items()}
    assert counted == theirs
    assert reference.PRESENCE_TTL_MS == PRESENCE_TTL_MS


@settings(max_examples=60, deadline=None)
@given(steps=st.lists(st.integers(-3000, 40), min_size=1, max_size=40))
def test_the_reference_hlc_rule_is_the_clocks(steps: list[int]) -> None:
    physical = [EPOCH]
    clock = HybridLogicalClock("eu", lambda: physical[0])
    last: refdocs.Stamp | None = None
    for step in steps:
        physical[0] = max(0, physical[0] + step)
        stamp = clock.now()
        expected = reference.next_stamp(last, physical[0], "eu")
        assert (stamp.wall_ms, stamp.counter, stamp.node_id) == expected
        last = expected


def test_the_state_vector_decoder_reads_what_yrs_writes() -> None:
    doc: Doc[Any] = Doc()
    other: Doc[Any] = Doc()
    for index in range(300):
        (doc if index % 3 else other).get("kv", type=Map)[f"k{index % 7}"] = str(index)
    doc.apply_update(other.get_update())
    assert refdocs.state_vector(doc) == read_state_vector(Reader(doc.get_state()))
    assert not refdocs.carries_nothing(doc.get_update())
    assert refdocs.carries_nothing(b"\x00\x00")


# --- checkers on hand-made histories --------------------------------------------------------


def history(**fields: Any) -> History:
    return History("made-up", 1, ["eu", "us", "ap"], 10.0, 20.0, **fields)


def put(write_id: int, acked_at: float) -> WriteRecord:
    return WriteRecord(
        write_id, 1.0, "eu", 1, "test:0", "k", "put", "v", 1, (5, 0), {}, None,
        durable_at=1.003, outcome="acked", acked_at=acked_at,
    )  # fmt: skip


def test_an_acknowledgement_before_a_second_region_held_the_write_fails_the_ack_rule() -> None:
    held = {"write:0": {"eu": [1.003], "us": [1.2], "ap": [1.3]}}
    early = history(ack_regions=1, writes=[put(0, 1.1)], held=held)
    verdict = check_ack_rule(early, {})
    assert not verdict.ok
    assert "with ack_regions = 1" in verdict.message and "write #0" in verdict.message
    assert check_ack_rule(history(ack_regions=1, writes=[put(0, 1.25)], held=held), {}).ok
    lost_own = history(ack_regions=0, writes=[put(0, 1.001)], held=held)
    assert "before it was durable on its writer eu" in check_ack_rule(lost_own, {}).message


def test_a_stamp_that_does_not_advance_fails_the_hlc_checker() -> None:
    wall = EPOCH + 5
    stamps = [
        StampRecord(0.0, "eu", 1, "start", wall, ""),
        StampRecord(0.1, "eu", 1, "now", wall, f"{wall:016d}.00000.eu"),
        StampRecord(0.1, "eu", 1, "now", wall, f"{wall:016d}.00000.eu"),
    ]
    verdict = check_hlc(history(stamps=stamps), {})
    assert not verdict.ok and f"the HLC rule gives {wall:016d}.00001.eu" in verdict.message
    stamps[2] = StampRecord(0.1, "eu", 1, "now", wall, f"{wall:016d}.00001.eu")
    assert check_hlc(history(stamps=stamps), {}).ok


def test_a_change_that_carries_nothing_fails_the_dedup_checker() -> None:
    note = {"t": 3.0, "node": "us", "kind": "empty-change", "doc": "accounts", "origin": "eu"}
    verdict = check_dedup(history(notes=[note]), {})
    assert not verdict.ok and "accounts on us at 3.000 s (from eu)" in verdict.message
    assert check_dedup(history(), {}).ok


def _closed_after_travel(second_node: str) -> History:
    """b5 said hello on us at 8.5 s (us's clock 1.5 s ahead), travelled to eu during a
    partition and said hello there at 9.8 s; at the heal eu closed it with 4100."""

    def note(kind: str, t: float, node: str, **fields: Any) -> dict[str, Any]:
        return {"kind": kind, "t": t, "node": node, "client": "b5", "uid": "u5", **fields}

    return history(
        notes=[
            note("hello", 8.5, second_node),
            note("hello", 9.8, "eu"),
            note("closed", 35.3, "eu", code=4100),
        ]
    )


def test_one_session_counts_a_travelled_clients_session_left_on_another_node() -> None:
    assert _newest_closed(_closed_after_travel("us"), {}, 1.5) is None
    problem = _newest_closed(_closed_after_travel("eu"), {}, 1.5)
    assert problem is not None and "was the newest" in problem[0]


def test_one_session_orders_hellos_by_their_sending_not_their_answers() -> None:
    """A failover's hello is answered after the catch-up (docs/architecture.md): the twin's
    session began when ap took its hello at 23.8 s, before bot6 said hello on us at 23.9 s, so
    closing the twin with 4100 is right although its answer came at 24.6 s."""

    def note(kind: str, t: float, node: str, client: str, **fields: Any) -> dict[str, Any]:
        return {"kind": kind, "t": t, "node": node, "client": client, "uid": "u6", **fields}

    notes = [
        note("hello", 23.9, "us", "b6", sent=23.85),
        note("hello", 24.6, "ap", "b6+twin", sent=23.8),
        note("closed", 24.6, "ap", "b6+twin", code=4100),
    ]
    assert _newest_closed(history(notes=notes), {}, 0.0) is None
    notes[1] = note("hello", 24.6, "ap", "b6+twin", sent=24.5)  # sent after bot6's answer
    problem = _newest_closed(history(notes=notes), {}, 0.0)
    assert problem is not None and "was the newest" in problem[0]
