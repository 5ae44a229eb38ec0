"""Game service benchmark: many websocket players on real node processes on loopback.

Prints (targets from the issue; misses are printed as misses):

1. moves/s on one node: players in pairs play games as fast as the per-connection rate limit
   (docs/protocol.md: 20 messages/s) lets each of them, rematching when a game ends;
   target >= 3,000 moves/s per node;
2. move -> opponent latency on one node at a paced 1,000 moves/s: from a move sent to the
   opponent's ``game`` push that shows it; target p99 <= 10 ms;
3. the same across two regions (`sim.proxied.ProxiedCluster`: the link crosses a
   `sim.proxy.FaultProxy` with ``latency_s`` = ``--link-delay-ms``, default 20), paced;
4. idle connections on one node: open websockets (login + hello) in steps, RSS of the node per
   connection after each step and once the players have been idle for ``IDLE_WAIT_S`` (the
   node hands freed heap back every ``HEAP_TRIM_S``: the target is judged on that figure);
   target 10,000 connections at <= 20 KB each. A step that takes longer than
   ``--step-budget`` seconds ends the phase (and says so). Each websocket opens on a TCP
   connection of its own (as browsers open them), not on the one its login used.

Phases 1 and 2 also run, right after Meridian and with the same players, pacing and seconds,
against a bare websocket relay (`bench/relay.py`: two clients paired, the server forwards a
small JSON move) and print Meridian's moves/s, p99 and memory per connection as ratios to it
(``--no-relay`` skips it). Every figure is printed with the machine's load average (1 minute)
at its end: the machine may be shared, and CPU figures are steadier than times.

The players are `node.client.PlayerClient`s in this process and pick random legal moves: the
benchmark measures the server, not the heuristic (which costs the client ~2 ms a move). The
node processes and this process share the machine, so the client's CPU is printed with every
figure: when it is near 100 % of a core the client, not the node, is the limit.

Accounts are written straight into each node's store before it starts, with a cheap argon2
hash: registering and logging in 10,000 players with the server's argon2 settings would take
about 100 ms of CPU each. Everything after that (logins, sessions, websockets, games) is the
real service. It is not a test: it asserts nothing. ``--quick`` shortens every phase.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import resource
import socket
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import aiohttp
from pycrdt import Doc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for bench.relay as a script

from bench.nodeprofile import Profile, print_profile, sample
from bench.relay import RelayClient
from meridian.crdt_models.accounts import ACCOUNTS_DOC, AccountsWriter
from meridian.crdt_models.hlc import Stamp
from meridian.node.client import PlayerClient, RequestError
from meridian.node.config import NodeConfig
from meridian.node.gc_tuning import HEAP_TRIM_S
from meridian.node.localcluster import free_ports
from meridian.node.password_pool import PASSWORD_COSTS
from meridian.node.server import STORE_FILE
from meridian.sim.proxied import FAST_RECONNECT, ProxiedCluster
from meridian.sync.store import DocumentStore

PASSWORD = "bench-password"
CHEAP_HASH = PASSWORD_COSTS["test"]  # seeded accounts: the login rate measures the service
# A player's own token bucket, inside the server's (20 messages/s, bursts of 40) with room
# for the invitations: a player's moves come in runs (claim, play, draw), so a game can go
# faster than one player's average rate.
PLAYER_RATE, PLAYER_BURST = 18.0, 20.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
GAMES_START_S = 120.0
# Every simulated player connects from 127.0.0.1: lift the per-address connection limit.
ONE_ADDRESS_FOR_ALL = "\n[limits]\nconnections_per_address = 1000000\n"
LIGHT_PLAYERS, LIGHT_RATE = 20, 100.0  # phase 2b: latency without queueing
INVITE_AGAIN_S = 10.0  # a game has not started this long after an invitation: invite again


# --- processes and accounts ------------------------------------------------------------------


def raise_fd_limit() -> int:
    """Soft open-files limit up to the hard one (children inherit it); returns the limit."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def process_usage(pid: int) -> tuple[float, float]:
    """(RSS in KB, CPU seconds used) of a process, from /proc."""
    with open(f"/proc/{pid}/status") as status:
        rss = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return float(rss), (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def seed_accounts(configs: list[NodeConfig], names: list[str]) -> None:
    """Write the players' accounts into every node's store (see module docstring)."""
    password_hash = CHEAP_HASH.hash(PASSWORD)
    doc: Doc[Any] = Doc()
    stamp = Stamp(int(time.time() * 1000), 0, configs[0].node_id).encode()
    region = configs[0].region
    with doc.transaction():
        writer = AccountsWriter(doc, region)
        for index, name in enumerate(names):
            writer.register(f"benchuid{index:08d}", name, password_hash, region, stamp)
    update = doc.get_update()
    for config in configs:
        config.data_dir.mkdir(parents=True, exist_ok=True)
        store = DocumentStore(config.data_dir / STORE_FILE)
        store.stage(ACCOUNTS_DOC, update)
        store.commit()
        store.close()


@contextmanager
def temp_folder() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="meridian-bench-") as folder:
        yield Path(folder)


async def start_cluster(
    folder: Path, regions: list[str], names: list[str], link_delay_s: float = 0.0
) -> ProxiedCluster:
    """Nodes for `regions` (links through delaying proxies) that know the players `names`."""
    cluster = ProxiedCluster(folder, regions, extra=FAST_RECONNECT + ONE_ADDRESS_FOR_ALL)
    for proxy in cluster.proxies.values():
        proxy.latency_s = link_delay_s
    seed_accounts(list(cluster.configs.values()), names)
    try:
        await cluster.start()
    except RuntimeError:
        await cluster.stop()
        raise SystemExit(f"the nodes did not start; see the logs in {folder / 'logs'}") from None
    return cluster


def node_pids(cluster: ProxiedCluster) -> list[int]:
    return [node.process.pid for node in cluster.nodes.values()]


def node_urls(cluster: ProxiedCluster) -> list[str]:
    return [cluster.url(region) for region in cluster.regions]


# --- players -------------------------------------------------------------------------------


@dataclass
class Tally:
    """What the players of one phase measured."""

    moves: int = 0
    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    sent_at: dict[tuple[str, int], tuple[float, str]] = field(default_factory=dict)
    recording: bool = False

    def error(self, code: str) -> None:
        self.errors[code] = self.errors.get(code, 0) + 1


class Pacer:
    """Hands out send slots at most `rate` per second (None: no limit)."""

    def __init__(self, rate: float | None) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self.next_slot = 0.0

    async def wait(self) -> None:
        if not self.interval:
            return
        now = time.perf_counter()
        slot = max(now, self.next_slot)
        self.next_slot = slot + self.interval
        if slot > now:
            await asyncio.sleep(slot - now)


class Client(Protocol):
    """What a `BenchPlayer` uses of its connection: `PlayerClient` or `relay.RelayClient`."""

    you: dict[str, Any]
    latest: dict[str, dict[str, Any]]
    on_push: Callable[[dict[str, Any]], None] | None

    async def request(self, kind: str, **fields: Any) -> dict[str, Any]: ...

    async def close(self) -> None: ...


class BenchPlayer:
    """Plays random legal moves as soon as it may; the inviter of a pair starts every game."""

    def __init__(
        self, client: Client, partner: str | None, tally: Tally, pacer: Pacer, seed: int
    ) -> None:
        self.client = client
        self.name = ""
        self.partner = partner
        self.tally = tally
        self.pacer = pacer
        self.rng = random.Random(seed)
        self.game: dict[str, Any] | None = None
        self.acted: tuple[str, int] = ("", -1)  # the game and ply this player last moved at
        self.seen_ply: dict[str, int] = {}
        self.tokens, self.refilled = PLAYER_BURST, time.perf_counter()
        self.accepted: set[str] = set()
        self.invited_at = -INVITE_AGAIN_S
        self.news = asyncio.Event()
        client.on_push = self.on_push

    def on_push(self, push: dict[str, Any]) -> None:
        kind = push["type"]
        if kind == "game" and push.get("you") is not None:
            self._note_arrival(push, time.perf_counter())
            self.game = push
            self.news.set()
        elif kind == "invites" and push["incoming"]:
            self.news.set()

    def _note_arrival(self, push: dict[str, Any], now: float) -> None:
        """Latency of every opponent move this push shows for the first time."""
        gid, ply = push["game"], push["ply"]
        for earlier in range(self.seen_ply.get(gid, 0), ply):
            sent = self.tally.sent_at.get((gid, earlier))
            if sent is not None and sent[1] != self.name:
                del self.tally.sent_at[(gid, earlier)]
                if self.tally.recording:
                    self.tally.latencies.append(now - sent[0])
        self.seen_ply[gid] = max(ply, self.seen_ply.get(gid, 0))

    async def run(self, stop: asyncio.Event) -> None:
        self.name = self.client.you["name"]
        while not stop.is_set():
            await self._start_game_if_idle()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.news.wait(), 0.5)
            self.news.clear()
            game = self.game
            if game is None or stop.is_set():
                continue
            if game["status"] != "live":
                self.game, self.invited_at = None, -INVITE_AGAIN_S  # rematch at once
            elif game["to_move"] == game["you"] and game["legal"]:
                await self._move(game)

    async def _start_game_if_idle(self) -> None:
        """Accept each invitation once; invite the partner again only after INVITE_AGAIN_S
        (a loaded server must not be flooded with repeated invitations)."""
        if self.game is not None:
            return
        incoming = self.client.latest.get("invites", {}).get("incoming", [])
        fresh = [i["iid"] for i in incoming if i["iid"] not in self.accepted]
        now = time.perf_counter()
        try:
            if fresh:
                self.accepted.add(fresh[-1])
                await self.client.request("accept", invite=fresh[-1])
            elif self.partner and now - self.invited_at > INVITE_AGAIN_S:
                self.invited_at = now
                await self.client.request("invite", to=self.partner)
        except RequestError as error:
            self.tally.error(f"start:{error.code}")
            if error.code == "offline":
                self.invited_at = now - INVITE_AGAIN_S + 0.2  # not online yet: ask again soon
        except TimeoutError:
            self.tally.error("start:no reply in 15 s")

    async def _take_token(self) -> None:
        now = time.perf_counter()
        self.tokens = min(PLAYER_BURST, self.tokens + (now - self.refilled) * PLAYER_RATE)
        self.refilled = now
        if self.tokens < 1:
            await asyncio.sleep((1 - self.tokens) / PLAYER_RATE)
            self.tokens, self.refilled = 1.0, time.perf_counter()
        self.tokens -= 1

    async def _move(self, game: dict[str, Any]) -> None:
        # (per game: a rematch starts again at ply 0, and must not wait for the old game's ply)
        if game["game"] == self.acted[0] and game["ply"] <= self.acted[1]:
            return
        await self._take_token()
        await self.pacer.wait()
        self.acted = (game["game"], game["ply"])
        self.tally.sent_at[(game["game"], game["ply"])] = (time.perf_counter(), self.name)
        try:
            await self.client.request(
                "move", game=game["game"], move=self.rng.choice(game["legal"])
            )
        except RequestError as error:
            self.tally.error(error.code)
            return
        except TimeoutError:
            self.tally.error("move:no reply in 15 s")
            return
        if self.tally.recording:
            self.tally.moves += 1


async def connect_player(
    http: aiohttp.ClientSession, url: str, name: str, *, queue_pushes: bool = False
) -> PlayerClient:
    client = PlayerClient(url, http, queue_pushes=queue_pushes)
    await client.login(name, PASSWORD)
    await client.connect(heartbeat=None)
    return client


async def connect_relay_player(http: aiohttp.ClientSession, url: str, name: str) -> Client:
    client = RelayClient(url, http, name)
    await client.connect()
    return client


Connect = Callable[[aiohttp.ClientSession, str, str], Awaitable[Any]]


async def open_players(
    http: aiohttp.ClientSession,
    urls: list[str],
    names: list[str],
    batch: int = 200,
    connect: Connect = connect_player,
) -> list[Any]:
    """Log in and connect each name at urls[i % len(urls)], `batch` at a time."""
    clients: list[Any] = []
    for start in range(0, len(names), batch):
        chunk = names[start : start + batch]
        clients += await asyncio.gather(
            *(connect(http, urls[(start + i) % len(urls)], name) for i, name in enumerate(chunk))
        )
    return clients


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


# --- phases --------------------------------------------------------------------------------


IDLE_WAIT_S = HEAP_TRIM_S + 2.0  # phase 4's idle players, before the final figure
PROFILE_S = 5.0  # py-spy samples the node this long after phase 1's measurement


@dataclass
class GamesResult:
    moves_per_s: float
    p50_ms: float
    p99_ms: float
    samples: int
    node_cpu: list[float]  # share of one core, per node
    client_cpu: float
    errors: dict[str, int]
    setup_s: float  # logging everybody in and starting every game
    playing: int  # players at a table when the measurement started
    # per node: group commit p50, p99 (fsync included); durable wait p50, p99 (commit_latency_ms)
    commit_ms: list[tuple[float, float, float, float]]
    kb_per_player: float  # growth of the servers' RSS from before the log-ins, per player
    load: float  # the machine's load average (1 minute) when the measurement ended
    profile: Profile | str | None = None  # the first node, just after the measurement


@dataclass
class Servers:
    """What the players play against: Meridian's node processes or the bare relay."""

    urls: list[str]
    pids: list[int]
    connect: Connect = connect_player
    has_store: bool = True  # Meridian: read the group-commit times off /metrics


def cluster_servers(cluster: ProxiedCluster) -> Servers:
    return Servers(node_urls(cluster), node_pids(cluster))


async def play_games(
    servers: Servers, names: list[str], seconds: float, rate: float | None, profile: bool = False
) -> GamesResult:
    """Pairs (2k, 2k+1) play; pairs span the nodes when there are two. Measures `seconds`
    (with `profile`, py-spy then samples the first node under the same load for up to
    PROFILE_S more: not while measuring, where its own CPU would cost the node's)."""
    urls, pids = servers.urls, servers.pids
    tally, pacer, stop = Tally(), Pacer(rate), asyncio.Event()
    connector = aiohttp.TCPConnector(limit=0)
    rss_before = sum(process_usage(pid)[0] for pid in pids)
    async with aiohttp.ClientSession(connector=connector) as http:
        setup_started = time.perf_counter()
        clients = await open_players(http, urls, names, connect=servers.connect)
        players = [
            BenchPlayer(c, names[i + 1] if i % 2 == 0 else None, tally, pacer, i)
            for i, c in enumerate(clients)
        ]
        tasks = [asyncio.create_task(p.run(stop)) for p in players]
        playing = await _until_all_play(players)
        setup_s = time.perf_counter() - setup_started
        await asyncio.sleep(1.0)  # warm-up
        before = [process_usage(pid)[1] for pid in pids], own_cpu_s()
        tally.recording, started = True, time.perf_counter()
        await asyncio.sleep(seconds)
        tally.recording, elapsed = False, time.perf_counter() - started
        after = [process_usage(pid)[1] for pid in pids], own_cpu_s()
        load = os.getloadavg()[0]
        rss_after = sum(process_usage(pid)[0] for pid in pids)
        node_profile = await sample(pids[0], min(seconds, PROFILE_S)) if profile else None
        commits = (
            [await asyncio.to_thread(commit_latency_ms, url) for url in urls]
            if servers.has_store
            else []
        )
        stop.set()
        await asyncio.gather(*tasks)
        await asyncio.gather(*(c.close() for c in clients))
    return GamesResult(
        moves_per_s=tally.moves / elapsed,
        p50_ms=percentile(tally.latencies, 0.5) * 1000,
        p99_ms=percentile(tally.latencies, 0.99) * 1000,
        samples=len(tally.latencies),
        node_cpu=[(b - a) / elapsed for a, b in zip(before[0], after[0], strict=True)],
        client_cpu=(after[1] - before[1]) / elapsed,
        errors=tally.errors,
        setup_s=setup_s,
        playing=playing,
        commit_ms=commits,
        kb_per_player=(rss_after - rss_before) / max(1, len(names)),
        load=load,
        profile=node_profile,
    )


@contextlib.asynccontextmanager
async def relay_server() -> Any:
    """The bare relay (`bench/relay.py`) in its own process, as `Servers`."""
    port = free_ports(1)[0]
    script = Path(__file__).with_name("relay.py")
    process = await asyncio.create_subprocess_exec(sys.executable, str(script), "--port", str(port))
    try:
        deadline = time.perf_counter() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.perf_counter() > deadline or process.returncode is not None:
                    raise SystemExit("the bare relay did not start") from None
                await asyncio.sleep(0.05)
        yield Servers([f"http://127.0.0.1:{port}"], [process.pid], connect_relay_player, False)
    finally:
        process.terminate()
        await process.wait()


async def play_relay(
    args: argparse.Namespace, names: list[str], rate: float | None
) -> GamesResult | None:
    """The same games against the bare relay (None with --no-relay)."""
    if args.no_relay:
        return None
    async with relay_server() as servers:
        return await play_games(servers, names, args.seconds, rate)


def commit_latency_ms(url: str) -> tuple[float, float, float, float]:
    """The node's recent group commits, p50 and p99 in ms, then the same of the durable wait
    (first change of a commit queued -> known durable on the loop), from its /metrics: with the
    push gate a move reaches the opponent only after its commit, so this is the latency it may
    add."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
        lines = response.read().decode().splitlines()
    found = []
    for name in ("meridian_store_commit_latency_seconds", "meridian_store_durable_wait_seconds"):
        for quantile in ("0.5", "0.99"):
            prefix = f'{name}{{quantile="{quantile}"}} '
            line = next((ln for ln in lines if ln.startswith(prefix)), None)
            found.append(float(line[len(prefix) :]) * 1000 if line else float("nan"))
    return found[0], found[1], found[2], found[3]


async def _until_all_play(players: list[BenchPlayer]) -> int:
    """Wait until every player is at a table (or GAMES_START_S passed); how many are."""
    deadline = time.perf_counter() + GAMES_START_S
    while time.perf_counter() < deadline:
        playing = sum(1 for p in players if p.game is not None)
        if playing == len(players):
            break
        await asyncio.sleep(0.1)
    return sum(1 for p in players if p.game is not None)


def print_games(title: str, result: GamesResult, target: str) -> None:
    cpu = ", ".join(f"{c:.0%}" for c in result.node_cpu)
    print(f"\n{title}")
    print(
        f"   {result.moves_per_s:8,.0f} moves/s   move -> opponent push: p50 {result.p50_ms:.1f} ms"
        f"  p99 {result.p99_ms:.1f} ms  ({result.samples:,} samples)   "
        f"load average {result.load:.1f}"
    )
    print(f"   node CPU {cpu} of a core; this client {result.client_cpu:.0%}   {target}")
    if result.commit_ms:
        commits = ", ".join(f"p50 {a:.1f} ms p99 {b:.1f} ms" for a, b, _, _ in result.commit_ms)
        waits = ", ".join(f"p50 {c:.1f} ms p99 {d:.1f} ms" for _, _, c, d in result.commit_ms)
        print(f"   group commit (fsync included; a shown move waits for it): {commits}")
        print(f"   durable wait (first change queued -> known on the event loop): {waits}")
    if result.moves_per_s:
        per_move = max(result.node_cpu) / result.moves_per_s * 1000
        print(
            f"   node CPU per move {per_move:.3f} ms: at most {1000 / per_move:,.0f} moves/s "
            "on one free core (CPU time: little affected by other load on the machine)"
        )
    print(
        f"   (log-in of all players and start of the games took {result.setup_s:.1f} s; "
        f"{result.playing} were at a table when the measurement began; "
        f"server RSS grew {result.kb_per_player:.1f} KB per player)"
    )
    if result.errors:
        print(f"   refused: {result.errors}")


def print_ratios(meridian: GamesResult, relay: GamesResult | None) -> None:
    """The bare relay's figures and Meridian's as ratios to them."""
    if relay is None:
        return
    print_games("   the bare relay, same players and pacing:", relay, "(baseline)")

    def ratio(ours: float, theirs: float) -> str:
        return f"{ours / theirs:.2f}x" if theirs else "n/a"

    def cpu_per_move(result: GamesResult) -> float:
        return max(result.node_cpu) / result.moves_per_s if result.moves_per_s else 0.0

    print(
        f"   Meridian / bare relay: moves/s {ratio(meridian.moves_per_s, relay.moves_per_s)}, "
        f"p99 {ratio(meridian.p99_ms, relay.p99_ms)}, "
        f"server CPU per move {ratio(cpu_per_move(meridian), cpu_per_move(relay))}, "
        f"memory per connection {ratio(meridian.kb_per_player, relay.kb_per_player)}"
    )


async def phase_throughput(args: argparse.Namespace, folder: Path) -> None:
    names = [f"tp{i}" for i in range(args.players)]
    cluster = await start_cluster(folder / "throughput", ["eu"], names)
    try:
        servers = cluster_servers(cluster)
        result = await play_games(servers, names, args.seconds, None, profile=not args.no_profile)
    finally:
        await cluster.stop()
    relay = await play_relay(args, names, None)
    verdict = "MET" if result.moves_per_s >= 3000 else "MISSED"
    print_games(
        f"1. throughput, one node, {args.players} players, each <= {PLAYER_RATE:.0f} moves/s:",
        result,
        f"target >= 3,000 moves/s: {verdict}",
    )
    print_ratios(result, relay)
    if verdict == "MISSED":
        print_shortfall(result)
    if result.profile is not None:
        print_profile(result.profile, "the node's time")


def print_shortfall(result: GamesResult) -> None:
    """By how much 3,000 moves/s is missed, and which side ran out of CPU first."""
    short = 3000 - result.moves_per_s
    node = max(result.node_cpu)
    per_move_ms = node / result.moves_per_s * 1000 if result.moves_per_s else 0.0
    limit = "the node" if node >= max(0.9, result.client_cpu) else "neither process alone"
    if result.client_cpu >= 0.9 and result.client_cpu > node:
        limit = "this client (near a full core)"
    print(
        f"   missed by {short:,.0f} moves/s ({short / 3000:.0%}); node {node:.0%} and client "
        f"{result.client_cpu:.0%} of a core, on {os.cpu_count()} cores: the limit is {limit}; "
        f"3,000 moves/s need {3 * per_move_ms:.0%} of a core at {per_move_ms:.3f} ms a move"
    )


async def phase_latency(args: argparse.Namespace, folder: Path) -> None:
    names = [f"lat{i}" for i in range(args.latency_players)]
    light = [f"light{i}" for i in range(LIGHT_PLAYERS)]
    cluster = await start_cluster(folder / "latency", ["eu"], names + light)
    try:
        servers = cluster_servers(cluster)
        result = await play_games(servers, names, args.seconds, args.rate)
        # The same node, lightly loaded: the latency without queueing.
        unloaded = await play_games(servers, light, args.seconds, LIGHT_RATE)
    finally:
        await cluster.stop()
    relay = await play_relay(args, names, args.rate)
    relay_unloaded = await play_relay(args, light, LIGHT_RATE)
    verdict = "MET" if result.p99_ms <= 10 and result.moves_per_s >= 0.9 * args.rate else "MISSED"
    print_games(
        f"2. latency, one node, paced at {args.rate:,.0f} moves/s "
        f"({args.latency_players} players):",
        result,
        f"target p99 <= 10 ms at 1,000 moves/s: {verdict}",
    )
    print_ratios(result, relay)
    print_games(
        f"2b. the same node lightly loaded: {LIGHT_RATE:.0f} moves/s, {LIGHT_PLAYERS} players:",
        unloaded,
        "(no target: the latency without queueing)",
    )
    print_ratios(unloaded, relay_unloaded)


async def phase_cross_region(args: argparse.Namespace, folder: Path) -> None:
    names = [f"xr{i}" for i in range(args.cross_players)]
    delay = args.link_delay_ms / 1000
    cluster = await start_cluster(folder / "cross", ["eu", "us"], names, link_delay_s=delay)
    try:
        result = await play_games(cluster_servers(cluster), names, args.seconds, args.cross_rate)
    finally:
        await cluster.stop()
    print_games(
        f"3. latency across two regions, link delay {args.link_delay_ms:.0f} ms each way, paced "
        f"at {args.cross_rate:,.0f} moves/s ({args.cross_players} players, pairs split):",
        result,
        f"(floor: the link delay, {args.link_delay_ms:.0f} ms, plus coalescing; FaultProxy "
        "delays chunk after chunk, so a busy link adds up to twice the delay)",
    )


async def phase_idle(args: argparse.Namespace, folder: Path) -> None:
    names = [f"idle{i}" for i in range(args.idle)]
    cluster = await start_cluster(folder / "idle", ["eu"], names)
    print(
        f"\n4. idle connections on one node (login + websocket + hello), in steps of {args.step}:"
    )
    # Each websocket on a TCP connection of its own, as browsers open them: with keep-alive the
    # client would upgrade the connection its login used, and the node would keep that login's
    # response referenced (aiohttp's request loop) for the life of the websocket.
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    try:
        async with aiohttp.ClientSession(connector=connector) as http:
            ramp = IdleRamp(http, node_urls(cluster)[0], node_pids(cluster)[0], args.step_budget)
            for start in range(0, args.idle, args.step):
                if not await ramp.step(names[start : start + args.step]):
                    break
            # Idle players: the node hands the heap the logins freed back to the system every
            # HEAP_TRIM_S (node.gc_tuning), which the figure after the ramp does not show yet.
            await asyncio.sleep(IDLE_WAIT_S)
            ramp.report_held()
            await asyncio.gather(*(c.close() for c in ramp.clients))
    finally:
        await cluster.stop()


class IdleRamp:
    """Opens idle connections step by step, measuring the node after each step."""

    def __init__(self, http: aiohttp.ClientSession, url: str, pid: int, budget_s: float) -> None:
        self.http, self.url, self.pid, self.budget_s = http, url, pid, budget_s
        self.base_rss = process_usage(pid)[0]
        self.clients: list[PlayerClient] = []
        self.per_connection_kb = 0.0  # after the last completed step

    async def step(self, names: list[str]) -> bool:
        """Open one step of connections; False if it failed or took longer than the budget."""
        started, node_cpu, own_cpu = time.perf_counter(), process_usage(self.pid)[1], own_cpu_s()
        target = len(self.clients) + len(names)
        opening = asyncio.ensure_future(open_players(self.http, [self.url], names, batch=100))
        done, _pending = await asyncio.wait({opening}, timeout=self.budget_s)
        elapsed = time.perf_counter() - started
        if not done:
            opening.cancel()
            print(f"   step to {target:,}: not done within {self.budget_s:.0f} s; stop")
            return False
        try:
            self.clients += opening.result()
        except (RequestError, aiohttp.ClientError, OSError) as error:
            print(f"   step to {target:,} failed: {error!r}; stop")
            return False
        rss, cpu = process_usage(self.pid)
        self.per_connection_kb = (rss - self.base_rss) / len(self.clients)
        print(
            f"   {len(self.clients):>6,} open: step took {elapsed:5.1f} s "
            f"({len(names) / elapsed:,.0f} logins/s; {(cpu - node_cpu) / len(names) * 1000:.2f} "
            f"ms of node CPU per connection); node RSS {rss / 1024:,.0f} MB, "
            f"{self.per_connection_kb:.1f} KB per connection; this client "
            f"{(own_cpu_s() - own_cpu) / elapsed:.0%} of a core; load average "
            f"{os.getloadavg()[0]:.1f}"
        )
        return True

    def report_held(self) -> None:
        held = sum(1 for c in self.clients if c.ws is not None and not c.ws.closed)
        closes = Counter(str(c.closed) for c in self.clients if c.closed is not None)
        if closes:
            print(f"   closed by the server (code, reason): {dict(closes)}")
        idle_kb = (process_usage(self.pid)[0] - self.base_rss) / max(1, len(self.clients))
        verdict = "MET" if held >= 10_000 and idle_kb <= 20 else "MISSED"
        print(
            f"   {held:,} of {len(self.clients):,} still open {IDLE_WAIT_S:.0f} s later; "
            f"{self.per_connection_kb:.1f} KB per connection after the ramp, {idle_kb:.1f} KB "
            f"once idle   target 10,000 at <= 20 KB: {verdict}"
        )


# --- main ----------------------------------------------------------------------------------

PHASES = {
    "throughput": phase_throughput,
    "latency": phase_latency,
    "cross": phase_cross_region,
    "idle": phase_idle,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/service.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="short phases, fewer players")
    parser.add_argument(
        "--phase", action="append", choices=sorted(PHASES), help="run only these (repeatable)"
    )
    parser.add_argument(
        "--no-relay", action="store_true", help="skip the bare relay runs of phases 1 and 2"
    )
    parser.add_argument(
        "--no-profile", action="store_true", help="no py-spy profile of the node after phase 1"
    )
    parser.add_argument("--seconds", type=float, help="measured seconds per games phase (10)")
    parser.add_argument("--players", type=int, help="players in phase 1 (600)")
    parser.add_argument("--rate", type=float, default=1000.0, help="moves/s in phase 2 (1000)")
    parser.add_argument("--latency-players", type=int, help="players in phase 2 (200)")
    parser.add_argument("--cross-players", type=int, help="players in phase 3 (100)")
    parser.add_argument("--cross-rate", type=float, default=200.0, help="moves/s in phase 3")
    parser.add_argument(
        "--link-delay-ms", type=float, default=20.0, help="one-way delay between regions (20)"
    )
    parser.add_argument("--idle", type=int, help="idle connections to reach in phase 4 (10000)")
    parser.add_argument("--step", type=int, help="connections per step (1000)")
    parser.add_argument(
        "--step-budget", type=float, help="seconds a step may take before phase 4 stops (120)"
    )
    args = parser.parse_args(argv)
    quick = args.quick
    defaults = {
        "seconds": 4.0 if quick else 10.0,
        "players": 200 if quick else 600,
        "latency_players": 100 if quick else 200,
        "cross_players": 40 if quick else 100,
        "idle": 2000 if quick else 10_000,
        "step": 250 if quick else 1000,
        "step_budget": 30.0 if quick else 120.0,
    }
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


async def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    limit = raise_fd_limit()
    print(
        f"service benchmark: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} "
        f"before the start, open-files limit {limit:,}{' (quick)' if args.quick else ''}"
    )
    with temp_folder() as folder:
        for name in args.phase or list(PHASES):
            await PHASES[name](args, folder)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
