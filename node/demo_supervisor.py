"""Keep the demo's regions running: a node that dies is marked down, the others play on.

The demo is where a newcomer sees failover, so one node's death must never stop the cluster.
`Supervisor.poll` is called every half second (from the plain loop or the bots' event loop):
it notices a node that exited, prints a line saying so, and restarts it after
``restart_after_s`` seconds (0: never on its own). It also writes the cluster's state file
(``<data>/demo-state.json``: each region's pid, url and whether it is up) that the
``meridian demo kill|start|status REGION`` commands read, and takes their start requests as
marker files (``<data>/demo-control/start-<region>``), so a second terminal can kill a region
and bring it back without hunting for pids.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from meridian.node.config import NodeConfig
from meridian.node.localcluster import LocalNode, start_node

STATE_FILE = "demo-state.json"
CONTROL_DIR = "demo-control"


@dataclass
class Region:
    """One region's node as the supervisor sees it."""

    node: LocalNode
    down_since: float | None = None  # monotonic time it was seen dead; None while up

    @property
    def name(self) -> str:
        return self.node.config.region


class Supervisor:
    """Watches the demo's node processes; restarts dead ones after a delay."""

    def __init__(
        self,
        nodes: list[LocalNode],
        env: dict[str, str],
        restart_after_s: float,
        say: Callable[[str], None] = lambda text: print(text, flush=True),
    ) -> None:
        self.regions = {node.config.region: Region(node) for node in nodes}
        self.env = env
        self.restart_after_s = restart_after_s
        self.say = say
        self.data_root = state_root(nodes[0].config)
        (self.data_root / CONTROL_DIR).mkdir(parents=True, exist_ok=True)
        self._write_state()

    @property
    def nodes(self) -> list[LocalNode]:
        return [region.node for region in self.regions.values()]

    def poll(self, now: float) -> None:
        """Notice deaths, restart what is due, take start requests; cheap when nothing changed."""
        changed = False
        for region in self.regions.values():
            if region.down_since is None and region.node.process.poll() is not None:
                region.down_since = now
                changed = True
                self.say(self._down_line(region))
        for name in self._take_start_requests():
            changed |= self._restart(name, "on request")
        if self.restart_after_s > 0:
            due = [r for r in self.regions.values() if self._restart_due(r, now)]
            for region in due:
                changed |= self._restart(region.name, f"after {self.restart_after_s:g} s")
        if changed:
            self._write_state()

    def _restart_due(self, region: Region, now: float) -> bool:
        return region.down_since is not None and now - region.down_since >= self.restart_after_s

    def _down_line(self, region: Region) -> str:
        code = region.node.process.returncode
        how = "killed" if code is not None and code < 0 else f"exited with {code}"
        then = (
            f"restarting in {self.restart_after_s:g} s"
            if self.restart_after_s > 0
            else f"`meridian demo start {region.name}` brings it back"
        )
        return (
            f"region {region.name} is DOWN ({how}); the other regions play on, its players "
            f"reconnect elsewhere; {then}. Log: {region.node.log_path}"
        )

    def _restart(self, name: str, why: str) -> bool:
        region = self.regions.get(name)
        if region is None:
            self.say(f"start request for unknown region {name!r} ignored")
            return False
        if region.down_since is None:
            return False
        region.node = start_node(region.node.config, self.env)
        region.down_since = None
        self.say(f"region {name} restarted ({why}); it catches up from its peers")
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
            "regions": {
                name: {
                    "pid": region.node.process.pid,
                    "url": region.node.config.public_url,
                    "up": region.down_since is None,
                }
                for name, region in self.regions.items()
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


def control_command(action: str, region: str | None, config: NodeConfig) -> int:
    """``meridian demo kill|start|status [REGION]`` against a running demo."""
    root = state_root(config)
    try:
        state = json.loads((root / STATE_FILE).read_text())
    except (OSError, ValueError):
        print(f"meridian demo {action}: no demo running (no {root / STATE_FILE})", file=sys.stderr)
        return 1
    regions: dict[str, dict[str, object]] = state["regions"]
    if action == "status":
        for name, info in sorted(regions.items()):
            up = "up" if info["up"] else "DOWN"
            print(f"  {name:<6} {up:<5} pid {info['pid']:<8} {info['url']}")
        return 0
    if region not in regions:
        known = ", ".join(sorted(regions))
        print(f"meridian demo {action}: no region {region!r} (known: {known})", file=sys.stderr)
        return 2
    if action == "kill":
        return _kill(region, regions[region])
    (root / CONTROL_DIR / f"start-{region}").touch()
    print(f"asked the demo to start {region}; it does so within a second")
    return 0


def _kill(region: str, info: dict[str, object]) -> int:
    if not info["up"]:
        print(f"region {region} is already down")
        return 0
    pid = info["pid"]
    assert isinstance(pid, int)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        print(f"region {region} (pid {pid}) had already exited")
        return 0
    print(f"killed region {region} (SIGKILL, pid {pid}); the demo shows it down")
    return 0
