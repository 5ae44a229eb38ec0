"""`meridian doc put|get` and `meridian admin ...`: clients of a node's admin API (stdlib HTTP)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

TIMEOUT_S = 10.0
DRAIN_WAIT_S = 3600.0  # --wait: the node's own deadline ends the drain; this only bounds a hang
TOKEN_ENV = "MERIDIAN_ADMIN_TOKEN"


def add_doc_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    put = actions.add_parser(
        "put",
        help="write KEY=VALUE into a document",
        description="Write VALUE under KEY in the document's kv map on the node. VALUE is parsed "
        'as JSON when it is valid JSON (42, true, null, "text"), otherwise taken as a string. '
        "Returns once the node has committed it (and replicated it if ack_regions > 0).",
    )
    get = actions.add_parser(
        "get",
        help="print the value of KEY (exit 1 if absent)",
        description="Print the value stored under KEY in the document on the node; exit code 1 "
        "when the key (or the document) is absent there.",
    )
    for sub in (put, get):
        sub.add_argument(
            "--node", required=True, metavar="URL", help="node base URL, e.g. http://127.0.0.1:7101"
        )
        sub.add_argument(
            "--token",
            default=os.environ.get(TOKEN_ENV),
            help=f"admin token (default: ${TOKEN_ENV})",
        )
        sub.add_argument("--doc", required=True, metavar="NAME", help="document id, e.g. test:demo")
        sub.add_argument("key", metavar="KEY")
    put.add_argument("value", metavar="VALUE")
    put.set_defaults(func=run_put)
    get.set_defaults(func=run_get)


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _request(args: argparse.Namespace, method: str, body: Any = None) -> tuple[int, dict[str, Any]]:
    doc = urllib.parse.quote(args.doc, safe="")
    key = urllib.parse.quote(args.key, safe="")
    return admin_request(args, method, f"/api/admin/docs/{doc}/{key}", body)


def admin_request(
    args: argparse.Namespace, method: str, path: str, body: Any = None, timeout: float = TIMEOUT_S
) -> tuple[int, dict[str, Any]]:
    """Call the admin API of ``args.node`` with ``args.token``; (status, JSON answer)."""
    if not args.token:
        raise SystemExit(f"meridian: no admin token (use --token or set ${TOKEN_ENV})")
    url = f"{args.node.rstrip('/')}{path}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Authorization", f"Bearer {args.token}")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")
    except (urllib.error.URLError, OSError) as error:
        raise SystemExit(f"meridian: cannot reach {args.node}: {error}") from None


def _error_text(payload: dict[str, Any]) -> str:
    error = payload.get("error", {})
    return f"{error.get('code', 'error')}: {error.get('message', payload)}"


def run_put(args: argparse.Namespace) -> int:
    status, payload = _request(args, "PUT", {"value": _parse_value(args.value)})
    if status != 200:
        print(f"meridian doc put: {_error_text(payload)}", file=sys.stderr)
        return 2
    print(f"ok: {args.doc} {args.key} committed on {args.node}")
    return 0


def run_get(args: argparse.Namespace) -> int:
    status, payload = _request(args, "GET")
    if status == 404:
        print(f"meridian doc get: {_error_text(payload)}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"meridian doc get: {_error_text(payload)}", file=sys.stderr)
        return 2
    value = payload["value"]
    print(value if isinstance(value, str) else json.dumps(value))
    return 0


# --- meridian admin --------------------------------------------------------------------------


def add_admin_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = actions.add_parser(
        "create-account",
        help="create an account",
        description="Create an account (name, password, optional home region).",
    )
    create.add_argument("name")
    create.add_argument("password")
    create.add_argument("--home", help="home region (default: the node's region)")
    create.set_defaults(func=run_create_account)
    disable = actions.add_parser(
        "disable",
        help="disable an account and close its connections",
        description="Disable an account: it can no longer log in, and its "
        "open connections are closed (code 4102).",
    )
    disable.add_argument("name")
    disable.set_defaults(func=run_disable)
    listing = actions.add_parser(
        "sessions",
        help="list who is online in every region",
        description="List every account online in any reachable region.",
    )
    listing.set_defaults(func=run_sessions)
    export = actions.add_parser(
        "export",
        help="write every shared document to a backup file",
        description="Export every shared document of the node to FILE.",
    )
    export.add_argument("file")
    export.set_defaults(func=run_export)
    restore = actions.add_parser(
        "import",
        help="load a backup file into an empty node",
        description="Import a backup made with export into a node that "
        "holds no shared document yet; it then replicates to its peers.",
    )
    restore.add_argument("file")
    restore.set_defaults(func=run_import)
    drain = actions.add_parser(
        "drain",
        help="move the node's players to other regions, then stop it",
        description="Drain the node (as SIGTERM does): it stops taking players, tells each "
        "connected player which region to continue in, waits until they moved or its "
        "node.drain_deadline_s passed, flushes its store and replication, and exits 0.",
    )
    drain.add_argument(
        "--wait", action="store_true", help="wait until the drain is done and print its report"
    )
    drain.set_defaults(func=run_drain)
    for sub in (create, disable, listing, export, restore, drain):
        sub.add_argument("--node", required=True, metavar="URL", help="node base URL")
        sub.add_argument(
            "--token",
            default=os.environ.get(TOKEN_ENV),
            help=f"admin token (default: ${TOKEN_ENV})",
        )


def _answer(status: int, payload: dict[str, Any], ok: int = 200) -> int:
    if status not in (ok, 200, 201):
        print(f"meridian admin: {_error_text(payload)}", file=sys.stderr)
        return 2
    return 0


def run_create_account(args: argparse.Namespace) -> int:
    body = {"name": args.name, "password": args.password}
    if args.home:
        body["home"] = args.home
    status, payload = admin_request(args, "POST", "/api/admin/accounts", body)
    if _answer(status, payload, 201) == 0:
        print(f"created {payload['name']} (id {payload['uid']}, home {payload['home']})")
        return 0
    return 2


def run_disable(args: argparse.Namespace) -> int:
    name = urllib.parse.quote(args.name, safe="")
    status, payload = admin_request(args, "POST", f"/api/admin/accounts/{name}/disable", {})
    if _answer(status, payload) == 0:
        print(f"disabled {payload['name']}")
        return 0
    return 2


def run_sessions(args: argparse.Namespace) -> int:
    status, payload = admin_request(args, "GET", "/api/admin/sessions")
    if _answer(status, payload):
        return 2
    print(f"{'name':<20} {'region':<8} {'node':<10} {'status':<9} connected")
    for s in payload["sessions"]:
        print(f"{s['name']:<20} {s['region']:<8} {s['node']:<10} {s['status']:<9} {s['connected']}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    status, payload = admin_request(args, "GET", "/api/admin/export")
    if _answer(status, payload):
        return 2
    with open(args.file, "w", encoding="utf-8") as out:
        json.dump(payload, out)
    print(f"exported {len(payload['documents'])} documents from {payload['node']} to {args.file}")
    return 0


def run_import(args: argparse.Namespace) -> int:
    try:
        with open(args.file, encoding="utf-8") as source:
            backup = json.load(source)
    except (OSError, json.JSONDecodeError) as error:
        print(f"meridian admin: cannot read {args.file}: {error}", file=sys.stderr)
        return 2
    status, payload = admin_request(args, "POST", "/api/admin/import", backup)
    if _answer(status, payload):
        return 2
    print(f"imported {payload['imported']} documents into {args.node}")
    return 0


def run_drain(args: argparse.Namespace) -> int:
    if not args.wait:
        status, payload = admin_request(args, "POST", "/api/admin/drain", {})
        if _answer(status, payload, 202):
            return 2
        print(f"draining {payload['node']} (deadline {payload['deadline_s']:g} s)")
        return 0
    # The node answers when its drain is done, just before it stops.
    status, report = admin_request(
        args, "POST", "/api/admin/drain", {"wait": True}, timeout=DRAIN_WAIT_S
    )
    if _answer(status, report):
        return 2
    print(
        f"drained {report['node']}: {report['told']} of {report['sessions']} sessions told where "
        f"to go, {report['left']} still connected at the end, flushed: {report['flushed']}, "
        f"{report['seconds']:g} s"
    )
    return 0
