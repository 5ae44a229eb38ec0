"""The browser side of a node: the player client at ``/`` and the cluster dashboard.

Everything is served by the node itself (no CDN, no outside host): ``/`` and ``/dashboard`` are
the two pages (``/leaderboard`` is the player client opening on its leaderboard), ``/static/``
their ES modules and stylesheet. See docs/web.md.

Besides the pages, this module adds what the pages need and the player API does not offer:

* **CORS** for the endpoints a page calls on *other* nodes (the region chooser times
  ``/healthz`` on every region, logs in at the chosen one; the dashboard polls every region's
  ``/api/cluster`` and ``/metrics``). The answer is ``Access-Control-Allow-Origin: *`` without
  credentials: nothing here relies on cookies, every call that needs a right carries it as an
  explicit bearer token, so a foreign page gains nothing it could not do from its own server.
  Pre-flight ``OPTIONS`` requests for those paths are answered here. ``/ws`` needs no CORS.
* ``GET /api/live``: the games in play (``gid``, ``names``, ``ply``, ``to_move``), so a player
  can pick one to watch (the lobby says who plays whom, not the game id).
* ``GET /api/replay/GID``: a finished game's view after every ply (``views[0]`` is the deal),
  computed with the rules engine from the archived seed and moves; both hands are shown, the
  decks' order is not. The replay viewer steps through them.
* ``GET /api/moves/GID``: the moves of any game this node knows (live, finished or saved), from
  the deal, as everyone may see them: a Scout's returned cards show only their decks, like in a
  watcher's view. The game page rebuilds the whole turn of the opponent and the move list from
  it when its pushes skipped a ply (a reload, a reconnect, moves that arrived together).
* ``GET /api/overview`` (admin token): this region's players online, games in play with a
  player connected here, games known by status, and merges counted here by kind.
* Under ``meridian demo`` only (the demo sets ``MERIDIAN_DEMO_CONTROL`` to the folder of its
  state file, see ``node.demo_supervisor``), the dashboard's buttons: ``GET /api/demo``
  (which regions and node processes the demo runs and which are up), ``POST
  /api/demo/kill/TARGET`` (SIGKILL a region's node processes, or one process named by its node
  id, by the pids in the demo's state file) and ``POST /api/demo/start/TARGET`` (a start
  request for the supervisor), all with the admin token. Elsewhere they answer 404.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from meridian.crdt_models.archive import LOG_PREFIX, ArchivedGame, read_archive
from meridian.games.base import GameRules, IllegalMove
from meridian.node.demo_supervisor import CONTROL_DIR, read_state, targets
from meridian.node.game_tracker import LIVE
from meridian.node.http_api import answered, error_response, require_admin
from meridian.node.refusals import HTTP_STATUS, ErrorCode

if TYPE_CHECKING:
    from meridian.node.context import NodeContext

STATIC_DIR = Path(__file__).resolve().parent / "static"
NO_STORE = {"Cache-Control": "no-store"}

# Paths a page may call across origins (exact, or below a prefix ending in "/").
CORS_PATHS = frozenset(
    {
        "/healthz",
        "/metrics",
        "/api/cluster",
        "/api/regions",
        "/api/register",
        "/api/login",
        "/api/logout",
        "/api/password",
        "/api/home",
        "/api/games",
        "/api/live",
        "/api/overview",
        "/api/ratings",
        "/api/demo",
    }
)
CORS_PREFIXES = ("/api/games/", "/api/replay/", "/api/moves/", "/api/demo/")
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": "Content-Type",
}
PREFLIGHT_HEADERS = {
    **CORS_HEADERS,
    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type",
    "Access-Control-Max-Age": "600",
}
DEMO_CONTROL_ENV = "MERIDIAN_DEMO_CONTROL"
SELF_KILL_DELAY_S = 0.2  # a node asked to kill itself answers first

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def cors_path(path: str) -> bool:
    return path in CORS_PATHS or path.startswith(CORS_PREFIXES)


@web.middleware
def cors_preflight(request: web.Request, handler: Handler) -> Awaitable[web.StreamResponse]:
    """Answer a CORS pre-flight for the cross-origin paths before routing refuses OPTIONS (a
    plain function: see `node.http_api.answered`)."""
    if (
        request.method == "OPTIONS"
        and cors_path(request.path)
        and "Access-Control-Request-Method" in request.headers
    ):
        return answered(web.Response(status=204, headers=PREFLIGHT_HEADERS))
    return handler(request)


async def add_cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Every answer on a cross-origin path (errors included) carries the CORS headers."""
    if cors_path(request.path):
        response.headers.update(CORS_HEADERS)


def add_web_routes(app: web.Application, node: NodeContext) -> None:
    app.middlewares.append(cors_preflight)
    app.on_response_prepare.append(add_cors_headers)

    def page(name: str) -> Handler:
        async def serve(request: web.Request) -> web.StreamResponse:
            return web.FileResponse(STATIC_DIR / name, headers=NO_STORE)

        return serve

    async def live(request: web.Request) -> web.Response:
        return web.json_response({"games": live_games(node)}, headers=NO_STORE)

    async def replay(request: web.Request) -> web.Response:
        gid = request.match_info["gid"]
        game = find_finished(node, gid)
        if game is None:
            return error_response(404, "not_found", f"no finished game {gid!r}")
        rules = node.service.rules
        if game.game != rules.game_name():
            return error_response(404, "not_found", f"cannot replay a game of {game.game!r}")
        try:
            views = replay_views(rules, game)
        except IllegalMove as error:  # refused at entry by the peers' record checks
            message = f"the archived game does not replay: {error}"
            return error_response(HTTP_STATUS[ErrorCode.BAD_RECORD], ErrorCode.BAD_RECORD, message)
        return web.json_response(
            {
                "gid": game.gid,
                "names": game.names,
                "result": game.result,
                "moves": game.moves,
                "views": views,
            }
        )

    async def moves(request: web.Request) -> web.Response:
        gid = request.match_info["gid"]
        tracker = node.service.games.get(gid)
        if tracker is None:
            return error_response(404, "not_found", f"no game {gid!r} here")
        played = [*tracker.info.start_moves, *tracker.moves_with_players()]
        return web.json_response(
            {
                "gid": gid,
                "names": tracker.info.names,
                "first": tracker.info.first,
                "status": tracker.status,
                "moves": [node.service.rules.public_move(m) for m in played],
            },
            headers=NO_STORE,
        )

    async def overview(request: web.Request) -> web.Response:
        require_admin(request)
        return web.json_response(region_overview(node), headers=NO_STORE)

    app.router.add_get("/", page("index.html"))
    app.router.add_get("/dashboard", page("dashboard.html"))
    app.router.add_get("/leaderboard", page("index.html"))  # the player client opens its board
    app.router.add_get("/api/live", live)
    app.router.add_get("/api/replay/{gid}", replay)
    app.router.add_get("/api/moves/{gid}", moves)
    app.router.add_get("/api/overview", overview)
    app.router.add_get("/api/demo", demo_status)
    app.router.add_post("/api/demo/{action:kill|start}/{region}", demo_control)
    app.router.add_static("/static/", STATIC_DIR)


def _demo_state() -> tuple[Path, dict[str, dict[str, Any]]] | None:
    """The running demo's folder and node processes (see node.demo_supervisor), or None."""
    folder = os.environ.get(DEMO_CONTROL_ENV)
    if not folder:
        return None
    nodes = read_state(Path(folder))
    return None if nodes is None else (Path(folder), nodes)


async def demo_status(request: web.Request) -> web.Response:
    require_admin(request)
    demo = _demo_state()
    if demo is None:
        return error_response(404, "not_demo", "this node does not run under `meridian demo`")
    nodes = {
        node: {"region": info.get("region"), "up": bool(info.get("up")), "url": info.get("url")}
        for node, info in demo[1].items()
    }
    regions: dict[str, dict[str, Any]] = {}
    for info in nodes.values():
        region = regions.setdefault(str(info["region"]), {"up": False, "url": info["url"]})
        region["up"] = region["up"] or info["up"]
    return web.json_response({"regions": regions, "nodes": nodes}, headers=NO_STORE)


async def demo_control(request: web.Request) -> web.Response:
    """Kill a region's node processes (SIGKILL) or one of them, or ask the demo to start
    them again (the target is a region or a node id, as for ``meridian demo kill``)."""
    require_admin(request)
    demo = _demo_state()
    if demo is None:
        return error_response(404, "not_demo", "this node does not run under `meridian demo`")
    folder, nodes = demo
    action, target = request.match_info["action"], request.match_info["region"]
    chosen = targets(nodes, target)
    if not chosen:
        return error_response(404, "not_found", f"the demo runs no region or process {target!r}")
    if action == "start":
        (folder / CONTROL_DIR).mkdir(exist_ok=True)
        (folder / CONTROL_DIR / f"start-{target}").touch()
        return web.json_response({"region": target, "action": "start"})
    killed = [pid for pid in (_kill_pid(nodes[node]) for node in chosen) if pid is not None]
    if not killed:
        return error_response(409, "down", f"{target} is down already")
    return web.json_response({"region": target, "action": "kill", "pid": killed[0], "pids": killed})


def _kill_pid(info: dict[str, Any]) -> int | None:
    """SIGKILL one demo node process (this one after a short delay, so the reply goes out);
    its pid, or None if it was down already."""
    pid = info.get("pid")
    if not info.get("up") or not isinstance(pid, int):
        return None
    if pid == os.getpid():
        asyncio.get_running_loop().call_later(SELF_KILL_DELAY_S, os.kill, pid, signal.SIGKILL)
        return pid
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return None
    return pid


def live_games(node: NodeContext) -> list[dict[str, Any]]:
    service = node.service
    games = [
        (tracker.info.created, gid, tracker)
        for gid, tracker in service.games.items()
        if tracker.status == LIVE
    ]
    return [
        {
            "gid": gid,
            "names": tracker.info.names,
            "ply": tracker.ply,
            "to_move": service.rules.to_move(tracker.chain.state),
        }
        for _created, gid, tracker in sorted(games, key=lambda g: (g[0], g[1]), reverse=True)
    ]


def find_finished(node: NodeContext, gid: str) -> ArchivedGame | None:
    for doc_id, doc in list(node.engine.docs.items()):
        if doc_id.startswith(LOG_PREFIX):
            game = read_archive(doc).get(gid)
            if game is not None:
                return game
    return None


def replay_views(rules: GameRules[Any], game: ArchivedGame) -> list[dict[str, Any]]:
    """The position after every ply of a finished game, as shown by the replay viewer."""
    state = rules.new_game(game.seed, game.first)
    views = [rules.replay_view(state)]
    for move in game.moves:
        state = rules.apply_move(state, int(move["player"]), move)
        views.append(rules.replay_view(state))
    return views


def region_overview(node: NodeContext) -> dict[str, Any]:
    service = node.service
    here = {conn.uid: conn.name for conn in service.conns.values() if conn.uid}
    statuses: dict[str, int] = {}
    in_play = 0
    for tracker in service.games.values():
        statuses[tracker.status] = statuses.get(tracker.status, 0) + 1
        if tracker.status == LIVE and any(uid in here for uid in tracker.info.players):
            in_play += 1
    return {
        "region": node.region,
        "node": node.node_id,
        "players_online": len(here),
        "players": sorted(here.values(), key=str.lower),
        "games_in_play": in_play,
        "games_known": dict(sorted(statuses.items())),
        "merges": dict(sorted(service.merges.counts.items())),
    }
