"""Peer protocol 3: version negotiation with protocol 2 nodes and the COMPRESSED frame codec."""

from __future__ import annotations

import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meridian.sync import codec
from meridian.sync.codec import ErrorCode, FrameError, FrameType
from meridian.sync.engine import SUPPORTED_VERSIONS, LinkUp
from tests.sync_harness import MemoryCluster

PREVIOUS_RELEASE = (2, 2)  # release-0.2 speaks only protocol 2
LIMIT = 1 << 20

doc_ids = st.sampled_from(["accounts", "saved", "game:g1", "presence:eu-1", "log:2026-01"]) | (
    st.text("abcdefghij0123456789", min_size=1, max_size=30).map(lambda s: f"test:{s}")
)
# Repetitive payloads (what JSON records look like to deflate) and random ones (which are sent
# as they are, compression not paying).
payloads = st.binary(max_size=4000) | st.builds(
    lambda chunk, n: chunk * n, st.binary(min_size=1, max_size=40), st.integers(1, 200)
)
data_frames = st.one_of(
    st.builds(codec.Update, st.integers(0, 2**63), doc_ids, payloads),
    st.builds(codec.Step2, st.integers(0, 2**63), doc_ids, payloads),
    st.builds(
        codec.Digests,
        st.lists(st.tuples(doc_ids, st.binary(min_size=16, max_size=16)), max_size=80).map(tuple),
    ),
)


def _version_of(cluster: MemoryCluster, name: str) -> int:
    ups = [e for e in cluster.events[name] if isinstance(e, LinkUp)]
    assert ups, f"{name} has no link up"
    return ups[-1].version


def _wire_bytes(cluster: MemoryCluster) -> list[bytes]:
    sent: list[bytes] = []

    def tap(src: str, dst: str, frames: list[bytes]) -> list[bytes]:
        sent.extend(frames)
        return frames

    cluster.tamper = tap
    return sent


# --- negotiation -----------------------------------------------------------------------------


def test_this_release_speaks_2_and_3() -> None:
    assert SUPPORTED_VERSIONS == (2, 3)


def test_a_new_node_and_a_previous_release_node_use_2_and_never_send_compressed_frames() -> None:
    cluster = MemoryCluster(["old", "new"], versions={"old": PREVIOUS_RELEASE})
    sent = _wire_bytes(cluster)
    cluster.connect("old", "new")
    cluster.put("new", "test:big", "k", "record " * 2000)
    cluster.put("old", "test:big", "j", "other " * 2000)
    cluster.advance(0.05)
    assert _version_of(cluster, "old") == _version_of(cluster, "new") == 2
    assert cluster.values("old", "test:big") == cluster.values("new", "test:big")
    assert len(cluster.digests("test:big")) == 1
    assert not [f for f in sent if f[0] == FrameType.COMPRESSED]
    assert not cluster.refused("old") and not cluster.refused("new")


def test_two_new_nodes_use_3_and_a_large_update_travels_compressed() -> None:
    cluster = MemoryCluster(["eu", "us"])
    sent = _wire_bytes(cluster)
    cluster.connect("eu", "us")
    cluster.put("eu", "test:big", "k", "record " * 2000)
    cluster.advance(0.05)
    assert _version_of(cluster, "eu") == _version_of(cluster, "us") == 3
    assert cluster.values("us", "test:big") == {"k": "record " * 2000}
    compressed = [f for f in sent if f[0] == FrameType.COMPRESSED]
    assert compressed and all(len(f) < 1000 for f in compressed)  # 14 KB of text, deflated


def test_a_mixed_cluster_converges_through_the_new_node() -> None:
    """old - new - new2 in a line: what old writes reaches new2 at 2 then 3, and back."""
    cluster = MemoryCluster(["old", "new", "new2"], versions={"old": PREVIOUS_RELEASE})
    cluster.connect("old", "new")
    cluster.connect("new", "new2")
    for name in cluster.names:
        cluster.put(name, "test:mix", name, name * 600)
    cluster.advance(0.1)
    assert len(cluster.digests("test:mix")) == 1
    assert set(cluster.values("old", "test:mix")) == {"old", "new", "new2"}


def test_a_compressed_frame_on_a_protocol_2_link_is_refused_by_name() -> None:
    cluster = MemoryCluster(["old", "new"], versions={"new": PREVIOUS_RELEASE})
    wire = cluster.connect("old", "new")
    frame = codec.compress_frame(codec.encode(codec.Update(1, "test:x", b"\x00" * 4000)))
    assert frame[0] == FrameType.COMPRESSED
    cluster.engines["new"].receive(wire.link_b, frame, cluster.now)
    cluster.pump()
    assert [e.rule for e in cluster.refused("new")] == ["compression_not_negotiated"]
    assert cluster.engines["new"].up_peers() == []


@pytest.mark.parametrize(
    ("frame", "rule"),
    [
        # declares 100 bytes, inflates to 8 MiB: refused after inflating 101
        (bytes([0x30, 100]) + zlib.compress(b"\x12" + b"\x00" * (8 << 20)), "decompression_bomb"),
        # declares more than the frame limit: refused before inflating anything
        (bytes([0x30]) + b"\xff\xff\xff\xff\x0f" + zlib.compress(b"x"), "decompression_bomb"),
        (bytes([0x30, 5]) + b"not deflate", "bad_compression"),
    ],
)
def test_a_decompression_bomb_from_a_peer_is_refused_counted_and_closes_the_link(
    frame: bytes, rule: str
) -> None:
    cluster = MemoryCluster(["eu", "us"])
    wire = cluster.connect("eu", "us")
    cluster.engines["us"].receive(wire.link_b, frame, cluster.now)
    cluster.pump()
    assert [e.rule for e in cluster.refused("us")] == [rule]
    assert cluster.engines["us"].refusals[("eu", rule)] == 1
    assert cluster.engines["us"].up_peers() == []


# --- the codec -------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(data_frames)
def test_every_data_frame_round_trips_compressed_or_not(frame: codec.Frame) -> None:
    plain = codec.encode(frame)
    wire = codec.compress_frame(plain)
    assert len(wire) <= len(plain)
    assert codec.decode(wire, LIMIT, compressed=True) == frame
    if wire[0] == FrameType.COMPRESSED:
        with pytest.raises(FrameError) as refused:
            codec.decode(wire, LIMIT)  # on a protocol 2 link
        assert refused.value.rule == "compression_not_negotiated"


@settings(max_examples=200, deadline=None)
@given(data_frames, st.data())
def test_a_damaged_compressed_frame_is_refused_with_a_frame_error(
    frame: codec.Frame, data: st.DataObject
) -> None:
    wire = bytearray(codec.compress_frame(codec.encode(frame), level=9))
    if wire[0] != FrameType.COMPRESSED:
        return  # not compressible: the plain codec's own tests cover it
    cut = data.draw(st.integers(1, len(wire) - 1))
    with pytest.raises(FrameError):
        codec.decode(bytes(wire[:cut]), LIMIT, compressed=True)
    position = data.draw(st.integers(1, len(wire) - 1))
    wire[position] ^= data.draw(st.integers(1, 255))
    try:
        decoded = codec.decode(bytes(wire), LIMIT, compressed=True)
    except FrameError:
        return
    assert isinstance(decoded, codec.Update | codec.Step2 | codec.Digests)


def test_small_frames_and_control_frames_are_never_compressed() -> None:
    small = codec.encode(codec.Update(1, "test:a", b"x" * 100))
    assert codec.compress_frame(small) == small
    hello = codec.encode(codec.Hello("eu-1", "eu", "m", 2, 3, b"\x00" * 32, "x" * 2000))
    assert codec.compress_frame(hello) == hello


@pytest.mark.parametrize("inner", [FrameType.HELLO, FrameType.AUTH_SIG, FrameType.COMPRESSED])
def test_a_compressed_frame_may_carry_only_data_frames(inner: FrameType) -> None:
    body = bytes([inner]) + b"\x00" * 600
    frame = bytes([FrameType.COMPRESSED]) + bytes([0xD9, 0x04]) + zlib.compress(body)
    with pytest.raises(FrameError) as refused:
        codec.decode(frame, LIMIT, compressed=True)
    assert refused.value.code == ErrorCode.BAD_COMPRESSION
