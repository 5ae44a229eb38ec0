"""Figures for the peer-side checks (prints them; asserts nothing). Two parts:

``checks``: the cost per update of checking a peer's update before applying it
(``sync.checks``: a scratch copy of the document, the rules of its kind, signatures), beside a
raw pycrdt apply of the same updates as the baseline. Three documents: ``accounts`` holding N
signed accounts with the home region changing one password per update, a ``test:`` key-value
document, and a ``game:`` document receiving moves. "warm" keeps the scratch copy between
updates (the normal case); "cold" copies the document for every update (a copy evicted or
spoilt by a refused update).

``lag``: a 3-node cluster on loopback (real processes). First logins for an unknown name on us
(each makes us pull the accounts document, and the answers bring nothing new: no-op updates us
must acknowledge), then writes on eu at a steady low rate, each polled on us until visible;
beside these, what eu's ``meridian_sync_replication_lag_seconds`` reports for us. For the
figures before a change, run this file with another checkout's venv, from outside any checkout
(the nodes are started with ``python -m meridian``, which would pick up ``./meridian``).

    .venv/bin/python bench/peer_security.py checks [--accounts 100 1000 10000]
    .venv/bin/python bench/peer_security.py lag [--writes 200 --interval 0.05 --idle 30]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pycrdt import Doc, Map

# --- checks ----------------------------------------------------------------------------------

WALL_MS = 1_750_000_000_000


def _updates_of(doc: Doc[Any], make: Callable[[Doc[Any], int], None], count: int) -> list[bytes]:
    captured: list[bytes] = []
    subscription = doc.observe(lambda event: captured.append(bytes(event.update)))
    for index in range(count):
        with doc.transaction():
            make(doc, index)
    doc.unobserve(subscription)
    return captured


Case = tuple[str, str, Doc[Any], list[bytes], Any]  # label, doc id, start, updates, keyring


def _accounts_case(accounts: int, count: int) -> Case:
    from meridian.crdt_models.accounts import ACCOUNTS_DOC, AccountsIndex, AccountsWriter
    from meridian.crdt_models.hlc import HybridLogicalClock
    from meridian.crdt_models.records import attach_signer
    from meridian.sync.identity import Keyring, NodeIdentity

    identity = NodeIdentity.from_seed("eu-1", "eu", bytes(32))
    keyring = Keyring([identity.entry()])
    clock = [WALL_MS]
    hlc = HybridLogicalClock("eu-1", lambda: clock[0])
    writer: Doc[Any] = Doc(client_id=5)
    attach_signer(writer, identity)
    for index in range(accounts):
        with writer.transaction():
            AccountsWriter(writer, "eu").register(
                f"uid{index:08d}", f"name{index}", "$argon2id$" + "h" * 80, "eu", hlc.now().encode()
            )
    start = writer.get_update()
    index_view = AccountsIndex(writer)

    def change_password(doc: Doc[Any], index: int) -> None:
        current = index_view.version(f"uid{index % accounts:08d}")
        assert current is not None
        AccountsWriter(doc, "eu").update(current, hlc.now().encode(), password_hash=f"p{index}")

    updates = _updates_of(writer, change_password, count)
    return (
        f"{ACCOUNTS_DOC} ({accounts:,} accounts)",
        ACCOUNTS_DOC,
        _replica(start),
        updates,
        keyring,
    )


def _kv_case(count: int) -> Case:
    from meridian.sync.identity import Keyring, NodeIdentity

    writer: Doc[Any] = Doc(client_id=5)
    for index in range(1000):
        writer.get("kv", type=Map)[f"k{index}"] = f"value {index}"
    start = writer.get_update()
    updates = _updates_of(
        writer, lambda doc, i: doc.get("kv", type=Map).update({f"k{i}": i}), count
    )
    keyring = Keyring([NodeIdentity.from_seed("eu-1", "eu", bytes(32)).entry()])
    return "test:kv (1,000 keys)", "test:kv", _replica(start), updates, keyring


def _game_case(count: int) -> Case:
    """A legal battleline game, one move record per update (the checks replay the rules)."""
    import meridian.games.battleline as battleline
    from meridian.crdt_models.game import GameInfo, GameWriter
    from meridian.crdt_models.hlc import Stamp
    from meridian.sync.identity import Keyring, NodeIdentity

    rng = random.Random(7)
    state = battleline.new_game(7, 0)
    plays: list[tuple[int, dict[str, Any]]] = []
    while state.result is None and len(plays) < count:
        player = battleline.to_move(state)
        legal = [m for m in battleline.legal_moves(state) if m["type"] not in ("pause", "give_up")]
        if player is None or not legal:
            break
        chosen = rng.choice(legal)
        plays.append((player, chosen))
        state = battleline.apply_move(state, player, chosen)
    start: Doc[Any] = Doc(client_id=5)
    created = Stamp(WALL_MS, 0, "eu-1").encode()
    info = GameInfo("g1", "battleline", ["u0", "u1"], ["a", "b"], 7, 0, created, "eu-1")
    GameWriter(start, "eu-1").create(info)
    parent = [""]

    def move(doc: Doc[Any], index: int) -> None:
        player, played = plays[index]
        stamp = Stamp(WALL_MS + 1 + index, 0, "eu-1").encode()
        parent[0] = GameWriter(doc, "eu-1").add_move(index, parent[0], player, played, stamp).key

    writer = _replica(start.get_update())
    updates = _updates_of(writer, move, len(plays))
    keyring = Keyring([NodeIdentity.from_seed("eu-1", "eu", bytes(32)).entry()])
    label = f"game:<gid> ({len(plays)} moves)"
    return label, "game:g1", start, updates, keyring


def _replica(update: bytes) -> Doc[Any]:
    doc: Doc[Any] = Doc(client_id=9)
    doc.apply_update(update)
    return doc


def _time_raw(start: Doc[Any], updates: list[bytes]) -> float:
    doc = _replica(start.get_update())
    began = time.perf_counter()
    for update in updates:
        doc.apply_update(update)
    return (time.perf_counter() - began) / len(updates)


def _time_checked(
    doc_id: str, start: Doc[Any], updates: list[bytes], keyring: Any, *, cold: bool
) -> float:
    from meridian.sync.checks import KeyringContext, UpdateChecker, forget_verified_signatures

    forget_verified_signatures()  # each pass verifies its signatures (remembered per process)
    doc = _replica(start.get_update())
    wall = [WALL_MS + 10_000_000]
    checker = UpdateChecker(KeyringContext(keyring, lambda: wall[0], 60_000))
    began = time.perf_counter()
    for update in updates:
        if cold:
            checker.forget(doc_id)
        checker.check(doc_id, doc, update)
        doc.apply_update(update)
        checker.applied(doc_id, doc)
    return (time.perf_counter() - began) / len(updates)


def run_checks(args: argparse.Namespace) -> None:
    cases = [_game_case(args.updates), _kv_case(args.updates)]
    cases += [_accounts_case(n, args.updates) for n in args.accounts]
    _time_checked(*cases[0][1:], cold=False)  # warm-up: imports, first calls
    print(f"{'document':<28} {'raw apply':>12} {'checked (warm)':>16} {'checked (cold)':>16}")
    for name, doc_id, start, updates, keyring in cases:
        raw = _time_raw(start, updates)
        warm = _time_checked(doc_id, start, updates, keyring, cold=False)
        cold_updates = updates[: max(5, len(updates) // 10)]
        cold = _time_checked(doc_id, start, cold_updates, keyring, cold=True)
        print(f"{name:<28} {raw * 1e6:>9.1f} µs {warm * 1e6:>13.1f} µs {cold * 1e6:>13.1f} µs")


# --- lag -------------------------------------------------------------------------------------


def _reported_lag(metrics: str, peer: str, region: str) -> dict[str, float]:
    pattern = (
        rf'meridian_sync_replication_lag_seconds\{{peer="{peer}",quantile="([0-9.]+)",'
        rf'region="{region}"\}} ([0-9.e+-]+)'
    )
    return {quantile: float(value) for quantile, value in re.findall(pattern, metrics)}


def _row(label: str, values: dict[str, float]) -> str:
    shown = " ".join(
        f"{values.get(q, float('nan')) * 1000:>7.1f}ms" for q in ("0.5", "0.9", "0.99")
    )
    return f"{label:<46} {shown}"


async def _unknown_logins(http: Any, url: str, seconds: float) -> None:
    """A login for a name `url` does not know makes it pull the accounts document from every
    peer (STEP1); with nothing new, the STEP2 answers are no-op updates to acknowledge."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        body = {"name": "nobody-here", "password": "not-a-password-1"}
        async with http.post(f"{url}/api/login", json=body) as response:
            await response.read()
        await asyncio.sleep(0.5)


async def _lag(folder: Path, writes: int, interval: float, idle: float) -> None:
    import aiohttp

    from meridian.node.config import load_config
    from meridian.node.localcluster import (
        TOKEN_ENV,
        cluster_env,
        start_node,
        stop_nodes,
        wait_for_mesh,
        write_configs,
    )

    env = cluster_env()
    paths = write_configs(folder, ["eu", "us", "ap"])
    configs = [load_config(path, env) for path in paths]
    nodes = [start_node(config, env) for config in configs]
    try:
        assert wait_for_mesh(nodes), "the cluster did not form"
        eu, us = configs[0].public_url, configs[1].public_url
        headers = {"Authorization": f"Bearer {env[TOKEN_ENV]}"}
        visible: list[float] = []
        async with aiohttp.ClientSession(headers=headers) as http:
            await _unknown_logins(http, us, idle)
            async with http.get(f"{eu}/metrics") as response:
                idle_lag = _reported_lag(await response.text(), "us-1", "us")
            for index in range(writes):
                began = time.perf_counter()
                url = f"{eu}/api/admin/docs/test:lag/k{index}"
                async with http.put(url, json={"value": index}) as response:
                    assert response.status == 200, await response.text()
                while True:
                    async with http.get(f"{us}/api/admin/docs/test:lag/k{index}") as response:
                        if response.status == 200:
                            break
                visible.append(time.perf_counter() - began)
                await asyncio.sleep(interval)
            async with http.get(f"{eu}/metrics") as response:
                metrics = await response.text()
        ordered = sorted(visible)
        measured = {
            str(q): ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]
            for q in (0.5, 0.9, 0.99)
        }
        print(
            f"{idle:g} s of unknown-name logins on us (no-op STEP2 answers), then {writes} "
            f"writes on eu, one every {interval * 1000:.0f} ms"
        )
        print(f"{'':<46} {'p50':>9} {'p90':>9} {'p99':>9}")
        print(_row("reported lag eu -> us after the logins", idle_lag))
        print(_row("write -> visible on us (measured)", measured))
        print(_row("reported lag eu -> us after the writes", _reported_lag(metrics, "us-1", "us")))
        print(f"mean write -> visible: {statistics.mean(visible) * 1000:.1f} ms")
    finally:
        stop_nodes(nodes)


def run_lag(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="meridian-lag-") as folder:
        asyncio.run(_lag(Path(folder), args.writes, args.interval, args.idle))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    checks = commands.add_parser("checks", help="check cost per update vs raw pycrdt apply")
    checks.add_argument("--accounts", type=int, nargs="+", default=[100, 1000, 10000])
    checks.add_argument("--updates", type=int, default=200)
    lag = commands.add_parser("lag", help="write -> visible on a peer vs the reported lag")
    lag.add_argument("--writes", type=int, default=200)
    lag.add_argument("--interval", type=float, default=0.05)
    lag.add_argument("--idle", type=float, default=30.0, help="seconds of no-op traffic first")
    args = parser.parse_args()
    random.seed(1)
    (run_checks if args.command == "checks" else run_lag)(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
