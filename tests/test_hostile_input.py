"""The hostile-input suite: over 100,000 seeded hostile inputs per run, player frames, player
HTTP bodies, admin bodies and peer frames (from an insider node with a valid key), most in
memory, some through a real node.

Asserted for every input: no "internal" reply, no HTTP 500, no exception logged or raised, and
a refused input changes no document (checked per input in memory). At the end the real nodes
are healthy and their logs hold no traceback; the in-memory nodes the peer frames were sent to
hold the same documents, and so do the two real nodes after an insider's frames reached one of
them over a real authenticated link. The counts sent, by kind, are printed at the end of the
module (and must reach 100,000 when every kind was sent). bench/hostile.py runs the same
generators longer and prints their counts.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import tomllib
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from meridian.node.config import load_config
from meridian.node.localcluster import (
    TOKEN_ENV,
    cluster_env,
    fetch_health,
    start_node,
    stop_nodes,
    write_configs,
)
from meridian.node.protocol import (
    HTTP_STATUS,
)
from meridian.sync.identity import Keyring, NodeIdentity
from tests.conftest import SIM_RANDOM_SEED, eventually
from tests.hostile_inputs import FuzzedNode, Hostile, fuzz_bodies
from tests.hostile_peers import INSIDER, KNOWN_RULES, TARGET, InsiderLink, PeerFuzz

FRAMES = 50_000
BODIES = 47_000
PEER_FRAMES = 3_000
REAL_FRAMES = 2_500
REAL_BODIES = 1_500
PLAYERS = ("alice", "bob", "carol", "dave", "erin")
OK_STATUSES = {200, 201}
REFUSAL_STATUSES = set(HTTP_STATUS.values()) - {500}


MIN_INPUTS_PER_RUN = 100_000
KINDS = ("player frames", "player bodies", "admin bodies", "peer frames")
# Inputs sent by this module's tests, by kind (and by where: in memory or to a real node).
SENT: Counter[tuple[str, str]] = Counter()


@pytest.fixture(scope="module", autouse=True)
def inputs_sent(request: pytest.FixtureRequest) -> Any:
    """Print what the module's tests sent, by kind; when every kind was sent it must be at
    least MIN_INPUTS_PER_RUN."""
    SENT.clear()
    yield SENT
    total = sum(SENT.values())
    parts = [f"{kind} {SENT[kind, where]:,} {where}" for kind, where in sorted(SENT)]
    plugins = request.config.pluginmanager
    reporter, capture = plugins.get_plugin("terminalreporter"), plugins.get_plugin("capturemanager")
    if reporter is not None and capture is not None:  # (neither on a pytest-xdist worker)
        with capture.global_and_fixture_disabled():  # shown without -s, as capsys.disabled()
            reporter.write_line(f"\nhostile inputs sent: {total:,} ({', '.join(parts)})")
    if {kind for kind, _ in SENT} == set(KINDS):  # (the in-memory tests alone send 100,000)
        assert total >= MIN_INPUTS_PER_RUN, dict(SENT)


@pytest.fixture
def no_exceptions_logged(caplog: pytest.LogCaptureFixture) -> Any:
    caplog.set_level(logging.ERROR, logger="meridian")
    yield
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not errors, errors[:3]


def test_hostile_websocket_frames_in_memory(no_exceptions_logged: None) -> None:
    fuzzed = FuzzedNode(SIM_RANDOM_SEED)
    fuzzed.run(FRAMES)
    counts = fuzzed.counts
    assert sum(counts.values()) == FRAMES
    SENT["player frames", "in memory"] += FRAMES
    assert counts["ok"] > 1000 and counts["bad_request"] > 1000 and counts["close 4103"] > 1000
    assert counts["internal"] == 0


def test_hostile_http_and_admin_bodies_in_memory(no_exceptions_logged: None) -> None:
    kinds: Counter[str] = Counter()
    statuses = fuzz_bodies(BODIES, SIM_RANDOM_SEED + 1, kinds)
    assert sum(statuses.values()) == BODIES and statuses[500] == 0
    assert kinds["admin"] > BODIES // 4 and kinds["player"] > BODIES // 4, kinds
    SENT["player bodies", "in memory"] += kinds["player"]
    SENT["admin bodies", "in memory"] += kinds["admin"]
    assert statuses[400] > 1000 and statuses[200] + statuses[201] > 100


PEER_RULES_EXPECTED = (
    "malformed", "unknown_frame", "doc_id", "bad_update", "too_large", "doc_quota",
    "bad_layout", "bad_record", "future_stamp", "not_home", "deleted_account", "illegal_move",
    "missing_parent", "duplicate_move",
)  # fmt: skip


def test_hostile_peer_frames_from_an_insider_in_memory(no_exceptions_logged: None) -> None:
    """Every refusal is named and counted as /metrics counts it, leaves eu's documents as they
    were (asserted per frame), and at the end the three nodes hold the same documents."""
    fuzz = PeerFuzz(SIM_RANDOM_SEED + 3)
    fuzz.run(PEER_FRAMES)
    counts = fuzz.counts
    assert sum(counts.values()) == PEER_FRAMES
    SENT["peer frames", "in memory"] += PEER_FRAMES
    assert counts["accepted"] > PEER_FRAMES // 10, counts
    assert all(counts[rule] > 0 for rule in PEER_RULES_EXPECTED), counts
    refused = {rule: n for (peer, rule), n in fuzz.cluster.engines[TARGET].refusals.items()}
    assert refused == {rule: n for rule, n in counts.items() if rule != "accepted"}
    assert {peer for peer, _ in fuzz.cluster.engines[TARGET].refusals} == {INSIDER}
    fuzz.finish()


# --- a real node ------------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.timeout(180)
async def test_hostile_input_against_a_real_node(tmp_path: Path) -> None:
    env = cluster_env()
    config = load_config(write_configs(tmp_path, ["eu"])[0], env)
    node = start_node(config, env)
    url = config.public_url
    admin = {"Authorization": f"Bearer {env[TOKEN_ENV]}"}
    hostile = Hostile(SIM_RANDOM_SEED + 2)
    statuses: Counter[int] = Counter()
    closes: Counter[int | None] = Counter()
    try:
        await eventually(lambda: asyncio.to_thread(fetch_health, url))
        async with aiohttp.ClientSession() as http:
            tokens = {name: await _account(http, url, name) for name in ("someone", "fuzzer")}
            bearer = {"Authorization": f"Bearer {tokens['someone']}"}
            for headers in ({}, bearer, {"Authorization": "Bearer forged"}):  # not the admin
                for method, path in (("POST", "/api/admin/accounts"), ("GET", "/api/admin/export")):
                    async with http.request(method, url + path, headers=headers) as response:
                        assert response.status == 401
            await _registration_refusals(http, url, admin)
            # (login and password are guessed below: failed ones are slowed down on purpose)
            routes = {
                "register": ("POST", "/api/register", {}),
                "home": ("POST", "/api/home", bearer),
                "logout": ("POST", "/api/logout", bearer),
                "admin_account": ("POST", "/api/admin/accounts", admin),
                "doc_value": ("PUT", "/api/admin/docs/test:fuzz/key", admin),
                "doc_batch": ("POST", "/api/admin/docs/test:fuzz", admin),
            }
            for _ in range(REAL_BODIES):
                route = hostile.rng.choice(sorted(routes))
                method, path, headers = routes[route]
                async with http.request(
                    method, url + path, data=hostile.body(route), headers=headers
                ) as response:
                    statuses[response.status] += 1
                    kind = "admin bodies" if route.startswith(("admin", "doc")) else "player bodies"
                    SENT[kind, "to a real node"] += 1
                    assert response.status != 500
                    if route in ("register", "admin_account"):  # the node is available
                        assert response.status < 500, (route, response.status)
                    if response.status >= 400:
                        assert "error" in await response.json()
            guesses = [http.post(f"{url}/api/login", data=hostile.body("login")) for _ in range(20)]
            for response in await asyncio.gather(*guesses):
                statuses[response.status] += 1
                response.release()
            SENT["player bodies", "to a real node"] += len(guesses)
            sent = 0
            while sent < REAL_FRAMES:
                sent += await _fuzz_one_socket(http, url, tokens["fuzzer"], hostile, closes)
            SENT["player frames", "to a real node"] += sent
        health = await asyncio.to_thread(fetch_health, url)
        assert health is not None and health["status"] == "ok"
    finally:
        stop_nodes([node])
    log = node.log_path.read_text()
    assert "Traceback" not in log and "internal error" not in log and "Error handling" not in log
    assert statuses[500] == 0 and sum(statuses.values()) == REAL_BODIES + 20
    assert set(closes) <= {1000, 4002, 4003, 4100, 4101, 4103, 4104}, closes
    assert closes[4103] > 10, closes


REAL_PEER_FRAMES = 400


@pytest.mark.integration
@pytest.mark.timeout(180)
async def test_hostile_peer_frames_against_real_nodes(cluster: Any) -> None:
    """The insider's frames (tests/hostile_peers.py) over a real authenticated link: ap is
    down and a fake ap-1 holding ap-1's real key sends them to eu, dialling again after each
    refusal. eu refuses by name only (`meridian_sync_refused_total`, no traceback, no internal
    error), refuses nothing from us, stays healthy, and eu and us end with the same documents."""
    stop_nodes([cluster.nodes[2]])
    keys = cluster.paths[0].parent / "keys"
    identity = NodeIdentity.from_pem("ap-1", "ap", (keys / "ap-1.key").read_bytes())
    keyring = Keyring.parse(tomllib.loads((keys / "keyring.toml").read_text()))
    insider = InsiderLink(identity, keyring, cluster.url(0))
    fuzz = PeerFuzz(SIM_RANDOM_SEED + 4)  # its in-memory eu checks each frame as well
    makers = fuzz.makers()
    taken = 0
    async with aiohttp.ClientSession() as http:
        try:
            for _ in range(REAL_PEER_FRAMES):
                name = fuzz.rng.choice(sorted(makers))
                frame = makers[name]()
                fuzz.send(name, frame)
                taken += await insider.send(http, frame)
        finally:
            await insider.close()
        SENT["peer frames", "to a real node"] += REAL_PEER_FRAMES
        admin = {"Authorization": f"Bearer {cluster.env[TOKEN_ENV]}"}

        async def same_documents() -> bool | None:
            views = [await _documents(http, cluster.url(i), admin) for i in (0, 1)]
            return True if views[0] == views[1] else None

        await eventually(same_documents, timeout=30)
    refused = _refusals(await asyncio.to_thread(_metrics_text, cluster.url(0)))
    assert {peer for peer, _ in refused} == {"ap-1"}, refused
    assert {rule for _, rule in refused} <= KNOWN_RULES, refused
    # The generator's games are not on the real eu: each move is pulled for, then refused.
    assert refused["ap-1", "missing_parent"] > 0, refused
    # Every link eu closed, it closed with a named refusal (the insider dials again after each).
    assert sum(refused.values()) >= insider.dials - 1, (insider.dials, refused)
    assert insider.dials > REAL_PEER_FRAMES // 3 and taken > REAL_PEER_FRAMES // 10
    assert not _refusals(await asyncio.to_thread(_metrics_text, cluster.url(1)))
    for index in (0, 1):
        health = await asyncio.to_thread(fetch_health, cluster.url(index))
        assert health is not None and health["status"] == "ok", health
        log = cluster.nodes[index].log_path.read_text()
        assert "Traceback" not in log and "internal error" not in log


async def _documents(
    http: aiohttp.ClientSession, url: str, admin: dict[str, str]
) -> dict[str, str]:
    """A node's documents and their digests (presence documents by id only: their heartbeats
    change them every second)."""
    async with http.get(f"{url}/api/cluster", headers=admin) as response:
        view = await response.json()
    return {
        d["id"]: "" if d["id"].startswith("presence:") else d["digest"] for d in view["documents"]
    }


def _metrics_text(url: str) -> str:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
        text: str = response.read().decode()
        return text


REFUSED = re.compile(r'^meridian_sync_refused_total\{peer="([^"]+)",rule="([^"]+)"\} (\S+)$', re.M)


def _refusals(metrics: str) -> Counter[tuple[str, str]]:
    return Counter(
        {(peer, rule): int(float(n)) for peer, rule, n in REFUSED.findall(metrics) if float(n)}
    )


LONG = "a long password"


def _body(fields: dict[str, Any]) -> bytes:
    return json.dumps(fields).encode()


REGISTRATION_REFUSALS: list[tuple[bytes, int, str]] = [
    (b"", 400, "bad_request"),
    (b"[", 400, "bad_request"),
    (b"[]", 400, "bad_request"),
    (_body({"name": "newcomer"}), 400, "bad_request"),
    (_body({"name": "newcomer", "password": "short"}), 400, "weak_password"),
    (_body({"name": "new\n", "password": LONG}), 400, "bad_request"),
    (_body({"name": "newcomer\n", "password": LONG}), 400, "bad_request"),
    (_body({"name": "ab", "password": LONG}), 400, "bad_request"),
    (_body({"name": "admin", "password": LONG}), 409, "name_taken"),
    (_body({"name": "someone", "password": LONG}), 409, "name_taken"),
    (
        _body({"name": "newcomer", "password": LONG, "home": "mars"}),
        400,
        "bad_request",
    ),
    (
        _body({"name": "newcomer", "password": LONG, "home": ["eu"]}),
        400,
        "bad_request",
    ),
    (_body({"name": "newcomer", "password": "\ud800" * 9}), 400, "bad_request"),
    (_body({"name": "newcomer", "password": LONG, "x": 1}), 400, "bad_request"),
    (_body({"name": "newcomer", "password": "x" * 70_000}), 413, "too_large"),
]


async def _registration_refusals(
    http: aiohttp.ClientSession, url: str, admin: dict[str, str]
) -> None:
    """Registration, the player's and the admin's, answers bad input with its documented 4xx
    and code (docs/protocol.md, Error codes), never 503: that is for a node that cannot serve
    (draining, a quarantined accounts document), not for what the client sent."""
    for path, headers in (("/api/register", {}), ("/api/admin/accounts", admin)):
        for body, status, code in REGISTRATION_REFUSALS:
            async with http.post(url + path, data=body, headers=headers) as response:
                answer = await response.json()
                assert (response.status, answer["error"]["code"]) == (status, code), (path, body)
        async with http.post(url + path, data=REGISTRATION_REFUSALS[4][0]) as response:
            if headers:  # the admin route without the token
                assert response.status == 401


async def _account(http: aiohttp.ClientSession, url: str, name: str) -> str:
    """Register `name` and log it in: its session token."""
    body = {"name": name, "password": "a long password"}
    await http.post(f"{url}/api/register", json=body)
    async with http.post(f"{url}/api/login", json=body) as response:
        return str((await response.json())["token"])


async def _fuzz_one_socket(
    http: aiohttp.ClientSession, url: str, token: str, hostile: Hostile, closes: Counter[int | None]
) -> int:
    """Say hello, then send hostile frames until 50 are sent or the node closes the socket;
    note how it closed (the node's close code, or 1000 when the client closed it)."""
    ws = await http.ws_connect(url.replace("http", "ws") + "/ws")
    await ws.send_str(json.dumps({"type": "hello", "token": token, "id": "h"}))
    sent = 0
    while sent < 50:
        try:
            await ws.send_str(hostile.frame())
        except (ConnectionResetError, aiohttp.ClientConnectionResetError):
            break
        sent += 1
        code = await _read_pending(ws)
        if code is not None:
            closes[code] += 1
            return sent
    code = await _read_pending(ws, wait=0.2)
    await ws.close()
    closes[code if code is not None else ws.close_code] += 1
    return max(sent, 1)


async def _read_pending(ws: aiohttp.ClientWebSocketResponse, wait: float = 0.002) -> int | None:
    """Read what the node sent so far: None while the socket is open, else its close code.
    No reply may be "internal"."""
    while True:
        try:
            message = await ws.receive(timeout=wait)
        except TimeoutError:
            return None
        if message.type == aiohttp.WSMsgType.TEXT:
            reply = json.loads(message.data)
            assert reply.get("error", {}).get("code") != "internal", reply
            continue
        return ws.close_code
