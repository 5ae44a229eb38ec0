"""Keep the demo's node processes running: one that dies is marked down, the others play on.

The demo is where a newcomer sees failover, so one node's death must never stop the cluster.
`Supervisor.poll` is called every half second (from the plain loop or the bots' event loop):
it notices a node process that exited, prints a line saying so, and restarts it after
``restart_after_s`` seconds (0: never on its own). It also writes the cluster's state file
(``<data>/demo-state.json``: each node process's region, pid, url and whether it is up) that
the ``meridian demo kill|start|status TARGET`` commands read, and takes their start requests
as marker files (``<data>/demo-control/start-<target>``), so a second terminal can kill a
region and bring it back without hunting for pids.

A target is a region (every process of it: ``eu``) or one process by its node id (``eu-2``,
with ``--processes-per-region``). A region that runs one process is spoken of as the region
("region eu is DOWN"); with several, each process by its id ("eu-2 (region eu) is DOWN").
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meridian.node.config import NodeConfig
from meridian.node.localcluster import LocalNode, start_node

STATE_FILE = "demo-state.json"
CONTROL_DIR = "demo-control"


@dataclass
class Member:
    """One node process as the supervisor sees it."""

    node: LocalNode
    label: str  # "region eu" when the region runs one process, else "eu-2 (region eu)"
    down_since: float | None = None  # monotonic time it was seen dead; None while up

    @property
    def node_id(self) -> str:
        return self.node.config.node_id

    @property
    def region(self) -> str:
        return self.node.config.region


def labels(members: list[tuple[str, str]]) -> dict[str, str]:
    """node id -> how the demo names that process, for (node id, region) pairs (see module
    docstring)."""
    per_region: dict[str, int] = {}
    for _node, region in members:
        per_region[region] = per_region.get(region, 0) + 1
    return {
        node: f"region {region}" if per_region[region] == 1 else f"{node} (region {region})"
        for node, region in members
    }


def targets(nodes: dict[str, dict[str, Any]], target: str) -> list[str]:
    """The node ids a kill/start `target` names: the node itself, or every node of a region."""
    if target in nodes:
        return [target]
    return sorted(node for node, info in nodes.items() if info.get("region") == target)


class Supervisor:
    """Watches the demo's node processes; restarts dead ones after a delay."""

    def __init__(
        self,
        nodes: list[LocalNode],
        env: dict[str, str],
        restart_after_s: float,
        say: Callable[[str], None] = lambda text: print(text, flush=True),
    ) -> None:
        named = labels([(n.config.node_id, n.config.region) for n in nodes])
        self.members = {n.config.node_id: Member(n, named[n.config.node_id]) for n in nodes}
        self.env = env
        self.restart_after_s = restart_after_s
        self.say = say
        self.data_root = state_root(nodes[0].config)
        (self.data_root / CONTROL_DIR).mkdir(parents=True, exist_ok=True)
        self._write_state()

    @property
    def nodes(self) -> list[LocalNode]:
        return [member.node for member in self.members.values()]

    def poll(self, now: float) -> None:
        """Notice deaths, restart what is due, take start requests; cheap when nothing changed."""
        changed = False
        for member in self.members.values():
            if member.down_since is None and member.node.process.poll() is not None:
                member.down_since = now
                changed = True
                self.say(self._down_line(member))
        for target in self._take_start_requests():
            changed |= self._start(target)
        if self.restart_after_s > 0:
            due = [m for m in self.members.values() if self._restart_due(m, now)]
            for member in due:
                changed |= self._restart(member, f"after {self.restart_after_s:g} s")
        if changed:
            self._write_state()

    def _restart_due(self, member: Member, now: float) -> bool:
        return member.down_since is not None and now - member.down_since >= self.restart_after_s

    def _down_line(self, member: Member) -> str:
        code = member.node.process.returncode
        how = "killed" if code is not None and code < 0 else f"exited with {code}"
        name = member.region if member.label.startswith("region ") else member.node_id
        then = (
            f"restarting in {self.restart_after_s:g} s"
            if self.restart_after_s > 0
            else f"`meridian demo start {name}` brings it back"
        )
        where = (
            "the other regions play on, its players reconnect elsewhere"
            if member.label.startswith("region ")
            else f"its players reconnect to another process of {member.region}"
        )
        return f"{member.label} is DOWN ({how}); {where}; {then}. Log: {member.node.log_path}"

    def _start(self, target: str) -> bool:
        state = {node: {"region": m.region} for node, m in self.members.items()}
        chosen = targets(state, target)
        if not chosen:
            self.say(f"start request for unknown region or process {target!r} ignored")
            return False
        started = [self._restart(self.members[node], "on request") for node in chosen]
        return any(started)

    def _restart(self, member: Member, why: str) -> bool:
        if member.down_since is None:
            return False
        member.node = start_node(member.node.config, self.env)
        member.down_since = None
        self.say(f"{member.label} restarted ({why}); it catches up from its peers")
        return True

    def _take_start_requests(self) -> list[str]:
        folder = self.data_root / CONTROL_DIR
        names = []
        for marker in folder.glob("start-*"):
            names.append(marker.name.removeprefix("start-"))
            marker.unlink(missing_ok=True)
        return names

    def _write_state(self) -> None:
        state = {
            "supervisor_pid": os.getpid(),
            "nodes": {
                node: {
                    "region": member.region,
                    "pid": member.node.process.pid,
                    "url": member.node.config.public_url,
                    "up": member.down_since is None,
                }
                for node, member in self.members.items()
            },
        }
        path = self.data_root / STATE_FILE
        scratch = path.with_suffix(".tmp")
        scratch.write_text(json.dumps(state, indent=2))
        scratch.replace(path)  # readers never see half a file

    def close(self) -> None:
        (self.data_root / STATE_FILE).unlink(missing_ok=True)


def state_root(config: NodeConfig) -> Path:
    """The folder above the nodes' data directories (``data/`` for configs/local)."""
    return config.data_dir.parent


def read_state(root: Path) -> dict[str, dict[str, Any]] | None:
    """The running demo's node processes (node id -> region, pid, url, up), or None."""
    try:
        state = json.loads((root / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    nodes = state.get("nodes") if isinstance(state, dict) else None
    return nodes if isinstance(nodes, dict) else None


def control_command(action: str, target: str | None, config: NodeConfig) -> int:
    """``meridian demo kill|start|status [TARGET]`` against a running demo."""
    root = state_root(config)
    nodes = read_state(root)
    if nodes is None:
        print(f"meridian demo {action}: no demo running (no {root / STATE_FILE})", file=sys.stderr)
        return 1
    if action == "status":
        for node, info in sorted(nodes.items(), key=lambda item: (item[1]["region"], item[0])):
            up = "up" if info["up"] else "DOWN"
            print(f"  {info['region']:<6} {node:<8} {up:<5} pid {info['pid']:<8} {info['url']}")
        return 0
    chosen = targets(nodes, target or "")
    if not chosen:
        known = ", ".join(sorted({str(info["region"]) for info in nodes.values()} | set(nodes)))
        print(
            f"meridian demo {action}: no region or process {target!r} (known: {known})",
            file=sys.stderr,
        )
        return 2
    named = labels([(node, str(info["region"])) for node, info in nodes.items()])
    if action == "kill":
        return max(_kill(named[node], nodes[node]) for node in chosen)
    (root / CONTROL_DIR / f"start-{target}").touch()
    print(f"asked the demo to start {target}; it does so within a second")
    return 0


def _kill(name: str, info: dict[str, Any]) -> int:
    if not info["up"]:
        print(f"{name} is already down")
        return 0
    pid = info["pid"]
    assert isinstance(pid, int)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        print(f"{name} (pid {pid}) had already exited")
        return 0
    print(f"killed {name} (SIGKILL, pid {pid}); the demo shows it down")
    return 0
