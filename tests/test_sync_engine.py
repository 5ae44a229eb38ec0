"""The sans-IO peer protocol, two and three engines wired in memory on a virtual clock."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycrdt import Map

from meridian.sync import codec
from meridian.sync.engine import LinkClosed, LinkState
from meridian.sync.settings import SyncSettings
from tests.sync_harness import MemoryCluster


def test_two_nodes_converge_after_a_write() -> None:
    cluster = MemoryCluster(["eu", "us"])
    cluster.connect("eu", "us")
    assert cluster.links_up("eu") == ["us"] and cluster.links_up("us") == ["eu"]
    cluster.put("eu", "test:a", "greeting", "hello")
    cluster.advance(0.02)
    assert cluster.values("us", "test:a") == {"greeting": "hello"}
    assert len(cluster.digests("test:a")) == 1


def test_three_nodes_converge_with_writes_on_each() -> None:
    cluster = MemoryCluster(["eu", "us", "ap"])
    cluster.full_mesh()
    for name in cluster.names:
        for i in range(20):
            cluster.put(name, f"test:{i % 3}", f"{name}-{i}", i)
    cluster.advance(0.05)
    for doc_id in ("test:0", "test:1", "test:2"):
        assert len(cluster.digests(doc_id)) == 1
        expected = {
            f"{n}-{i}" for n in cluster.names for i in range(20) if f"test:{i % 3}" == doc_id
        }
        assert set(cluster.values("ap", doc_id)) == expected


def test_partition_then_heal_converges_by_anti_entropy() -> None:
    cluster = MemoryCluster(["eu", "us"])
    cluster.connect("eu", "us")
    cluster.put("eu", "test:p", "before", 1)
    cluster.advance(0.02)
    cluster.cut("eu", "us")
    cluster.put("eu", "test:p", "eu-side", 2)
    cluster.put("us", "test:p", "us-side", 3)
    cluster.put("us", "test:new", "only-us", 4)
    cluster.advance(1.0)
    assert "us-side" not in cluster.values("eu", "test:p")
    cluster.connect("eu", "us")
    cluster.advance(0.05)
    expected = {"before": 1, "eu-side": 2, "us-side": 3}
    assert cluster.values("eu", "test:p") == expected == cluster.values("us", "test:p")
    assert cluster.values("eu", "test:new") == {"only-us": 4}


def test_partial_partition_heals_through_relay() -> None:
    cluster = MemoryCluster(["a", "b", "c"], settings=SyncSettings(anti_entropy_s=3600))
    cluster.connect("a", "c")
    cluster.connect("b", "c")
    cluster.put("a", "test:r", "from-a", 1)
    cluster.put("b", "test:r", "from-b", 2)
    cluster.advance(0.05)
    # Anti-entropy is an hour away: only relay through c can explain convergence.
    assert cluster.values("b", "test:r") == {"from-a": 1, "from-b": 2}
    assert cluster.values("a", "test:r") == {"from-a": 1, "from-b": 2}


def test_full_mesh_does_not_relay_duplicates() -> None:
    cluster = MemoryCluster(["a", "b", "c"])
    cluster.full_mesh()
    cluster.advance(0.05)
    sent_before = {
        n: sum(p.updates_sent for p in e.peers.values()) for n, e in cluster.engines.items()
    }
    cluster.put("a", "test:m", "k", "v")
    cluster.advance(0.05)
    sent = {
        n: sum(p.updates_sent for p in e.peers.values()) - sent_before[n]
        for n, e in cluster.engines.items()
    }
    assert sent == {"a": 2, "b": 0, "c": 0}


def test_a_node_that_dies_mid_send_leaves_its_change_with_every_survivor_at_once() -> None:
    """a's change reaches b but not c, then a dies: b does not relay a's changes to c (a said
    it reached c), so before anti-entropy only b's offer at the link loss brings it to c."""
    cluster = MemoryCluster(["a", "b", "c"], settings=SyncSettings(anti_entropy_s=3600))
    cluster.full_mesh()
    cluster.advance(0.05)

    def not_to_c(src: str, dst: str, frames: list[bytes]) -> list[bytes]:
        return [] if (src, dst) == ("a", "c") else frames

    cluster.tamper = not_to_c
    cluster.put("a", "test:f", "move", 31)
    cluster.advance(0.05)
    assert cluster.values("b", "test:f") == {"move": 31} and cluster.values("c", "test:f") == {}
    cluster.tamper = None
    cluster.cut("a", "b")
    cluster.cut("a", "c")
    cluster.advance(0.05)  # an hour before the next anti-entropy round
    assert cluster.values("c", "test:f") == {"move": 31}


def test_a_node_asking_its_peers_for_a_document_knows_when_every_linked_one_answered() -> None:
    """`asking` (what a failover's hello waits on, node.delivery) holds from the STEP1s until
    each linked peer's STEP2 arrived with what it had; a link that closes stops counting."""
    cluster = MemoryCluster(["a", "b", "c"], settings=SyncSettings(anti_entropy_s=3600))
    cluster.full_mesh()
    cluster.advance(0.05)
    cluster.tamper = lambda src, dst, frames: [] if (src, dst) == ("b", "c") else frames
    cluster.put("b", "test:g", "move", 31)  # c lacks it
    cluster.advance(0.05)
    cluster.tamper = None
    engine = cluster.engines["c"]
    assert not engine.asking("test:g")
    engine.request_sync("test:g", cluster.now)
    assert engine.asking("test:g")
    cluster.pump()
    assert not engine.asking("test:g") and cluster.values("c", "test:g") == {"move": 31}
    engine.request_sync("test:g", cluster.now)
    cluster.tamper = lambda src, dst, frames: [] if dst == "c" else frames  # nobody answers
    cluster.pump()
    assert engine.asking("test:g")
    cluster.cut("a", "c")
    cluster.cut("b", "c")
    assert not engine.asking("test:g"), "no linked peer is left to answer"


def test_a_process_of_the_same_region_gets_a_change_at_once_others_after_the_window() -> None:
    """Two processes of eu and one of us: eu-2's players see eu-1's moves without waiting out
    the coalescing window (coalesce_region_ms 0), us still gets merged updates (coalesce_ms)."""
    regions = {"eu-1": "eu", "eu-2": "eu", "us-1": "us"}
    settings = SyncSettings(coalesce_ms=5, coalesce_region_ms=0)
    cluster = MemoryCluster(list(regions), settings=settings, regions=regions)
    cluster.full_mesh()
    cluster.advance(0.05)
    cluster.put("eu-1", "test:c", "first", 1)
    cluster.put("eu-1", "test:c", "second", 2)
    cluster.pump()  # no time passes
    assert cluster.values("eu-2", "test:c") == {"first": 1, "second": 2}
    assert cluster.values("us-1", "test:c") == {}
    cluster.advance(0.005)
    assert cluster.values("us-1", "test:c") == {"first": 1, "second": 2}
    sent = cluster.engines["eu-1"].peers
    assert (sent["eu-2"].updates_sent, sent["us-1"].updates_sent) == (2, 1)  # us: one merged
    assert cluster.engines["eu-1"].peer_holds("eu-2", "test:c", 2)
    assert cluster.engines["eu-1"].peer_holds("us-1", "test:c", 2)


def test_frames_to_another_process_of_the_region_are_not_deflated() -> None:
    """Deflating costs both ends more CPU than the bytes cost on loopback or a LAN."""
    regions = {"eu-1": "eu", "eu-2": "eu", "us-1": "us"}
    cluster = MemoryCluster(list(regions), regions=regions)
    cluster.full_mesh()
    cluster.advance(0.05)
    kinds: dict[str, set[int]] = {"eu-2": set(), "us-1": set()}

    def tap(src: str, dst: str, frames: list[bytes]) -> list[bytes]:
        if src == "eu-1":
            kinds[dst].update(frame[0] for frame in frames)
        return frames

    cluster.tamper = tap
    cluster.put("eu-1", "test:z", "k", "a long value that deflates well " * 20)
    cluster.advance(0.05)
    assert codec.FrameType.COMPRESSED in kinds["us-1"]
    assert codec.FrameType.UPDATE in kinds["eu-2"]
    assert codec.FrameType.COMPRESSED not in kinds["eu-2"]
    assert cluster.values("eu-2", "test:z") == cluster.values("us-1", "test:z") != {}


def test_another_process_of_the_region_is_not_a_second_region_for_ack_regions() -> None:
    regions = {"eu-1": "eu", "eu-2": "eu", "us-1": "us"}
    cluster = MemoryCluster(list(regions), regions=regions)
    cluster.full_mesh()
    cluster.advance(0.05)
    cluster.cut("eu-1", "us-1")
    event_no = cluster.put("eu-1", "test:r", "k", 1)
    cluster.advance(0.05)
    eu_1 = cluster.engines["eu-1"]
    assert eu_1.peer_holds("eu-2", "test:r", event_no)
    assert eu_1.regions_holding("test:r", event_no) == 0
    cluster.connect("eu-1", "us-1")
    cluster.advance(0.05)
    later = cluster.put("eu-1", "test:s", "k", 2)  # a new document: held once us-1 acks it
    cluster.advance(0.05)
    assert eu_1.regions_holding("test:s", later) == 1


def test_equal_windows_keep_one_outbox_for_every_link() -> None:
    regions = {"eu-1": "eu", "eu-2": "eu", "us-1": "us"}
    settings = SyncSettings(coalesce_ms=5, coalesce_region_ms=5)
    cluster = MemoryCluster(list(regions), settings=settings, regions=regions)
    cluster.full_mesh()
    cluster.advance(0.05)
    cluster.put("eu-1", "test:c", "k", 1)
    cluster.pump()
    assert cluster.values("eu-2", "test:c") == {} == cluster.values("us-1", "test:c")
    cluster.advance(0.005)
    assert cluster.values("eu-2", "test:c") == {"k": 1} == cluster.values("us-1", "test:c")


def test_without_relay_a_partial_partition_waits_for_anti_entropy() -> None:
    cluster = MemoryCluster(["a", "b", "c"], settings=SyncSettings(relay=False, anti_entropy_s=1))
    cluster.connect("a", "c")
    cluster.connect("b", "c")
    cluster.put("a", "test:r", "from-a", 1)
    cluster.advance(0.05)
    assert cluster.values("b", "test:r") == {}
    cluster.advance(2.5)
    assert cluster.values("b", "test:r") == {"from-a": 1}


def test_delete_only_divergence_is_repaired() -> None:
    cluster = MemoryCluster(["eu", "us"])
    cluster.connect("eu", "us")
    cluster.put("eu", "test:d", "doomed", "x")
    cluster.put("eu", "test:d", "kept", "y")
    cluster.advance(0.02)
    cluster.cut("eu", "us")
    cluster.delete("eu", "test:d", "doomed")
    eu, us = cluster.engines["eu"], cluster.engines["us"]
    # The trap: a pure delete leaves the state vectors equal.
    assert eu.docs["test:d"].get_state() == us.docs["test:d"].get_state()
    assert eu.digest("test:d") != us.digest("test:d")
    cluster.connect("eu", "us")
    cluster.advance(0.02)
    assert cluster.values("us", "test:d") == {"kept": "y"}
    assert len(cluster.digests("test:d")) == 1


# COMPRESSED (protocol 3) carries UPDATE, STEP2 or DIGESTS: lost like them
DATA_FRAMES = (codec.FrameType.UPDATE, codec.FrameType.STEP2, codec.FrameType.COMPRESSED)


def _lossy(rng: random.Random, drop: float, dup: float, reorder: float):  # type: ignore[no-untyped-def]
    """Drop, duplicate and shuffle data frames (never the handshake, which a socket would kill)."""

    def tamper(src: str, dst: str, frames: list[bytes]) -> list[bytes]:
        out: list[bytes] = []
        for frame in frames:
            data_frame = frame[0] in DATA_FRAMES
            if data_frame and rng.random() < drop:
                continue
            out.append(frame)
            if data_frame and rng.random() < dup:
                out.append(frame)
        if rng.random() < reorder:
            rng.shuffle(out)
        return out

    return tamper


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("eu_versions", [(2, 3), (2, 2)], ids=["all-new", "eu-protocol-2"])
def test_dropped_duplicated_reordered_frames_still_converge(
    seed: int, eu_versions: tuple[int, int]
) -> None:
    rng = random.Random(seed)
    cluster = MemoryCluster(
        ["eu", "us", "ap"],
        settings=SyncSettings(anti_entropy_s=0.5, peer_timeout_s=60),
        seed=seed,
        versions={"eu": eu_versions},
    )
    cluster.full_mesh()
    cluster.tamper = _lossy(rng, drop=0.3, dup=0.3, reorder=0.3)
    for i in range(60):
        name = rng.choice(cluster.names)
        present = sorted(cluster.values(name, "test:x"))
        if i % 7 == 6 and present:
            cluster.delete(name, "test:x", rng.choice(present))
        else:
            cluster.put(name, "test:x", f"k{i}", i)
        cluster.advance(0.01)
    cluster.tamper = None
    cluster.advance(2.0)
    assert len(cluster.digests("test:x")) == 1
    assert (
        cluster.values("eu", "test:x")
        == cluster.values("us", "test:x")
        == cluster.values("ap", "test:x")
    )


@settings(max_examples=30, deadline=None)
@given(
    ops=st.lists(
        st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(0, 4), st.integers(0, 9)),
        min_size=1,
        max_size=40,
    ),
    cut_at=st.integers(0, 40),
)
def test_any_writes_with_a_partition_converge_after_heal(
    ops: list[tuple[str, int, int]], cut_at: int
) -> None:
    cluster = MemoryCluster(["a", "b", "c"], settings=SyncSettings(anti_entropy_s=0.5))
    cluster.full_mesh()
    for index, (name, key, value) in enumerate(ops):
        if index == cut_at:
            cluster.cut("a", "b")
        cluster.put(name, "test:h", f"k{key}", value)
        cluster.advance(0.005)
    if not any({w.a, w.b} == {"a", "b"} for w in cluster.wires):
        cluster.connect("a", "b")
    cluster.advance(1.0)
    assert len(cluster.digests("test:h")) == 1


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ({"outsiders": {"evil"}}, "evil failed authentication: not in the cluster keyring"),
        ({"impostors": {"evil"}}, "evil failed authentication (its signature does not match"),
    ],
    ids=["unknown-node", "member-id-with-another-key"],
)
def test_a_node_without_its_keyring_key_is_refused_and_nothing_is_exchanged(
    options: dict[str, set[str]], reason: str
) -> None:
    cluster = MemoryCluster(["eu", "evil"], **options)  # type: ignore[arg-type]
    cluster.put("eu", "test:s", "secret", "data")
    cluster.put("evil", "test:s", "forged", "value")
    cluster.connect("eu", "evil")
    cluster.advance(0.1)
    assert cluster.links_up("eu") == []
    assert cluster.engines["eu"].up_peers() == [] == cluster.engines["evil"].up_peers()
    assert any(reason in r for r in cluster.closed_reasons("eu")), cluster.closed_reasons("eu")
    assert cluster.values("evil", "test:s") == {"forged": "value"}
    assert cluster.values("eu", "test:s") == {"secret": "data"}


def test_incompatible_versions_refuse_each_other_with_a_reason() -> None:
    cluster = MemoryCluster(["old", "new"], versions={"old": (2, 2), "new": (3, 4)})
    cluster.connect("old", "new")
    reasons = cluster.closed_reasons("old") + cluster.closed_reasons("new")
    assert any("incompatible protocol" in r and "3..4" in r for r in reasons)
    assert cluster.links_up("old") == []


def test_compatible_versions_negotiate_the_highest_common() -> None:
    cluster = MemoryCluster(["old", "new"], versions={"old": (2, 2), "new": (2, 3)})
    cluster.connect("old", "new")
    assert cluster.links_up("new") == ["old"]
    cluster.put("new", "test:v", "k", "v")
    cluster.advance(0.02)
    assert cluster.values("old", "test:v") == {"k": "v"}


def _authenticated_pair() -> tuple[MemoryCluster, int]:
    cluster = MemoryCluster(["eu", "us"])
    wire = cluster.connect("eu", "us")
    cluster.put("us", "test:g", "safe", "yes")
    cluster.advance(0.02)
    return cluster, wire.link_b


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (b"\xff\x00\x01", "unknown frame type"),
        (b"", "empty frame"),
        (bytes([codec.FrameType.UPDATE]) + b"\x05", "frame ends"),
        (codec.encode(codec.Update(9, "test:g", b"\x07garbage-update")), "rejected"),
        (codec.encode(codec.Update(9, "bad id!", b"\x00\x00")), "invalid document id"),
        (codec.encode(codec.Ack(1)) + b"trailing", "trailing bytes"),
    ],
)
def test_garbage_frames_get_an_error_and_disconnect(frame: bytes, reason: str) -> None:
    cluster, us_link = _authenticated_pair()
    us = cluster.engines["us"]
    before = us.digest("test:g")
    us.receive(us_link, frame, cluster.now)
    assert us.link_state(us_link) is LinkState.CLOSED
    outgoing = us.take_outgoing(us_link)
    error = codec.decode(outgoing[-1], 1 << 20)
    assert isinstance(error, codec.Error) and reason in error.reason
    assert us.digest("test:g") == before
    assert "bad id!" not in us.docs


def test_oversized_frame_is_refused_before_decoding() -> None:
    cluster = MemoryCluster(["eu", "us"], settings=SyncSettings(max_frame_bytes=1024))
    wire = cluster.connect("eu", "us")
    us = cluster.engines["us"]
    big = codec.encode(codec.Update(5, "test:big", b"\x00" * 2000))
    us.receive(wire.link_b, big, cluster.now)
    error = codec.decode(us.take_outgoing(wire.link_b)[-1], 1 << 20)
    assert isinstance(error, codec.Error) and error.code == codec.ErrorCode.TOO_LARGE
    assert "test:big" not in us.docs


def test_data_before_authentication_is_refused() -> None:
    cluster = MemoryCluster(["eu", "us"])
    us = cluster.engines["us"]
    link = us.open_link(0.0, initiator=False)
    us.take_outgoing(link)
    us.receive(link, codec.encode(codec.Update(1, "test:x", b"\x00\x00")), 0.0)
    error = codec.decode(us.take_outgoing(link)[-1], 1 << 20)
    assert isinstance(error, codec.Error) and error.code == codec.ErrorCode.UNAUTHENTICATED
    assert "test:x" not in us.docs


def test_duplicate_links_collapse_to_one_on_both_sides() -> None:
    cluster = MemoryCluster(["eu", "us"])
    cluster.connect("eu", "us")
    cluster.connect("us", "eu")
    cluster.advance(0.02)
    assert len(cluster.wires) == 1
    assert cluster.engines["eu"].up_peers() == ["us"] and cluster.engines["us"].up_peers() == ["eu"]
    cluster.put("us", "test:dup", "k", "v")
    cluster.advance(0.02)
    assert cluster.values("eu", "test:dup") == {"k": "v"}


def test_a_duplicate_link_is_closed_not_refused() -> None:
    """Two nodes that dial each other at once close one link as a duplicate, whichever end
    finishes its handshake first: that is no refusal (an operator reads `links_total{outcome=
    "refused"}` and the "link refused" warning as a peer that failed authentication or spoke
    the wrong version)."""
    for first, second in (("eu", "us"), ("us", "eu")):
        cluster = MemoryCluster(["eu", "us"])
        cluster.connect(first, second)
        cluster.connect(second, first)
        cluster.advance(0.02)
        closed = [
            event
            for name in ("eu", "us")
            for event in cluster.events[name]
            if isinstance(event, LinkClosed)
        ]
        assert closed and all("duplicate link" in event.reason for event in closed)
        assert not [event.reason for event in closed if event.refused]


def test_a_duplicate_link_closed_tells_the_other_peers_nothing_but_a_lost_peer_does() -> None:
    """Both nodes of a pair dial each other at start-up, and one link is closed as a duplicate:
    the pair stays linked, so neither announces its links nor offers its digests to the third
    node (9 regions started 43 such closes, each answered by 16 frames). Losing the pair's
    only link still does both."""
    cluster = MemoryCluster(["eu", "us", "ap"])
    for a, b in (("us", "eu"), ("eu", "ap"), ("us", "ap")):
        cluster.connect(a, b)
    cluster.advance(0.02)
    sent_to_ap = {name: cluster.engines[name].peers["ap"].frames_sent for name in ("eu", "us")}
    # eu dials too: both ends keep the link the smaller id dialed, so the link that was up
    # (dialed by us) is the one closed.
    cluster.connect("eu", "us")
    cluster.advance(0.02)
    assert cluster.engines["eu"].up_peers() == ["ap", "us"]
    assert len([w for w in cluster.wires if {w.a, w.b} == {"eu", "us"}]) == 1
    for name, before in sent_to_ap.items():
        assert cluster.engines[name].peers["ap"].frames_sent == before, name
    cluster.cut("eu", "us")
    cluster.advance(0.02)
    for name, before in sent_to_ap.items():
        assert cluster.engines[name].peers["ap"].frames_sent > before, name


def test_a_reconnect_from_the_same_side_counts_as_a_lost_peer() -> None:
    """A node that dials a peer it still has a link to (it saw that link die; the peer may
    have restarted) replaces a link that may be stale: the peer tells the others, as when a
    link is lost, so they pull what the lost process may have sent only to it."""
    cluster = MemoryCluster(["eu", "us", "ap"])
    for a, b in (("eu", "us"), ("eu", "ap"), ("us", "ap")):
        cluster.connect(a, b)
    cluster.advance(0.02)
    # eu's end of the eu -> us link dies; us has not noticed yet.
    wire = next(w for w in cluster.wires if (w.a, w.b) == ("eu", "us"))
    cluster.wires.remove(wire)
    cluster.engines["eu"].close_link(wire.link_a, cluster.now, "connection reset")
    cluster.pump()
    before = cluster.engines["us"].peers["ap"].frames_sent
    cluster.connect("eu", "us")  # eu dials again: us closes the older link eu dialed
    cluster.advance(0.02)
    assert cluster.engines["us"].up_peers() == ["ap", "eu"]
    assert cluster.engines["us"].peers["ap"].frames_sent > before


def test_acks_give_lag_and_tell_what_the_peer_holds() -> None:
    cluster = MemoryCluster(["eu", "us", "ap"])
    cluster.full_mesh()
    event_no = cluster.put("eu", "test:ack", "k", "v")
    eu = cluster.engines["eu"]
    assert not eu.peer_holds("us", "test:ack", event_no)
    cluster.advance(0.02)
    assert eu.peer_holds("us", "test:ack", event_no) and eu.peer_holds("ap", "test:ack", event_no)
    assert eu.peers["us"].lag_samples and eu.peers["us"].doc_lag["test:ack"] >= 0


def test_a_document_created_after_link_up_is_held_once_acked() -> None:
    cluster = MemoryCluster(["eu", "us"])
    cluster.put("eu", "test:before", "k", "v")  # changes before the link exists
    cluster.connect("eu", "us")
    cluster.advance(0.02)
    event_no = cluster.put("eu", "test:after", "k", "v")
    cluster.advance(0.02)
    assert cluster.engines["eu"].peer_holds("us", "test:after", event_no)


def test_changes_made_before_link_up_are_held_only_after_anti_entropy_covers_them() -> None:
    cluster = MemoryCluster(["eu", "us"], settings=SyncSettings(anti_entropy_s=3600))
    early = cluster.put("eu", "test:early", "k", "v")
    cluster.connect("eu", "us")  # link-up digests pull test:early with a STEP1/STEP2
    cluster.advance(0.02)
    assert cluster.values("us", "test:early") == {"k": "v"}
    assert cluster.engines["eu"].peer_holds("us", "test:early", early)


def test_idle_link_is_kept_alive_and_a_silent_peer_times_out() -> None:
    cluster = MemoryCluster(["eu", "us"], settings=SyncSettings(heartbeat_s=1, peer_timeout_s=3))
    cluster.connect("eu", "us")
    cluster.advance(10, step=0.1)
    assert cluster.engines["eu"].up_peers() == ["us"]
    cluster.tamper = lambda src, dst, frames: []  # the network goes silent, the socket stays open
    cluster.advance(5, step=0.1)
    assert cluster.engines["eu"].up_peers() == []
    assert any("no frame from peer" in r for r in cluster.closed_reasons("eu"))


def test_a_node_refuses_to_link_to_itself() -> None:
    cluster = MemoryCluster(["eu"])
    eu = cluster.engines["eu"]
    a = eu.open_link(0, initiator=True)
    b = eu.open_link(0, initiator=False)
    eu.receive(b, eu.take_outgoing(a)[0], 0)
    assert eu.link_state(b) is LinkState.CLOSED
    assert any("itself" in getattr(e, "reason", "") for e in eu.take_events())


def test_queue_overflow_cuts_the_link() -> None:
    cluster = MemoryCluster(["eu", "us"], settings=SyncSettings(max_queue_bytes=4096))
    wire = cluster.connect("eu", "us")
    eu = cluster.engines["eu"]
    for i in range(200):  # nobody drains eu's outbox in between
        with eu.writing("test:q", cluster.now) as doc:
            doc.get("kv", type=Map)[f"k{i}"] = "x" * 50
        eu.tick(cluster.now + 1)
    assert eu.link_state(wire.link_a) is LinkState.CLOSED
    assert any("queue" in e.reason for e in eu.take_events() if hasattr(e, "reason"))


def test_lacking_names_what_a_document_could_not_integrate() -> None:
    """`sync.digest.lacking` (called after applying an update to a copy): items of the update
    left pending (they build on items the document lacks), deletions of items it lacks, or
    None when all of it landed."""
    from pycrdt import Doc

    from meridian.sync.digest import lacking

    source: Doc[Any] = Doc()
    entries = source.get("m", type=Map)
    entries["a"] = "1"
    first = source.get_update()
    before_b = source.get_state()
    entries["b"] = "2"
    adds_b = source.get_update(before_b)
    before_delete = source.get_state()
    del entries["a"]
    deletes_a = source.get_update(before_delete)

    def after(*updates: bytes) -> bytes:
        doc: Doc[Any] = Doc()
        for update in updates:
            doc.apply_update(update)
        return doc.get_state()

    assert lacking(after(first), first) is None
    assert lacking(after(adds_b), adds_b) == "items"  # b builds on a, which is missing
    assert lacking(after(first, adds_b), adds_b) is None
    assert lacking(after(deletes_a), deletes_a) == "deletions"
    assert lacking(after(first, deletes_a), deletes_a) is None
