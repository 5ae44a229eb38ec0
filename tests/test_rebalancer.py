"""The rebalancer's decision inputs, in memory: who is at a safe point (the game service's
read-only accessor), what `plan` is given (node.rebalancer.plan_inputs), when a round waits for
fresh figures, the published counts of players moved, and the [rebalance] config section."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pycrdt import Doc

from meridian.crdt_models.load import LoadEntry
from meridian.crdt_models.presence import META
from meridian.crdt_models.records import root_map
from meridian.node.config import load_config
from meridian.node.drain import Target, Told, begin_handover, tell_handovers
from meridian.node.localcluster import cluster_env, write_configs
from meridian.node.observer import cluster_view
from meridian.node.rebalance import (
    MOVED_PREFIX,
    Move,
    Policy,
    RebalanceSettings,
    RebalanceState,
    connections,
    cpu_percent,
    plan,
    read_moved,
    write_moved,
)
from meridian.node.rebalancer import (
    ARRIVAL_MS,
    NOTICE_WAIT_S,
    Rebalancer,
    plan_inputs,
    round_trip_s,
    settle_ms,
    settled,
)
from meridian.node.service import PlayerHere
from meridian.sync.engine import PeerState
from meridian.tomlschema import ConfigError
from tests.service_harness import ServiceHarness, replicate

NOW_MS = 1_767_225_600_000


def entry(node: str, count: int, at_ms: int = NOW_MS) -> LoadEntry:
    return LoadEntry(node, node.split("-")[0], at_ms, count, 0, 0, 0, 0, 0)


def idle(uid: str, since: float = 0.0) -> PlayerHere:
    return PlayerHere(uid, {f"s-{uid}": [f"c-{uid}"]}, since, in_game=False, safe=True)


# --- the safe point, as the game service tells it ------------------------------------------


def test_a_player_is_at_a_safe_point_when_idle_or_waiting_for_the_opponent() -> None:
    node = ServiceHarness()
    alice, bob, carol = (node.online(name) for name in ("alice", "bob", "carol"))
    gid = node.start_game(alice, bob, "bob")
    view = node.game_view(alice, gid)
    mover = alice if view["to_move"] == view["you"] else bob
    by_name = {p.uid: p for p in node.service.players_here()}
    uids = {c.conn_id: c.uid for c in node.service.conns.values()}
    to_move, waiting = uids[mover.conn_id], uids[(bob if mover is alice else alice).conn_id]
    assert by_name[uids[carol.conn_id]].safe and not by_name[uids[carol.conn_id]].in_game
    assert by_name[to_move].in_game and not by_name[to_move].safe, "mid-turn is not a safe point"
    assert by_name[waiting].in_game and by_name[waiting].safe

    # A turn is several plies (claim, play, draw): mid-turn until the opponent is to move.
    seat = view["to_move"]
    while (shown := node.game_view(mover, gid))["to_move"] == seat:
        assert not any(p.safe for p in node.service.players_here([to_move]))
        assert node.request(mover, "move", game=gid, move=shown["legal"][0])["ok"]
    after = {p.uid: p.safe for p in node.service.players_here()}
    assert after[to_move] and not after[waiting], "the turn passed: so did the safe point"
    assert [p.uid for p in node.service.players_here([waiting])] == [waiting]


def test_an_open_invitation_is_not_a_safe_point() -> None:
    node = ServiceHarness()
    alice, _bob = node.online("alice"), node.online("bob")
    assert node.request(alice, "invite", to="bob")["ok"]
    assert not any(p.safe for p in node.service.players_here())


def test_a_hand_over_taken_back_leaves_the_clients_resume_token_valid() -> None:
    node = ServiceHarness()
    conn = node.online("alice")
    resume = conn.last_reply()["resume"]
    (player,) = node.service.players_here()
    (sid,) = player.sessions
    handed = node.service.hand_over(sid)
    assert handed is not None and handed.resume != resume
    assert node.service.take_back(sid, handed)
    assert not node.service.take_back(sid, handed), "only while the handed-over token stands"
    node.close(conn)
    again = node.open()
    assert node.request(again, "hello", resume=resume)["ok"], "the client's token works again"


def test_an_invitation_made_as_its_player_is_handed_over_reaches_them_at_the_new_node() -> None:
    # bob is told to move (rebalancing, a drain) just as alice invites him: the end of his old
    # connection must not withdraw the invitation, and at us he is shown it and can accept.
    eu, us = ServiceHarness("eu-1", "eu"), ServiceHarness("us-1", "us", seed=2)
    alice, bob = eu.online("alice"), eu.online("bob")
    (sid,) = [
        s for p in eu.service.players_here() for s in p.sessions if bob.conn_id in p.sessions[s]
    ]
    handed = eu.service.hand_over(sid)
    assert handed is not None
    invite = eu.request(alice, "invite", to="bob")["invite"]
    eu.close(bob)  # the client followed the notice: its old connection ends
    replicate(eu, us)
    on_us = us.open()
    assert us.request(on_us, "hello", resume=handed.resume)["ok"]
    for _ in range(3):
        replicate(us, eu)
        replicate(eu, us)
        eu.advance(0.5)
        us.advance(0.5)
    assert [i["iid"] for i in on_us.pushes("invites")[-1]["incoming"]] == [invite["iid"]]
    assert [i["iid"] for i in alice.pushes("invites")[-1]["outgoing"]] == [invite["iid"]]
    assert us.request(on_us, "accept", invite=invite["iid"])["ok"]


# --- what plan() is given --------------------------------------------------------------------


def test_the_inputs_hold_own_players_and_the_others_as_anonymous_idle_ones() -> None:
    view = cluster_view([entry("eu-1", 3), entry("us-1", 2), entry("ap-1", 0)], NOW_MS)
    here = [idle("a", 1.0), PlayerHere("b", {"s": ["c"]}, 2.0, in_game=True, safe=False)]
    inputs = plan_inputs(
        view, here, node_id="eu-1", region="eu", reachable=["us-1", "ap-1"], rtt_s={"us": 0.04}
    )
    assert inputs is not None
    own = [p for p in inputs.players if p.node == "eu-1"]
    assert [(p.uid, p.in_game, p.safe) for p in own] == [("a", False, True), ("b", True, False)]
    others = [p for p in inputs.players if p.node == "us-1"]
    assert len(others) == 2 and all(p.safe and not p.in_game for p in others)
    assert all(p.uid not in {"a", "b"} for p in others)
    assert inputs.rtt_ms == {("eu", "us"): 40.0, ("us", "eu"): 40.0}


def test_a_process_that_cannot_take_players_is_neither_target_nor_in_the_mean() -> None:
    view = cluster_view([entry("eu-1", 30), entry("us-1", 0), entry("ap-1", 0)], NOW_MS)
    here = [idle(f"p{i}", float(i)) for i in range(30)]
    inputs = plan_inputs(view, here, node_id="eu-1", region="eu", reachable=["us-1"], rtt_s={})
    assert inputs is not None
    assert {e.node for e in inputs.entries} == {"eu-1", "us-1"}
    moves, _ = plan(inputs.entries, inputs.players, {("eu", "us"): 1.0, ("us", "eu"): 1.0},
                    RebalanceState(), 0.0)  # fmt: skip
    assert moves and {m.target for m in moves} == {"us-1"}
    assert len(moves) == 15, "even: 15 each (targets take players while below the mean)"


def test_no_inputs_before_the_own_entry_is_published() -> None:
    view = cluster_view([entry("us-1", 9)], NOW_MS)
    assert plan_inputs(view, [idle("a")], node_id="eu-1", region="eu", reachable=["us-1"],
                       rtt_s={}) is None  # fmt: skip


def test_two_hot_sources_planning_alike_do_not_both_fill_the_cool_one() -> None:
    """Each node executes only its own moves of the same plan: together they stop at the mean."""
    view = cluster_view([entry("eu-1", 15), entry("eu-2", 15), entry("eu-3", 0)], NOW_MS)
    total = 0
    for node in ("eu-1", "eu-2"):
        others = [n for n in ("eu-1", "eu-2", "eu-3") if n != node]
        here = [idle(f"{node}-p{i}", float(i)) for i in range(15)]
        inputs = plan_inputs(view, here, node_id=node, region="eu", reachable=others, rtt_s={})
        assert inputs is not None
        moves, _ = plan(inputs.entries, inputs.players, inputs.rtt_ms, RebalanceState(), 0.0)
        total += sum(1 for m in moves if m.source == node and m.target == "eu-3")
    assert total == 10, "eu-3 receives the mean (10), not 2 x 5 from each source's own view"


def test_a_round_after_moves_waits_for_figures_published_after_them() -> None:
    moved_ms = NOW_MS
    waiting = {"eu-1": moved_ms, "us-1": moved_ms}
    settle = settle_ms(Policy())
    assert settle == ARRIVAL_MS and settle_ms(Policy(score=cpu_percent)) > 10_000
    before = [entry("eu-1", 20, NOW_MS + 100), entry("us-1", 0, NOW_MS + 3000)]
    assert not settled(before, waiting, settle)
    after = [entry("eu-1", 10, NOW_MS + 3000), entry("us-1", 10, NOW_MS + 3000)]
    assert settled(after, waiting, settle)
    assert settled([entry("eu-1", 10, NOW_MS + 3000)], waiting, settle), "a target gone: no wait"
    assert Policy().score is connections


def test_a_busy_link_never_pinged_gives_its_round_trip_from_replication_lag() -> None:
    peer = PeerState("us-1", "us")
    assert round_trip_s(peer) is None, "not measured: no move to that region"
    peer.lag_samples.extend([0.030, 0.012, 0.020])
    assert round_trip_s(peer) == 0.012, "the quickest change-to-ack: an upper bound"
    peer.rtt = 0.004
    assert round_trip_s(peer) == 0.004, "a ping's, when there was one"


# --- the published counts ---------------------------------------------------------------------


def test_moved_counts_round_trip_through_presence_meta_and_sum_per_process() -> None:
    doc: Doc[Any] = Doc()
    with doc.transaction():
        meta = root_map(doc, META)
        meta["heartbeat"] = NOW_MS
        write_moved(meta, {"us-1": 3, "ap-1": 1})
    assert read_moved(root_map(doc, META)) == {"us-1": 3, "ap-1": 1}
    assert read_moved({MOVED_PREFIX + "x": True, MOVED_PREFIX + "y": -1, "heartbeat": 5}) == {}
    moved = {"eu-1": {"us-1": 3, "ap-1": 1}, "us-1": {"ap-1": 2}}
    view = cluster_view([entry("eu-1", 5), entry("us-1", 5), entry("ap-1", 5)], NOW_MS, moved)
    shown = {n["node"]: (n["moved_out"], n["moved_in"]) for n in view.to_json(NOW_MS)["nodes"]}
    assert shown == {"eu-1": (4, 0), "us-1": (2, 3), "ap-1": (0, 3)}
    assert {r.region: r.moved_in for r in view.regions} == {"ap": 3, "eu": 0, "us": 3}


# --- the [rebalance] config section -----------------------------------------------------------


def config_with(tmp_path: Path, section: str) -> Path:
    (path, *_) = write_configs(tmp_path, ["eu", "us"], extra=section)
    return path


def test_rebalancing_is_off_by_default_and_configurable(tmp_path: Path) -> None:
    env = cluster_env()
    default = load_config(config_with(tmp_path / "a", ""), env).rebalance
    assert not default.enabled and default.policy == Policy()
    section = """
[rebalance]
enabled = true
interval_s = 2
score = "cpu_percent"
start_above = 1.5
stop_below = 1.1
min_excess = 0
min_interval_s = 60
max_moves_per_round = 5
max_extra_rtt_ms = 80
capacity = 70
"""
    settings = load_config(config_with(tmp_path / "b", section), env).rebalance
    assert settings.enabled and settings.interval_s == 2
    policy = settings.policy
    assert policy.score is cpu_percent and (policy.start_above, policy.stop_below) == (1.5, 1.1)
    assert (policy.min_excess, policy.min_interval_s, policy.max_moves_per_round) == (0, 60, 5)
    assert (policy.max_extra_rtt_ms, policy.capacity) == (80, 70)


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ("start_above = 1.1\nstop_below = 1.2", "rebalance.start_above"),
        ("stop_below = 0.9", "rebalance.stop_below"),
        ('score = "ram"', "rebalance.score"),
        ("interval_s = 0", "rebalance.interval_s"),
        ("max_moves_per_round = 0", "rebalance.max_moves_per_round"),
        ("capacity = 0", "rebalance.capacity"),
        ("enabled = 1", "rebalance.enabled"),
        ("every_s = 3", "rebalance.every_s"),
    ],
)
def test_a_bad_rebalance_setting_is_refused_naming_its_key(
    tmp_path: Path, section: str, key: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        load_config(config_with(tmp_path, f"\n[rebalance]\n{section}\n"), cluster_env())
    assert refused.value.key == key


# --- the drain's hand-over (node.drain.tell_handovers), with the rebalancer's options ----------


@dataclass
class StubEngine:
    """The sync engine as a hand-over sees it: which peers hold what, which links are up."""

    holds: bool = True
    up: tuple[str, ...] = ("us-1",)

    def peer_holds(self, node_id: str, doc_id: str, event_no: int) -> bool:
        return self.holds

    def up_peers(self) -> list[str]:
        return list(self.up)


@dataclass
class StubHost:
    """A `HandoverHost` over the in-memory game service."""

    harness: ServiceHarness
    engine: Any = field(default_factory=StubEngine)
    node_id: str = "eu-1"
    region: str = "eu"

    @property
    def service(self) -> Any:
        return self.harness.service

    @property
    def replicator(self) -> Any:
        return SimpleNamespace(pump=lambda: None)

    @property
    def players(self) -> Any:
        return SimpleNamespace(drain=self.harness.deliver)


US = Target("us-1", "us", "http://us.example:7102")


async def test_a_player_is_told_only_at_a_safe_point_and_else_stays() -> None:
    node = ServiceHarness()
    conn = node.online("alice")
    resume = conn.last_reply()["resume"]
    host = StubHost(node)
    (player,) = node.service.players_here()
    ((sid, conn_ids),) = player.sessions.items()
    handover = begin_handover(host, sid, conn_ids, US)
    assert handover is not None
    told = await tell_handovers(host, [handover], message=lambda t: "move", give_up=0.0,
                                ready=lambda h: False)  # fmt: skip
    assert told == [Told(handover, None)] and conn.pushes("drain") == []
    node.close(conn)
    assert node.request(node.open(), "hello", resume=resume)["ok"], "taken back: the old token"


async def test_a_ready_player_is_told_the_target_and_the_new_token() -> None:
    node = ServiceHarness()
    conn = node.online("alice")
    host = StubHost(node, StubEngine(holds=False))  # the ack lags, the link is up
    ((sid, conn_ids),) = node.service.players_here()[0].sessions.items()
    handover = begin_handover(host, sid, conn_ids, US)
    assert handover is not None
    told = await tell_handovers(host, [handover], message=lambda t: f"to {t.region}",
                                give_up=time.monotonic() + 5, ready=lambda h: True,
                                trust_link_after=0.0)  # fmt: skip
    assert told == [Told(handover, US)]
    (notice,) = conn.pushes("drain")
    assert notice == {"type": "drain", "region": "us", "url": US.url,
                      "resume": handover.handed.resume, "message": "to us"}  # fmt: skip


# --- a round's steps (Rebalancer.begin and advance), as the node's loop and the simulator run them


@dataclass
class RoundHost(StubHost):
    """A `RebalanceHost` over the in-memory game service: its presence writes are kept."""

    docs: dict[str, Doc[Any]] = field(default_factory=dict)

    @property
    def replicator(self) -> Any:
        def write(doc_id: str, change: Any) -> int:
            doc = self.docs.setdefault(doc_id, Doc())
            with doc.transaction():
                change(doc)
            return 1

        return SimpleNamespace(pump=lambda: None, write=write)


def round_of(host: RoundHost, now: list[float]) -> Rebalancer:
    view = SimpleNamespace(view=lambda: cluster_view([], NOW_MS))
    return Rebalancer(host, view, RebalanceSettings(enabled=True), wall_ms=lambda: NOW_MS,
                      clock=lambda: now[0], cpu_clock=lambda: 0.0)  # fmt: skip


def play_until_turn_of(node: ServiceHarness, gid: str, player: Any, other: Any) -> None:
    """`other` makes its moves (a turn may be several) until `player` is to move."""
    while (view := node.game_view(other, gid))["to_move"] == view["you"]:
        assert node.request(other, "move", game=gid, move=view["legal"][0])["ok"]
    while (view := node.game_view(player, gid))["to_move"] != view["you"]:
        mover = node.game_view(other, gid)
        assert node.request(other, "move", game=gid, move=mover["legal"][0])["ok"]


def uid_of(node: ServiceHarness, conn: Any) -> str:
    return str(node.service.conns[conn.conn_id].uid)


def test_a_round_tells_a_player_at_a_safe_point_its_target_and_counts_it() -> None:
    node = ServiceHarness()
    conn = node.online("alice")
    host, now = RoundHost(node), [100.0]
    rebalancer = round_of(host, now)
    batch = rebalancer.begin([Move(uid_of(node, conn), "eu-1", "us-1")], {"us-1": US})
    assert batch is not None and rebalancer.counters.moving == 1
    assert rebalancer.advance(batch)
    (notice,) = conn.pushes("drain")
    assert (notice["url"], notice["region"]) == (US.url, "us")
    counters = rebalancer.counters
    assert (counters.moved_to, counters.moved_idle, counters.moving) == ({"us-1": 1}, 1, 0)
    assert read_moved(root_map(host.docs["presence:eu-1"], META)) == {"us-1": 1}


def test_a_round_waits_for_a_safe_point_and_else_takes_the_hand_over_back() -> None:
    node = ServiceHarness()
    alice = node.online("alice")
    resume = alice.last_reply()["resume"]
    bob = node.online("bob")
    gid = node.start_game(alice, bob, "bob")
    play_until_turn_of(node, gid, bob, alice)  # alice waits for bob
    host, now = RoundHost(node), [100.0]
    rebalancer = round_of(host, now)
    bob_move = Move(uid_of(node, bob), "eu-1", "us-1")
    assert rebalancer.begin([bob_move], {"us-1": US}) is None, "bob is to move: not chosen"
    batch = rebalancer.begin([Move(uid_of(node, alice), "eu-1", "us-1")], {"us-1": US})
    assert batch is not None
    host.engine.holds, host.engine.up = False, ()  # the target does not hold the token yet
    assert not rebalancer.advance(batch)
    play_until_turn_of(node, gid, alice, bob)  # now alice is to move
    host.engine.holds = True
    assert not rebalancer.advance(batch), "the target is ready, the player is not"
    now[0] += NOTICE_WAIT_S
    assert rebalancer.advance(batch)
    assert alice.pushes("drain") == [] and rebalancer.counters.taken_back == 1
    node.close(alice)
    assert node.request(node.open(), "hello", resume=resume)["ok"], "taken back: the old token"
