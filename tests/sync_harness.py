"""In-memory wiring of several SyncEngines for the sans-IO protocol tests.

Each pair of engines can be linked like a websocket would: frames are delivered in order unless a
test installs a `tamper` function that drops, duplicates or reorders them. Time is virtual, and
every engine's wall clock is `EPOCH_MS` plus the virtual time (plus its `clock_offsets_ms`).

Every node gets a deterministic Ed25519 key (from the seed) and all share one keyring, except
`outsiders`: each of those holds a key the others' keyring does not list. `keyrings` replaces
the keyring one node uses (to remove a node, say).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pycrdt import Map

from meridian.sync.engine import (
    SUPPORTED_VERSIONS,
    DocChanged,
    Event,
    LinkClosed,
    LinkUp,
    PeerRefused,
    SyncEngine,
    Wants,
)
from meridian.sync.identity import Keyring, NodeIdentity
from meridian.sync.settings import SyncSettings

EPOCH_MS = 1_750_000_000_000
Tamper = Callable[[str, str, list[bytes]], list[bytes]]


def identity_for(name: str, seed: int = 1, region: str | None = None) -> NodeIdentity:
    """The test key of node `name` (its region defaults to its name)."""
    key_seed = random.Random(f"{seed}:{name}").randbytes(32)
    return NodeIdentity.from_seed(name, region or name, key_seed)


@dataclass
class Wire:
    """Both ends of one in-memory link."""

    a: str
    link_a: int
    b: str
    link_b: int

    def other(self, name: str, link_id: int) -> tuple[str, int] | None:
        if (name, link_id) == (self.a, self.link_a):
            return self.b, self.link_b
        if (name, link_id) == (self.b, self.link_b):
            return self.a, self.link_a
        return None


@dataclass
class MemoryCluster:
    names: list[str]
    settings: SyncSettings = field(default_factory=lambda: SyncSettings(coalesce_ms=5))
    seed: int = 1
    outsiders: set[str] = field(default_factory=set)
    impostors: set[str] = field(default_factory=set)  # use their name with another key
    keyrings: dict[str, Keyring] = field(default_factory=dict)
    regions: dict[str, str] = field(default_factory=dict)
    versions: dict[str, tuple[int, int]] = field(default_factory=dict)
    clock_offsets_ms: dict[str, int] = field(default_factory=dict)
    max_ahead_ms: int = 60_000
    auto_durable: bool = True  # False: the test calls engine.durable_through itself
    wants: Wants | None = None  # a placement predicate given to every engine
    tamper: Tamper | None = None
    now: float = 0.0

    def __post_init__(self) -> None:
        self.identities = {
            name: identity_for(name, self.seed, self.regions.get(name)) for name in self.names
        }
        members = [i.entry() for n, i in self.identities.items() if n not in self.outsiders]
        self.keyring = Keyring(members)
        for name in self.impostors:
            self.identities[name] = identity_for(name, self.seed + 1, self.regions.get(name))
        self.engines: dict[str, SyncEngine] = {}
        for index, name in enumerate(self.names):
            self.engines[name] = SyncEngine(
                identity=self.identities[name],
                keyring=self.keyrings.get(name, self._keyring_of(name)),
                settings=self.settings,
                rng=random.Random(self.seed * 1000 + index),
                wall_ms=lambda name=name: self.wall_ms(name),  # type: ignore[misc]
                max_ahead_ms=self.max_ahead_ms,
                versions=self.versions.get(name, SUPPORTED_VERSIONS),
                auto_durable=self.auto_durable,
                wants=self.wants,
            )
        self.wires: list[Wire] = []
        self.events: dict[str, list[Event]] = {name: [] for name in self.names}

    def _keyring_of(self, name: str) -> Keyring:
        if name not in self.outsiders | self.impostors:
            return self.keyring
        return Keyring([*self.keyring.entries.values(), self.identities[name].entry()])

    def wall_ms(self, name: str) -> int:
        return EPOCH_MS + round(self.now * 1000) + self.clock_offsets_ms.get(name, 0)

    def connect(self, a: str, b: str) -> Wire:
        wire = Wire(
            a,
            self.engines[a].open_link(self.now, initiator=True),
            b,
            self.engines[b].open_link(self.now, initiator=False),
        )
        self.wires.append(wire)
        self.pump()
        return wire

    def full_mesh(self) -> None:
        for i, a in enumerate(self.names):
            for b in self.names[i + 1 :]:
                self.connect(a, b)

    def cut(self, a: str, b: str) -> None:
        for wire in [w for w in self.wires if {w.a, w.b} == {a, b}]:
            self.wires.remove(wire)
            self.engines[wire.a].close_link(wire.link_a, self.now, "cut")
            self.engines[wire.b].close_link(wire.link_b, self.now, "cut")
        self.pump()

    def pump(self, max_rounds: int = 10_000) -> None:
        """Deliver frames until no engine has anything left to send."""
        for _ in range(max_rounds):
            moved = False
            for name, engine in self.engines.items():
                for link_id in engine.links_with_output():
                    moved = True
                    self._deliver(name, link_id, engine.take_outgoing(link_id))
                self._handle_events(name)
            if not moved:
                return
        raise AssertionError("frames still moving after max_rounds")

    def _deliver(self, name: str, link_id: int, frames: list[bytes]) -> None:
        wire = next((w for w in self.wires if w.other(name, link_id)), None)
        if wire is None:
            return
        target, target_link = wire.other(name, link_id)  # type: ignore[misc]
        if self.tamper is not None:
            frames = self.tamper(name, target, frames)
        for frame in frames:
            self.engines[target].receive(target_link, frame, self.now)

    def _handle_events(self, name: str) -> None:
        for event in self.engines[name].take_events():
            self.events[name].append(event)
            if isinstance(event, LinkClosed):
                # The transport closes when either side gives up on the link.
                for wire in [w for w in self.wires if w.other(name, event.link_id)]:
                    self.engines[name].take_outgoing(event.link_id)
                    other, other_link = wire.other(name, event.link_id)  # type: ignore[misc]
                    self.wires.remove(wire)
                    self.engines[other].close_link(other_link, self.now, "transport closed")

    def advance(self, seconds: float, step: float = 0.005) -> None:
        """Move virtual time forward, ticking every engine and delivering frames as we go."""
        end = self.now + seconds
        while self.now < end:
            self.now = min(end, self.now + step)
            for engine in self.engines.values():
                engine.tick(self.now)
            self.pump()

    # --- document helpers -------------------------------------------------------------

    def put(self, name: str, doc_id: str, key: str, value: Any) -> int:
        def change(doc: Any) -> None:
            doc.get("kv", type=Map)[key] = value

        return self.engines[name].write(doc_id, change, self.now)

    def delete(self, name: str, doc_id: str, key: str) -> None:
        def change(doc: Any) -> None:
            del doc.get("kv", type=Map)[key]

        self.engines[name].write(doc_id, change, self.now)

    def values(self, name: str, doc_id: str) -> dict[str, Any]:
        doc = self.engines[name].docs.get(doc_id)
        return dict(doc.get("kv", type=Map)) if doc is not None else {}

    def digests(self, doc_id: str) -> set[bytes]:
        return {e.digest(doc_id) for e in self.engines.values() if doc_id in e.docs}

    def closed_reasons(self, name: str) -> list[str]:
        return [e.reason for e in self.events[name] if isinstance(e, LinkClosed)]

    def links_up(self, name: str) -> list[str]:
        return [e.node_id for e in self.events[name] if isinstance(e, LinkUp)]

    def changes(self, name: str) -> list[DocChanged]:
        return [e for e in self.events[name] if isinstance(e, DocChanged)]

    def refused(self, name: str) -> list[PeerRefused]:
        return [e for e in self.events[name] if isinstance(e, PeerRefused)]
