"""``meridian sim upgrade``: a rolling upgrade of a local three-region cluster under bots.

The regions named old start on the previous release (``release-0.2``, shipped as
configs/releases/release-0.2.tar.gz and written to a folder by
`node.localcluster.extract_release`), the others on this code;
bots play Battleline across the regions. Then each old node in turn is drained (SIGTERM: its
players are told to move, its changes flushed, it exits 0) and restarted on the same config and
data directory with this code. While both versions run, links between an old and a new node
speak peer protocol 2 and links between new nodes protocol 3 (the report lists them from the
nodes' logs).

At the end it reports: games finished, games interrupted (a bot's game that did not finish,
or a bot short of its games), moves lost (moves the bots saw acknowledged that the finished
game's record lacks), whether every region holds the same game log and the same documents.
Targets: 0 interrupted, 0 lost, logs and documents equal. `rolling_upgrade` is what the command
and tests/test_mixed_versions.py run.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from meridian.node.botlogs import game_logs, wait_for_equal_logs
from meridian.node.botrecords import BotSummary
from meridian.node.bots import run_bots
from meridian.node.config import load_config
from meridian.node.localcluster import (
    RELEASE_TAG,
    TOKEN_ENV,
    LocalNode,
    ReleaseMissing,
    cluster_env,
    extract_release,
    start_node,
    stop_nodes,
    upgrade_node,
    wait_for_mesh,
    write_configs,
)

REGIONS = ("eu", "us", "ap")
DRAIN_DEADLINE_S = 8  # the nodes' node.drain_deadline_s: players have moved well before
CONVERGE_TIMEOUT_S = 30.0
PROGRESS_TIMEOUT_S = 20.0  # wait this long for the bots to start a game before an upgrade
BETWEEN_UPGRADES_S = 2.0
# After the last upgrade the bots finish their games in seconds; past this they are stopped and
# the report names it (with the bots' last lines) instead of the command waiting for ever.
FINISH_TIMEOUT_S = 60.0
LINK_UP = re.compile(r"link up: (\S+) \(region \S+, .*protocol (\d+)\)")
REFUSED = "refused from "  # what the replicator logs for a refused peer frame
MERGED = "merge: "  # what a node logs for an automatic merge (node.service.Merges)
UNSHARED_PREFIX = "presence:"  # presence heartbeats keep changing: compared no further


@dataclass
class UpgradeReport:
    """What a rolling upgrade did and what it cost (see module docstring)."""

    upgraded: list[str] = field(default_factory=list)
    drain_exit_codes: dict[str, int | None] = field(default_factory=dict)
    protocols: dict[str, int] = field(default_factory=dict)  # "us-1 <- eu-1" -> version
    protocols_after: dict[str, int] = field(default_factory=dict)  # once all are upgraded
    players_moved: int = 0  # bot reconnects: players the drains sent to another region
    games_finished: int = 0
    games_interrupted: int = 0
    moves_lost: int = 0
    logs_differ: str | None = None
    documents_differ: str | None = None
    bot_problems: list[str] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)  # peer frames a node refused (logged)
    merges: list[str] = field(default_factory=list)  # automatic merges the nodes logged
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        return (
            self.games_interrupted == 0
            and self.moves_lost == 0
            and self.logs_differ is None
            and self.documents_differ is None
            and not self.bot_problems
            and not self.refusals
            and all(code == 0 for code in self.drain_exit_codes.values())
            and self.games_finished > 0
        )

    def lines(self) -> list[str]:
        out = [f"  upgraded: {', '.join(self.upgraded) or 'nothing'}"]
        out += [f"  {region} drained, exit code {c}" for region, c in self.drain_exit_codes.items()]
        out += [f"  link {link}: protocol {v}" for link, v in sorted(self.protocols.items())]
        after = sorted(self.protocols_after.items())
        out += [f"  after the upgrade, link {link}: protocol {v}" for link, v in after]
        out.append(f"  players moved to another region by the drains: {self.players_moved}")
        out += [
            f"  games finished: {self.games_finished}",
            f"  games interrupted: {self.games_interrupted} (target 0)",
            f"  moves lost: {self.moves_lost} (target 0)",
            f"  game logs: {self.logs_differ or 'equal on every region'}",
            f"  documents: {self.documents_differ or 'equal on every region'}",
        ]
        out.append(f"  peer updates refused: {len(self.refusals)} (target 0)")
        out += [f"  refused: {line}" for line in self.refusals[:5]]
        out += [f"  merged: {line}" for line in self.merges[:5]]  # why a game was parked
        out += [f"  problem: {problem}" for problem in self.bot_problems]
        out.append(f"  {'OK' if self.ok else 'FAILED'} in {self.elapsed_s:.1f} s")
        return out


async def rolling_upgrade(
    folder: Path,
    *,
    old_regions: Sequence[str] = REGIONS,
    tag: str = RELEASE_TAG,
    bots: int = 4,
    games: int = 4,
    move_delay_s: float = 0.01,
    seed: int = 1,
    say: Callable[[str], None] = print,
) -> UpgradeReport:
    """Run the cluster, the bots and the upgrades (ReleaseMissing if `tag` is absent)."""
    started = time.monotonic()
    release = extract_release(folder / "release", tag)
    env = cluster_env()
    paths = write_configs(
        folder / "cluster", list(REGIONS), node_keys=f"drain_deadline_s = {DRAIN_DEADLINE_S}\n"
    )
    configs = {config.region: config for config in (load_config(p, env) for p in paths)}
    nodes = {
        region: start_node(config, env, release if region in old_regions else None)
        for region, config in configs.items()
    }
    report = UpgradeReport()
    try:
        await _form(nodes, say)
        versions = ", ".join(f"{r} {tag if r in old_regions else 'new'}" for r in REGIONS)
        say(f"cluster up: {versions}")
        report.protocols = _link_protocols(nodes)
        servers = [configs[region].public_url for region in REGIONS]
        lines: list[str] = []
        stop = asyncio.Event()
        play = asyncio.create_task(
            run_bots(
                servers, bots, games, seed, move_delay_s=move_delay_s, log=lines.append, stop=stop
            )
        )
        for region in old_regions:
            await _wait_for_games(lines, play, say)
            say(f"upgrading {region}: draining {configs[region].node_id} ...")
            code, nodes[region] = await asyncio.to_thread(upgrade_node, nodes[region], env)
            report.drain_exit_codes[region] = code
            say(f"  {region} exited with {code}; restarted on this code, same data directory")
            await _form(nodes, say)
            report.upgraded.append(region)
            say(f"  {region} back in the mesh")
        report.protocols_after = _link_protocols(nodes, since_start=True)
        summary, late = await _finish(play, stop, lines)
        (folder / "bots.log").write_text("".join(f"{line}\n" for line in lines))
        report.players_moved = sum(bot.reconnects for bot in summary.bots)
        say(f"bots done: {len(summary.gids())} games in {summary.elapsed_s:.1f} s")
        await _check(report, summary, servers, env[TOKEN_ENV])
        report.bot_problems += late
        report.refusals = _logged(nodes, REFUSED)
        report.merges = _logged(nodes, MERGED)
    finally:
        await asyncio.to_thread(stop_nodes, list(nodes.values()))
    report.elapsed_s = time.monotonic() - started
    return report


async def _finish(
    play: asyncio.Task[BotSummary], stop: asyncio.Event, lines: list[str]
) -> tuple[BotSummary, list[str]]:
    """The bots' summary once they finish, or once stopped FINISH_TIMEOUT_S after the last
    upgrade (then with a problem line naming it and the bots' last lines)."""
    try:
        return await asyncio.wait_for(asyncio.shield(play), FINISH_TIMEOUT_S), []
    except TimeoutError:
        stop.set()
        summary = await play
        last = "; ".join(lines[-8:]) or "none"
        return summary, [
            f"the bots had not finished {FINISH_TIMEOUT_S:g} s after the last upgrade and were "
            f"stopped; their last lines: {last}"
        ]


async def _form(nodes: dict[str, LocalNode], say: Callable[[str], None]) -> None:
    if not await asyncio.to_thread(wait_for_mesh, list(nodes.values())):
        raise RuntimeError("the cluster did not form")


async def _wait_for_games(
    lines: list[str], play: asyncio.Task[BotSummary], say: Callable[[str], None]
) -> None:
    """Upgrade mid-game: before the first upgrade wait until a game started, before each
    later one let the games go on for BETWEEN_UPGRADES_S on the cluster as it now is."""
    if any("started game" in line for line in lines):
        await asyncio.sleep(BETWEEN_UPGRADES_S)
    deadline = time.monotonic() + PROGRESS_TIMEOUT_S
    while not play.done() and time.monotonic() < deadline:
        if any("started game" in line for line in lines):
            break
        await asyncio.sleep(0.1)
    if play.done():
        say("  (the bots finished before this upgrade: raise --games)")


def _link_protocols(nodes: dict[str, LocalNode], since_start: bool = False) -> dict[str, int]:
    """Each node's links as its log reports them ("link up: eu-1 (..., protocol 2)"); the
    last report per link wins. `since_start`: only what the node logged since its restart."""
    found: dict[str, int] = {}
    for node in nodes.values():
        text = node.log_path.read_text(errors="replace") if node.log_path.exists() else ""
        if since_start:
            text = text.rsplit("stopping (drained)", 1)[-1]
        for peer, version in LINK_UP.findall(text):
            found[f"{node.config.node_id} <- {peer}"] = int(version)
    return found


def _logged(nodes: dict[str, LocalNode], marker: str) -> list[str]:
    """Every line of the nodes' logs (old or new code) holding `marker`."""
    found = []
    for node in nodes.values():
        text = node.log_path.read_text(errors="replace") if node.log_path.exists() else ""
        found += [line for line in text.splitlines() if marker in line]
    return found


async def _check(
    report: UpgradeReport, summary: BotSummary, servers: list[str], token: str
) -> None:
    gids = summary.gids()
    report.games_finished = len(gids)
    report.bot_problems = summary.problems()
    report.games_interrupted = sum(1 for b in summary.bots for g in b.games if g.outcome == "saved")
    report.games_interrupted += sum(
        1 for b in summary.bots if b.partner and b.finished < summary.games_wanted
    )
    report.logs_differ = await wait_for_equal_logs(servers, gids, CONVERGE_TIMEOUT_S)
    async with aiohttp.ClientSession() as http:
        logs = await game_logs(http, servers[:1])
        archived = {g["gid"]: g["moves"] for g in logs[0]} if isinstance(logs[0], list) else {}
        report.moves_lost = _moves_lost(summary, archived)
        report.documents_differ = await _wait_for_equal_documents(http, servers, token)


def _moves_lost(summary: BotSummary, archived: dict[str, int]) -> int:
    """Per finished game, how many plies the bots saw acknowledged beyond the record's moves."""
    seen: dict[str, int] = {}
    own: dict[str, int] = {}
    for bot in summary.bots:
        for game in bot.games:
            if game.outcome != "saved":
                seen[game.gid] = max(seen.get(game.gid, 0), game.plies)
                own[game.gid] = own.get(game.gid, 0) + game.moves
    return sum(max(0, max(seen[gid], own[gid]) - archived.get(gid, 0)) for gid in sorted(seen))


async def _wait_for_equal_documents(
    http: aiohttp.ClientSession, servers: list[str], token: str
) -> str | None:
    """None once every server lists the same shared documents with the same digests."""
    deadline = time.monotonic() + CONVERGE_TIMEOUT_S
    while True:
        views = [await _documents(http, url, token) for url in servers]
        problem = _document_difference(servers, views)
        if problem is None or time.monotonic() > deadline:
            return problem
        await asyncio.sleep(0.3)


async def _documents(http: aiohttp.ClientSession, url: str, token: str) -> dict[str, str] | str:
    try:
        headers = {"Authorization": f"Bearer {token}"}
        async with http.get(f"{url}/api/cluster", headers=headers) as response:
            body = await response.json()
        return {
            d["id"]: d["digest"]
            for d in body["documents"]
            if not d["id"].startswith(UNSHARED_PREFIX)
        }
    except (aiohttp.ClientError, OSError, ValueError, KeyError) as error:
        return f"{url}: {error!r}"


def _document_difference(servers: list[str], views: list[dict[str, str] | str]) -> str | None:
    for view in views:
        if isinstance(view, str):
            return f"cannot read the documents of {view}"
    first = views[0]
    assert isinstance(first, dict)
    for url, view in zip(servers[1:], views[1:], strict=True):
        assert isinstance(view, dict)
        differ = sorted(d for d in first.keys() | view.keys() if first.get(d) != view.get(d))
        if differ:
            return f"{servers[0]} and {url} differ in {len(differ)} documents (e.g. {differ[0]})"
    return None


# --- the command -----------------------------------------------------------------------------

DESCRIPTION = """\
Rolling upgrade of a local cluster of three regions (eu, us, ap) under bots. The regions given
with --old (default: all three) start on the previous release (git tag %(tag)s, extracted with
git archive; a shallow clone must fetch it first), the others on this code. Bots play
Battleline across the regions; meanwhile each old node in turn is drained (its players move to
another region), stopped and restarted on the same data directory with this code. The report
gives the protocol of every link while both versions ran (2 between old and new, 3 between new
nodes), games finished, games interrupted and moves lost (targets 0), and whether every region
ends with the same game log and documents. Exit status 0 only if all targets are met."""


def add_upgrade_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    upgrade = commands.add_parser(
        "upgrade",
        help="rolling upgrade of a local 3-region cluster from the previous release, under bots",
        description=DESCRIPTION % {"tag": RELEASE_TAG},
    )
    upgrade.add_argument(
        "--old",
        default=",".join(REGIONS),
        metavar="REGIONS",
        help="comma-separated regions that start on the previous release (default: eu,us,ap)",
    )
    upgrade.add_argument(
        "--tag", default=RELEASE_TAG, help=f"previous release (default {RELEASE_TAG})"
    )
    upgrade.add_argument("--bots", type=int, default=4, help="bots, paired across regions (4)")
    upgrade.add_argument("--games", type=int, default=4, help="games per bot (4)")
    upgrade.add_argument("--seed", type=int, default=1, help="bots' seed (1)")
    upgrade.add_argument(
        "--dir",
        type=Path,
        metavar="DIR",
        help="where the release tree, configs, data and logs go (default: a temporary folder, "
        "removed after a passing run)",
    )
    upgrade.set_defaults(func=upgrade_command)


def upgrade_command(args: argparse.Namespace) -> int:
    old = [region.strip() for region in args.old.split(",") if region.strip()]
    unknown = sorted(set(old) - set(REGIONS))
    if unknown or args.bots < 2 or args.games < 1:
        print(
            f"meridian sim upgrade: --old takes regions of {', '.join(REGIONS)} (not "
            f"{', '.join(unknown)}), --bots at least 2, --games at least 1",
            file=sys.stderr,
        )
        return 2
    folder = args.dir or Path(tempfile.mkdtemp(prefix="meridian-upgrade-"))

    def say(text: str) -> None:
        print(text, flush=True)

    try:
        report = asyncio.run(
            rolling_upgrade(
                folder,
                old_regions=old,
                tag=args.tag,
                bots=args.bots,
                games=args.games,
                seed=args.seed,
                say=say,
            )
        )
    except (ReleaseMissing, RuntimeError) as error:
        print(f"meridian sim upgrade: {error}; files in {folder}", file=sys.stderr)
        return 1
    print("\n".join(report.lines()))
    if not report.ok:
        bots_log = folder / "bots.log"
        if bots_log.exists():  # what the bots did, for a run whose folder is out of reach (CI)
            print("the bots' log:\n" + bots_log.read_text(), end="")
        print(f"node logs: {folder / 'cluster' / 'data' / 'logs'}; bots' log: {bots_log}")
        return 1
    if args.dir is None:
        shutil.rmtree(folder, ignore_errors=True)
    return 0
