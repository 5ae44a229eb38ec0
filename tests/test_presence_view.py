"""The incremental picture (`presence_view.LivePicture`, kept by `ServiceState.settle_picture`)
always equals the picture rebuilt from scratch (`build_picture`), whatever changes in the
presence documents, the nodes that count and the tables between two settles."""

from __future__ import annotations

import random
from typing import Any, cast

from hypothesis import given, settings
from hypothesis import strategies as st

from meridian.crdt_models.hlc import HybridLogicalClock
from meridian.crdt_models.presence import (
    IDLE,
    PLAYING,
    PRESENCE_TTL_MS,
    WATCHING,
    Invite,
    PresenceWriter,
    Session,
    presence_doc_id,
)
from meridian.games.battleline import rules_module
from meridian.node.presence_view import build_picture
from meridian.node.service_state import ServiceState
from tests.service_harness import EPOCH_MS, MemoryDocuments

NODES = ("a", "b", "c")  # "a" computes the picture
UIDS = tuple(f"u{i}" for i in range(6))
NAMES = ("ann", "bob", "cy", "dee")  # fewer than accounts: two accounts may share a name
# Games a session may report: two that a "play" step can make held here, one never held.
GAMES = ("g-u0-u1", "g-u2-u3", "g-elsewhere")

put_session = st.tuples(
    st.just("put"),
    st.sampled_from(NODES),
    st.integers(0, 7),  # sid
    st.sampled_from(UIDS),
    st.sampled_from(NAMES),
    st.integers(0, 5),  # started
    st.sampled_from((IDLE, WATCHING, PLAYING)),
    st.sampled_from(GAMES),  # the game a playing session reports
    st.booleans(),  # connected
)
remove_session = st.tuples(st.just("remove"), st.sampled_from(NODES), st.integers(0, 7))
invite = st.tuples(
    st.just("invite"), st.sampled_from(NODES), st.sampled_from(UIDS), st.sampled_from(UIDS)
)
heartbeat = st.tuples(st.just("beat"), st.sampled_from(NODES))
advance = st.tuples(st.just("advance"), st.integers(1, PRESENCE_TTL_MS))
tables = st.tuples(st.just("play"), st.lists(st.sampled_from(UIDS), max_size=4, unique=True))
settle = st.tuples(st.just("settle"))
steps = st.lists(
    st.one_of(put_session, remove_session, invite, heartbeat, advance, tables, settle),
    max_size=60,
)


class World:
    """Presence documents of three nodes, seen by node "a"'s service state."""

    def __init__(self) -> None:
        self.now_ms = EPOCH_MS
        self.docs = MemoryDocuments()
        self.state = ServiceState(
            node_id="a",
            region="eu",
            documents=self.docs,
            rules=rules_module(),
            hlc=HybridLogicalClock("a", lambda: self.now_ms),
            wall_ms=lambda: self.now_ms,
            new_token=lambda: "t" * 32,
            rng=random.Random(1),
        )
        self.playing: dict[str, tuple[str, str]] = {}
        self.invites = 0
        for node in NODES:
            self.write(node, lambda w: w.heartbeat(self.now_ms))

    def write(self, node: str, change: Any) -> None:
        self.docs.write(presence_doc_id(node), lambda doc: change(PresenceWriter(doc)))
        self.state.read_presence(node)

    def apply(self, step: tuple[Any, ...]) -> None:
        kind, *args = step
        if kind == "put":
            node, sid, uid, name, started, status, reported, connected = args
            game = {IDLE: "", WATCHING: "g1", PLAYING: reported}[status]
            opponent = "them" if status == PLAYING else ""
            session = Session(
                f"s{sid}", uid, name, node, "eu", status, game,
                opponent, f"{started:04d}", f"h{sid}", "", connected,
            )  # fmt: skip
            self.write(node, lambda w: w.put_session(session))
        elif kind == "remove":
            node, sid = args
            self.write(node, lambda w: w.remove_sessions(f"s{sid}"))
        elif kind == "invite":
            node, from_uid, to_uid = args
            self.invites += 1
            iid = f"i{self.invites}"
            made = Invite(iid, from_uid, from_uid, to_uid, to_uid, "", "0", node)
            self.write(node, lambda w: w.put_invite(made))
        elif kind == "beat":
            (node,) = args
            self.write(node, lambda w: w.heartbeat(self.now_ms))
        elif kind == "advance":
            self.now_ms += args[0]
        elif kind == "play":
            (uids,) = args
            self.playing = {}  # the same players may now sit at another table
            for a, b in zip(uids[::2], uids[1::2], strict=False):
                self.playing[a] = (f"g-{a}-{b}", b)
                self.playing[b] = (f"g-{a}-{b}", a)
                # held from now on (a node keeps the games it ever held: `ServiceState.games`)
                self.state.games.setdefault(f"g-{a}-{b}", cast(Any, None))
        else:
            self.check()

    def check(self) -> None:
        state = self.state
        state.settle_picture(dict(self.playing), {"i1"})
        expected = build_picture(
            list(state.presence.values()), self.now_ms, self.playing, {"i1"}, "a", state.games
        )
        assert state.picture.sessions == expected.sessions
        assert state.picture.lobby == expected.lobby
        assert state.picture.invites == expected.invites
        assert state.picture.playing == expected.playing


@settings(max_examples=300, deadline=None)
@given(steps)
def test_the_incremental_picture_equals_a_full_rebuild(changes: list[tuple[Any, ...]]) -> None:
    world = World()
    for step in changes:
        world.apply(step)
    world.check()


def test_a_reported_table_stops_counting_once_its_game_is_held_here() -> None:
    """u4's session reports g-u0-u1 (not held: u4 is shown playing). Then this node starts
    holding g-u0-u1, whose document knows better: u4 is looked at again without any change of
    its own session."""
    world = World()
    world.apply(("put", "b", 1, "u4", "ann", 1, PLAYING, "g-u0-u1", True))
    world.apply(("settle",))
    assert world.state.picture.lobby["ann"].status == PLAYING
    world.apply(("play", ["u0", "u1"]))
    world.apply(("settle",))
    assert world.state.picture.lobby["ann"].status == IDLE


def test_a_login_settles_in_time_independent_of_the_players_online() -> None:
    """A settle after one more session looks at that session's account only."""
    world = World()
    for i in range(2000):
        session = Session(
            f"s{i}", f"u{i}", f"p{i}", "a", "eu", IDLE, "", "", "0001", f"h{i}", "", True
        )
        world.write("a", lambda w, s=session: w.put_session(s))
    assert len(world.state.settle_picture({}, set())[0]) == 2000
    late = Session("late", "ulate", "late", "b", "eu", IDLE, "", "", "0002", "h", "", True)
    world.write("b", lambda w: w.put_session(late))
    uids, names = world.state.settle_picture({}, set())
    assert (uids, names) == ({"ulate"}, {"late"})
    assert len(world.state.picture.lobby) == 2001
