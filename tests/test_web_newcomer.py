"""What a newcomer sees, in headless Chromium: bots waiting for people, the rules on the page, a
game to its end with a summary and a rematch, and failover in the middle of a game.

A 3-region cluster of real node processes (tests/web_cluster.py) with bots reserved for people
(`node.bots`, as in `meridian demo`); desktop and a 390x844 phone. Screenshots go to
artifacts/screenshots/newcomer-*.png.
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
from tests.web_cluster import REGIONS, ThreadedCluster

require_browser()
from playwright.sync_api import Browser, Page  # noqa: E402 (imports Playwright: after require_browser)

from tests.web_browser import (  # noqa: E402 (imports Playwright: after require_browser)
    PASSWORD,
    PHONE,
    POLL_MS,
    Player,
    choose,
    contrast_failures,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def web_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedCluster]:
    cluster = ThreadedCluster(Path(tmp_path_factory.mktemp("newcomer")))
    try:
        cluster.start()
        # As in `meridian demo`: two bots wait for people, two play each other.
        cluster.start_bots("bot", 4, for_people=2)
        yield cluster
    finally:
        cluster.stop()


def register(player: Player, base_url: str) -> None:
    """Open the page and register with the region it picks."""
    page = player.page
    player.open(base_url)
    page.wait_for_selector(".region-row .rtt[data-rtt]")
    page.fill("#login-name", player.name)
    page.fill("#login-password", PASSWORD)
    page.click("#register-button")
    page.wait_for_selector('body[data-screen="lobby"]')


def record_banners(page: Page) -> None:
    """Keep the text of every banner the page shows (some last only a moment)."""
    page.evaluate(
        """() => {
            window.seenBanners = [];
            new MutationObserver(() => {
                for (const el of document.querySelectorAll('#banners .banner-text')) {
                    const text = el.textContent;
                    if (!window.seenBanners.includes(text)) window.seenBanners.push(text);
                }
            }).observe(document.querySelector('#banners'), {childList: true, subtree: true});
        }"""
    )


def banners(page: Page) -> list[str]:
    seen: list[str] = page.evaluate("() => window.seenBanners")
    return seen


def test_the_page_prefers_its_own_region_unless_another_is_clearly_faster(
    web_cluster: ThreadedCluster, browser: Browser
) -> None:
    errors: list[str] = []
    visitor = Player(browser, "visitor", errors)
    try:
        # On loopback every region answers within a few ms: the page keeps its own region
        # (unless a busy machine makes another clearly faster: then it says so).
        for region in ("ap", "us"):
            visitor.open(web_cluster.url(region))
            visitor.page.wait_for_selector(".region-row .rtt[data-rtt]")
            note = visitor.page.inner_text("#region-note")
            chosen = visitor.page.get_attribute("#region-note", "data-region")
            auto = '.region-row:has([data-auto]) input[type="radio"]'
            assert visitor.page.get_attribute(auto, "value") == chosen
            if chosen == region:
                assert f"{region} is the region of this page's address" in note
            else:
                assert f"is clearly faster than {region}" in note, note
        visitor.shot("newcomer-02-region-chooser")
        # The rule itself, on made-up round trips: 20 ms and twice as fast, or it does not count.
        chosen = visitor.page.evaluate(
            """async () => {
                const { preferredRegion } = await import('/static/js/net.js');
                const regions = (eu, us) => [
                    { region: 'eu', opened: true, rtt: eu },
                    { region: 'us', opened: false, rtt: us },
                ];
                return [[30, 5], [12, 5], [45, 24], [null, 80], [3, 40]].map(
                    ([eu, us]) => preferredRegion(regions(eu, us)).region.region);
            }"""
        )
        assert chosen == ["us", "eu", "eu", "us", "eu"]
        # The player may still pick another region, and go back to the automatic choice.
        auto = visitor.page.get_attribute("#region-note", "data-region") or ""
        other = "eu" if auto != "eu" else "ap"
        visitor.page.click(f'.region-row[data-region="{other}"]')
        visitor.page.wait_for_selector(f"#region-note:has-text('You chose {other}. Automatic: ')")
        visitor.page.click("#use-automatic")
        visitor.page.wait_for_selector(f'#region-note[data-region="{auto}"]')
        # A name against the rule: the page states the rule and the fault, not "match the
        # requested format".
        visitor.page.fill("#login-name", "new comer!")
        visitor.page.fill("#login-password", PASSWORD)
        visitor.page.click("#register-button")
        rule = "Names have 3 to 20 characters, each a letter (A-Z, a-z), a digit, _ or -."
        visitor.page.wait_for_selector(f"#login-error:has-text('{rule}')")
        assert "a space, “!”" in visitor.page.inner_text("#login-error")
        message = visitor.page.eval_on_selector("#login-name", "el => el.validationMessage")
        assert message.startswith(rule)
        assert visitor.page.get_attribute("body", "data-screen") == "login"
        assert not errors, errors
    finally:
        visitor.close()


def revive(cluster: ThreadedCluster) -> None:
    """Bring back any region a test killed (the next test needs all three)."""
    for region in REGIONS:
        if not cluster.alive(region):
            cluster.restart(region)


def assert_readable(player: Player, state: str, scope: str = "body") -> None:
    """Every text of the page passes WCAG AA contrast in this state."""
    failures = contrast_failures(player.page, scope)
    assert not failures, f"{player.name}, {state}: {failures}"


def wait_focus(page: Page, selector: str) -> None:
    page.wait_for_function(
        "sel => document.activeElement && document.activeElement.matches(sel)",
        arg=selector,
        polling=POLL_MS,
    )


def tab_until(page: Page, selector: str, limit: int = 40) -> None:
    for _ in range(limit):
        if page.evaluate("sel => document.activeElement.matches(sel)", selector):
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"Tab never reached {selector}")


def keyboard_turn(player: Player, state: dict[str, Any]) -> dict[str, Any]:
    """One whole turn (claim, play a troop, draw) with the keyboard alone, starting from where
    the page put the focus; returns the state after it."""
    page = player.page
    if state["phase"] == "claim":
        wait_focus(page, "#table [data-claim-flag]")
        page.keyboard.press("Enter")
        tab_until(page, '[data-action="claim"]')
        page.keyboard.press("Enter")
        state = player.next_turn(state["ply"])
    assert state["phase"] == "play", state
    wait_focus(page, "#hand-area .card:not(:disabled)")
    tab_until(page, "#hand-area .card.troop:not(:disabled)")
    page.keyboard.press("Enter")
    wait_focus(page, "#table [data-target-flag]")
    target = page.evaluate("() => document.activeElement.dataset.targetFlag")
    assert page.get_attribute(f'.flag-col[data-flag="{target}"]', "data-target") == "1"
    page.keyboard.press("Enter")
    state = player.next_turn(state["ply"])
    if state["status"] == "live" and state["phase"] == "draw":
        wait_focus(page, "#decks [data-deck]")
        page.keyboard.press("Enter")
        state = player.next_turn(state["ply"])
    return state


def check_last_turn(player: Player, opponent: str) -> None:
    """ "Last turn" tells the opponent's whole turn, not only its draw."""
    text = player.page.inner_text("#last-move")
    assert text.startswith(opponent), text
    assert "played" in text or "passed" in text, text
    assert "claimed nothing" not in player.page.inner_text("#screen-game")
    current = player.page.query_selector_all("#move-log li.current")
    assert len(current) == 1 and current[0].get_attribute("aria-current") == "step"
    assert player.page.evaluate(
        "() => document.querySelector('#move-log li:last-child').classList.contains('current')"
    )


def fetch_json(url: str, timeout: float = 10) -> Any:
    """GET a JSON answer, waiting while it is 404 (a record on its way to this region)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                return json.loads(answer.read())
        except urllib.error.HTTPError as error:
            if error.code != 404 or time.monotonic() > deadline:
                raise
            error.close()  # the error holds the response and its socket
        time.sleep(0.1)


def check_summary(player: Player, base_url: str, gid: str) -> dict[str, Any]:
    """The summary of a finished game agrees with the server's record of it."""
    page = player.page
    page.wait_for_selector("#summary:not([hidden]) #summary-title")
    record = fetch_json(f"{base_url}/api/games/{gid}")
    names, result = record["names"], record["result"]
    title = page.inner_text("#summary-title")
    if result["winner"] is None:
        assert title == "A draw."
    else:
        winner = names[result["winner"]]
        assert title == ("You won." if winner == player.name else f"{winner} won.")
    how = page.inner_text("#summary .summary-how")
    assert {"flags": "five flags", "breakthrough": "breakthrough", "give_up": "gave up"}.get(
        result["reason"], result["reason"]
    ) in how.lower(), how
    flags_won = [
        int(x)
        for x in page.eval_on_selector_all(
            "#summary [data-flags-won]", "els => els.map(e => e.dataset.flagsWon)"
        )
    ]
    if result["reason"] == "flags":
        # One claim may take several flags at once, so a win by flags can end on six or more.
        assert max(flags_won) >= 5
    # The page's own move list: after a failover it may be fetched again before it is whole.
    counted = f"{len(record['moves'])} moves in "
    page.wait_for_function(
        "text => document.querySelector('#summary').innerText.includes(text)",
        arg=counted,
        polling=POLL_MS,
    )
    # Once the game is rated, each player's new rating and its change.
    page.wait_for_selector("#summary [data-rating-after]", timeout=15_000)
    link = page.get_attribute("#summary a[data-replay-link]", "href") or ""
    assert link.endswith(f"/?replay={gid}")
    # The rematch swaps colours: whoever moved second moves first.
    first_seat = record["first"]
    me = names.index(player.name)
    rematch = page.inner_text('#summary [data-action="rematch"]')
    opponent = names[1 - me]
    expected = f"{opponent} moves first" if first_seat == me else "you move first"
    assert rematch == f"Rematch ({expected})"
    return dict(record)


def read_the_rules(player: Player) -> None:
    page = player.page
    page.click("#rules-open")
    page.wait_for_selector("#rules-dialog[open]")
    for section in ("goal", "turn", "formations", "claims", "tactics"):
        assert page.is_visible(f'#rules-dialog [data-rules="{section}"]')
    formations = page.query_selector_all("#rules-dialog [data-formation]")
    assert [f.get_attribute("data-formation") for f in formations] == [
        "wedge",
        "phalanx",
        "battalion",
        "skirmish line",
        "host",
    ]
    # The examples are the table's own card tiles: three per formation, the ten tactics.
    assert len(page.query_selector_all("#rules-dialog [data-formation] .card[data-card]")) == 15
    tactics = page.query_selector_all("#rules-dialog [data-tactic] .card[data-card]")
    assert sorted(int(t.get_attribute("data-card") or 0) for t in tactics) == list(range(61, 71))
    assert_readable(player, "how to play", "#rules-dialog")
    player.shot(f"newcomer-rules-{player.name}")
    page.keyboard.press("Escape")
    page.wait_for_selector("#rules-dialog:not([open])", state="attached")


def test_a_newcomer_reads_the_rules_plays_a_bot_and_finishes_on_another_region(
    web_cluster: ThreadedCluster, browser: Browser
) -> None:
    """The whole story on a desktop: the rules, a bot at once, the keyboard, failover."""
    errors: list[str] = []
    player = Player(browser, "newbie", errors)
    page = player.page
    try:
        register(player, web_cluster.url("us"))  # the page keeps its own region, normally us
        home = page.get_attribute("body", "data-region") or ""
        assert_readable(player, "lobby")
        read_the_rules(player)
        page.click('#players button[data-invite="bot1"]')
        page.wait_for_selector("#invite-accepted:has-text('bot1 accepted your invitation')")
        rng = random.Random(7)
        started = time.monotonic()
        state, moves, turns, killed = player.next_turn(-1), 0, 0, False
        while state["status"] == "live":
            moves += 1
            turns += state["phase"] in ("claim", "play") and state["legal"][0]["type"] != "draw"
            if moves == 1:
                page.hover("#hand-area .card:not(:disabled)")
                assert_readable(player, "my turn, pointer over a card")
            if turns == 2 and state["phase"] in ("claim", "play"):
                check_last_turn(player, "bot1")
                assert_readable(player, "the bot's turn shown")
                state = keyboard_turn(player, state)
                turns += 1
                continue
            if turns == 4 and state["phase"] == "play":
                page.click("#hand-area .card:not(:disabled)")
                assert_readable(player, "a card selected")
                player.shot("newcomer-03-card-selected")
                page.keyboard.press("Escape")
            if turns == 10 and not killed:
                # The player's region dies in mid-game (SIGKILL); the page goes on elsewhere.
                web_cluster.kill(home)
                killed = True
                page.wait_for_selector("#reconnected:has-text('your game goes on')")
                assert page.get_attribute("body", "data-region") not in ("", home)
                player.shot("newcomer-04-reconnected")
            move = choose(state["legal"], rng)
            player.perform(move, real=moves < 12 or move["type"] != "draw")
            state = player.next_turn(state["ply"])
            assert time.monotonic() - started < 150, "the game took too long"
        assert killed
        page.wait_for_selector('#screen-game[data-status="finished"]')
        gid = page.get_attribute("#screen-game", "data-game") or ""
        check_summary(player, web_cluster.url(page.get_attribute("body", "data-region") or ""), gid)
        assert_readable(player, "game over")
        player.shot("newcomer-05-game-over", full_page=True)
        # The killed region comes back and catches up: its log holds the game, and the player
        # can move back to it.
        web_cluster.restart(home)
        page.click('[data-action="lobby"]')
        page.select_option("#region-switch", home)
        page.wait_for_selector(f'body[data-region="{home}"]')
        page.wait_for_selector(f'#finished-games [data-finished="{gid}"]', timeout=30_000)
        # The ratings: in the lobby, and on the leaderboard, the same in every region.
        page.wait_for_selector('#players tr[data-player="newbie"] td.rating')
        page.click("#leaderboard-open")
        page.wait_for_selector('body[data-screen="leaderboard"]')
        page.wait_for_selector('#leaderboard tr.me[data-rated="newbie"]')
        page.wait_for_selector('#ratings-agreement[data-agree="true"]', timeout=30_000)
        assert "All 3 regions derive the same table" in page.inner_text("#ratings-agreement")
        assert_readable(player, "the leaderboard")
        player.shot("newcomer-06-leaderboard", full_page=True)
        page.click("#leaderboard-close")
        page.wait_for_selector('body[data-screen="lobby"]')
        assert not errors, errors
    except Exception:
        player.shot("failed-newcomer-desktop", full_page=True)
        raise
    finally:
        player.close()
        revive(web_cluster)


def assert_fits(player: Player) -> None:
    """Nothing sticks out sideways: the page needs no horizontal scrolling."""
    width = player.page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= player.page.viewport_size["width"], f"{player.name}: {width} px wide"  # type: ignore[index]


def test_on_a_phone_a_newcomer_plays_a_bot_at_once_through_a_failover_and_a_rematch(
    web_cluster: ThreadedCluster, browser: Browser
) -> None:
    errors: list[str] = []
    player = Player(browser, "pocket", errors, PHONE)
    page = player.page
    try:
        register(player, web_cluster.url("eu"))
        assert_fits(player)
        assert_readable(player, "lobby on a phone")
        read_the_rules(player)
        record_banners(page)
        page.click('#players button[data-invite="bot2"]')
        page.wait_for_selector("#invite-accepted:has-text('bot2 accepted your invitation')")
        assert any("Invitation sent to bot2" in text for text in banners(page))
        player.shot("newcomer-10-phone-bot2-accepted")
        rng, state = random.Random(3), player.next_turn(-1)
        for _ in range(6):  # three turns, tapped
            player.perform(choose(state["legal"], rng))
            state = player.next_turn(state["ply"])
        assert_fits(player)
        assert_readable(player, "a game on a phone")
        player.shot("newcomer-11-phone-game", full_page=True)
        # The phone's region dies (SIGKILL); the game goes on through another region.
        home = page.get_attribute("body", "data-region") or ""
        web_cluster.kill(home)
        page.wait_for_selector("#reconnected:has-text('your game goes on')")
        here = page.get_attribute("body", "data-region") or ""
        assert here not in ("", home)
        for _ in range(2):  # a whole turn there
            player.perform(choose(state["legal"], rng))
            state = player.next_turn(state["ply"])
        page.click('[data-action="give-up"]')
        page.click('[data-action="give-up-yes"]')
        page.wait_for_selector('#screen-game[data-status="finished"]')
        gid = page.get_attribute("#screen-game", "data-game") or ""
        record = check_summary(player, web_cluster.url(here), gid)
        # The dead region comes back and catches up: the game is in its log.
        web_cluster.restart(home)
        assert fetch_json(f"{web_cluster.url(home)}/api/games/{gid}", timeout=30) == record
        assert page.inner_text("#summary .summary-how") == "You gave up."
        assert_fits(player)
        assert_readable(player, "game over on a phone")
        player.shot("newcomer-12-phone-summary", full_page=True)
        # A rematch: bot2 accepts within a second, and the one who moved second moves first.
        page.click('#summary [data-action="rematch"]')
        page.wait_for_selector(f'#screen-game[data-status="live"]:not([data-game="{gid}"])')
        page.wait_for_selector("#invite-accepted:has-text('bot2 accepted your invitation')")
        again = page.get_attribute("#screen-game", "data-game")
        moves = fetch_json(f"{web_cluster.url(here)}/api/moves/{again}")
        assert moves["names"] == ["pocket", "bot2"]  # the rematch's inviter sits first
        assert moves["names"][moves["first"]] != record["names"][record["first"]]
        # The replay link of the first game works on its own.
        page.goto(f"{web_cluster.url(home)}/?replay={gid}")
        page.wait_for_selector('body[data-screen="replay"]')
        page.wait_for_selector("#replay-status:has-text('The deal')")
        assert_readable(player, "a replay on a phone")
        assert not errors, errors
    except Exception:
        player.shot("failed-newcomer-phone", full_page=True)
        raise
    finally:
        player.close()
        revive(web_cluster)
