"""Run inside a fresh network namespace: two nodes with zeroconf on and no static peers.

Prints one JSON line: each node's connected peers once both see each other (or at the deadline).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

from meridian.node.config import load_config
from meridian.node.localcluster import (
    cluster_env,
    fetch_health,
    start_node,
    stop_nodes,
    write_configs,
)

DEADLINE_S = 20.0


def main() -> int:
    env = cluster_env()
    with tempfile.TemporaryDirectory() as folder:
        configs = [
            load_config(p, env) for p in write_configs(Path(folder), ["eu", "us"], zeroconf=True)
        ]
        nodes = [start_node(config, env) for config in configs]
        try:
            deadline = time.monotonic() + DEADLINE_S
            peers: dict[str, list[str]] = {}
            while time.monotonic() < deadline:
                health = {c.node_id: fetch_health(c.public_url) for c in configs}
                peers = {node: (h or {}).get("peers", []) for node, h in health.items()}
                if all(peers.values()):
                    break
                time.sleep(0.2)
            print(json.dumps({"peers": peers}))
        finally:
            stop_nodes(nodes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
