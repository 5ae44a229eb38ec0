"""What a newcomer sees, in headless Chromium: bots waiting for people, the rules on the page, a
game to its end with a summary and a rematch, and failover in the middle of a game.

A 3-region cluster of real node processes (tests/web_cluster.py) with bots reserved for people
(`node.bots`, as in `meridian demo`); desktop and a 390x844 phone. Screenshots go to
artifacts/screenshots/newcomer-*.png.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.web_cluster import ThreadedCluster

pytest.importorskip(
    "playwright.sync_api", reason="the browser tests need the test dependency playwright"
)
from playwright.sync_api import Browser, Page

from tests.web_browser import CHROMIUM, PASSWORD, PHONE, Player, chromium

if not Path(CHROMIUM).exists():
    pytest.skip(
        "the browser tests need Debian's chromium (apt-get install chromium)",
        allow_module_level=True,
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


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


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


def test_a_newcomer_invites_an_idle_bot_and_sees_it_accept(
    web_cluster: ThreadedCluster, browser: Browser
) -> None:
    errors: list[str] = []
    newcomer = Player(browser, "newcomer", errors, PHONE)
    try:
        register(newcomer, web_cluster.url("eu"))
        page = newcomer.page
        record_banners(page)
        page.click('#players button[data-invite="bot1"]')
        page.wait_for_selector("#invite-accepted:has-text('bot1 accepted your invitation')")
        assert any("Invitation sent to bot1" in text for text in banners(page))
        page.wait_for_selector('body[data-screen="game"]')
        newcomer.shot("newcomer-01-bot1-accepted")
        assert not errors, errors
    finally:
        newcomer.close()


def test_the_page_prefers_its_own_region_unless_another_is_clearly_faster(
    web_cluster: ThreadedCluster, browser: Browser
) -> None:
    errors: list[str] = []
    visitor = Player(browser, "visitor", errors)
    try:
        # On loopback every region answers within a few ms: the page keeps its own region.
        for region in ("ap", "us"):
            visitor.open(web_cluster.url(region))
            note = visitor.page.wait_for_selector(f'#region-note[data-region="{region}"]')
            assert note is not None
            assert f"{region} is the region of this page's address" in note.inner_text()
            auto = '.region-row:has([data-auto]) input[type="radio"]'
            assert visitor.page.get_attribute(auto, "value") == region
        visitor.shot("newcomer-02-region-chooser")
        # The rule itself, on made-up round trips: 20 ms and twice as fast, or it does not count.
        chosen = visitor.page.evaluate(
            """async () => {
                const { preferredRegion } = await import('/static/js/net.js');
                const regions = (eu, us) => [
                    { region: 'eu', opened: true, rtt: eu }, { region: 'us', opened: false, rtt: us },
                ];
                return [[30, 5], [12, 5], [45, 24], [null, 80], [3, 40]].map(
                    ([eu, us]) => preferredRegion(regions(eu, us)).region.region);
            }"""
        )
        assert chosen == ["us", "eu", "eu", "us", "eu"]
        # The player may still pick another region, and go back to the automatic choice.
        visitor.page.click('.region-row[data-region="eu"]')
        visitor.page.wait_for_selector("#region-note:has-text('You chose eu. Automatic would be us')")
        visitor.page.click("#use-automatic")
        visitor.page.wait_for_selector('#region-note[data-region="us"]')
        assert not errors, errors
    finally:
        visitor.close()
