"""Ports for local clusters (node.localcluster.free_ports): free, distinct, and outside the
kernel's ephemeral range, where an outgoing connection could take one before the node binds."""

from __future__ import annotations

import socket
from pathlib import Path

from meridian.node import localcluster
from meridian.node.localcluster import LOCAL_PORTS, free_ports


def _ephemeral_range() -> range:
    low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    return range(int(low), int(high) + 1)


def test_local_ports_are_free_distinct_and_never_ephemeral() -> None:
    ports = free_ports(40)
    assert len(set(ports)) == 40 and all(port in LOCAL_PORTS for port in ports)
    ephemeral = _ephemeral_range()
    assert not any(port in ephemeral for port in ports)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", ports[0]))  # free when drawn: a node can bind it
        taken.listen()
        assert not localcluster._bindable(ports[0])  # so a port in use is never drawn


def test_the_range_can_be_narrowed_for_clusters_started_side_by_side() -> None:
    """Parallel test workers each draw from a slice of their own (tests/conftest.py)."""
    assert localcluster._local_ports("21000-21999") == range(21000, 22000)
    assert localcluster._local_ports(None) == range(20_000, 32_000)
    for bad in ("21000", "a-b", "30000-20000", "80-90"):
        try:
            localcluster._local_ports(bad)
        except SystemExit as refusal:
            assert localcluster.PORTS_ENV in str(refusal)
        else:
            raise AssertionError(f"{bad!r} was accepted")
