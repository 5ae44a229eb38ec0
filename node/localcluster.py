"""Start, watch, kill and stop local node processes: used by the demo, tests and benchmarks.

Each node is a real ``meridian node`` process (``python -m meridian node --config FILE``) with its
log in ``<data_dir>/../logs/<data_dir's name>.log`` (``data/logs/eu.log`` for ``data/eu``,
``eu-2.log`` for ``data/eu-2``). `write_configs` makes a set of node configs on free loopback
ports for a throwaway cluster (tests, benchmarks), with one or several processes per region.

Node keys: `write_configs` gives every node an Ed25519 key and the cluster a keyring (in
``<folder>/keys/``); `ensure_keys` does the same for existing configs whose key files are missing
(``meridian demo`` calls it, so a fresh checkout needs no manual step). Private key files are
created with mode 0600 in a 0700 folder. For a real cluster, make keys on each node's machine
with ``python -m meridian.node.localcluster keys --out DIR NODE:REGION ...`` and copy only the
keyring (public keys) around.

Mixed versions: `extract_release` writes the tree of the previous release (``release-0.2``,
shipped as configs/releases/release-0.2.tar.gz; other tags through ``git archive``) to a
folder; `start_node(..., code=FOLDER)` runs a node from that tree (same interpreter and
dependencies), and `upgrade_node` drains such a node and restarts it on the same config and
data directory with this code.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meridian.node.config import NodeConfig
from meridian.node.launcher import FORK_ENV, LaunchedProcess, shared_launcher
from meridian.resources import RELEASES_DIR
from meridian.sync.identity import Keyring, KeyringEntry, NodeIdentity

STARTUP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
RELEASE_TAG = "release-0.2"  # the previous release: speaks peer protocol 2 only
# The shipped tree of the previous release (commit 737b46c): `git archive --format=tar
# release-0.2 meridian node sync crdt_models games sim configs pyproject.toml | gzip -n -9`.
RELEASE_SHA256 = {
    "release-0.2": "6306cae16e9b9fc42dce4f9e404f0ddc28a5190101467e2f797d646ddbc68459",
}
DRAIN_MARGIN_S = 20.0  # a draining node exits by its drain deadline plus this (flush, stop)
SECRET_ENV = "MERIDIAN_CLUSTER_SECRET"
TOKEN_ENV = "MERIDIAN_ADMIN_TOKEN"
KEYS_FOLDER = "keys"
KEYRING_FILE = "keyring.toml"


def cluster_env() -> dict[str, str]:
    """The environment for a cluster's processes: a fresh secret and token unless already set."""
    env = dict(os.environ)
    env.setdefault(SECRET_ENV, secrets.token_urlsafe(32))
    env.setdefault(TOKEN_ENV, secrets.token_urlsafe(24))
    return env


@dataclass
class LocalNode:
    config: NodeConfig
    process: subprocess.Popen[bytes] | LaunchedProcess
    log_path: Path


def start_node(config: NodeConfig, env: dict[str, str], code: Path | None = None) -> LocalNode:
    """Start ``meridian node`` for `config`; with `code`, from that source tree (an older
    release written by `extract_release`) instead of the installed package."""
    log_dir = config.data_dir.parent / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{config.data_dir.name}.log"  # eu for data/eu, eu-2 for data/eu-2
    argv = ["node", "--config", str(config.config_path)]
    if code is None and _forks(env):
        return LocalNode(config, shared_launcher().start(argv, env, log_path), log_path)
    if code is not None:  # its meridian/ comes first on the path, before the installed one
        env = {**env, "PYTHONPATH": str(code)}
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "meridian", *argv],
            env=env,
            cwd=code,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches the demo only; it stops the nodes in order
        )
    return LocalNode(config, process, log_path)


def _forks(env: dict[str, str]) -> bool:
    """Whether the node may be forked from the launcher (node/launcher.py): asked for, and no
    interpreter setting (PYTHONPATH, PYTHONHASHSEED, ...) differs from the launcher's, which
    was started with this process's environment."""
    if env.get(FORK_ENV) != "1":
        return False
    names = {name for name in (*env, *os.environ) if name.startswith("PYTHON")}
    return all(env.get(name) == os.environ.get(name) for name in names)


class ReleaseMissing(RuntimeError):
    """The previous release is neither shipped (configs/releases/) nor in the git repository."""


def extract_release(dest: Path, tag: str = RELEASE_TAG, repo: Path | None = None) -> Path:
    """Write the source tree of release `tag` into `dest` and return `dest`.

    The shipped archive (configs/releases/TAG.tar.gz, checked against RELEASE_SHA256) comes
    first: it needs no git, no tags and no history, so a shallow clone, a copy without ``.git``
    and an installed wheel all have it. Other tags come from the git repository with
    ``git archive`` (which keeps the meridian/ symlinks). ReleaseMissing says how to get it."""
    dest.mkdir(parents=True, exist_ok=True)
    shipped = RELEASES_DIR / f"{tag}.tar.gz"
    if shipped.is_file():
        check_shipped_release(shipped, tag)
        subprocess.run(["tar", "-xzf", str(shipped), "-C", str(dest)], check=True)
    else:
        archive = _git_archive(tag, repo or Path(__file__).resolve().parent)
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    if not (dest / "meridian" / "__main__.py").is_file():
        raise ReleaseMissing(f"{tag} has no meridian/__main__.py: not a release of this project")
    return dest


def check_shipped_release(archive: Path, tag: str) -> None:
    """ReleaseMissing unless `archive` is the file this code was shipped with."""
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    if digest != RELEASE_SHA256.get(tag):
        raise ReleaseMissing(
            f"{archive} has sha256 {digest}, not the {tag} this code ships "
            f"({RELEASE_SHA256.get(tag, 'none recorded')}): restore it from the repository"
        )


def _git_archive(tag: str, repo: Path) -> bytes:
    """The tar of git tag `tag` in the repository holding `repo`, or ReleaseMissing."""
    found = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--verify", "--quiet", f"{tag}^{{commit}}"],
        capture_output=True,
        text=True,
    )
    if found.returncode != 0:
        raise ReleaseMissing(
            f"the release {tag} is neither shipped in {RELEASES_DIR} nor a tag in the git "
            f"repository at {repo} ({found.stderr.strip() or 'no such tag'}): fetch it with "
            f"`git fetch --tags origin` (in a shallow clone first `git fetch --unshallow`), or "
            f"create the tag with `git tag {tag} COMMIT`"
        )
    top = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--show-toplevel"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return subprocess.run(  # from the top: in a subfolder git archives only that folder
        ["git", "-C", top, "archive", "--format=tar", found.stdout.strip()],
        capture_output=True,
        check=True,
    ).stdout


def upgrade_node(
    node: LocalNode, env: dict[str, str], code: Path | None = None
) -> tuple[int | None, LocalNode]:
    """Drain `node` (SIGTERM: its players move to other regions), wait for it to exit, and
    start it again on the same config and data directory from `code` (default: this code).
    Returns the drained process's exit code (None: it had to be killed) and the new node."""
    node.process.send_signal(signal.SIGTERM)
    try:
        code_returned: int | None = node.process.wait(
            timeout=node.config.drain_deadline_s + DRAIN_MARGIN_S
        )
    except subprocess.TimeoutExpired:
        kill_node(node)
        code_returned = None
    return code_returned, start_node(node.config, env, code)


# How often a forming mesh is checked (three /healthz requests): a node process answers after
# about half a second and its links follow within milliseconds, so a cluster is usually whole
# on the first check after its last node answers; a fraction of a fixed 0.2 s step was the
# wait of every cluster start.
MESH_POLL_S = 0.05


def wait_for_mesh(nodes: list[LocalNode], timeout: float = STARTUP_TIMEOUT_S) -> bool:
    """Wait until every node answers /healthz and is linked to all the others."""
    deadline = time.monotonic() + timeout
    want = len(nodes) - 1
    while time.monotonic() < deadline:
        for node in nodes:
            if node.process.poll() is not None:
                print(
                    f"node {node.config.node_id} exited with {node.process.returncode}:\n"
                    f"{_tail(node.log_path)}",
                    file=sys.stderr,
                )
                return False
        health = [fetch_health(node.config.public_url) for node in nodes]
        if all(h is not None and len(h["peers"]) >= want for h in health):
            return True
        time.sleep(MESH_POLL_S)
    print(
        f"the cluster did not form within {timeout:.0f} s; logs in {nodes[0].log_path.parent}",
        file=sys.stderr,
    )
    return False


def fetch_health(base_url: str) -> dict[str, Any] | None:
    """The node's /healthz body (``status`` "ok" or "degraded"), or None if it does not answer."""
    try:
        with urllib.request.urlopen(f"{base_url}/healthz", timeout=2) as response:
            body: dict[str, Any] = json.loads(response.read())
            return body
    except urllib.error.HTTPError as error:  # 503: degraded, and the body says why
        try:
            degraded: dict[str, Any] = json.loads(error.read())
            return degraded if error.code == 503 else None
        except (OSError, ValueError):
            return None
    except (OSError, ValueError):
        return None


def stop_nodes(nodes: list[LocalNode]) -> None:
    for node in nodes:
        if node.process.poll() is None:
            node.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for node in nodes:
        try:
            node.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            node.process.kill()
            node.process.wait()


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        return probe.connect_ex((host, port)) == 0


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def kill_node(node: LocalNode) -> None:
    """SIGKILL: no shutdown, no flush - what a crash looks like."""
    node.process.kill()
    node.process.wait()


# Ports for local nodes come from below Linux's ephemeral range (32768-60999 by default): a
# port the kernel hands out for bind(0) comes from that range, and between the probe and the
# node's own bind an outgoing connection of any process may be given it (the node then exits
# with "address already in use", seen with two test workers starting clusters at once).
# Several local clusters started side by side by different processes (parallel test workers)
# can narrow the range each draws from with MERIDIAN_LOCAL_PORTS=FIRST-LAST: a port free when
# drawn may belong to another cluster's node that is down for a restart, which then cannot bind
# it again, or whose peers keep dialling it.
PORTS_ENV = "MERIDIAN_LOCAL_PORTS"


def _local_ports(spec: str | None) -> range:
    """LOCAL_PORTS from the environment's FIRST-LAST, else 20,000-31,999."""
    if not spec:
        return range(20_000, 32_000)
    first, _, last = spec.partition("-")
    try:
        ports = range(int(first), int(last) + 1)
    except ValueError:
        raise SystemExit(f"{PORTS_ENV}={spec!r}: expected FIRST-LAST, e.g. 20000-25999") from None
    if not ports or ports.start < 1024 or ports.stop > 65536:
        raise SystemExit(f"{PORTS_ENV}={spec!r}: a non-empty range within 1024-65535")
    return ports


LOCAL_PORTS = _local_ports(os.environ.get(PORTS_ENV))


def free_ports(count: int) -> list[int]:
    """`count` distinct loopback ports that are free now, drawn at random from LOCAL_PORTS (so
    two processes choosing at once rarely draw the same one)."""
    draw = secrets.SystemRandom()
    found: list[int] = []
    while len(found) < count:
        port = draw.choice(LOCAL_PORTS)
        if port not in found and _bindable(port):
            found.append(port)
    return found


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def write_configs(
    folder: Path,
    regions: list[str],
    *,
    extra: str = "",
    via: dict[tuple[str, str], int] | None = None,
    zeroconf: bool = False,
    ports: list[int] | None = None,
    node_keys: str = "",
    processes: int = 1,
) -> list[Path]:
    """Configs for `processes` node processes per region on free 127.0.0.1 ports, all peered
    with each other (a full mesh: every process is a full member, see docs/architecture.md
    *Several processes per region*).

    Process i of region r is node ``r-i``. With one process per region each config is
    ``<r>.toml`` with its data in ``data/<r>``; with more, ``<r>-<i>.toml`` and ``data/<r>-<i>``.
    `via[(a, b)]` is a port (a proxy's) through which `a` reaches `b` instead of b's own port,
    `a` and `b` named as the config files are (region, or node id with several processes).
    With `zeroconf`, the nodes get no static peers and must find each other by mDNS.
    `ports` are the nodes' listen ports in the order of the returned paths (default: free
    ones). `node_keys` are extra lines of the ``[node]`` table (e.g. ``drain_deadline_s = 8``);
    `extra` goes after ``[cluster]``.
    """
    if processes < 1:
        raise ValueError("processes per region must be at least 1")
    folder.mkdir(parents=True, exist_ok=True)
    nodes = [
        (region, f"{region}-{i}", region if processes == 1 else f"{region}-{i}")
        for region in regions
        for i in range(1, processes + 1)
    ]
    write_keys(folder / KEYS_FOLDER, [(node_id, region) for region, node_id, _name in nodes])
    chosen = ports or free_ports(len(nodes))
    port_of = dict(zip((name for _r, _n, name in nodes), chosen, strict=True))
    via = via or {}
    paths = []
    for region, node_id, name in nodes:
        others = [] if zeroconf else [other for _r, _n, other in nodes if other != name]
        peer_ports = [via.get((name, other), port_of[other]) for other in others]
        peers = ", ".join(f'"http://127.0.0.1:{port}"' for port in peer_ports)
        path = folder / f"{name}.toml"
        path.write_text(
            f"""[node]
id = "{node_id}"
region = "{region}"
listen = "127.0.0.1:{port_of[name]}"
data_dir = "data/{name}"
{node_keys}
[cluster]
peers = [{peers}]
secret_env = "{SECRET_ENV}"
admin_token_env = "{TOKEN_ENV}"
key_file = "{KEYS_FOLDER}/{node_id}.key"
keyring_file = "{KEYS_FOLDER}/{KEYRING_FILE}"
zeroconf = {"true" if zeroconf else "false"}
{extra}"""
        )
        paths.append(path)
    return paths


# --- node keys -----------------------------------------------------------------------------


def write_keys(folder: Path, nodes: list[tuple[str, str]]) -> Keyring:
    """A key file ``<node>.key`` for each (node id, region) that lacks one, and the keyring of
    all of them in ``keyring.toml``; existing keys are kept."""
    identities = [
        _ensure_key_file(folder / f"{node_id}.key", node_id, region) for node_id, region in nodes
    ]
    keyring = Keyring([identity.entry() for identity in identities])
    _write_if_changed(folder / KEYRING_FILE, keyring.to_toml())
    return keyring


def ensure_keys(configs: Sequence[NodeConfig]) -> None:
    """Give every node of a local cluster its key and a keyring listing all of them, creating
    only what is missing (the demo's configs name files under ``data/keys``).

    Nodes the keyring already lists stay listed: a demo run once with two processes per region
    and then with one still holds records signed by ``eu-2``, which a peer refilling its store
    must be able to verify."""
    identities = [
        _ensure_key_file(config.key_file, config.node_id, config.region) for config in configs
    ]
    entries = {identity.node_id: identity.entry() for identity in identities}
    for path in sorted({config.keyring_file for config in configs}):
        kept = {**_listed(path), **entries}
        _write_if_changed(path, Keyring(list(kept.values())).to_toml())


def _listed(path: Path) -> dict[str, KeyringEntry]:
    """The entries of an existing keyring file (none if it is missing or unreadable)."""
    try:
        return dict(Keyring.parse(tomllib.loads(path.read_text())).entries)
    except (OSError, ValueError):  # KeyMaterialError and TOMLDecodeError are ValueErrors
        return {}


def _ensure_key_file(path: Path, node_id: str, region: str) -> NodeIdentity:
    if path.exists():
        return NodeIdentity.from_pem(node_id, region, path.read_bytes())
    identity = NodeIdentity.generate(node_id, region)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Created 0600 from the start: the private key is never readable by others, not even briefly.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(identity.private_pem())
    return identity


def _write_if_changed(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m meridian.node.localcluster keys --out DIR NODE:REGION ...``"""
    parser = argparse.ArgumentParser(prog="python -m meridian.node.localcluster")
    commands = parser.add_subparsers(dest="command", required=True)
    keys = commands.add_parser("keys", help="make node keys (kept if present) and the keyring")
    keys.add_argument("--out", type=Path, required=True, help="folder for the files")
    keys.add_argument("nodes", nargs="+", metavar="NODE:REGION", help="e.g. eu-1:eu")
    args = parser.parse_args(argv)
    nodes = [tuple(text.split(":", 1)) for text in args.nodes]
    if any(len(node) != 2 for node in nodes):
        parser.error("nodes are given as NODE:REGION, e.g. eu-1:eu")
    keyring = write_keys(args.out, [(node, region) for node, region in nodes])
    for entry in sorted(keyring.entries.values(), key=_entry_id):
        print(f"{entry.node_id} (region {entry.region}): {args.out / (entry.node_id + '.key')}")
    print(f"keyring: {args.out / KEYRING_FILE} (copy it to every node)")
    return 0


def _entry_id(entry: KeyringEntry) -> str:
    return entry.node_id


if __name__ == "__main__":
    sys.exit(main())
