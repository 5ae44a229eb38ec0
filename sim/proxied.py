"""A cluster of real node processes whose every peer link goes through a FaultProxy.

Node ``a`` reaches node ``b`` through the proxy ``(a, b)``; a link between them crosses one of
the two proxies of the pair (whichever side dialed). Cutting both proxies of a pair partitions
the pair; `partition` cuts every pair that crosses groups. Used by the partition tests, the
benchmarks and the real-process chaos runs. Must be used inside a running event loop (the
proxies are asyncio servers in this process).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from meridian.node.config import NodeConfig, load_config
from meridian.node.localcluster import (
    LocalNode,
    cluster_env,
    free_ports,
    kill_node,
    start_node,
    stop_nodes,
    wait_for_mesh,
    write_configs,
)
from meridian.sim.proxy import FaultProxy

FAST_RECONNECT = "\n[sync]\nreconnect_min_s = 0.05\nreconnect_max_s = 0.5\nanti_entropy_s = 2\n"


class ProxiedCluster:
    def __init__(self, folder: Path, regions: list[str], *, extra: str = FAST_RECONNECT) -> None:
        self.regions = regions
        self.env = cluster_env()
        pairs = [(a, b) for a in regions for b in regions if a != b]
        ports = free_ports(len(pairs) + len(regions))
        via = dict(zip(pairs, ports, strict=False))
        paths = write_configs(folder, regions, extra=extra, via=via, ports=ports[len(pairs) :])
        self.configs: dict[str, NodeConfig] = {
            c.region: c for c in (load_config(p, self.env) for p in paths)
        }
        self.proxies = {
            pair: FaultProxy(port, "127.0.0.1", self.configs[pair[1]].listen_port)
            for pair, port in via.items()
        }
        self.nodes: dict[str, LocalNode] = {}

    async def start(self) -> None:
        for proxy in self.proxies.values():
            await proxy.start()
        for region in self.regions:
            self.nodes[region] = start_node(self.configs[region], self.env)
        if not await asyncio.to_thread(wait_for_mesh, list(self.nodes.values())):
            raise RuntimeError("the cluster did not form; see the node logs")

    async def stop(self) -> None:
        await asyncio.to_thread(stop_nodes, list(self.nodes.values()))
        for proxy in self.proxies.values():
            await proxy.close()

    def url(self, region: str) -> str:
        return self.configs[region].public_url

    def cut(self, a: str, b: str) -> None:
        self.proxies[(a, b)].cut()
        self.proxies[(b, a)].cut()

    def partition(self, *groups: list[str]) -> None:
        """Cut every link between regions of different groups."""
        group_of = {region: i for i, group in enumerate(groups) for region in group}
        for a, b in self.proxies:
            if group_of.get(a) != group_of.get(b):
                self.proxies[(a, b)].cut()

    def heal(self) -> None:
        for proxy in self.proxies.values():
            proxy.heal()

    def kill(self, region: str) -> None:
        kill_node(self.nodes[region])

    def restart(self, region: str) -> None:
        self.nodes[region] = start_node(self.configs[region], self.env)

    # The timeout bounds wait_for_mesh in a worker thread, which cancelling this await cannot stop.
    async def wait_linked(self, timeout: float = 30.0) -> None:  # noqa: ASYNC109
        if not await asyncio.to_thread(wait_for_mesh, list(self.nodes.values()), timeout):
            raise RuntimeError("links did not come back")
