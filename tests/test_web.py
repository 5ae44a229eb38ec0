"""The player client and the cluster dashboard, driven in headless Chromium with Playwright.

A 3-region cluster of real node processes whose peer links cross fault-injecting proxies
(tests/web_cluster.py); the browser talks to the nodes directly. Every test saves screenshots
under artifacts/screenshots/. Needs the `playwright` package and Debian's `chromium`
(the Playwright browser download is not used); see docs/web.md.
"""

from __future__ import annotations

import json
import random
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser_check import require_browser
from tests.web_cluster import ThreadedCluster

require_browser()
from playwright.sync_api import Browser  # noqa: E402 (imports Playwright: after require_browser)

from tests.web_browser import (  # noqa: E402 (imports Playwright: after require_browser)
    GUILES,
    PASSWORD,
    PHONE,
    POLL_MS,
    Player,
    choose,
    contrast_failures,
    new_players,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def web_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedCluster]:
    cluster = ThreadedCluster(Path(tmp_path_factory.mktemp("web")))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def test_two_regions_play_a_game_to_the_end_while_a_third_watches(
    web_cluster: ThreadedCluster, browser: Browser
) -> None:
    errors: list[str] = []
    alice, bob, carol = new_players(browser, errors, "alice", "bob", "carol")
    eu = web_cluster.url("eu")
    try:
        alice.sign_up(eu, "eu")
        bob.sign_up(eu, "us")  # the page comes from eu; bob plays through us
        carol.sign_up(eu, "ap")
        # The public list shows every player with their region.
        alice.page.wait_for_selector('#players tr[data-player="bob"][data-region="us"]')
        alice.page.wait_for_selector('#players tr[data-player="carol"][data-region="ap"]')
        alice.page.click('#players button[data-invite="bob"]')
        alice.page.wait_for_selector('#invites [data-outgoing="bob"]')
        bob.page.wait_for_selector('#invites [data-incoming="alice"]')
        alice.shot("01-lobby-alice-invited-bob")
        bob.page.click("#invites button[data-accept]")
        for player in (alice, bob):
            player.page.wait_for_selector('body[data-screen="game"]')
        carol.page.wait_for_selector("#live-games button[data-watch]")
        carol.shot("02-lobby-carol-game-in-play")
        carol.page.click("#live-games button[data-watch]")
        carol.page.wait_for_selector('#screen-game[data-role="watcher"]')

        alice.page.fill("#table-text", "good luck!")
        alice.page.press("#table-text", "Enter")
        for player in (bob, carol):
            player.page.wait_for_selector("#table-chat li:has-text('good luck!')")

        rng = random.Random(11)
        made: dict[str, int] = {}
        ply, killed_at = 0, 40
        started = time.monotonic()
        mover = alice if alice.state(0)["myTurn"] else bob
        while True:
            now = mover.state(ply)
            if now["status"] == "finished":
                break
            if not now["myTurn"]:  # the turn passed: the other player's page shows it
                mover = bob if mover is alice else alice
                now = mover.state(ply)
                assert now["myTurn"], f"ply {ply}: neither player is to move"
            move = choose(now["legal"], rng)
            # Real input for the opening, the first moves of each kind and every guile.
            kind = move["type"]
            real = ply < 24 or made.get(kind, 0) < 3 or kind in (*GUILES, "scout_return")
            mover.perform(move, real=real)
            made[move["type"]] = made.get(move["type"], 0) + 1
            ply += 1
            if ply == 6:
                carol.wait_ply(ply)
                assert carol.attr("data-my-turn") == "false"
                assert contrast_failures(carol.page) == [], "a watcher's page"
                for player in (alice, bob, carol):
                    player.shot(f"03-game-ply-6-{player.name}")
                check_dashboard_counts(browser, web_cluster, errors)
            if ply == killed_at:
                # bob's region dies mid-game (once both regions hold the last move): his page
                # resumes the session in another region.
                alice.wait_ply(ply)
                bob.wait_ply(ply)
                web_cluster.kill("us")
                bob.page.wait_for_selector("#reconnected")
                notice = bob.page.inner_text("#reconnected")
                assert "Connection to us lost; reconnected to" in notice
                assert "your game goes on" in notice
                assert bob.page.get_attribute("body", "data-region") in ("eu", "ap")
                bob.shot("05-bob-reconnected-elsewhere")
            assert time.monotonic() - started < 120, "the game took too long"
        for player in (alice, bob, carol):
            player.wait_ply(ply)
        alice.shot("06-game-over-alice")
        carol.shot("07-game-over-carol-watching")
        for player in (alice, bob, carol):
            assert player.attr("data-status") == "finished"
            assert "Game over" in player.page.inner_text("#turn")
        assert made.get("claim", 0) > 0 and made.get("play", 0) > 0, made

        # The finished game: in the lobby's list, and replayed step by step.
        alice.page.click('[data-action="replay"]')
        alice.page.wait_for_selector('body[data-screen="replay"]')
        assert alice.page.get_attribute("#screen-replay", "data-ply") == "0"
        alice.page.click("#replay-next")
        alice.page.click("#replay-next")
        assert alice.page.get_attribute("#screen-replay", "data-ply") == "2"
        assert alice.page.inner_text("#replay-status").startswith("Move 2:")
        alice.page.keyboard.press("End")
        assert alice.page.get_attribute("#screen-replay", "data-ply") == str(ply)
        assert "won" in alice.page.inner_text("#replay-status") or "draw" in alice.page.inner_text(
            "#replay-status"
        )
        alice.page.keyboard.press("ArrowLeft")
        assert alice.page.get_attribute("#screen-replay", "data-ply") == str(ply - 1)
        assert contrast_failures(alice.page) == [], "the replay"
        alice.shot("08-replay")
        alice.page.click("#replay-close")
        alice.page.wait_for_selector("#finished-games button[data-replay]")
        alice.shot("09-lobby-finished-game")
        assert not errors, errors
    except Exception:
        for player in (alice, bob, carol):
            player.shot(f"failed-game-{player.name}")
        raise
    finally:
        for player in (alice, bob, carol):
            player.close()
        web_cluster.restart("us")


def check_dashboard_counts(browser: Browser, cluster: ThreadedCluster, errors: list[str]) -> None:
    """The dashboard (opened on ap) counts each region's players and games in play, and shows
    each region's load with its player connections."""
    (operator,) = new_players(browser, errors, "operator")
    try:
        operator.open(cluster.url("ap"), "/dashboard")
        operator.page.fill("#token", cluster.admin_token)
        operator.page.press("#token", "Enter")
        # alice plays through eu, bob through us, carol watches through ap.
        for region, players, games in (("eu", 1, 1), ("us", 1, 1), ("ap", 1, 0)):
            card = f'#regions [data-region="{region}"]'
            operator.page.wait_for_selector(f'{card} [data-stat="players"] dd:text-is("{players}")')
            operator.page.wait_for_selector(f'{card} [data-stat="games"] dd:text-is("{games}")')
            # the load observers' view (node.observer): one websocket per player in each region
            row = f'#load tr[data-load-region="{region}"]'
            operator.page.wait_for_selector(f'{row} [data-figure="connections"]:text-is("1")')
            operator.page.wait_for_selector(f'#load tr[data-load-node="{region}-1"]')
            # players moved by rebalancing (node.rebalancer): none, it is off by default
            operator.page.wait_for_selector(f'{row} [data-figure="moved_out"]:text-is("0")')
        operator.page.wait_for_selector('#moving:has-text("rebalancing off")')
        operator.shot("03-dashboard-during-the-game", full_page=True)
    finally:
        operator.close()


def test_a_saved_game_is_resumed(web_cluster: ThreadedCluster, browser: Browser) -> None:
    errors: list[str] = []
    erin, finn = new_players(browser, errors, "erin", "finn")
    eu = web_cluster.url("eu")
    try:
        erin.sign_up(eu, "eu")
        finn.sign_up(eu, "ap")
        erin.page.click('#players button[data-invite="finn"]')
        finn.page.click('#invites [data-incoming="erin"] button[data-accept]')
        for player in (erin, finn):
            player.page.wait_for_selector('body[data-screen="game"]')
        rng, mover = random.Random(5), erin
        for ply in range(3):
            now = mover.state(ply)
            if not now["myTurn"]:
                mover = finn if mover is erin else erin
                now = mover.state(ply)
            mover.perform(choose(now["legal"], rng))
        for player in (erin, finn):
            player.wait_ply(3)
        table = erin.page.inner_text("#table")
        erin.page.click('[data-action="save"]')
        for player in (erin, finn):
            player.page.wait_for_selector('body[data-screen="lobby"]')
        erin.page.wait_for_selector("#saved-games button[data-resume]:not([disabled])")
        erin.shot("14-saved-game")
        # finn moves his session from ap to us from the top bar; the old socket's close (4104)
        # is expected and not reported.
        finn.page.select_option("#region-switch", "us")
        finn.page.wait_for_selector('body[data-region="us"]')
        finn.page.wait_for_selector("#banners:has-text('You now play through us')")
        erin.page.click("#saved-games button[data-resume]")
        finn.page.wait_for_selector('#invites [data-incoming="erin"]:has-text("resume")')
        finn.page.click('#invites [data-incoming="erin"] button[data-accept]')
        for player in (erin, finn):
            player.page.wait_for_selector('body[data-screen="game"]')
        assert erin.page.inner_text("#table") == table, "the game goes on where it was saved"
        assert finn.page.query_selector("#final-close") is None
        assert not errors, errors
    finally:
        erin.close()
        finn.close()


def test_dashboard_shows_a_cut_link_as_down(web_cluster: ThreadedCluster, browser: Browser) -> None:
    errors: list[str] = []
    (operator,) = new_players(browser, errors, "operator")
    page = operator.page
    try:
        operator.open(web_cluster.url("eu"), "/dashboard")
        page.fill("#token", "not the token")
        page.press("#token", "Enter")
        page.wait_for_selector("#token-error:has-text('refused')")
        page.fill("#token", web_cluster.admin_token)
        page.press("#token", "Enter")
        for a, b in (("eu", "us"), ("us", "eu"), ("eu", "ap"), ("ap", "us")):
            page.wait_for_selector(f'#links tr[data-link="{a}-{b}"][data-state="up"]')
        page.wait_for_selector('#docs-summary[data-differ="0"]')
        assert contrast_failures(page) == [], "the dashboard"
        assert page.query_selector("[data-demo-kill]") is None  # not a `meridian demo`
        operator.shot("10-dashboard-all-up", full_page=True)

        web_cluster.cut("eu", "us")
        for a, b in (("eu", "us"), ("us", "eu")):
            page.wait_for_selector(f'#links tr[data-link="{a}-{b}"][data-state="down"]')
        page.wait_for_selector('#link-graph line.edge.down[data-pair="eu-us"]')
        assert page.get_attribute('#links tr[data-link="eu-ap"]', "data-state") == "up"
        operator.shot("11-dashboard-eu-us-cut", full_page=True)

        web_cluster.heal()
        page.wait_for_selector('#links tr[data-link="eu-us"][data-state="up"]')
        page.wait_for_selector('#link-graph line.edge.up[data-pair="eu-us"]')
        assert not errors, errors
    finally:
        web_cluster.heal()
        operator.close()


def test_a_second_login_elsewhere_is_explained(
    web_cluster: ThreadedCluster, browser: Browser
) -> None:
    errors: list[str] = []
    first, second = new_players(browser, errors, "dora", "dora")
    try:
        first.sign_up(web_cluster.url("eu"), "eu")
        second.sign_up(web_cluster.url("ap"), "ap", register=False)
        first.page.wait_for_selector("#session-over:has-text('You logged in somewhere else')")
        first.page.wait_for_selector('body[data-screen="login"]')
        first.shot("12-logged-in-elsewhere")
        second.page.click("#logout")
        second.page.wait_for_selector('body[data-screen="login"]')
        second.page.wait_for_selector("#session-over:has-text('You have logged out')")
        assert not errors, errors
    finally:
        first.close()
        second.close()


def test_a_name_registered_twice_during_a_partition_is_explained(
    web_cluster: ThreadedCluster, browser: Browser
) -> None:
    errors: list[str] = []
    (late,) = new_players(browser, errors, "zed")
    try:
        late.open(web_cluster.url("eu"))
        late.page.wait_for_selector('.region-row[data-region="eu"] .rtt[data-rtt]')
        web_cluster.partition(["eu"], ["us", "ap"])
        _post(f"{web_cluster.url('us')}/api/register", {"name": "zed", "password": PASSWORD})
        late.sign_up(web_cluster.url("eu"), "eu")  # eu cannot know: it registers zed too
        web_cluster.heal()
        # The merge keeps the earlier registration (us); this player must pick a new name.
        late.page.wait_for_selector("#rename-dialog[open]", timeout=30_000)
        assert "The other registration came first" in late.page.inner_text("#rename-why")
        late.shot("13-must-rename-after-merge")
        late.page.fill("#rename-name", "zed")
        late.page.press("#rename-name", "Enter")
        late.page.wait_for_selector("#rename-error:has-text('taken')")
        late.page.fill("#rename-name", "zed_eu")
        late.page.press("#rename-name", "Enter")
        late.page.wait_for_selector("#banners:has-text('You are now zed_eu')")
        assert late.page.inner_text("#account-name") == "zed_eu"
        late.page.wait_for_selector('#players tr[data-player="zed_eu"]')
        late.page.reload()  # the tab keeps its session: the page resumes it
        late.page.wait_for_selector('body[data-screen="lobby"][data-region="eu"]')
        assert late.page.inner_text("#account-name") == "zed_eu"
        assert not errors, errors
    finally:
        web_cluster.heal()
        late.close()


def _post(url: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def _get(url: str, method: str = "GET", headers: dict[str, str] | None = None) -> Any:
    request = urllib.request.Request(url, method=method, headers=headers or {})
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.status, dict(response.headers), response.read()


def test_cors_and_the_pages_endpoints(web_cluster: ThreadedCluster) -> None:
    us = web_cluster.url("us")
    status, headers, _ = _get(
        f"{us}/api/login",
        "OPTIONS",
        {"Origin": "http://elsewhere", "Access-Control-Request-Method": "POST"},
    )
    assert status == 204
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert "Authorization" in headers["Access-Control-Allow-Headers"]
    status, headers, _ = _get(f"{us}/healthz")
    assert headers["Access-Control-Allow-Origin"] == "*"
    status, headers, body = _get(f"{us}/api/live")
    assert json.loads(body) == {"games": []} or "games" in json.loads(body)
    with pytest.raises(urllib.error.HTTPError) as refused:
        _get(f"{us}/api/overview")
    assert refused.value.code == 401
    assert refused.value.headers["Access-Control-Allow-Origin"] == "*"
    refused.value.close()  # the error holds the response and its socket
    _, _, body = _get(
        f"{us}/api/overview", headers={"Authorization": f"Bearer {web_cluster.admin_token}"}
    )
    assert json.loads(body)["region"] == "us"
    with pytest.raises(urllib.error.HTTPError) as not_demo:
        _get(f"{us}/api/demo", headers={"Authorization": f"Bearer {web_cluster.admin_token}"})
    assert not_demo.value.code == 404  # the Kill/Start buttons exist only under `meridian demo`
    not_demo.value.close()
    with pytest.raises(urllib.error.HTTPError) as missing:
        _get(f"{us}/api/replay/nope")
    assert missing.value.code == 404
    missing.value.close()
    _, headers, _ = _get(f"{us}/static/js/app.js")
    assert "javascript" in headers["Content-Type"]
    _, headers, body = _get(f"{us}/dashboard")
    assert b"cluster dashboard" in body
    status, headers, _ = _get(f"{us}/")
    assert "Access-Control-Allow-Origin" not in headers  # only the listed paths


def test_a_timed_game_shows_the_clocks_ticking_and_the_time_out(
    web_cluster: ThreadedCluster, browser: Browser
) -> None:
    errors: list[str] = []
    # tilda on a desktop, timo on a 390x844 phone: the clocks must work on both.
    tilda, timo = Player(browser, "tilda", errors), Player(browser, "timo", errors, PHONE)
    try:
        tilda.sign_up(web_cluster.url("eu"), "eu")
        timo.sign_up(web_cluster.url("eu"), "us")
        presets = tilda.page.eval_on_selector_all(
            "#time-control option", "options => options.map(o => o.textContent)"
        )
        assert presets == ["No clock", "5+0", "10+0", "10+5"]
        # A 15 s clock (the shortest the protocol takes) so the time runs out within the test.
        tilda.page.eval_on_selector(
            "#time-control", "s => { s.add(new Option('15s+0', '15+0')); s.value = '15+0'; }"
        )
        tilda.page.wait_for_selector('#players button[data-invite="timo"]')
        tilda.page.click('#players button[data-invite="timo"]')
        timo.page.wait_for_selector('#invites [data-incoming="tilda"]:has-text("(15s+0)")')
        timo.page.click("#invites button[data-accept]")
        for player in (tilda, timo):
            player.page.wait_for_selector(
                'body[data-screen="game"] #clocks .clock[data-running="true"]'
            )
        running = tilda.page.inner_text('#clocks .clock[data-running="true"] .clock-time')
        time.sleep(1.5)
        later = tilda.page.inner_text('#clocks .clock[data-running="true"] .clock-time')
        assert later < running, f"the running clock ticks down: {running} then {later}"
        tilda.shot("10-clocks-ticking")
        # Nobody moves: the mover's time runs out and both pages show it.
        for player in (tilda, timo):
            player.page.wait_for_selector(
                '#screen-game[data-status="finished"] #clocks .clock.out', timeout=25_000
            )
            assert "ran out of time" in player.page.inner_text("#summary")
            assert player.page.inner_text("#clocks .clock.out .clock-time") == "0:00"
        for player in (tilda, timo):
            assert contrast_failures(player.page, "#clocks") == []
        width = timo.page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= PHONE["width"], f"the phone's game page is {width} px wide"
        tilda.shot("11-time-out")
        timo.shot("11-time-out-phone", full_page=True)
        assert not errors, errors
    finally:
        for player in (tilda, timo):
            player.close()


def test_the_page_follows_a_drain_to_another_region_with_one_notice(
    web_cluster: ThreadedCluster, browser: Browser
) -> None:
    errors: list[str] = []
    (drew,) = new_players(browser, errors, "drew")
    ap = web_cluster.url("ap")
    try:
        drew.sign_up(web_cluster.url("eu"), "ap")
        drew.page.eval_on_selector("#banners", "el => el.replaceChildren()")  # the welcome
        request = urllib.request.Request(
            f"{ap}/api/admin/drain",
            data=b"{}",
            method="POST",
            headers={"Authorization": f"Bearer {web_cluster.admin_token}"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status in (200, 202)
        drew.page.wait_for_selector("#drain")
        drew.page.wait_for_function("document.body.dataset.region !== 'ap'", polling=POLL_MS)
        assert drew.page.get_attribute("body", "data-region") in ("eu", "us")
        drew.page.wait_for_selector(".conn-status.ok")
        banners = drew.page.eval_on_selector_all(
            "#banners .banner", "els => els.map(e => e.id || e.textContent)"
        )
        assert banners == ["drain"], f"one short notice, nothing else: {banners}"
        drew.shot("12-drain-followed")
        assert not errors, errors
    finally:
        drew.close()
        deadline = time.monotonic() + 30  # the drained node flushes, then exits by itself
        while web_cluster.alive("ap") and time.monotonic() < deadline:
            time.sleep(0.1)
        web_cluster.restart("ap")
