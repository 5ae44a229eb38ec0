"""``meridian doc put|get``: a small client of a node's admin document API (stdlib HTTP)."""

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
    if not args.token:
        raise SystemExit(f"meridian doc: no admin token (use --token or set ${TOKEN_ENV})")
    doc = urllib.parse.quote(args.doc, safe="")
    key = urllib.parse.quote(args.key, safe="")
    url = f"{args.node.rstrip('/')}/api/admin/docs/{doc}/{key}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Authorization", f"Bearer {args.token}")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")
    except (urllib.error.URLError, OSError) as error:
        raise SystemExit(f"meridian doc: cannot reach {args.node}: {error}") from None


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
