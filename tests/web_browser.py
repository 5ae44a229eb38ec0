"""What the browser tests share: Chromium's launch, a person at a browser (`Player`), and making
a move through the board the way a person would (see tests/test_web.py).

Import it only after checking that playwright and chromium exist (the test modules skip first).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, Page, ViewportSize, sync_playwright

from tests.browser_check import CHROMIUM

SCREENSHOTS = Path(__file__).resolve().parent.parent / "artifacts" / "screenshots"
# Chromium keeps only the last --disable-features it is given, and Playwright passes its own list
# before ours, so ours repeats Playwright's (tests/test_browser_flags.py checks it against the
# installed Playwright) and adds:
# - the omnibox's popups, which Chromium (156) preloads as a web page of their own in every
#   window, even headless: a renderer process per page the tests open that nobody sees (about a
#   fifth of Chromium's CPU in tests/test_web.py).
PLAYWRIGHT_DISABLED_FEATURES = (
    *("AvoidUnnecessaryBeforeUnloadCheckSync", "DestroyProfileOnBrowserClose", "HttpsUpgrades"),
    *("HttpsFirstBalancedModeAutoEnable", "LensOverlay", "MediaRouter", "PaintHolding"),
    *("ThirdPartyStoragePartitioning", "AvoidCorsURLLoaderRestartOnRedirect"),
    *("TcpPortRandomizationWin", "OptimizationHints", "NetworkTimeServiceQuerying", "AimEnabled"),
    *("PreconnectToSearch", "msForceBrowserSignIn", "msEdgeUpdateLaunchServicesPreferredVersion"),
)
UNSEEN_FEATURES = ("WebUIOmniboxPopup", "WebUIOmniboxFullPopup", "WebUIOmniboxAimPopup")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
    "--disable-features=" + ",".join((*PLAYWRIGHT_DISABLED_FEATURES, *UNSEEN_FEATURES)),
]
VIEWPORT: ViewportSize = {"width": 1366, "height": 860}
PHONE: ViewportSize = {"width": 390, "height": 844}
PASSWORD = "correct horse battery"
GUILES = ("traitor", "deserter", "redeploy", "scout")
TIMEOUT_MS = 15_000
# How often a `wait_for_function` condition is checked. Playwright's default checks it on every
# animation frame, which keeps a waiting page drawing 60 frames a second: 64 ms of Chromium's CPU
# per second of waiting, against 2 ms at 100 ms intervals (measured here). 20 ms adds at most
# 20 ms to a wait.
POLL_MS = 20


class Player:
    """One person at one browser (its own context: its own sessionStorage)."""

    def __init__(
        self, browser: Browser, name: str, errors: list[str], viewport: ViewportSize = VIEWPORT
    ) -> None:
        self.name = name
        self.context = browser.new_context(viewport=viewport)
        self.context.set_default_timeout(TIMEOUT_MS)
        self.page: Page = self.context.new_page()
        self.page.on("pageerror", lambda error: errors.append(f"{name}: {error}"))

    def shot(self, label: str, *, full_page: bool = False) -> Path:
        path = SCREENSHOTS / f"{label}.png"
        self.page.screenshot(path=str(path), timeout=5000, full_page=full_page)
        return path

    def open(self, base_url: str, path: str = "/") -> None:
        self.page.goto(base_url + path)

    def sign_up(self, base_url: str, region: str, *, register: bool = True) -> None:
        """Open the page, pick `region` in the chooser (not the nearest), register, log in."""
        page = self.page
        self.open(base_url)
        page.wait_for_selector(f'.region-row[data-region="{region}"] .rtt[data-rtt]')
        page.click(f'.region-row[data-region="{region}"]')
        page.fill("#login-name", self.name)
        page.fill("#login-password", PASSWORD)
        if register:
            page.click("#register-button")
        else:
            page.press("#login-password", "Enter")  # the keyboard submits the form
        page.wait_for_selector(f'body[data-screen="lobby"][data-region="{region}"]')

    def attr(self, name: str) -> str | None:
        value: str | None = self.page.get_attribute("#screen-game", name)
        return value

    def ply(self) -> int:
        return int(self.attr("data-ply") or -1)

    def wait_ply(self, ply: int) -> None:
        self.page.wait_for_function(
            "n => Number(document.querySelector('#screen-game').dataset.ply) >= n",
            arg=ply,
            polling=POLL_MS,
        )

    def state(self, ply: int) -> dict[str, Any]:
        """Once the page shows position `ply` or later: ply, status, whether it is this
        player's move, and the legal moves the page lists."""
        handle = self.page.wait_for_function(
            """n => {
                const screen = document.querySelector('#screen-game');
                if (screen.dataset.ply === undefined || Number(screen.dataset.ply) < n) return null;
                const buttons = document.querySelectorAll('#legal-list button[data-move]');
                const myTurn = screen.dataset.myTurn === 'true';
                if (myTurn && !buttons.length) return null;  // sending, or reconnecting
                return {
                    ply: Number(screen.dataset.ply),
                    status: screen.dataset.status,
                    myTurn,
                    legal: [...buttons].map(b => JSON.parse(b.dataset.move)),
                };
            }""",
            arg=ply,
            polling=POLL_MS,
        )
        state: dict[str, Any] = handle.json_value()
        return state

    def next_turn(self, after_ply: int) -> dict[str, Any]:
        """Wait until the game passed `after_ply` and it is this player's move (with the legal
        moves listed), or the game is over; then what `state` returns."""
        handle = self.page.wait_for_function(
            """n => {
                const screen = document.querySelector('#screen-game');
                const ply = Number(screen.dataset.ply);
                if (screen.dataset.ply === undefined || ply <= n) return null;
                if (screen.dataset.status !== 'live') {
                    return { ply, status: screen.dataset.status, myTurn: false, legal: [] };
                }
                const buttons = document.querySelectorAll('#legal-list button[data-move]');
                if (screen.dataset.myTurn !== 'true' || !buttons.length) return null;
                return {
                    ply, status: screen.dataset.status, myTurn: true,
                    phase: screen.dataset.phase,
                    legal: [...buttons].map(b => JSON.parse(b.dataset.move)),
                };
            }""",
            arg=after_ply,
            timeout=30_000,
            polling=POLL_MS,
        )
        state: dict[str, Any] = handle.json_value()
        return state

    def perform(self, move: dict[str, Any], *, real: bool = True) -> None:
        """Make `move` through the board, the way a person would: pointer clicks, and keys
        where cards overlap. With `real=False` the same buttons are clicked from a script in
        the page (one round trip instead of one per step; keeps the long game within time)."""
        steps = _steps(move)
        if not real:
            self.page.evaluate(
                """steps => { for (const [selector] of steps) {
                    const el = document.querySelector(selector);
                    if (!el || el.disabled) throw new Error(`cannot click ${selector}`);
                    el.click();
                } }""",
                steps,
            )
            return
        for selector, how in steps:
            if how == "key":
                self.page.press(selector, "Enter")
            else:
                self.page.click(selector)

    def close(self) -> None:
        self.context.close()


GUILE_CARDS = {"traitor": 61, "deserter": 62, "redeploy": 63, "scout": 64}


def _steps(move: dict[str, Any]) -> list[tuple[str, str]]:
    """The controls that make `move`, in order: (selector, "click" or "key")."""
    kind = move["type"]
    if kind == "claim":
        steps = [(f'[data-claim-flag="{flag}"]', "key") for flag in move["flags"]]
        done = '[data-action="claim"]' if move["flags"] else '[data-action="no-claim"]'
        return [*steps, (done, "click")]
    if kind == "play":
        return [
            (f'[data-hand-card="{move["card"]}"]', "click"),
            (f'#table [data-target-flag="{move["flag"]}"]', "click"),
        ]
    if kind == "pass":
        return [('[data-action="pass"]', "click")]
    if kind == "draw":
        return [(f'#decks [data-deck="{move["deck"]}"]', "click")]
    if kind == "scout":
        return [
            ('[data-hand-card="64"]', "click"),
            (f'#decks [data-deck="{move["deck"]}"]', "click"),
        ]
    if kind == "scout_return":
        picks = [(f'[data-hand-card="{card}"]', "click") for card in move["cards"]]
        return [*picks, ('[data-action="scout-return"]', "click")]
    if kind in ("traitor", "deserter", "redeploy"):
        # Cards on the table overlap: a person may click their visible edge; the test uses keys.
        steps = [
            (f'[data-hand-card="{GUILE_CARDS[kind]}"]', "click"),
            (f'#table .card.choice[data-card="{move["card"]}"]', "key"),
        ]
        if kind == "traitor" or (kind == "redeploy" and move["to_flag"] is not None):
            steps.append((f'#table [data-target-flag="{move["to_flag"]}"]', "click"))
        elif kind == "redeploy":
            steps.append(("[data-discard]", "click"))
        return steps
    raise AssertionError(f"unexpected legal move {move}")


def choose(legal: list[dict[str, Any]], rng: random.Random) -> dict[str, Any]:
    """Claim all it can (games end sooner); prefer guiles, so their flows get exercised."""
    claims = [m for m in legal if m["type"] == "claim"]
    if claims:
        return max(claims, key=lambda m: len(m["flags"]))
    guiles = [m for m in legal if m["type"] in GUILES]
    if guiles and rng.random() < 0.8:
        return rng.choice(guiles)
    return rng.choice(legal)


def new_players(browser: Browser, errors: list[str], *names: str) -> list[Player]:
    return [Player(browser, name, errors) for name in names]


@contextmanager
def chromium() -> Iterator[Browser]:
    """Debian's Chromium, headless, driven by Playwright."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


CONTRAST_CHECK = (Path(__file__).parent / "contrast.js").read_text()


def contrast_failures(page: Page, scope: str = "body") -> list[str]:
    """Texts of `scope` that fail WCAG AA contrast (see tests/contrast.js)."""
    failures: list[str] = page.evaluate(CONTRAST_CHECK, scope)
    return failures
