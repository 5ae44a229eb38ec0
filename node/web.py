"""The browser side of a node: the player client at ``/`` and the cluster dashboard.

Everything is served by the node itself (no CDN, no outside host).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from node.server import Node

STATIC_DIR = Path(__file__).resolve().parent / "static"


def add_web_routes(app: web.Application, node: Node) -> None:
    async def index(request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC_DIR / "index.html")

    app.router.add_get("/", index)
    app.router.add_static("/static/", STATIC_DIR)
