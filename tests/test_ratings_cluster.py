"""Every region derives the same ratings (GET /api/ratings) once a partition heals: bots finish
games on both sides of a partition, and after the heal the three tables are equal.

Real node processes on 127.0.0.1 whose links cross fault-injecting proxies (sim/proxied.py).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from meridian.node.bots import run_bots
from meridian.sim.proxied import ProxiedCluster

pytestmark = pytest.mark.integration
REGIONS = ["eu", "us", "ap"]


async def tables(http: aiohttp.ClientSession, cluster: ProxiedCluster) -> dict[str, Any]:
    answers = {}
    for region in REGIONS:
        async with http.get(f"{cluster.url(region)}/api/ratings") as response:
            answers[region] = await response.json()
    return answers


async def test_every_region_derives_the_same_ratings_after_a_partition_heals(
    tmp_path: Path,
) -> None:
    cluster = ProxiedCluster(tmp_path, REGIONS)
    await cluster.start()
    try:
        cluster.partition(["eu", "us"], ["ap"])
        # Two games on each side of the partition, at the same time.
        west = run_bots([cluster.url("eu"), cluster.url("us")], 4, 1, prefix="west")
        east = run_bots([cluster.url("ap")], 2, 1, prefix="east")
        summaries = await asyncio.wait_for(asyncio.gather(west, east), 120)
        for summary in summaries:
            assert summary.problems() == [], summary.report()
        async with aiohttp.ClientSession() as http:
            apart = await tables(http, cluster)
            assert apart["eu"]["digest"] != apart["ap"]["digest"]
            assert {r["name"] for r in apart["ap"]["ratings"]} == {"east1", "east2"}
            cluster.heal()
            deadline = asyncio.get_running_loop().time() + 30
            while True:
                healed = await tables(http, cluster)
                if len({answer["digest"] for answer in healed.values()}) == 1:
                    break
                assert asyncio.get_running_loop().time() < deadline, healed
                await asyncio.sleep(0.2)
        rows = healed["eu"]["ratings"]
        assert all(healed[region]["ratings"] == rows for region in REGIONS)
        assert sorted(r["name"] for r in rows) == [
            "east1",
            "east2",
            *(f"west{i}" for i in range(1, 5)),
        ]
        assert all(r["games"] == 1 for r in rows)
        assert sum(r["won"] for r in rows) == sum(r["lost"] for r in rows)
        assert [r["rank"] for r in rows] == list(range(1, 7))
    finally:
        await cluster.stop()
