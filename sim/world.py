"""One simulation run: a scenario and a seed in, a history, final states and verdicts out.

:class:`Simulation` builds the nodes, the network and the workload from the scenario, then runs
three phases on the virtual clock: the faulty phase (workloads acting, faults starting and ending
on schedule), the heal (every fault that is not permanent undone, crashed nodes restarted,
workloads told: writers stop, game bots only react from then on), and the quiet period, during
which it notes when all documents became identical (on the honest nodes: an ``insider``
workload's node keeps the forged records its peers refuse, and the checkers judge the others,
see `sim.history.honest_view`). Then it settles: the game services' timers stop
(their heartbeats would keep the presence documents changing for ever) and the run goes on until
every document is identical (at least ``SETTLE_S``, at most ``SETTLE_MAX_S``); each service then
processes what it holds (as its next tick would), and if it wrote something (a clock's deadline
still runs) the settling goes on, so the final states are not caught mid-flight. Then it takes
every node's final state, each game service's view (which names, games and sessions it believes
in), and runs the checkers.

Everything random is drawn from generators seeded by ``(seed, purpose)``: the network, each
workload, the faults, and each node's engine, dialer, game service and tokens per process start.
A run therefore depends on nothing but the scenario and the seed.

It also keeps the books the checkers need: for each write whether and when it was acknowledged
(durable on the writer's disk, then, with ``ack_regions = k``, held by k peers within
``ack_timeout_s``), and when each put was integrated by each other node (replication lag).
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pycrdt import Map

from meridian.crdt_models.presence import PRESENCE_PREFIX
from meridian.crdt_models.records import map_get, root_map
from meridian.sim.checkers import Verdict
from meridian.sim.clock import NodeClock, Scheduler
from meridian.sim.disk import remove_scratch, scratch_folder
from meridian.sim.history import (
    KV_ROOT,
    DocState,
    FinalStates,
    History,
    LagSample,
    MergeRecord,
    WriteRecord,
    honest_view,
    state_vector,
    write_thing,
)
from meridian.sim.insider import Insider
from meridian.sim.ledger import ACCOUNTS_DOC, GAME_PREFIX, Ledger
from meridian.sim.network import Breakage, Network
from meridian.sim.node import SimNode
from meridian.sim.placementview import keepers, placed_view
from meridian.sim.players import PlayerNet, SimClient
from meridian.sim.presence_watch import OBSERVE_S, PresenceWatch
from meridian.sim.scenario import Scenario
from meridian.sync.digest import EMPTY_DIGEST
from meridian.sync.engine import DocChanged, LinkClosed, LinkUp
from meridian.sync.identity import Keyring, NodeIdentity

MIN_STEP_S = 1e-6
SETTLE_S = 2.0
SETTLE_MAX_S = 10.0
SETTLE_STEP_S = 0.1


@dataclass(frozen=True)
class RunResult:
    scenario: Scenario
    seed: int
    history: History
    final: FinalStates
    verdicts: tuple[Verdict, ...]
    events: int
    frames: int
    wire_bytes: int

    @property
    def ok(self) -> bool:
        return all(verdict.ok for verdict in self.verdicts)

    @property
    def first_failure(self) -> Verdict | None:
        return next((verdict for verdict in self.verdicts if not verdict.ok), None)


class SimPlayers:
    """How game bots get clients in the simulation (``node.botworld.Players``)."""

    def __init__(self, simulation: Simulation) -> None:
        self._simulation = simulation
        self.regions = [spec.region for spec in simulation.scenario.nodes]

    def new_client(self, region: str) -> SimClient:
        return SimClient(self._simulation.player_net, region)

    def now(self) -> float:
        return self._simulation.now


class NodeHandle:
    """A client's view of one node, handed to workloads (``sim.workload.NodeHandle``)."""

    def __init__(self, simulation: Simulation, node: SimNode) -> None:
        self._simulation = simulation
        self._node = node
        self.node_id = node.node_id
        self.region = node.region
        self.players = simulation.players

    @property
    def up(self) -> bool:
        return self._node.up

    def put(self, doc_id: str, key: str, value: str) -> WriteRecord:
        return self._simulation.write(self._node, doc_id, key, value)

    def delete(self, doc_id: str, key: str) -> WriteRecord | None:
        if self.get(doc_id, key) is None:
            return None
        return self._simulation.write(self._node, doc_id, key, None)

    def get(self, doc_id: str, key: str) -> Any:
        doc = self._node.engine.docs.get(doc_id)
        return None if doc is None else map_get(root_map(doc, KV_ROOT), key)

    def wall_time(self) -> float:
        return self._node.clock.wall(self._simulation.now)

    def wall_ms(self) -> int:
        """The node's wall clock as its HLC reads it (ms since the epoch)."""
        return self._node.wall_ms()

    def document_ids(self) -> list[str]:
        return sorted(self._node.engine.docs)

    def document(self, doc_id: str) -> bytes | None:
        """A document this node holds, as its full state (what an insider could read)."""
        doc = self._node.engine.docs.get(doc_id)
        return None if doc is None else doc.get_update()

    def forge(self, doc_id: str, root: str, key: str, value: str) -> None:
        """Write one raw record as this node, bypassing its game service (an insider fault)."""
        self._node.write(doc_id, lambda doc: doc.get(root, type=Map).__setitem__(key, value))

    def note(self, kind: str, **fields: Any) -> None:
        self._simulation.history.notes.append(
            {"t": round(self._simulation.now, 6), "node": self.node_id, "kind": kind, **fields}
        )


class Simulation:
    """A scenario run with one seed (see module docstring)."""

    def __init__(self, scenario: Scenario, seed: int) -> None:
        self.scenario = scenario
        self.seed = seed
        self.scheduler = Scheduler()
        self.rng = self._rng("faults")
        self.network = Network(
            self.scheduler, self._rng("network"), scenario.paths, scenario.connect_timeout_s
        )
        identities = {
            spec.node_id: NodeIdentity.from_seed(
                spec.node_id, spec.region, self._rng(f"key:{spec.node_id}").randbytes(32)
            )
            for spec in scenario.nodes
        }
        keyring = Keyring([identity.entry() for identity in identities.values()])
        # Each node's store file lives here for the run (removed when run() returns).
        self.scratch = scratch_folder(f"{scenario.name}-{seed}")
        self.nodes = {
            spec.node_id: SimNode(
                spec,
                seed=seed,
                settings=scenario.sync,
                identity=identities[spec.node_id],
                keyring=keyring,
                scheduler=self.scheduler,
                network=self.network,
                listener=self,
                disk_folder=self.scratch,
            )
            for spec in scenario.nodes
        }
        for node in self.nodes.values():
            node.peers = [peer for peer in self.nodes.values() if peer is not node]
        for node in self.nodes.values():
            node.ack_regions = scenario.ack_regions
            node.game_backups = scenario.game_backups
        self.player_net = PlayerNet(self.scheduler, self.network, self.nodes)
        self.players = SimPlayers(self)
        self.handles = [NodeHandle(self, node) for node in self.nodes.values()]
        self.history = History(
            scenario.name,
            seed,
            list(self.nodes),
            scenario.faulty_s,
            scenario.end_s,
            scenario.ack_regions,
        )
        self.network.retransmissions = self.history.retransmissions  # recorded as they happen
        self.ledger = Ledger(self.history, lambda: self.now)
        self.presence_watch = PresenceWatch(self.history)
        for node in self.nodes.values():
            node.history = self.history
        self.workloads = scenario.new_workloads()
        self.history.insiders = sorted({w.node for w in self.workloads if isinstance(w, Insider)})
        # The first workload keeps the stream it always had; each further one gets its own.
        self._workload_rngs = [
            self._rng("workload" if index == 0 else f"workload:{index}")
            for index in range(len(self.workloads))
        ]
        self._active_faults: dict[int, Callable[[], None]] = {}
        self._undurable: dict[str, deque[WriteRecord]] = {n: deque() for n in self.nodes}
        self._unreplicated: dict[str, dict[str, deque[WriteRecord]]] = {n: {} for n in self.nodes}
        self._not_arrived: dict[tuple[str, str], dict[int, deque[WriteRecord]]] = {}
        self._by_value: dict[tuple[str, str, str], int] = {}
        self._healed = False
        self._check_scheduled = False
        self._game_changes = 0  # game document changes on any node (the settling watches them)

    def _rng(self, purpose: str) -> random.Random:
        return random.Random(f"meridian-sim:{self.seed}:{purpose}")

    @property
    def now(self) -> float:
        return self.scheduler.now

    # --- the run ---------------------------------------------------------------------------

    def run(self, progress: Callable[[float], None] | None = None) -> RunResult:
        try:
            return self._run(progress)
        finally:
            for node in self.nodes.values():
                node.disk.close()
            remove_scratch(self.scratch)

    def _run(self, progress: Callable[[float], None] | None) -> RunResult:
        for node in self.nodes.values():
            node.start()
        for index in range(len(self.workloads)):
            self.scheduler.at(0.0, self._workload_step, index)
        for index, fault in enumerate(self.scenario.faults):
            self.scheduler.at(fault.at_s, self._begin_fault, index)
        self.scheduler.at(self.scenario.faulty_s, self._heal)
        self.scheduler.at(OBSERVE_S, self._observe_presence)
        self.scheduler.run_until(self.scenario.end_s, progress)
        self._settle()
        self._settle_acks()
        for workload in self.workloads:
            workload.finish(self.now)
        self._record_views()
        final = self._final_states()
        judged, honest_final = honest_view(self.history, final)
        honest_final = placed_view(honest_final, self.nodes)
        verdicts = tuple(check(judged, honest_final) for _, check in self.scenario.checkers)
        return RunResult(
            self.scenario,
            self.seed,
            self.history,
            final,
            verdicts,
            self.scheduler.events_run,
            self.network.frames_sent,
            self.network.bytes_sent,
        )

    def _observe_presence(self) -> None:
        """What every service counts as online, beside the presence its node holds
        (sim.presence_watch); until the settling stops the services' timers."""
        for node in self.nodes.values():
            if node.up:
                self.presence_watch.observe(self.now, node)
        if self.now + OBSERVE_S < self.scenario.end_s:
            self.scheduler.after(OBSERVE_S, self._observe_presence)

    def _workload_step(self, index: int) -> None:
        wanted = self.workloads[index].step(self.now, self.handles, self._workload_rngs[index])
        if wanted is not None and wanted < self.scenario.end_s:
            self.scheduler.at(max(wanted, self.now + MIN_STEP_S), self._workload_step, index)

    def _settle(self) -> None:
        """Stop the services' timers and run on until every document is identical."""
        for node in self.nodes.values():
            node.stop_service_timers()
        self.history.record(self.now, "settle", None, "service timers stopped")
        self.scheduler.run_until(self.now + SETTLE_S)
        cap = self.scenario.end_s + SETTLE_MAX_S
        while True:
            while self.now < cap and not self._all_identical(presence=True):
                self.scheduler.run_until(min(cap, self.now + SETTLE_STEP_S))
            # What a tick would have processed by now: a postponed refresh of the public list
            # waits for the next tick when a later deadline (a clock) is already armed.
            for node in self.nodes.values():
                if node.up:
                    node.process_now()
            # What the services sent up to now reaches its players before the end is noted (a
            # push to a player across an ocean is still on its way when the documents agree).
            changes = self._game_changes
            self.scheduler.run_until(self.now + self.player_net.longest_trip_s())
            # A deadline the service still keeps (a clock running out) may have written in the
            # meantime: settle that change too, and wait for the pushes it sent (they left after
            # the wait began, even when the documents agree again by its end).
            if self.now >= cap:
                break
            if self._game_changes == changes and self._all_identical(presence=True):
                break
        self.history.final_at = self.now

    def _record_views(self) -> None:
        """What each game service believes at the end: name owners, games, sessions."""
        for node_id, node in self.nodes.items():
            if not node.up:
                continue
            service = node.service
            claims = service.accounts.claims
            games = {
                gid: [t.status, t.base_ply + t.ply, t.chain.tip]
                for gid, t in sorted(service.games.items())
            }
            self.history.notes.append(
                {
                    "t": round(self.now, 6),
                    "node": node_id,
                    "kind": "view",
                    "names": {name: claims[name][0].uid for name in sorted(claims)},
                    "accounts": {
                        a.uid: [a.name, a.home, a.status, a.password_hash, a.must_rename]
                        for a in service.accounts.all_accounts()
                    },
                    "wall_ms": node.wall_ms(),
                    "games": games,
                    "sessions": {s.uid: s.sid for s in service.all_sessions()},
                }
            )

    def _begin_fault(self, index: int) -> None:
        fault = self.scenario.faults[index]
        self.history.record(self.now, "fault", None, fault.describe())
        self._active_faults[index] = fault.begin(self)
        if fault.until_s is not None:
            self.scheduler.at(fault.until_s, self._end_fault, index)

    def _end_fault(self, index: int) -> None:
        undo = self._active_faults.pop(index, None)
        if undo is not None:
            self.history.record(self.now, "fault-end", None, self.scenario.faults[index].describe())
            undo()

    def _heal(self) -> None:
        self._healed = True
        self.history.record(self.now, "heal", None, "faults end, writes stop")
        for workload in self.workloads:
            workload.healed(self.now)
        for index in reversed(list(self._active_faults)):
            if not self.scenario.faults[index].permanent:
                self._end_fault(index)
        self._want_convergence_check()

    # --- what faults act on (sim.faults.FaultTarget) -------------------------------------

    def after(self, delay: float, action: Callable[[], None]) -> None:
        self.scheduler.after(delay, action)

    def block(self, src: str, dst: str) -> None:
        if self.network.block(src, dst):
            self.history.record(self.now, "path-down", src, "", dst)
            self.player_net.path_cut(src, dst)

    def unblock(self, src: str, dst: str) -> None:
        if self.network.unblock(src, dst):
            self.history.record(self.now, "path-up", src, "", dst)

    def add_breakage(self, src: str, dst: str, breakage: Breakage) -> None:
        self.network.add_breakage(src, dst, breakage)

    def remove_breakage(self, src: str, dst: str, breakage: Breakage) -> None:
        self.network.remove_breakage(src, dst, breakage)

    def crash(self, node_id: str, *, keep_disk: bool, silent: bool) -> None:
        node = self.nodes[node_id]
        if node.up:
            self.history.record(
                self.now, "crash", node_id, "disk kept" if keep_disk else "disk lost"
            )
            for peer in node.engine.up_peers():  # a killed engine reports nothing itself
                self.history.record(self.now, "link-closed", node_id, "process killed", peer)
            node.crash(keep_disk=keep_disk, silent=silent)
            self.ledger.process_gone(node_id)
            if not keep_disk:
                self.ledger.disk_lost(node_id)
            self.player_net.node_down(node_id)
            self._fail_waiting(node_id)

    def stop(self, node_id: str) -> None:
        node = self.nodes[node_id]
        if node.up:
            self.history.record(self.now, "stop", node_id, "clean stop")
            node.stop()
            self.ledger.process_gone(node_id)
            self.player_net.node_down(node_id)
            self._fail_waiting(node_id)

    def start(self, node_id: str) -> None:
        node = self.nodes[node_id]
        if not node.up:
            self.history.record(self.now, "restart", node_id, f"process #{node.incarnation + 1}")
            node.start()
            self.ledger.reloaded(node_id, node.engine.docs)
            self.presence_watch.restarted(node_id)
            if self._healed:
                self._want_convergence_check()

    def clock(self, node_id: str) -> NodeClock:
        return self.nodes[node_id].clock

    def set_slow(self, node_id: str, factor: float) -> None:
        self.nodes[node_id].slow_factor = factor

    # --- writes and their acknowledgement -----------------------------------------------------

    def write(self, node: SimNode, doc_id: str, key: str, value: str | None) -> WriteRecord:
        """A put (``value``) or delete (None) of one key, recorded in the history."""
        doc = node.engine.document(doc_id)
        seen = state_vector(doc)
        shown = map_get(root_map(doc, KV_ROOT), key)
        replaced = None if shown is None else self._by_value.get((doc_id, key, shown))

        def change(doc: Any) -> None:
            entries = root_map(doc, KV_ROOT)
            if value is None:
                del entries[key]
            else:
                entries[key] = value

        event_no = node.write(doc_id, change)
        # A map put of one value creates exactly one Yjs item, at the client's next clock.
        item = None if value is None else (doc.client_id, seen.get(doc.client_id, 0))
        record = WriteRecord(
            write_id=len(self.history.writes),
            t=self.now,
            node=node.node_id,
            incarnation=node.incarnation,
            doc=doc_id,
            key=key,
            op="delete" if value is None else "put",
            value=value,
            event_no=event_no,
            item=item,
            seen=seen,
            replaced=replaced,
        )
        self.history.writes.append(record)
        if item is not None:
            self.ledger.integrated(node.node_id, write_thing(record.write_id), event_no)
        if value is not None:
            self._by_value[doc_id, key, value] = record.write_id
        self._undurable[node.node_id].append(record)
        if item is not None:
            for other in self.nodes:
                if other != node.node_id:
                    waiting = self._not_arrived.setdefault((other, doc_id), {})
                    waiting.setdefault(item[0], deque()).append(record)
        return record

    def durable(self, node: SimNode, event_no: int) -> None:
        self.ledger.durable(node.node_id, event_no)
        undurable = self._undurable[node.node_id]
        while undurable and undurable[0].event_no <= event_no:
            record = undurable.popleft()
            record.durable_at = self.now
            if self.scenario.ack_regions == 0:
                self._acknowledge(record)
            else:
                self._unreplicated[node.node_id].setdefault(record.doc, deque()).append(record)
        self.acks_arrived(node)

    def acks_arrived(self, node: SimNode) -> None:
        engine, wanted = node.engine, self.scenario.ack_regions
        for waiting in self._unreplicated[node.node_id].values():
            # What a peer holds of a document is a prefix of its changes, so each document's
            # queue (in change order) is acknowledged from its head.
            while waiting:
                record = waiting[0]
                holders = sum(
                    engine.peer_holds(p, record.doc, record.event_no) for p in engine.peers
                )
                if holders >= wanted:
                    record.replicated_at = self.now
                    self._acknowledge(record)
                elif self.now - record.t > self.scenario.ack_timeout_s:
                    record.outcome = "timeout"
                else:
                    break
                waiting.popleft()

    def _acknowledge(self, record: WriteRecord) -> None:
        if self.now - record.t > self.scenario.ack_timeout_s:
            record.outcome = "timeout"  # the client gave up before the acknowledgement came
        else:
            record.outcome = "acked"
            record.acked_at = self.now

    def _fail_waiting(self, node_id: str) -> None:
        for record in self._waiting(node_id):
            record.outcome = "node-down"
        self._undurable[node_id].clear()
        self._unreplicated[node_id] = {}

    def _waiting(self, node_id: str) -> list[WriteRecord]:
        replicating = [r for queue in self._unreplicated[node_id].values() for r in queue]
        return [*self._undurable[node_id], *replicating]

    def _settle_acks(self) -> None:
        for node_id in self.nodes:
            for record in self._waiting(node_id):
                if self.now - record.t > self.scenario.ack_timeout_s:
                    record.outcome = "timeout"

    # --- what nodes report (sim.node.NodeListener) -------------------------------------------

    def doc_changed(self, node: SimNode, event: DocChanged) -> None:
        self.ledger.changed(node.node_id, event.doc_id, event.update, event.origin)
        self.presence_watch.changed(node.node_id, event.doc_id)
        if event.origin is not None:
            self._note_arrivals(node, event.doc_id, event.event_no)
        if event.doc_id == ACCOUNTS_DOC:
            self.ledger.accounts_changed(node.engine.docs[event.doc_id])
        if event.doc_id.startswith(GAME_PREFIX):
            self._game_changes += 1
            doc = node.engine.docs[event.doc_id]
            self.ledger.game_changed(node.node_id, event.doc_id, doc, event.event_no)
        if self._healed and not event.doc_id.startswith(PRESENCE_PREFIX):
            self._want_convergence_check()

    def service_output(self, node: SimNode) -> None:
        self.player_net.service_output(node)

    def merge(self, node: SimNode, kind: str, detail: str) -> None:
        self.history.merges.append(MergeRecord(self.now, node.node_id, kind, detail))

    def _note_arrivals(self, node: SimNode, doc_id: str, event_no: int) -> None:
        waiting = self._not_arrived.get((node.node_id, doc_id))
        if not waiting or not any(waiting.values()):
            return  # nothing on its way here: no state vector to read (most changes)
        held = state_vector(node.engine.docs[doc_id])
        for client, records in waiting.items():
            have = held.get(client, 0)
            while records and records[0].item is not None and records[0].item[1] < have:
                record = records.popleft()
                self.ledger.integrated(node.node_id, write_thing(record.write_id), event_no)
                lag = self.now - record.t
                self.history.lag.append(
                    LagSample(record.t, record.node, node.node_id, lag, record.write_id)
                )

    def link_event(self, node: SimNode, event: LinkUp | LinkClosed, was_up: bool) -> None:
        if isinstance(event, LinkUp):
            self.history.record(self.now, "link-up", node.node_id, "", event.node_id)
        else:
            # "closed" ends a link that was up; "refused" one that never got past its handshake.
            kind = "link-closed" if was_up else "link-refused"
            self.history.record(self.now, kind, node.node_id, event.reason, event.node_id)

    # --- convergence ---------------------------------------------------------------------------

    def _want_convergence_check(self) -> None:
        # One check per instant, after everything due at that instant has run.
        if not self._check_scheduled:
            self._check_scheduled = True
            self.scheduler.after(0.0, self._check_convergence)

    def _check_convergence(self) -> None:
        self._check_scheduled = False
        identical = self._all_identical()
        if identical and self.history.converged_at is None:
            self.history.converged_at = self.now
            self.history.record(self.now, "converged", None, "all documents identical")
        elif not identical and self.history.converged_at is not None:
            self.history.converged_at = None
            self.history.record(self.now, "diverged", None, "documents differ again")

    def _all_identical(self, *, presence: bool = False) -> bool:
        """Whether every document is identical on every node that is up. Presence documents
        count only if asked: the services rewrite them every few seconds (heartbeats)."""
        honest = self.history.honest_nodes  # an insider's forged records stay on its node
        up = [node for node in self.nodes.values() if node.up and node.node_id in honest]
        doc_ids = sorted({doc_id for node in up for doc_id in node.engine.docs})
        if not presence:
            doc_ids = [doc_id for doc_id in doc_ids if not doc_id.startswith(PRESENCE_PREFIX)]
        for doc_id in doc_ids:
            engines = [node.engine for node in keepers(up, doc_id)]  # (partial replication)
            digests = {
                engine.digest(doc_id) if doc_id in engine.docs else EMPTY_DIGEST
                for engine in engines
            }
            if len(digests) > 1:
                return False
        return True

    def _final_states(self) -> FinalStates:
        final: FinalStates = {}
        for node_id, node in self.nodes.items():
            if node.up:
                engine = node.engine
                final[node_id] = {
                    doc_id: DocState.of(engine.docs[doc_id], engine.digest(doc_id))
                    for doc_id in sorted(engine.docs)
                }
        return final
