"""Several node processes per region for a local cluster: configs derived from one per region.

``meridian demo --processes-per-region N`` starts N processes for each region of its configs
(docs/architecture.md *Several processes per region*: each is a full member of the mesh with its
own node id, key, store and presence, all in the region of the config they come from).
`derive_configs` writes their configs from the region's one config: process 1 keeps the
config's node id, port and data directory (so a demo's data carries over between runs with one
and with several processes), process i >= 2 gets node id ``<id>-i`` (``eu-1`` -> ``eu-2``),
port ``listen + PORT_STEP * (i - 1)`` (7101 -> 7111) and data directory ``<data_dir>-i``
(``data/eu`` -> ``data/eu-2``); every process lists every other as a peer. Everything else in
the config (sync, limits, secrets' sources) is copied as it is.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from meridian.node.config import NodeConfig
from meridian.tomlschema import read_toml

PORT_STEP = 10  # process i of a region listens PORT_STEP * (i - 1) above process 1
MAX_PROCESSES_PER_REGION = 9  # with PORT_STEP 10 and regions on consecutive ports: no clash
CONFIGS_FOLDER = "processes"  # under the demo's data folder


class ProcessesError(ValueError):
    """The configs cannot be multiplied (says why)."""


def derive_configs(configs: Sequence[NodeConfig], per_region: int, folder: Path) -> list[Path]:
    """Write ``<node id>.toml`` for `per_region` processes of each config's region into
    `folder` and return their paths, region by region (see module docstring)."""
    if not 1 <= per_region <= MAX_PROCESSES_PER_REGION:
        raise ProcessesError(f"processes per region: 1 to {MAX_PROCESSES_PER_REGION}")
    regions = [config.region for config in configs]
    if len(set(regions)) != len(regions):
        raise ProcessesError(
            "the configs already run several processes in one region: give one config per "
            "region to multiply, or leave out --processes-per-region"
        )
    plans = [_plan(config, i) for config in configs for i in range(1, per_region + 1)]
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for plan in plans:
        peers = [other["url"] for other in plans if other is not plan]
        path = folder / f"{plan['id']}.toml"
        path.write_text(toml_text(_document(plan, peers)))
        paths.append(path)
    return paths


def _plan(config: NodeConfig, index: int) -> dict[str, Any]:
    """Process `index` (from 1) of `config`'s region: what differs from the config."""
    port = config.listen_port + PORT_STEP * (index - 1)
    node_id = config.node_id if index == 1 else f"{config.node_id.removesuffix('-1')}-{index}"
    data_dir = (
        config.data_dir
        if index == 1
        else config.data_dir.with_name(f"{config.data_dir.name}-{index}")
    )
    key_file = config.key_file if index == 1 else config.key_file.with_name(f"{node_id}.key")
    return {
        "config": config,
        "id": node_id,
        "listen": f"{config.listen_host}:{port}",
        "url": _with_port(config.public_url, config.listen_port, port),
        "data_dir": data_dir,
        "key_file": key_file,
    }


def _with_port(url: str, old: int, new: int) -> str:
    """`url` with its port moved from `old` to `new` (a public URL on another port is kept
    only for process 1: the others cannot share it)."""
    parts = urlsplit(url)
    if parts.port != old or parts.hostname is None:
        raise ProcessesError(
            f"public_url {url} is not on the listen port {old}: cannot derive the other "
            "processes' URLs; write their configs by hand"
        )
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return urlunsplit((parts.scheme, f"{host}:{new}", parts.path, parts.query, parts.fragment))


def _document(plan: Mapping[str, Any], peers: list[str]) -> dict[str, Any]:
    """The config file of one process: its region's file with the process's own keys."""
    config: NodeConfig = plan["config"]
    document = read_toml(config.config_path)
    node = dict(document["node"])
    node.update(
        id=plan["id"],
        listen=plan["listen"],
        public_url=plan["url"],
        data_dir=str(plan["data_dir"]),
    )
    cluster = dict(document["cluster"])
    cluster.update(
        peers=peers,
        key_file=str(plan["key_file"]),
        keyring_file=str(config.keyring_file),
        zeroconf=False,
    )
    for key in ("secret_file", "admin_token_file"):  # relative to the original config
        if key in cluster:
            cluster[key] = str((config.config_path.parent / cluster[key]).resolve())
    return {**document, "node": node, "cluster": cluster}


def toml_text(document: Mapping[str, Mapping[str, Any]]) -> str:
    """TOML for a document of tables of plain values (strings, numbers, booleans, lists)."""
    lines = ["# Written by meridian demo --processes-per-region; edits are overwritten."]
    for name, table in document.items():
        lines += ["", f"[{name}]"]
        lines += [f"{key} = {_value(value)}" for key, value in table.items()]
    return "\n".join(lines) + "\n"


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string: the same escapes
    if isinstance(value, list):
        return "[" + ", ".join(_value(item) for item in value) + "]"
    raise ProcessesError(f"cannot write {type(value).__name__} values in a derived config")
