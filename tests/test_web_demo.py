"""The dashboard's Kill and Start buttons under a real `meridian demo`, in headless Chromium:
a person kills a region from the page, sees it down, and starts it again."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from meridian.node.config import load_config
from meridian.node.localcluster import cluster_env, write_configs
from tests.browser_check import require_browser
from tests.conftest import REGIONS

require_browser()
from tests.web_browser import Player, chromium, contrast_failures  # noqa: E402 (imports Playwright: after require_browser)

pytestmark = pytest.mark.integration


def test_a_region_is_killed_and_started_from_the_dashboard(tmp_path: Path) -> None:
    paths = write_configs(tmp_path, REGIONS)
    eu = load_config(paths[0], cluster_env()).public_url
    quiet = ("--bots", "0", "--bots-for-people", "0", "--restart-after", "0")
    with subprocess.Popen(  # the with block closes the pipe whatever happens
        [sys.executable, "-m", "meridian", "demo", *quiet, "--config-dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as demo:
        token = ""
        try:
            assert demo.stdout is not None
            for line in demo.stdout:
                if "admin token (this run only):" in line:
                    token = line.split(":", 1)[1].strip()
                if "Ctrl-C stops the cluster" in line:
                    break
            assert token, "the demo printed no admin token"
            errors: list[str] = []
            with chromium() as browser:
                operator = Player(browser, "operator", errors)
                page = operator.page
                operator.open(eu, "/dashboard")
                page.fill("#token", token)
                page.press("#token", "Enter")
                page.click('[data-demo-kill="us"]')
                page.wait_for_selector('#regions [data-region="us"][data-reachable="false"]')
                page.wait_for_selector("#demo-note:has-text('Killed us (SIGKILL)')")
                operator.shot("demo-01-dashboard-killed-us", full_page=True)
                assert contrast_failures(page) == [], "the dashboard with a region down"
                page.click('[data-demo-start="us"]')
                page.wait_for_selector(
                    '#regions [data-region="us"][data-reachable="true"]', timeout=30_000
                )
                page.wait_for_selector('[data-demo-kill="us"]')
                operator.close()
            assert not errors, errors
        finally:
            demo.send_signal(signal.SIGINT)
            demo.wait(timeout=30)
