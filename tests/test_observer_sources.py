"""The load observer's adapter (node.observer.LoadObserver) built from plain objects: what it
reads of a node is only `LoadSources` (identity, engine readings, the replicator's listeners, the
service's connections and its write of the presence document, the wall clock), so no node,
socket or store is needed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pycrdt import Doc

from meridian.crdt_models.load import LoadEntry, write_entry
from meridian.crdt_models.presence import META, presence_doc_id
from meridian.crdt_models.records import root_map
from meridian.node.observer import UNKNOWN_REGION, LoadObserver, LoadSources
from meridian.node.rebalance import write_moved
from meridian.sync.engine import DocChanged
from meridian.sync.replicator import ChangeListener

NOW_MS = 1_767_225_600_000


@dataclass(frozen=True)
class Where:
    node_id: str
    region: str


@dataclass
class Engine:
    node_id: str
    keyring: dict[str, Where]
    peers: dict[str, Where]
    docs: dict[str, Doc[Any]] = field(default_factory=dict)
    last_event_no: int = 0
    durable_event_no: int = 0
    backlog: int = 0

    def replication_backlog(self) -> int:
        return self.backlog


@dataclass
class Replicator:
    engine: Engine
    listeners: list[ChangeListener] = field(default_factory=list)
    writes: list[str] = field(default_factory=list)

    def write(self, doc_id: str, change: Callable[[Doc[Any]], Any]) -> int:
        doc = self.engine.docs.setdefault(doc_id, Doc())
        with doc.transaction():
            change(doc)
        self.writes.append(doc_id)
        self.engine.last_event_no += 1
        return self.engine.last_event_no


@dataclass
class Service:
    """The service's connections, and its write of this node's presence document (here
    straight through the replicator)."""

    replicator: Replicator
    node_id: str
    conns: dict[str, object] = field(default_factory=dict)

    def write_own_presence(self, change: Callable[[Doc[Any]], Any]) -> int:
        return self.replicator.write(presence_doc_id(self.node_id), change)


@dataclass
class PlainNode:
    config: Where
    engine: Engine
    replicator: Replicator
    service: Service
    wall_ms: Callable[[], int] = lambda: NOW_MS


def plain_node() -> PlainNode:
    engine = Engine(
        "eu-1",
        keyring={"eu-1": Where("eu-1", "eu"), "ap-1": Where("ap-1", "ap")},
        peers={"us-1": Where("us-1", "us")},
    )
    replicator = Replicator(engine)
    return PlainNode(Where("eu-1", "eu"), engine, replicator, Service(replicator, "eu-1"))


def published(node: PlainNode, node_id: str, **values: Any) -> None:
    """A peer's load entry, as its presence document would bring it."""
    doc = node.engine.docs.setdefault(presence_doc_id(node_id), Doc())
    with doc.transaction():
        write_entry(doc, LoadEntry(node_id, "ignored", NOW_MS, 0, 0.0, 0.0, 0.0, 0, 0))
        meta = root_map(doc, META)
        for name, value in values.items():
            meta[name] = value


async def test_an_observer_of_plain_objects_counts_publishes_and_shows_the_cluster() -> None:
    node = plain_node()
    sources: LoadSources = node  # the protocol is all it needs
    times, cpu = [100.0], [2.0]
    observer = LoadObserver(
        sources, clock=lambda: times[0], cpu_seconds=lambda: cpu[0], sample_s=3600
    )
    node.service.conns.update({"c1": object(), "c2": object(), "c3": object()})
    node.engine.last_event_no, node.engine.durable_event_no, node.engine.backlog = 10, 7, 4
    observer.start()
    assert len(node.replicator.listeners) == 1
    for change in (
        DocChanged("game:g1", b"", None, 11),  # a local move: counted
        DocChanged("game:g1", b"", "us-1", 12),  # a peer's: not this process's load
        DocChanged("acct:alice", b"", None, 13),  # local, but no game
        DocChanged("game:g2", b"", None, 14),
    ):
        for listener in node.replicator.listeners:
            listener(change)
    assert observer.moves_total == 2

    await asyncio.sleep(0.01)  # the task's first sample publishes at once
    assert node.replicator.writes == [presence_doc_id("eu-1")]
    own = {e.node: e for e in observer.entries()}["eu-1"]
    assert (own.region, own.connections, own.store_queue, own.replication_backlog) == (
        "eu",
        3,
        3,
        4,
    )

    # Peers' entries: the region from the keyring, else the peer link's, else unknown.
    published(node, "us-1")
    published(node, "ap-1")
    published(node, "zz-9")
    doc = node.engine.docs[presence_doc_id("us-1")]
    with doc.transaction():
        write_moved(root_map(doc, META), {"eu-1": 2})
    regions = {e.node: e.region for e in observer.entries()}
    assert regions == {"eu-1": "eu", "us-1": "us", "ap-1": "ap", "zz-9": UNKNOWN_REGION}
    view = observer.view()
    assert [r.region for r in view.regions] == sorted(["eu", "us", "ap", UNKNOWN_REGION])
    assert (view.moved_in("eu-1"), view.moved_out("us-1")) == (2, 2)

    await observer.stop()
    assert node.replicator.listeners == []


def test_a_sample_reads_the_counters_at_one_instant() -> None:
    node = plain_node()
    observer = LoadObserver(node, clock=lambda: 5.0, cpu_seconds=lambda: 1.5)
    node.service.conns["c1"] = object()
    node.engine.last_event_no, node.engine.durable_event_no = 3, 5  # durable ahead: no queue
    taken = observer.sample(0.25)
    assert (taken.now, taken.connections, taken.cpu_seconds, taken.loop_lag_s) == (
        5.0,
        1,
        1.5,
        0.25,
    )
    assert (taken.store_queue, taken.replication_backlog, taken.moves_total) == (0, 0, 0)
