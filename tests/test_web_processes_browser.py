"""The player client and the dashboard with two node processes per region, in headless Chromium:
the page plays through one process of the region picked, resumes on the other process of that
region when its process dies, and the dashboard shows every process."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from meridian.node.config import NodeConfig, load_config
from meridian.node.localcluster import (
    TOKEN_ENV,
    LocalNode,
    cluster_env,
    kill_node,
    start_node,
    stop_nodes,
    wait_for_mesh,
    write_configs,
)
from tests.browser_check import require_browser

require_browser()
from tests.web_browser import Player, chromium  # noqa: E402 (imports Playwright: after require_browser)

pytestmark = pytest.mark.integration


@dataclass
class Cluster:
    env: dict[str, str]
    configs: dict[str, NodeConfig]  # by node id
    nodes: dict[str, LocalNode]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    env = cluster_env()
    configs = [load_config(p, env) for p in write_configs(tmp_path, ["eu", "us"], processes=2)]
    nodes = {config.node_id: start_node(config, env) for config in configs}
    try:
        assert wait_for_mesh(list(nodes.values())), "the cluster did not form"
        yield Cluster(env, {c.node_id: c for c in configs}, nodes)
    finally:
        stop_nodes(list(nodes.values()))


def test_the_page_resumes_on_the_other_process_of_its_region(cluster: Cluster) -> None:
    errors: list[str] = []
    with chromium() as browser:
        player = Player(browser, "twoproc", errors)
        page = player.page
        player.sign_up(cluster.configs["eu-1"].public_url, "eu")
        assert page.get_attribute('.region-row[data-region="eu"]', "data-processes") == "2"
        first = page.get_attribute("body", "data-node")
        assert first in ("eu-1", "eu-2")
        assert f"Connected to eu ({first})" in page.inner_text("#conn-status")
        kill_node(cluster.nodes[first])
        page.wait_for_selector("#reconnected")
        other = "eu-2" if first == "eu-1" else "eu-1"
        page.wait_for_selector(f'body[data-region="eu"][data-node="{other}"]')
        notice = page.inner_text("#reconnected")
        assert f"Connection to eu ({first}) lost; reconnected to eu ({other})" in notice, notice
        player.shot("processes-01-resumed-on-the-sibling")
        dashboard = Player(browser, "operator", errors)
        dashboard.open(cluster.configs[other].public_url, "/dashboard")
        dashboard.page.fill("#token", cluster.env[TOKEN_ENV])
        dashboard.page.click('#token-form button[type="submit"]')
        for node in ("eu-1", "eu-2", "us-1", "us-2"):
            dashboard.page.wait_for_selector(f'#regions article[data-node="{node}"]')
        dashboard.page.wait_for_selector(
            f'#regions article[data-node="{first}"][data-reachable="false"]'
        )
        dashboard.page.wait_for_selector('#load tr[data-load-region="eu"]')
        dashboard.shot("processes-02-dashboard", full_page=True)
    assert not errors, errors
