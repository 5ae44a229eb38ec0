"""``meridian demo``: a local 3-region cluster (one process per region) from configs/local/.

A fresh cluster secret and admin token are generated for the run and handed to the nodes through
their environment (never written to disk). The demo waits until every node answers and the mesh
is complete, prints where each node listens, and stops all nodes cleanly on Ctrl-C. Each node's
log goes to ``data/logs/<region>.log``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from node.config import ConfigError, load_config
from node.localcluster import (
    TOKEN_ENV,
    LocalNode,
    cluster_env,
    port_in_use,
    start_node,
    stop_nodes,
    wait_for_mesh,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG_DIR = REPO_ROOT / "configs" / "local"


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config-dir",
        type=Path,
        default=DEFAULT_CONFIG_DIR,
        help="folder of node configs, one *.toml per region (default: configs/local)",
    )
    parser.add_argument(
        "--fresh", action="store_true", help="delete the nodes' data directories first"
    )
    parser.add_argument(
        "--exit-when-ready",
        action="store_true",
        help="exit 0 as soon as every node is up and linked to every other (for scripts)",
    )


def run_demo_command(args: argparse.Namespace) -> int:
    env = cluster_env()
    try:
        configs = [load_config(path, env) for path in sorted(args.config_dir.glob("*.toml"))]
    except ConfigError as error:
        print(f"meridian demo: config error: {error}", file=sys.stderr)
        return 2
    if not configs:
        print(f"meridian demo: no *.toml configs in {args.config_dir}", file=sys.stderr)
        return 2
    busy = [c for c in configs if port_in_use(c.listen_host, c.listen_port)]
    if busy:
        ports = ", ".join(f"{c.listen_host}:{c.listen_port}" for c in busy)
        print(f"meridian demo: port in use: {ports} (is another demo running?)", file=sys.stderr)
        return 2
    if args.fresh:
        for config in configs:
            shutil.rmtree(config.data_dir, ignore_errors=True)
    nodes = [start_node(config, env) for config in configs]
    try:
        return _supervise(nodes, env, exit_when_ready=args.exit_when_ready)
    finally:
        stop_nodes(nodes)


def _supervise(nodes: list[LocalNode], env: dict[str, str], *, exit_when_ready: bool) -> int:
    print(f"starting {len(nodes)} nodes ...", flush=True)
    if not wait_for_mesh(nodes):
        return 1
    _print_table(nodes, env[TOKEN_ENV])
    if exit_when_ready:
        return 0
    print("Ctrl-C stops the cluster.", flush=True)
    try:
        while all(node.process.poll() is None for node in nodes):
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\nstopping ...", flush=True)
        return 0
    dead = [n for n in nodes if n.process.poll() is not None]
    for node in dead:
        print(
            f"node {node.config.node_id} exited with {node.process.returncode}; "
            f"see {node.log_path}",
            file=sys.stderr,
        )
    return 1


def _print_table(nodes: list[LocalNode], admin_token: str) -> None:
    print("\nMeridian local cluster is up:\n")
    print(f"  {'region':<8} {'node':<8} {'url':<26} log")
    for node in nodes:
        c = node.config
        print(f"  {c.region:<8} {c.node_id:<8} {c.public_url:<26} {node.log_path}")
    first, second = nodes[0].config.public_url, nodes[-1].config.public_url
    print(f"\n  admin token (this run only): {admin_token}")
    print("  try replication:")
    print(f"    meridian doc put --node {first} --token {admin_token} --doc test:demo hello world")
    print(f"    meridian doc get --node {second} --token {admin_token} --doc test:demo hello")
    print(
        f"  cluster view: curl -H 'Authorization: Bearer {admin_token}' {first}/api/cluster\n",
        flush=True,
    )
