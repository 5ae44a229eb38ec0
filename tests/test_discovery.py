"""Zeroconf discovery: two node processes on one network find each other, and only each other.

mDNS needs a multicast-capable interface, and the host's network must not leak into the test,
so the real test runs inside a fresh network namespace (``unshare -n``, root only) whose
loopback has multicast switched on. This file doubles as the program run in that namespace:
``python test_discovery.py orchestrate`` starts two node processes plus one process that
announces a malformed TXT record, and prints what each node found as JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable

import pytest

from meridian.sync.discovery import SERVICE_TYPE, DiscoveredPeer, ZeroconfDiscovery, peer_from_txt

NODES = {"eu-1": 7101, "us-1": 7102}
PROTO = "1"
BOGUS_NAME = f"bogus.{SERVICE_TYPE}"
CHILD_DEADLINE_S = 10.0
SETUP_LOOPBACK = "ip link set lo up && ip link set lo multicast on"


def expected_peer(node_id: str) -> DiscoveredPeer:
    region = node_id.split("-")[0]
    return DiscoveredPeer(node_id, region, PROTO, f"http://127.0.0.1:{NODES[node_id]}")


# ---- tests -----------------------------------------------------------------------------------


def namespace_unavailable() -> str | None:
    """Why a multicast-capable network namespace cannot be made here, or None if it can."""
    if os.geteuid() != 0:
        return "creating a network namespace (unshare -n) needs root"
    for tool in ("unshare", "ip"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    probe = subprocess.run(
        ["unshare", "-n", "sh", "-c", SETUP_LOOPBACK],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    if probe.returncode != 0:
        return f"cannot set up a namespace with multicast loopback: {probe.stderr.strip()}"
    return None


@pytest.mark.integration
def test_two_node_processes_find_each_other_and_ignore_malformed_records() -> None:
    reason = namespace_unavailable()
    if reason is not None:
        pytest.skip(reason)
    command = f"{SETUP_LOOPBACK} && exec {sys.executable} {__file__} orchestrate"
    started = time.monotonic()
    result = subprocess.run(
        ["unshare", "-n", "sh", "-c", command],
        capture_output=True,
        text=True,
        timeout=CHILD_DEADLINE_S + 10,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    reports = {report["node"]: report for report in map(json.loads, result.stdout.splitlines())}
    assert set(reports) == set(NODES), result.stdout
    for node_id, other in (("eu-1", "us-1"), ("us-1", "eu-1")):
        found = [DiscoveredPeer(**peer) for peer in reports[node_id]["found"]]
        assert found == [expected_peer(other)], f"{node_id} found {found}"
        assert any(BOGUS_NAME in line for line in reports[node_id]["ignored"]), reports[node_id]
    assert time.monotonic() - started < 15


@pytest.mark.parametrize(
    ("properties", "complaint"),
    [
        ({b"region": b"eu", b"proto": b"1", b"url": b"http://a:1"}, "'node' is missing"),
        ({b"node": None, b"region": b"eu", b"proto": b"1", b"url": b"http://a:1"}, "'node'"),
        ({b"node": b"\xff", b"region": b"eu", b"proto": b"1", b"url": b"http://a:1"}, "UTF-8"),
        ({b"node": b"Bad Id", b"region": b"eu", b"proto": b"1", b"url": b"http://a:1"}, "node="),
        ({b"node": b"a", b"region": b"eu", b"proto": b"", b"url": b"http://a:1"}, "proto="),
        ({b"node": b"a", b"region": b"eu", b"proto": b"1", b"url": b"ftp://a:1"}, "url="),
    ],
)
def test_malformed_txt_records_are_rejected_with_the_reason(
    properties: dict[bytes, bytes | None], complaint: str
) -> None:
    with pytest.raises(ValueError, match=complaint):
        peer_from_txt(properties)


def test_txt_record_round_trip() -> None:
    peer = expected_peer("eu-1")
    encoded = {key.encode(): value.encode() for key, value in peer.txt_properties().items()}
    assert peer_from_txt(encoded) == peer


def test_own_announcement_must_be_well_formed() -> None:
    with pytest.raises(ValueError, match="url="):
        ZeroconfDiscovery(
            node_id="eu-1", region="eu", proto="1", url="127.0.0.1:7101", port=7101,
            on_found=lambda peer: None,
        )  # fmt: skip


# ---- the programs run inside the network namespace -------------------------------------------


class WarningRecorder(logging.Handler):
    def __init__(self, on_line: Callable[[], object]) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []
        self.on_line = on_line

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())
        self.on_line()


async def run_node(node_id: str) -> None:
    """Announce node_id, wait for the other node and the bogus record, print a JSON report."""
    loop = asyncio.get_running_loop()
    both_seen = asyncio.Event()
    found: list[DiscoveredPeer] = []

    def check() -> None:  # on the loop: zeroconf and logging may call from other threads
        if found and recorder.lines:
            both_seen.set()

    recorder = WarningRecorder(lambda: loop.call_soon_threadsafe(check))
    logging.getLogger("meridian.sync.discovery").addHandler(recorder)

    def on_found(discovered: DiscoveredPeer) -> None:
        found.append(discovered)
        loop.call_soon_threadsafe(check)

    peer = expected_peer(node_id)
    discovery = ZeroconfDiscovery(
        node_id=node_id,
        region=peer.region,
        proto=PROTO,
        url=peer.url,
        port=NODES[node_id],
        on_found=on_found,
        interfaces=["127.0.0.1"],
    )
    await discovery.start()
    with contextlib.suppress(TimeoutError):  # the report then shows what was not seen
        async with asyncio.timeout(CHILD_DEADLINE_S):
            await both_seen.wait()
    await asyncio.sleep(0.3)  # a grace period in which a duplicate or self report would show
    await discovery.close()
    report = {"node": node_id, "found": [dataclasses.asdict(p) for p in found]}
    # One write of the whole line: both nodes share stdout, and print() writes the text and the
    # newline separately when Python runs unbuffered (PYTHONUNBUFFERED), so lines could interleave.
    sys.stdout.write(json.dumps({**report, "ignored": recorder.lines}) + "\n")
    sys.stdout.flush()


async def run_bogus() -> None:
    """Announce a Meridian service whose TXT record is malformed, until killed."""
    from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

    properties = {"node": "Not A Node Id", "region": "eu", "proto": PROTO, "url": "ftp://x"}
    info = AsyncServiceInfo(
        SERVICE_TYPE, BOGUS_NAME, port=7199, properties=properties, parsed_addresses=["127.0.0.1"]
    )
    async with AsyncZeroconf(interfaces=["127.0.0.1"]) as zeroconf:
        await zeroconf.async_register_service(info)
        await asyncio.sleep(CHILD_DEADLINE_S + 5)


def orchestrate() -> int:
    """Run the bogus announcer and both nodes as separate processes; relay the nodes' reports."""
    program = [sys.executable, __file__]
    bogus = subprocess.Popen([*program, "bogus"])
    nodes = [subprocess.Popen([*program, "node", node_id]) for node_id in NODES]
    try:
        return max(node.wait(timeout=CHILD_DEADLINE_S + 5) for node in nodes)
    finally:
        for process in (bogus, *nodes):
            process.kill()  # only the processes started just above
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "orchestrate":
        sys.exit(orchestrate())
    asyncio.run(run_node(sys.argv[2]) if mode == "node" else run_bogus())
