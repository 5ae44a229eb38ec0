"""``meridian sim cluster SCENARIO``: a scenario against real node processes on 127.0.0.1.

The scenario file is the same as for ``meridian sim run``; what runs is not simulated: one real
``meridian node`` process per region (``sim.proxied.ProxiedCluster``), every peer link through
a fault-injecting proxy, the workloads over real HTTP and websockets, in real time.

* Faults are the scenario's own (``sim.faults``), applied to this cluster: a path cut both ways
  (partition, partial partition, flap) cuts the pair's proxies (connections closed, new ones
  refused); a path cut one way blocks that direction in the proxies while the connections stay
  open; a crash is ``kill -9`` (losing the disk deletes the node's data folder first; a machine
  that vanishes silently cannot be staged, the process is killed instead); a restart is SIGTERM
  and a new process ``down_s`` later. Clock skew, clock jumps, slow nodes and broken links are
  not something a proxy can do: they are skipped, with a printed note.
* Workloads: ``kv-writers`` put through the admin document API (``PUT /api/admin/docs``); a put
  is acknowledged when the node answers 200 (durable, and held by ``ack_regions`` regions). The
  admin API shows no Yjs item ids, so each put goes to a key of its own and
  ``acknowledged-writes`` checks that every acknowledged key is present with its value; there is
  no delete. ``game-bots`` are the same bots as in the simulator (``sim.bots``, the one bot of
  ``node.botbrain``), each client a ``node.botsocket.WebsocketSide`` on a real websocket (the
  transport of ``meridian bot``).
* The checkers are the same, on final states read back from every node with
  ``GET /api/admin/export`` (every shared document as a Yjs update; presence documents are not
  exported), the sessions each node counts (``GET /api/admin/sessions``), the merges each node
  counted (``meridian_merges_total`` in ``/metrics``), and what the bots were told. Convergence
  after the heal is polled from ``/api/cluster``'s document digests. Replication lag is not
  sampled per write here.

A run is not reproducible the way a simulated one is (real time, real scheduling), but the
seed still drives the workloads' and the faults' choices.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import random
import shutil
import signal
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
from pycrdt import Doc

from meridian.crdt_models.presence import PRESENCE_PREFIX
from meridian.node.botsocket import WebsocketPlayers
from meridian.node.localcluster import TOKEN_ENV, LocalNode
from meridian.sim.faults import Undo
from meridian.sim.gamecheck import rebuild
from meridian.sim.history import DocState, FinalStates, History, MergeRecord, WriteRecord
from meridian.sim.proxied import ProxiedCluster
from meridian.sim.scenario import Scenario
from meridian.sim.world import RunResult
from meridian.sync.digest import state_digest
from meridian.sync.settings import SyncSettings

UNSUPPORTED = {
    "clock-skew": "real processes read the machine's clock",
    "clock-jump": "real processes read the machine's clock",
    "slow": "the proxies cannot slow a process down",
    "broken": "the proxies forward the bytes of an open connection unchanged",
}
# What ProxiedCluster's nodes use unless the scenario says otherwise: quick redials on loopback.
FAST_SYNC = {"reconnect_min_s": 0.05, "reconnect_max_s": 0.5, "anti_entropy_s": 2.0}
POLL_S = 0.25
SETTLE_MAX_S = 15.0
STOP_WAIT_S = 10.0


def node_settings(scenario: Scenario) -> str:
    """The [sync] and [replication] tables of the nodes' configs for this scenario."""
    defaults = SyncSettings()
    values: dict[str, Any] = dict(FAST_SYNC)
    for name in SyncSettings.__dataclass_fields__:
        value = getattr(scenario.sync, name)
        if value != getattr(defaults, name):
            values[name] = value
    lines = [f"{name} = {_toml(value)}" for name, value in sorted(values.items())]
    replication = f"\n[replication]\nack_regions = {scenario.ack_regions}\n"
    return "\n[sync]\n" + "\n".join(lines) + "\n" + replication


def _toml(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else repr(value)


class ClusterHandle:
    """A workload's view of one real node (``sim.workload.NodeHandle``)."""

    def __init__(self, run: ClusterRun, region: str) -> None:
        self.run = run
        self.node_id = self.region = region

    @property
    def players(self) -> WebsocketPlayers:
        return self.run.players

    @property
    def up(self) -> bool:
        return self.region not in self.run.down

    def put(self, doc_id: str, key: str, value: str) -> WriteRecord:
        return self.run.put(self.region, doc_id, f"{key}.{value.replace('#', '-')}", value)

    def delete(self, doc_id: str, key: str) -> WriteRecord | None:
        return None  # the admin API has no delete (see module docstring)

    def get(self, doc_id: str, key: str) -> Any:
        return None

    def wall_time(self) -> float:
        return time.time()

    def note(self, kind: str, **fields: Any) -> None:
        note = {"t": round(self.run.now, 6), "node": self.region, "kind": kind, **fields}
        self.run.history.notes.append(note)


class ClusterRun:
    """One scenario run against real processes (see module docstring); also the faults'
    ``FaultTarget``."""

    def __init__(
        self, scenario: Scenario, seed: int, folder: Path, say: Callable[[str], None]
    ) -> None:
        self.scenario = scenario
        self.seed = seed
        self.say = say
        self.rng = random.Random(f"meridian-sim:{seed}:faults")
        regions = scenario.node_ids
        self.history = History(
            scenario.name, seed, regions, scenario.faulty_s, scenario.end_s, scenario.ack_regions
        )
        self.cluster = ProxiedCluster(folder, regions, extra=node_settings(scenario))
        self.token = self.cluster.env[TOKEN_ENV]
        self.players = WebsocketPlayers(self, scenario.node_ids, lambda: self.now)
        self.workloads = scenario.new_workloads()
        self.down: set[str] = set()
        self.http: aiohttp.ClientSession
        self._t0 = 0.0
        self._incarnation = dict.fromkeys(regions, 1)
        self._blocked: dict[tuple[str, str], int] = {}
        self._active: dict[int, Undo] = {}
        self._stopping: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def now(self) -> float:
        return asyncio.get_running_loop().time() - self._t0

    def url(self, node: str) -> str:
        return self.cluster.url(node)

    def spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _record(self, kind: str, node: str | None, detail: str, peer: str | None = None) -> None:
        self.history.record(round(self.now, 6), kind, node, detail, peer)

    # --- the run --------------------------------------------------------------------------

    async def run(self) -> RunResult:
        await self.cluster.start()
        try:
            connector = aiohttp.TCPConnector(limit=0)
            async with aiohttp.ClientSession(connector=connector) as self.http:
                final = await self._phases()
        finally:
            await self._stop_cluster()
        verdicts = tuple(check(self.history, final) for _, check in self.scenario.checkers)
        return RunResult(self.scenario, self.seed, self.history, final, verdicts, 0, 0, 0)

    async def _phases(self) -> FinalStates:
        loop = asyncio.get_running_loop()
        self._t0 = loop.time()
        handles = [ClusterHandle(self, region) for region in self.scenario.node_ids]
        for index, fault in enumerate(self.scenario.faults):
            loop.call_later(fault.at_s, self._begin_fault, index)
        loop.call_later(self.scenario.faulty_s, self._heal)
        drivers = [asyncio.create_task(self._drive(i, handles)) for i in range(len(self.workloads))]

        await asyncio.sleep(self.scenario.faulty_s)
        converged = asyncio.create_task(self._watch_convergence())
        await asyncio.sleep(max(0.0, self.scenario.end_s - self.now))
        for task in [*drivers, converged]:
            task.cancel()
        final = await self._settle()
        for workload in self.workloads:
            workload.finish(self.now)
        await self._record_views()
        self.players.close()
        return final

    async def _drive(self, index: int, handles: list[ClusterHandle]) -> None:
        purpose = "workload" if index == 0 else f"workload:{index}"
        rng = random.Random(f"meridian-sim:{self.seed}:{purpose}")
        workload = self.workloads[index]
        while True:
            wanted = workload.step(self.now, handles, rng)
            if wanted is None or wanted >= self.scenario.end_s:
                return
            await asyncio.sleep(max(0.0, wanted - self.now))

    def _heal(self) -> None:
        self._record("heal", None, "faults end, writes stop")
        for index in reversed(list(self._active)):
            if not self.scenario.faults[index].permanent:
                self._end_fault(index)
        for workload in self.workloads:
            workload.healed(self.now)

    async def _stop_cluster(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*self._stopping.values(), return_exceptions=True)
        await self.cluster.stop()

    # --- faults (sim.faults.FaultTarget) ---------------------------------------------------

    def _begin_fault(self, index: int) -> None:
        fault = self.scenario.faults[index]
        why = UNSUPPORTED.get(fault.kind)
        if why is not None:
            self.say(f"note: {fault.describe()} skipped: {why}")
            self._record("fault-skipped", None, fault.describe())
            return
        if getattr(fault, "silent", False):
            self.say(f"note: {fault.describe()}: killed instead (a proxy cannot make it vanish)")
        self._record("fault", None, fault.describe())
        self._active[index] = fault.begin(self)
        if fault.until_s is not None:
            asyncio.get_running_loop().call_later(fault.until_s - self.now, self._end_fault, index)

    def _end_fault(self, index: int) -> None:
        undo = self._active.pop(index, None)
        if undo is not None:
            self._record("fault-end", None, self.scenario.faults[index].describe())
            undo()

    def after(self, delay: float, action: Callable[[], None]) -> None:
        asyncio.get_running_loop().call_later(delay, action)

    def block(self, src: str, dst: str) -> None:
        self._blocked[src, dst] = self._blocked.get((src, dst), 0) + 1
        if self._blocked[src, dst] == 1:
            self._record("path-down", src, "", dst)
            self._apply_paths(src, dst)

    def unblock(self, src: str, dst: str) -> None:
        count = self._blocked.get((src, dst), 0) - 1
        if count > 0:
            self._blocked[src, dst] = count
            return
        self._blocked.pop((src, dst), None)
        self._record("path-up", src, "", dst)
        self._apply_paths(src, dst)

    def _apply_paths(self, a: str, b: str) -> None:
        """Set the pair's two proxies to what the blocked directions say."""
        there, back = self.cluster.proxies[a, b], self.cluster.proxies[b, a]
        ab, ba = (a, b) in self._blocked, (b, a) in self._blocked
        there.heal()
        back.heal()
        if ab and ba:
            self.cluster.cut(a, b)
        elif ab or ba:
            src, dst = (a, b) if ab else (b, a)
            self.cluster.proxies[src, dst].block("forward")  # src dialed dst
            self.cluster.proxies[dst, src].block("backward")  # dst dialed src

    def crash(self, node_id: str, *, keep_disk: bool, silent: bool) -> None:
        if node_id in self.down:
            return
        self._record("crash", node_id, "disk kept" if keep_disk else "disk lost")
        self.cluster.kill(node_id)
        if not keep_disk:
            shutil.rmtree(self.cluster.configs[node_id].data_dir, ignore_errors=True)
        self.down.add(node_id)

    def stop(self, node_id: str) -> None:
        if node_id in self.down:
            return
        self._record("stop", node_id, "clean stop")
        self.down.add(node_id)
        process = self.cluster.nodes[node_id].process
        process.send_signal(signal.SIGTERM)
        # Waiting must not block the loop: the proxies that carry its goodbyes run in it.
        self._stopping[node_id] = asyncio.create_task(_wait_exit(self.cluster.nodes[node_id]))

    def start(self, node_id: str) -> None:
        if node_id in self.down:
            self.spawn(self._restart(node_id))

    async def _restart(self, node_id: str) -> None:
        stopping = self._stopping.pop(node_id, None)
        if stopping is not None:
            await stopping
        self._incarnation[node_id] += 1
        self._record("restart", node_id, f"process #{self._incarnation[node_id]}")
        self.cluster.restart(node_id)
        self.down.discard(node_id)

    def add_breakage(self, src: str, dst: str, breakage: Any) -> None:
        raise NotImplementedError(UNSUPPORTED["broken"])

    def remove_breakage(self, src: str, dst: str, breakage: Any) -> None:
        raise NotImplementedError(UNSUPPORTED["broken"])

    def clock(self, node_id: str) -> Any:
        raise NotImplementedError(UNSUPPORTED["clock-skew"])

    def set_slow(self, node_id: str, factor: float) -> None:
        raise NotImplementedError(UNSUPPORTED["slow"])

    # --- key-value writes ----------------------------------------------------------------

    def put(self, region: str, doc_id: str, key: str, value: str) -> WriteRecord:
        record = WriteRecord(
            write_id=len(self.history.writes),
            t=round(self.now, 6),
            node=region,
            incarnation=self._incarnation[region],
            doc=doc_id,
            key=key,
            op="put",
            value=value,
            event_no=0,
            item=None,
            seen={},
            replaced=None,
        )
        self.history.writes.append(record)
        self.spawn(self._put(record))
        return record

    async def _put(self, record: WriteRecord) -> None:
        url = f"{self.cluster.url(record.node)}/api/admin/docs/{quote(record.doc, safe='')}/"
        url += quote(record.key, safe="")
        try:
            body = {"value": record.value}
            async with self.http.put(url, json=body, headers=self._auth()) as answer:
                status = answer.status
        except (aiohttp.ClientError, OSError):
            record.outcome = "node-down"
            return
        if status == 200 and self.now - record.t <= self.scenario.ack_timeout_s:
            record.outcome, record.acked_at = "acked", round(self.now, 6)
        else:
            record.outcome = "timeout" if status in (200, 504) else "node-down"

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    # --- reading the cluster back ----------------------------------------------------------

    async def _get(self, region: str, path: str) -> Any:
        try:
            url = self.cluster.url(region) + path
            async with self.http.get(url, headers=self._auth()) as answer:
                if answer.status != 200:
                    return None
                if path == "/metrics":
                    return await answer.text()
                return await answer.json()
        except (aiohttp.ClientError, OSError, ValueError):
            return None

    async def _watch_convergence(self) -> None:
        while True:
            identical = await self._digests_agree()
            if identical and self.history.converged_at is None:
                self.history.converged_at = round(self.now, 6)
                self._record("converged", None, "all documents identical")
            elif not identical and self.history.converged_at is not None:
                self.history.converged_at = None
                self._record("diverged", None, "documents differ again")
            await asyncio.sleep(POLL_S)

    async def _digests_agree(self) -> bool:
        up = [region for region in self.scenario.node_ids if region not in self.down]
        answers = await asyncio.gather(*(self._get(region, "/api/cluster") for region in up))
        if any(answer is None for answer in answers):
            return False
        views = [
            {d["id"]: d["digest"] for d in answer["documents"] if _shared(d["id"])}
            for answer in answers
        ]
        return all(view == views[0] for view in views)

    async def _settle(self) -> FinalStates:
        """Read every node's documents until they agree (at most SETTLE_MAX_S)."""
        self._record("settle", None, "writes over; reading the documents back")
        deadline = self.now + SETTLE_MAX_S
        while True:
            final = await self._export()
            digests = [{d: s.digest for d, s in states.items()} for states in final.values()]
            if all(d == digests[0] for d in digests) or self.now > deadline:
                self.history.final_at = round(self.now, 6)
                return final
            await asyncio.sleep(POLL_S)

    async def _export(self) -> FinalStates:
        up = [region for region in self.scenario.node_ids if region not in self.down]
        answers = await asyncio.gather(*(self._get(region, "/api/admin/export") for region in up))
        final: FinalStates = {}
        for region, answer in zip(up, answers, strict=True):
            if answer is not None:
                documents = sorted(answer["documents"].items())
                final[region] = {doc_id: _state(text) for doc_id, text in documents}
        return final

    async def _record_views(self) -> None:
        for region in self.scenario.node_ids:
            if region in self.down:
                continue
            sessions, metrics = await asyncio.gather(
                self._get(region, "/api/admin/sessions"), self._get(region, "/metrics")
            )
            if sessions is not None:
                counted = {s["uid"]: f"{s['node']}/{s['started']}" for s in sessions["sessions"]}
                note = {
                    "t": round(self.now, 6),
                    "node": region,
                    "kind": "view",
                    "sessions": counted,
                }
                self.history.notes.append(note)
            self._record_merges(region, metrics or "")

    def _record_merges(self, region: str, metrics: str) -> None:
        """Each node's ``meridian_merges_total{kind}``: one record per merge it counted."""
        for line in metrics.splitlines():
            if line.startswith('meridian_merges_total{kind="'):
                kind = line.split('"')[1]
                for number in range(int(float(line.rsplit(" ", 1)[1]))):
                    detail = f"#{number + 1} (counted in meridian_merges_total)"
                    self.history.merges.append(MergeRecord(self.now, region, kind, detail))


def _shared(doc_id: str) -> bool:
    return not doc_id.startswith(PRESENCE_PREFIX)  # as the export: presence is per process


def _state(text: str) -> DocState:
    doc: Doc[Any] = rebuild(base64.b64decode(text))
    return DocState.of(doc, state_digest(doc))


async def _wait_exit(node: LocalNode) -> None:
    try:
        await asyncio.to_thread(node.process.wait, STOP_WAIT_S)
    except Exception:
        with contextlib.suppress(ProcessLookupError):
            node.process.kill()
        await asyncio.to_thread(node.process.wait)


async def run_cluster(
    scenario: Scenario, seed: int, folder: Path, say: Callable[[str], None]
) -> RunResult:
    """Run ``scenario`` on real processes whose files go to ``folder`` (see module docstring)."""
    return await ClusterRun(scenario, seed, folder, say).run()
