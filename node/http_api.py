"""The HTTP surface every node serves: health, metrics, cluster view and the admin document API.

* ``GET /healthz``: JSON health (node, region, version, connected peers); no token. ``status`` is
  ``"ok"`` (HTTP 200), or ``"degraded"`` (HTTP 503: not ready for players) while a document is
  quarantined, each listed in ``quarantined`` with the reason, until a peer has refilled it.
* ``GET /metrics``: Prometheus text (node/metrics.py); no token (it holds no user data).
* ``GET /api/cluster``: this node, its peers with link state and lag, every document with its
  digest, and ``load``: every live process's load and the sums per region, as the load
  observers published them (node.observer; stale entries listed by node in ``stale``; this
  node's observer's own cost in ``observer``; each process's players moved out and in by the
  rebalancers), and ``rebalance``: this node's rebalancer, its policy and what it did
  (node.rebalancer); admin token required.
* ``GET|PUT /api/admin/docs/{doc}/{key}``: read or write one key of a document's ``kv`` map
  (what ``meridian doc get|put`` use), for the key-value documents ``test:*`` and ``bench:*``
  only (every other kind has its own layout and rules, which peers enforce); admin token
  required. A PUT answers once the write is
  committed to this node's store and, with ``replication.ack_regions = k``, held by k peers.
* ``POST /api/admin/docs/{doc}``: ``{"items": [[key, value], ...]}`` written as that many
  separate changes (one Yjs update each, like separate player moves), answered once all are
  committed here; at most MAX_BATCH_ITEMS items. Used by bench/replication.py to load a cluster.

On every route, a write refused because its document is quarantined answers 503
``{"error": {"code": "unavailable", ...}}`` naming the document (``refuse_unavailable``).
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CollectorRegistry
from pycrdt import Doc, Map

from meridian.crdt_models.kinds import is_kv_document
from meridian.node.delivery import REPLICATION_WAIT_S
from meridian.node.metrics import CONTENT_TYPE, exposition
from meridian.node.protocol import (
    BodyT,
    DocBatchBody,
    DocValueBody,
    ErrorCode,
    Refused,
    decode_body,
)
from meridian.sync.codec import FrameError, check_doc_id
from meridian.sync.replicator import DocumentQuarantined
from meridian.sync.stats import percentile

if TYPE_CHECKING:
    from meridian.node.context import NodeContext

KV_MAP = "kv"
WEBSOCKET_PATH = "/ws"
MAX_KEY_CHARS = 200
MAX_BATCH_ITEMS = 10_000
MAX_SAFE_INT = 2**53 - 1
NODE_KEY: web.AppKey[NodeContext] = web.AppKey("node")
METRICS_KEY: web.AppKey[CollectorRegistry] = web.AppKey("metrics", CollectorRegistry)


def add_routes(app: web.Application, node: NodeContext, registry: CollectorRegistry) -> None:
    """Health, metrics (from `registry`: ``node.metrics.node_registry``), cluster view and the
    admin document API."""
    app[NODE_KEY] = node
    app.middlewares.append(refuse_unavailable)
    app[METRICS_KEY] = registry
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/cluster", cluster)
    app.router.add_get("/api/admin/docs/{doc}/{key}", get_doc_key)
    app.router.add_put("/api/admin/docs/{doc}/{key}", put_doc_key)
    app.router.add_post("/api/admin/docs/{doc}", post_doc_batch)


def error_response(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


def _error_body(code: str, message: str) -> str:
    return json.dumps({"error": {"code": code, "message": message}})


def bad_request(code: str, message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=_error_body(code, message), content_type="application/json")


def require_admin(request: web.Request) -> None:
    """Refuse the request (401) unless it carries the admin token as a bearer token."""
    token = request.app[NODE_KEY].admin_token
    header = request.headers.get("Authorization", "")
    given = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
    if not given or not hmac.compare_digest(given.encode(), token.encode()):
        raise web.HTTPUnauthorized(
            text=_error_body("unauthorized", "admin token required"),
            content_type="application/json",
        )


# The middlewares are plain functions that hand back the handler's own awaitable when they let
# a request through: an ``async`` middleware that awaits its handler keeps its coroutine frame
# alive as long as the handler runs, and a websocket's handler runs for the connection's whole
# life (about 0.4 KB per middleware per idle player).


async def answered(response: web.StreamResponse) -> web.StreamResponse:
    """A middleware's own answer, as the awaitable a middleware returns."""
    return response


@web.middleware
def refuse_unavailable(request: web.Request, handler: Handler) -> Awaitable[web.StreamResponse]:
    """A write to a quarantined document, from any HTTP route, is a 503 with a named code (the
    websocket answers such a refusal itself, message by message)."""
    if request.path == WEBSOCKET_PATH:
        return handler(request)
    return _unavailable_as_503(request, handler)


async def _unavailable_as_503(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except DocumentQuarantined as refused:
        return error_response(503, "unavailable", str(refused))
    except Refused as error:
        if error.code != ErrorCode.UNAVAILABLE:
            raise
        return error_response(error.status, str(error.code), error.message)


async def healthz(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    quarantined = node.replicator.quarantined
    return web.json_response(
        {
            "status": "degraded" if quarantined else "ok",
            "node": node.node_id,
            "region": node.region,
            "version": node.engine.software,
            "protocol": list(node.engine.versions),
            "peers": node.engine.up_peers(),
            "documents": len(node.engine.docs),
            "quarantined": [
                {"doc": doc_id, "reason": reason} for doc_id, reason in sorted(quarantined.items())
            ],
        },
        status=503 if quarantined else 200,
    )


async def metrics(request: web.Request) -> web.Response:
    registry = request.app[METRICS_KEY]
    return web.Response(body=exposition(registry), headers={"Content-Type": CONTENT_TYPE})


async def cluster(request: web.Request) -> web.Response:
    require_admin(request)
    node = request.app[NODE_KEY]
    engine = node.engine
    up = set(engine.up_peers())
    peers = []
    for peer in sorted(engine.peers.values(), key=lambda p: p.node_id):
        peers.append(
            {
                "node": peer.node_id,
                "region": peer.region,
                "link": "up" if peer.node_id in up else "down",
                "rtt_ms": _ms(peer.rtt),
                "lag_ms": {
                    "p50": _ms(percentile(peer.lag_samples, 0.5)),
                    "p99": _ms(percentile(peer.lag_samples, 0.99)),
                    "last": _ms(peer.lag_samples[-1] if peer.lag_samples else None),
                },
                "doc_lag_ms": {doc: _ms(v) for doc, v in sorted(peer.doc_lag.items())[:200]},
                "updates_sent": peer.updates_sent,
                "updates_received": peer.updates_received,
                "frames_sent": peer.frames_sent,
                "bytes_sent": peer.bytes_sent,
                "reaches": sorted(peer.links),
            }
        )
    documents = [
        {"id": doc_id, "digest": engine.digest(doc_id).hex()} for doc_id in sorted(engine.docs)
    ]
    body = {
        "node": {
            "id": node.node_id,
            "region": node.region,
            "url": node.public_url,
            "version": engine.software,
            "uptime_s": round(node.clock() - node.started_at, 1),
        },
        "peers": peers,
        "documents": documents,
        "changes": {
            "local": node.replicator.counters.changes_local,
            "local_update_bytes": node.replicator.counters.local_update_bytes,
            "from_peers": node.replicator.counters.changes_remote,
        },
        "load": {
            **node.observer.view().to_json(node.wall_ms()),
            "observer": node.observer.own_cost(),
        },
        "rebalance": node.rebalancer.to_json(),
    }
    return web.json_response(body)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def _doc_id(request: web.Request) -> str:
    doc_id = request.match_info["doc"]
    try:
        check_doc_id(doc_id)
    except FrameError as exc:
        raise bad_request("bad_document", exc.reason) from None
    if not is_kv_document(doc_id):  # other kinds have their own layout and rules
        raise bad_request("bad_document", "this API reads and writes test:* and bench:* only")
    return doc_id


def _check_key(key: Any) -> str:
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_CHARS:
        raise bad_request("bad_key", f"key must be a string of 1-{MAX_KEY_CHARS} characters")
    return key


def _doc_and_key(request: web.Request) -> tuple[str, str]:
    return _doc_id(request), _check_key(request.match_info["key"])


async def get_doc_key(request: web.Request) -> web.Response:
    require_admin(request)
    doc_id, key = _doc_and_key(request)
    doc = request.app[NODE_KEY].engine.docs.get(doc_id)
    kv = doc.get(KV_MAP, type=Map) if doc is not None else None
    if kv is None or key not in kv:
        return error_response(404, "not_found", f"{doc_id} has no key {key!r}")
    return web.json_response({"doc": doc_id, "key": key, "value": _plain(kv[key])})


def _plain(value: Any) -> Any:
    # pycrdt returns every number as float; give back an int where the value is whole.
    if isinstance(value, float) and value.is_integer() and abs(value) <= MAX_SAFE_INT:
        return int(value)
    return value


async def put_doc_key(request: web.Request) -> web.Response:
    require_admin(request)
    node = request.app[NODE_KEY]
    doc_id, key = _doc_and_key(request)
    value = await _read_value(request)

    def change(doc: Doc[Any]) -> None:
        doc.get(KV_MAP, type=Map)[key] = value

    event_no = node.replicator.write(doc_id, change)
    await node.replicator.wait_durable(event_no)
    wanted = node.ack_regions
    held = 0
    if wanted > 0 and event_no:
        held = await node.replicator.wait_replicated(doc_id, event_no, wanted, REPLICATION_WAIT_S)
        if held < wanted:
            return error_response(
                504,
                "not_replicated",
                f"committed here but held by only {held} of {wanted} regions after "
                f"{REPLICATION_WAIT_S:g} s; it will replicate when the regions can talk",
            )
    return web.json_response({"doc": doc_id, "key": key, "durable": True, "replicated_to": held})


async def post_doc_batch(request: web.Request) -> web.Response:
    require_admin(request)
    node = request.app[NODE_KEY]
    doc_id = _doc_id(request)
    body = await _read_body(request, DocBatchBody, ErrorCode.BAD_ITEMS)
    pairs = [(key, _check_value(value)) for key, value in body.items]
    last_event = 0
    for key, value in pairs:

        def change(doc: Doc[Any], key: str = key, value: Any = value) -> None:
            doc.get(KV_MAP, type=Map)[key] = value

        last_event = node.replicator.write(doc_id, change) or last_event
    await node.replicator.wait_durable(last_event)
    return web.json_response({"doc": doc_id, "written": len(pairs), "durable": True})


async def _read_body(request: web.Request, body_type: type[BodyT], code: ErrorCode) -> BodyT:
    """The body in its schema type (`node.protocol`); a bad one is a 400 with `code`."""
    try:
        return decode_body(await request.read(), body_type, code=code)
    except Refused as refused:
        raise bad_request(str(refused.code), refused.message) from None


async def _read_value(request: web.Request) -> Any:
    return _check_value((await _read_body(request, DocValueBody, ErrorCode.BAD_JSON)).value)


def _check_value(value: Any) -> Any:
    if not _storable(value):
        raise bad_request(
            "bad_value", "value must be a string, bool, null or a number of magnitude below 2^53"
        )
    return value


def _storable(value: Any) -> bool:
    """Values that round-trip through every replica unchanged."""
    if value is None or isinstance(value, bool | str):
        return True
    if isinstance(value, int):
        return abs(value) <= MAX_SAFE_INT
    return isinstance(value, float) and value == value and abs(value) != float("inf")
