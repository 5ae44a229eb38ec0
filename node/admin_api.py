"""Administration over HTTP (admin token): accounts, sessions, backup export and import.

* ``POST /api/admin/accounts`` ``{name, password, home?}``: create an account.
* ``POST /api/admin/accounts/{name}/disable``: disable it; its connections are closed (4102).
* ``GET /api/admin/sessions``: every account online in any region, with where and since when.
* ``GET /api/admin/export``: every shared document (presence excluded: it is per process) as a
  backup ``{"format": "meridian-backup-1", "node", "documents": {id: base64 Yjs update}}``.
* ``POST /api/admin/import``: load such a backup into a node that holds no shared document yet;
  the documents are then persisted and replicated like local writes.
"""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING

from aiohttp import web

from meridian.crdt_models.presence import PRESENCE_PREFIX
from meridian.node.http_api import NODE_KEY, bad_request, error_response, require_admin
from meridian.node.player_api import answers_refusals, read_body
from meridian.node.protocol import (
    BackupBody,
    ErrorCode,
    RegisterBody,
    decode_body,
)
from meridian.sync.codec import FrameError, check_doc_id

if TYPE_CHECKING:
    from meridian.node.context import NodeContext

BACKUP_FORMAT = "meridian-backup-1"
MAX_BACKUP_BYTES = 512 * 1024 * 1024


def add_admin_routes(app: web.Application) -> None:
    app.router.add_post("/api/admin/accounts", answers_refusals(create_account))
    app.router.add_post("/api/admin/accounts/{name}/disable", disable_account)
    app.router.add_get("/api/admin/sessions", sessions)
    app.router.add_get("/api/admin/export", export_documents)
    app.router.add_post("/api/admin/import", answers_refusals(import_documents))


def _node(request: web.Request) -> NodeContext:
    require_admin(request)
    return request.app[NODE_KEY]


async def create_account(request: web.Request) -> web.Response:
    node = _node(request)
    body = await read_body(request, RegisterBody)
    return await node.players.run(node.players.flow.register(body, "", node.clock()))


async def disable_account(request: web.Request) -> web.Response:
    node = _node(request)
    uid = node.service.accounts.name_owner(request.match_info["name"])
    if uid is None:
        return error_response(
            404, "unknown_user", f"no account named {request.match_info['name']!r}"
        )
    account = node.service.disable_account(uid)
    node.players.drain()
    return web.json_response({"uid": account.uid, "name": account.name, "status": account.status})


async def sessions(request: web.Request) -> web.Response:
    node = _node(request)
    listed = [
        {
            "name": s.name,
            "uid": s.uid,
            "region": s.region,
            "node": s.node,
            "status": s.status,
            "started": s.started,
            "connected": s.connected,
        }
        for s in node.service.all_sessions()
    ]
    return web.json_response({"sessions": listed})


def _shared(doc_id: str) -> bool:
    return not doc_id.startswith(PRESENCE_PREFIX)


async def export_documents(request: web.Request) -> web.Response:
    node = _node(request)
    documents = {
        doc_id: base64.b64encode(doc.get_update()).decode()
        for doc_id, doc in sorted(node.engine.docs.items())
        if _shared(doc_id)
    }
    return web.json_response(
        {"format": BACKUP_FORMAT, "node": node.node_id, "documents": documents}
    )


async def import_documents(request: web.Request) -> web.Response:
    node = _node(request)
    if any(_shared(doc_id) and _has_content(node, doc_id) for doc_id in node.engine.docs):
        return error_response(
            409, "not_empty", "import needs a node that holds no shared document yet"
        )
    body = decode_body(await _read_backup(request), BackupBody, code=ErrorCode.BAD_BACKUP)
    if body.format != BACKUP_FORMAT:
        raise bad_request("bad_backup", f"not a {BACKUP_FORMAT} file")
    documents = _decode_documents(body.documents)
    last = 0
    for doc_id, update in documents.items():
        last = node.engine.import_update(doc_id, update, node.clock()) or last
    node.replicator.pump()
    await node.replicator.wait_durable(last)
    for doc_id in documents:
        node.service.doc_changed(doc_id)
    node.service.process(node.clock())
    node.players.drain()
    return web.json_response({"imported": len(documents)})


async def _read_backup(request: web.Request) -> bytes:
    """The body, read past the app-wide size limit (which guards the unauthenticated routes)."""
    chunks, size = [], 0
    async for chunk in request.content.iter_chunked(1 << 20):
        size += len(chunk)
        if size > MAX_BACKUP_BYTES:
            raise bad_request("too_large", f"backups are limited to {MAX_BACKUP_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _has_content(node: NodeContext, doc_id: str) -> bool:
    return node.engine.docs[doc_id].get_state() != b"\x00"


def _decode_documents(documents: dict[str, str]) -> dict[str, bytes]:
    decoded = {}
    for doc_id, text in documents.items():
        try:
            check_doc_id(doc_id)
            decoded[doc_id] = base64.b64decode(text, validate=True)
        except (FrameError, binascii.Error, TypeError):
            raise bad_request("bad_backup", f"document {str(doc_id)[:60]!r} is not valid") from None
    return decoded
