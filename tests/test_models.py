"""Merge and authority rules of the shared documents (accounts, games, presence, archive).

The central property: whatever the order, duplication and timing of delivery of a set of
writes, every replica resolves the same view.
"""

from __future__ import annotations

import gc
import random
import weakref
from dataclasses import asdict, replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycrdt import Doc, Map

import meridian.games.battleline as battleline
from meridian.crdt_models.accounts import (
    NAME_PATTERN,
    USERS,
    AccountsIndex,
    AccountsWriter,
    NotHomeError,
    check_name,
)
from meridian.crdt_models.archive import ArchivedGame, games_to_park
from meridian.crdt_models.game import (
    GameInfo,
    GameWriter,
    MoveRecord,
    canonical_chain,
    read_moves,
)
from meridian.crdt_models.hlc import HybridLogicalClock
from meridian.crdt_models.presence import Session, newest_sessions
from meridian.crdt_models.records import encode_record, map_get, map_items, root_map
from meridian.node import refusals
from meridian.node.protocol import Refused

REGIONS = ["eu", "us", "ap"]


class Region:
    """One region's replica of a document plus its clock; records the updates it makes."""

    def __init__(self, name: str, client_id: int, start_ms: int) -> None:
        self.name = name
        self.doc: Doc[Any] = Doc(client_id=client_id)
        self.wall = start_ms
        self.hlc = HybridLogicalClock(f"{name}-1", lambda: self.wall)
        self.updates: list[bytes] = []
        self.doc.observe(lambda event: self.updates.append(bytes(event.update)))

    def stamp(self) -> str:
        self.wall += 1
        return self.hlc.now().encode()

    def learn(self, other: Region) -> None:
        self.doc.apply_update(other.doc.get_update(self.doc.get_state()))


def deliver_everything(regions: list[Region], rng: random.Random) -> Doc[Any]:
    """A fresh replica that receives every update ever made, shuffled and some duplicated, then
    runs anti-entropy with every region, as the sync protocol does.

    The anti-entropy step is needed: Yrs can silently drop an update whose dependencies arrive
    later (see test_out_of_order_updates_can_be_dropped_and_anti_entropy_repairs_them).
    """
    updates = [u for region in regions for u in region.updates]
    updates += rng.sample(updates, k=len(updates) // 3)
    rng.shuffle(updates)
    replica: Doc[Any] = Doc(client_id=rng.randrange(10**6, 10**9))
    for update in updates:
        replica.apply_update(update)
    for region in regions:
        replica.apply_update(region.doc.get_update(replica.get_state()))
    return replica


def account_view(doc: Doc[Any]) -> tuple[Any, ...]:
    index = AccountsIndex(doc)
    contested = tuple((name, tuple(uids)) for name, uids in sorted(index.contested_names().items()))
    return tuple(index.all_accounts()), contested


def test_out_of_order_updates_can_be_dropped_and_anti_entropy_repairs_them() -> None:
    """Pins a pycrdt 0.14 behaviour the sync protocol must cope with (docs/architecture.md)."""
    eu = Region("eu", 10, 1_000)
    _registered(eu, "u0", "first")
    _registered(eu, "u1", "second")
    with eu.doc.transaction():
        current = AccountsIndex(eu.doc).version("u0")
        assert current is not None
        AccountsWriter(eu.doc, "eu").update(current, eu.stamp(), password_hash="new")
    replica: Doc[Any] = Doc(client_id=999)
    for index in (1, 2, 0):  # the second and third updates arrive before the first
        replica.apply_update(eu.updates[index])
    assert AccountsIndex(replica).account("u0") is None  # dropped, and nothing said so
    replica.apply_update(eu.doc.get_update(replica.get_state()))  # a state-vector sync
    assert AccountsIndex(replica).all_accounts() == AccountsIndex(eu.doc).all_accounts()


# --- accounts ------------------------------------------------------------------------------

account_ops = st.lists(
    st.tuples(
        st.sampled_from(["register", "update", "rename", "sync"]),
        st.integers(0, 2),  # region
        st.integers(0, 3),  # which user / name
        st.integers(0, 2),  # other region (sync) or value
    ),
    min_size=1,
    max_size=30,
)


def _apply_account_op(regions: list[Region], op: tuple[str, int, int, int]) -> None:
    kind, r, which, other = op
    region = regions[r]
    index = AccountsIndex(region.doc)
    with region.doc.transaction():
        writer = AccountsWriter(region.doc, region.name)
        if kind == "register":
            uid = f"u{which}{region.name}"
            if index.version(uid) is None:
                writer.register(uid, f"Name{which}", "hash", region.name, region.stamp())
        elif kind in ("update", "rename"):
            uids = sorted(index.versions)
            if not uids:
                return
            current = index.version(uids[which % len(uids)])
            assert current is not None
            if kind == "update" and current.home == region.name:
                writer.update(current, region.stamp(), password_hash=f"h{other}{region.name}")
            elif kind == "update":  # only the home changes a password; others the status
                writer.update(current, region.stamp(), status=f"s{other}{region.name}")
            else:
                writer.rename(current, f"Re{which}{other}", region.stamp())
    if kind == "sync":
        region.learn(regions[other])


@settings(max_examples=60, deadline=None)
@given(ops=account_ops, seed=st.integers(0, 2**32))
def test_accounts_resolve_the_same_on_every_replica(
    ops: list[tuple[str, int, int, int]], seed: int
) -> None:
    regions = [Region(name, 10 + i, 1_000_000 + i * 7) for i, name in enumerate(REGIONS)]
    for op in ops:
        _apply_account_op(regions, op)
    rng = random.Random(seed)
    views = {account_view(deliver_everything(regions, rng)) for _ in range(3)}
    assert len(views) == 1


def _index_fields(index: AccountsIndex) -> tuple[Any, ...]:
    return index.versions, index.home_records, index.claims, index.bad_records


@settings(max_examples=40, deadline=None)
@given(ops=account_ops)
def test_an_index_reusing_the_last_ones_parsed_records_equals_a_fresh_one(
    ops: list[tuple[str, int, int, int]],
) -> None:
    """A node builds a new accounts index at every change, reusing the records the last one
    parsed (`known`); whatever changed, even a record overwritten with garbage, it reads the
    same as an index built from nothing."""
    regions = [Region(name, 10 + i, 1_000_000 + i * 7) for i, name in enumerate(REGIONS)]
    kept = AccountsIndex(regions[0].doc)
    for step, op in enumerate(ops):
        _apply_account_op(regions, op)
        if step % 5 == 4:  # a peer's malformed record in place of a good one
            users = regions[0].doc.get(USERS, type=Map)
            for key in sorted(users.keys())[:1]:
                users[key] = "{not json"
        kept = AccountsIndex(regions[0].doc, kept.parsed)
        assert _index_fields(kept) == _index_fields(AccountsIndex(regions[0].doc))


def _registered(region: Region, uid: str, name: str) -> None:
    with region.doc.transaction():
        AccountsWriter(region.doc, region.name).register(
            uid, name, "hash", region.name, region.stamp()
        )


def test_home_region_wins_a_concurrent_update_even_if_written_earlier() -> None:
    eu, us = Region("eu", 1, 5_000), Region("us", 99, 9_000)  # us has the later clock
    _registered(eu, "alice", "alice")
    us.learn(eu)
    base = AccountsIndex(eu.doc).version("alice")
    assert base is not None
    with eu.doc.transaction():
        AccountsWriter(eu.doc, "eu").update(base, eu.stamp(), status="from-home")
    with us.doc.transaction():
        AccountsWriter(us.doc, "us").update(base, us.stamp(), status="from-us")
    eu.learn(us)
    us.learn(eu)
    for region in (eu, us):
        account = AccountsIndex(region.doc).account("alice")
        assert account is not None and account.status == "from-home"


def test_a_causally_newer_write_elsewhere_changes_the_status_but_never_the_password() -> None:
    eu, us = Region("eu", 1, 5_000), Region("us", 2, 5_000)
    _registered(eu, "alice", "alice")
    us.learn(eu)
    base = AccountsIndex(us.doc).version("alice")
    assert base is not None
    with us.doc.transaction():
        AccountsWriter(us.doc, "us").update(base, us.stamp(), status="disabled")
        with pytest.raises(NotHomeError, match="not the home of account alice"):
            AccountsWriter(us.doc, "us").update(base, us.stamp(), password_hash="newer")
        with pytest.raises(NotHomeError):
            AccountsWriter(us.doc, "us").update(base, us.stamp(), home="us")
    eu.learn(us)
    account = AccountsIndex(eu.doc).account("alice")
    assert account is not None and account.status == "disabled"
    assert (account.password_hash, account.home) == ("hash", "eu")


def test_a_password_in_a_version_written_elsewhere_is_ignored() -> None:
    """Even a version written past the writer's check (a modified node) cannot set it."""
    eu, us = Region("eu", 1, 5_000), Region("us", 2, 5_000)
    _registered(eu, "alice", "alice")
    us.learn(eu)
    base = AccountsIndex(us.doc).version("alice")
    assert base is not None
    forged = replace(
        base, password_hash="attacker", home="us", stamp=us.stamp(), base=base.stamp, writer="us"
    )
    with us.doc.transaction():
        us.doc.get(USERS, type=Map)["alice|us"] = forged.to_text()
    eu.learn(us)
    account = AccountsIndex(eu.doc).account("alice")
    assert account is not None and (account.password_hash, account.home) == ("hash", "eu")


def test_the_home_region_moves_the_account_and_the_new_home_changes_the_password() -> None:
    eu, us = Region("eu", 1, 5_000), Region("us", 2, 6_000)
    _registered(eu, "alice", "alice")
    with eu.doc.transaction():
        current = AccountsIndex(eu.doc).version("alice")
        assert current is not None
        AccountsWriter(eu.doc, "eu").update(current, eu.stamp(), home="us")
    us.learn(eu)
    with us.doc.transaction():
        current = AccountsIndex(us.doc).version("alice")
        assert current is not None and current.home == "us"
        AccountsWriter(us.doc, "us").update(current, us.stamp(), password_hash="new")
    eu.learn(us)
    with eu.doc.transaction():
        moved = AccountsIndex(eu.doc).version("alice")
        assert moved is not None
        with pytest.raises(NotHomeError):
            AccountsWriter(eu.doc, "eu").update(moved, eu.stamp(), password_hash="old-home")
    account = AccountsIndex(eu.doc).account("alice")
    assert account is not None and (account.password_hash, account.home) == ("new", "us")


def test_name_race_earliest_registration_keeps_the_name() -> None:
    eu, us = Region("eu", 50, 1_000), Region("us", 10, 2_000)
    _registered(us, "u-us", "Bob")  # later HLC (us clock ahead)
    _registered(eu, "u-eu", "bob")  # earlier, same name ignoring case
    eu.learn(us)
    us.learn(eu)
    for region in (eu, us):
        index = AccountsIndex(region.doc)
        assert index.name_owner("BOB") == "u-eu"
        loser = index.account("u-us")
        assert loser is not None and loser.must_rename and loser.password_hash == "hash"
        assert index.contested_names() == {"bob": ["u-us"]}


def test_rename_clears_must_rename() -> None:
    eu, us = Region("eu", 1, 1_000), Region("us", 2, 2_000)
    _registered(eu, "u-eu", "bob")
    _registered(us, "u-us", "bob")
    us.learn(eu)
    current = AccountsIndex(us.doc).version("u-us")
    assert current is not None
    with us.doc.transaction():
        AccountsWriter(us.doc, "us").rename(current, "robert", us.stamp())
    eu.learn(us)
    account = AccountsIndex(eu.doc).account("u-us")
    assert account is not None and account.name == "robert" and not account.must_rename
    assert AccountsIndex(eu.doc).contested_names() == {}


# --- game chains -----------------------------------------------------------------------------


def _game_regions() -> tuple[list[Region], GameInfo]:
    regions = [Region(name, 20 + i, 3_000 + i) for i, name in enumerate(REGIONS)]
    info = GameInfo("g1", "battleline", ["a", "b"], ["a", "b"], 42, 0, regions[0].stamp(), "eu-1")
    with regions[0].doc.transaction():
        GameWriter(regions[0].doc, "eu-1").create(info)
    for region in regions[1:]:
        region.learn(regions[0])
    return regions, info


def _play_legal(region: Region, info: GameInfo, rng: random.Random) -> None:
    """The region writes a legal (by its own view) move at the tip of its chain."""
    chain = canonical_chain(battleline, info, read_moves(region.doc))
    mover = battleline.to_move(chain.state)
    if mover is None:
        return
    move = rng.choice(battleline.legal_moves(chain.state))
    with region.doc.transaction():
        GameWriter(region.doc, f"{region.name}-1").add_move(
            len(chain.moves), chain.tip, mover, move, region.stamp()
        )


@settings(max_examples=25, deadline=None)
@given(
    steps=st.lists(st.tuples(st.integers(0, 2), st.booleans()), min_size=1, max_size=40),
    seed=st.integers(0, 2**32),
)
def test_every_replica_computes_the_same_canonical_chain(
    steps: list[tuple[int, bool]], seed: int
) -> None:
    regions, info = _game_regions()
    rng = random.Random(seed)
    for region_index, sync_after in steps:
        region = regions[region_index]
        _play_legal(region, info, rng)
        if sync_after:
            for other in regions:
                other.learn(region)
    replicas = [deliver_everything(regions, random.Random(seed + i)) for i in range(3)]
    chains = [canonical_chain(battleline, info, read_moves(doc)) for doc in replicas]
    keys = {tuple(r.key for r in chain.moves) for chain in chains}
    assert len(keys) == 1
    replayed = battleline.replay(
        info.seed, [dict(r.move, player=r.player) for r in chains[0].moves]
    )
    assert battleline.full_view(replayed) == battleline.full_view(chains[0].state)


@settings(max_examples=50, deadline=None)
@given(
    ply=st.integers(0, 500),
    player=st.integers(0, 1),
    move=st.dictionaries(
        st.text(max_size=8), st.integers(-(2**53) + 1, 2**53 - 1) | st.text(max_size=8)
    ),
)
def test_a_move_record_is_stored_as_canonical_json_of_all_its_fields(
    ply: int, player: int, move: dict[str, Any]
) -> None:
    """Every node must write byte-identical text for the same record (its key names it)."""
    record = MoveRecord(ply, "parent-key", player, move, "stamp", "node-a")
    fields = {"ply": ply, "parent": "parent-key", "player": player, "move": move}
    assert record.to_text() == encode_record(fields | {"stamp": "stamp", "node": "node-a"})
    assert MoveRecord.from_text(record.to_text()) == record


json_values = st.recursive(
    st.integers(-(2**53) + 1, 2**53 - 1) | st.text(max_size=6) | st.booleans() | st.none(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=8,
)


@settings(max_examples=50, deadline=None)
@given(
    moves=st.lists(st.dictionaries(st.text(max_size=6), json_values), max_size=5),
    result=st.none() | st.dictionaries(st.text(max_size=6), json_values),
    extra=st.dictionaries(st.text(max_size=6), json_values),
)
def test_an_archived_game_is_stored_as_canonical_json_of_all_its_fields(
    moves: list[dict[str, Any]], result: dict[str, Any] | None, extra: dict[str, Any]
) -> None:
    """Every node writes byte-identical text for the same game, and reads it back equal."""
    game = ArchivedGame("g1", "battleline", ["u1", "u2"], ["a", "b"], 7, 1, moves, "c", result,
                        "u1", "s", extra)  # fmt: skip
    assert game.to_text() == encode_record(asdict(game))
    assert ArchivedGame.from_text(game.to_text()) == game


def test_the_same_ply_written_twice_keeps_the_smaller_stamp() -> None:
    regions, info = _game_regions()
    eu, us = regions[0], regions[1]
    chain = canonical_chain(battleline, info, read_moves(eu.doc))
    first, second = battleline.legal_moves(chain.state)[:2]
    with us.doc.transaction():  # us writes first in HLC order
        loser_free = GameWriter(us.doc, "us-1").add_move(0, "", 0, first, us.stamp())
    eu.wall = us.wall + 50
    with eu.doc.transaction():
        late = GameWriter(eu.doc, "eu-1").add_move(0, "", 0, second, eu.stamp())
    eu.learn(us)
    us.learn(eu)
    for region in (eu, us):
        resolved = canonical_chain(battleline, info, read_moves(region.doc))
        assert [r.key for r in resolved.moves] == [loser_free.key]
        assert [r.key for r in resolved.dropped] == [late.key]


def test_an_illegal_record_never_enters_the_chain() -> None:
    regions, info = _game_regions()
    eu = regions[0]
    with eu.doc.transaction():
        GameWriter(eu.doc, "eu-1").add_move(0, "", 1, {"type": "pass"}, eu.stamp())  # not its turn
    chain = canonical_chain(battleline, info, read_moves(eu.doc))
    assert chain.moves == [] and len(chain.dropped) == 1


# --- one live game per player, one session per identity -------------------------------------


def _info(gid: str, players: list[str], created: str) -> GameInfo:
    return GameInfo(gid, "battleline", players, players, 1, 0, created, "eu-1")


@given(
    st.lists(
        st.tuples(st.sampled_from("abcde"), st.sampled_from("abcde"), st.integers(0, 99)),
        max_size=12,
    )
)
def test_games_to_park_leaves_at_most_one_live_game_per_player(
    specs: list[tuple[str, str, int]],
) -> None:
    games = [_info(f"g{i}", [a, b], f"{t:05d}") for i, (a, b, t) in enumerate(specs) if a != b]
    parked = set(games_to_park(games))
    assert parked == set(games_to_park(list(reversed(games))))  # order of discovery is irrelevant
    live = [g for g in games if g.gid not in parked]
    players = [p for g in live for p in g.players]
    assert len(players) == len(set(players))
    for game in games:  # parked only when a player really had an earlier kept game
        if game.gid in parked:
            assert any(
                set(g.players) & set(game.players) and (g.created, g.gid) < (game.created, game.gid)
                for g in live
            )


def test_the_session_started_last_is_the_one_that_counts() -> None:
    def session(sid: str, started: str) -> Session:
        return Session(sid, "alice", "alice", "eu-1", "eu", "idle", "", "", started, "t", "r", True)

    older, newer = session("s1", "0001"), session("s2", "0002")
    assert newest_sessions([newer, older]) == {"alice": newer}
    assert newest_sessions([older, newer]) == {"alice": newer}


NAMES = st.one_of(
    st.from_regex(NAME_PATTERN, fullmatch=True),
    st.from_regex(NAME_PATTERN, fullmatch=True).map(lambda name: name + "\n"),
    st.text(alphabet="aZ09_-\n\r\t \x00é", max_size=24),
)


def _register_form_accepts(name: str) -> bool:
    """The register route's name rule (node.refusals), reserved names aside."""
    try:
        return refusals.check_name(name) == name
    except Refused as refused:
        return refused.code != "bad_request"


@settings(max_examples=300, deadline=None)
@given(name=NAMES)
def test_the_stored_name_rule_and_the_register_rule_agree(name: str) -> None:
    """A name the accounts document takes is one the register form takes, whole, and comes back
    from the document unchanged; a trailing newline is refused by both."""
    try:
        accepted = check_name(name) == name
    except ValueError:
        accepted = False
    assert accepted == _register_form_accepts(name)
    if not accepted:
        return
    doc: Doc[Any] = Doc()
    AccountsWriter(doc, "eu").register("u1", name, "hash", "eu", "0001750000000000.00000.eu-1")
    account = AccountsIndex(doc).account("u1")
    assert account is not None and account.name == name
    assert AccountsIndex(doc).name_owner(name) == "u1"


@pytest.mark.parametrize("name", ["alice\n", "alice\r\n", "\nalice", "al\nice"])
def test_a_name_with_a_newline_is_refused_by_the_accounts_document(name: str) -> None:
    with pytest.raises(ValueError):
        check_name(name)


def test_map_items_reads_what_pycrdts_public_reads_give() -> None:
    """map_items reads through the integrated Yrs type (crdt_models.records): it must give
    exactly what kv[key] gives, nested types and numbers included, in key order."""
    doc: Doc[Any] = Doc()
    kv = doc.get("kv", type=Map)
    with doc.transaction():
        kv["b"] = '{"x": 1}'
        kv["a"] = 2
        kv["c"] = Map({"nested": True})
        kv["d"] = None
    del kv["d"]
    expected = [(key, kv[key]) for key in sorted(kv.keys())]
    got = map_items(doc, "kv")
    assert [key for key, _ in got] == ["a", "b", "c"]
    assert got[:2] == expected[:2] and isinstance(got[1][1], str)
    assert isinstance(got[2][1], Map) and got[2][1].to_py() == {"nested": True}
    assert map_items(doc, "empty") == []


def test_a_document_read_through_root_map_is_freed_as_soon_as_it_is_dropped() -> None:
    """root_map keeps what it needs on the document without a reference back to it: a scratch
    copy or a retired game must not wait for a full garbage collection (they are many, and
    some large)."""
    doc: Doc[Any] = Doc()
    root_map(doc, "moves")["k"] = "v"
    assert map_get(root_map(doc, "moves"), "k") == "v"
    gone = weakref.ref(doc)
    gc.disable()
    try:
        del doc
        assert gone() is None
    finally:
        gc.enable()
