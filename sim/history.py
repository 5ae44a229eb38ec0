"""What a simulation run records, and the final states the checkers compare.

The history is plain data: every write (who, where, what, when, whether and when the client was
told it is safe), a timeline (faults, crashes, restarts, link changes, heal, convergence),
replication-lag samples, free-form notes a workload may add, and the simulation's own books for
the reference checkers (``sim.ledger``): when each node durably held each put and move record,
every HLC stamp drawn, every name claim and account version seen. The checkers are pure functions
of a :class:`History` and the :class:`FinalStates`; :meth:`History.to_jsonl` serialises it
canonically, so one seed gives byte-identical files.

Causality between writes is recorded with Yjs identities: a put creates one item, identified by
``(client id, clock)``; ``seen`` is the writer's state vector of the document just before the
write, and ``replaced`` the write whose value the writer saw under the key. ``b.knew(a)`` holds
when either shows that ``a`` had reached ``b``'s writer. Both are needed: Yrs may show a value
whose item is still waiting for a causal predecessor from another node, and such an item is not
counted in the state vector yet (see docs/simulator.md, "Findings").
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

from pycrdt import Doc

from meridian.sim import refdocs

KV_ROOT = "kv"  # the map the key-value workload writes in every test document
KV_DOC_PREFIX = "test:"  # the key-value workload's documents (nothing to the game service)
Item = tuple[int, int]  # a Yjs item id: (client id, clock)


def state_vector(doc: Doc[Any]) -> dict[int, int]:
    """The document's state vector as {client id: number of items integrated}."""
    return refdocs.state_vector(doc)


def write_thing(write_id: int) -> str:
    """The key of a put in ``History.held``."""
    return f"write:{write_id}"


def move_thing(gid: str, key: str) -> str:
    """The key of a move record in ``History.held``."""
    return f"move:{gid}|{key}"


def _time(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


@dataclass
class WriteRecord:
    """One write issued by a workload, and what became of it."""

    write_id: int
    t: float
    node: str
    incarnation: int
    doc: str
    key: str
    op: str  # "put" or "delete"
    value: str | None
    event_no: int  # the writer engine's change number
    item: Item | None  # the put's Yjs item id; a delete creates no item
    seen: dict[int, int]  # the writer's state vector of the document just before the write
    replaced: int | None  # the write whose value the writer saw under this key, if any
    durable_at: float | None = None
    replicated_at: float | None = None
    outcome: str = "pending"  # acked | timeout | node-down | pending
    acked_at: float | None = None

    @property
    def acknowledged(self) -> bool:
        return self.outcome == "acked"

    def saw(self, item: Item | None) -> bool:
        """Whether the writer's state vector already counted ``item`` when making this write."""
        return item is not None and self.seen.get(item[0], 0) > item[1]

    def knew(self, other: WriteRecord) -> bool:
        """Whether ``other`` had reached this write's writer when it wrote."""
        return self.replaced == other.write_id or self.saw(other.item)

    def describe(self) -> str:
        what = f"{self.key}={self.value!r}" if self.op == "put" else f"del {self.key}"
        told = f"acked at {self.acked_at:.3f}" if self.acked_at is not None else self.outcome
        return (
            f"write #{self.write_id} on {self.node} at {self.t:.3f} s: {self.doc} {what} ({told})"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "write",
            "id": self.write_id,
            "t": _time(self.t),
            "node": self.node,
            "incarnation": self.incarnation,
            "doc": self.doc,
            "key": self.key,
            "op": self.op,
            "value": self.value,
            "event_no": self.event_no,
            "item": list(self.item) if self.item else None,
            "seen": sorted(self.seen.items()),
            "replaced": self.replaced,
            "durable_at": _time(self.durable_at),
            "replicated_at": _time(self.replicated_at),
            "acked_at": _time(self.acked_at),
            "outcome": self.outcome,
        }


@dataclass(frozen=True)
class TimelineEvent:
    """Something that happened to the cluster: fault, crash, restart, link change, heal."""

    t: float
    kind: str
    node: str | None
    detail: str
    peer: str | None = None

    def describe(self) -> str:
        where = f"{self.node}" + (f"->{self.peer}" if self.peer else "") if self.node else ""
        return f"{self.t:.3f} s {self.kind} {where} {self.detail}".rstrip()

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "timeline",
            "t": _time(self.t),
            "kind": self.kind,
            "node": self.node,
            "peer": self.peer,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class LagSample:
    """How long a put took to reach another node (written at ``t`` on origin)."""

    t: float
    origin: str
    target: str
    lag: float
    write_id: int = -1  # the put's WriteRecord

    @property
    def link(self) -> str:
        return f"{self.origin}->{self.target}"


@dataclass(frozen=True)
class Retransmission:
    """A batch of frames that lost a TCP segment on the way (the network's ``loss``): sent at
    ``t`` from ``src`` to ``dst``, it arrived at ``arrival``, ``wait_s`` later than it would have
    (a retransmission timeout, doubled for each retransmission lost too)."""

    t: float
    src: str
    dst: str
    wait_s: float
    arrival: float

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "retransmit",
            "t": _time(self.t),
            "link": f"{self.src}->{self.dst}",
            "wait": _time(self.wait_s),
            "arrival": _time(self.arrival),
        }


@dataclass(frozen=True)
class MergeRecord:
    """A merge a node's game service made (``meridian_merges_total{kind}`` in production)."""

    t: float
    node: str
    kind: str  # name, double_login, same_ply, two_games
    detail: str

    def describe(self) -> str:
        return f"{self.t:.3f} s merge on {self.node}: {self.kind}: {self.detail}"

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "merge",
            "t": _time(self.t),
            "node": self.node,
            "kind": self.kind,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class StampRecord:
    """An HLC stamp a node's game service drew (``kind`` "now" or "observe"), or the clock's
    start (``kind`` "start", ``stamp`` the persisted last stamp or ""), with the node's physical
    wall clock (ms) at that instant (``sim.ledger.RecordingClock``)."""

    t: float
    node: str
    incarnation: int
    kind: str
    physical_ms: int
    stamp: str

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "stamp",
            "t": self.t,
            "node": self.node,
            "incarnation": self.incarnation,
            "kind": self.kind,
            "physical_ms": self.physical_ms,
            "stamp": self.stamp,
        }


@dataclass
class History:
    """Everything recorded during one run (see module docstring)."""

    scenario: str
    seed: int
    nodes: list[str]
    heal_at: float
    end_at: float
    ack_regions: int = 0  # regions besides the writer that must hold a change to acknowledge it
    writes: list[WriteRecord] = field(default_factory=list)
    timeline: list[TimelineEvent] = field(default_factory=list)
    lag: list[LagSample] = field(default_factory=list)
    notes: list[dict[str, Any]] = field(default_factory=list)
    merges: list[MergeRecord] = field(default_factory=list)
    stamps: list[StampRecord] = field(default_factory=list)
    # thing ("write:<id>", "move:<gid>|<key>") -> node -> when it became durable there
    # (sim.ledger; a node that lost its disk and got it again has a second time)
    held: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    claims: dict[str, str] = field(default_factory=dict)  # every name claim seen: key -> record
    account_versions: list[str] = field(default_factory=list)  # every account version seen
    retransmissions: list[Retransmission] = field(default_factory=list)  # sim.network's losses
    converged_at: float | None = None
    final_at: float | None = None  # when the final states were taken (after the settling)
    # nodes that write records no honest node would (the ``insider`` workload): their peers
    # refuse those records, so these nodes are not expected to agree with the others
    insiders: list[str] = field(default_factory=list)

    @property
    def honest_nodes(self) -> list[str]:
        return [node for node in self.nodes if node not in self.insiders]

    def record(
        self, t: float, kind: str, node: str | None, detail: str, peer: str | None = None
    ) -> None:
        self.timeline.append(TimelineEvent(t, kind, node, detail, peer))

    def notes_of(self, kind: str) -> list[dict[str, Any]]:
        return [note for note in self.notes if note["kind"] == kind]

    def to_jsonl(self) -> str:
        """One JSON object per line: a header, then the timeline, merges, writes, lag samples,
        notes, HLC stamps, durable holdings, name claims, account versions and the batches that
        waited for a TCP retransmission."""
        header = {
            "type": "header",
            "scenario": self.scenario,
            "seed": self.seed,
            "nodes": self.nodes,
            "heal_at": _time(self.heal_at),
            "end_at": _time(self.end_at),
            "ack_regions": self.ack_regions,
            "converged_at": _time(self.converged_at),
            "final_at": _time(self.final_at),
            "insiders": self.insiders,
        }
        records: list[dict[str, Any]] = [header]
        records += [event.to_json() for event in self.timeline]
        records += [merge.to_json() for merge in self.merges]
        records += [write.to_json() for write in self.writes]
        records += [
            {
                "type": "lag",
                "t": _time(s.t),
                "link": s.link,
                "lag": _time(s.lag),
                "write": s.write_id,
            }
            for s in self.lag
        ]
        records += [{"type": "note", **note} for note in self.notes]
        records += [stamp.to_json() for stamp in self.stamps]
        records += [
            {"type": "held", "thing": thing, "node": node, "at": [_time(t) for t in times]}
            for thing, nodes in sorted(self.held.items())
            for node, times in sorted(nodes.items())
        ]
        records += [
            {"type": "claim", "key": key, "record": text}
            for key, text in sorted(self.claims.items())
        ]
        records += [{"type": "account-version", "record": text} for text in self.account_versions]
        records += [retransmission.to_json() for retransmission in self.retransmissions]
        return "".join(json.dumps(record, sort_keys=True) + "\n" for record in records)


@dataclass(frozen=True)
class DocState:
    """One document on one node at the end of a run."""

    digest: bytes
    state_vector: dict[int, int]
    values: dict[str, Any]  # the key-value map (``kv`` root), for messages and checks
    update: bytes  # the whole state, so a checker can rebuild the document in any shape

    def holds(self, item: Item) -> bool:
        return self.state_vector.get(item[0], 0) > item[1]

    @staticmethod
    def of(doc: Doc[Any], digest: bytes) -> DocState:
        values = refdocs.read_map(doc, KV_ROOT)
        return DocState(digest, state_vector(doc), values, doc.get_update())


FinalStates = dict[str, dict[str, DocState]]  # node id -> document id -> state (nodes up at end)


BELIEFS = (
    "view",
    "presence",
)  # notes that say what a node's service believes (not what a client did)


def honest_view(history: History, final: FinalStates) -> tuple[History, FinalStates]:
    """The history and final states as the checkers judge them: without the insider nodes (their
    final states, their services' merges and views; what clients did there stays, as facts).
    The records an insider forges against the peer checks are refused by its peers
    (docs/security.md), and everything it writes after them in that document too, so the
    honest nodes must agree among themselves, not with it."""
    if not history.insiders:
        return history, final
    out = set(history.insiders)
    view = replace(
        history,
        nodes=history.honest_nodes,
        merges=[m for m in history.merges if m.node not in out],
        notes=[n for n in history.notes if n.get("node") not in out or n["kind"] not in BELIEFS],
    )
    return view, {node: states for node, states in final.items() if node not in out}
