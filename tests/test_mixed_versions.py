"""Two versions side by side: a node of the previous release among nodes of this code.

The previous release is ``release-0.2`` (commit 737b46c, peer protocol 2 only; see
docs/operations.md *Upgrading*). Its tree is shipped as configs/releases/release-0.2.tar.gz
(checked by sha256), so a clone without tags or history still runs it, with this venv. These
tests are the proof that an upgrade works and must not pass by being skipped.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from meridian.node.localcluster import (
    RELEASE_TAG,
    ReleaseMissing,
    check_shipped_release,
    extract_release,
)
from meridian.resources import RELEASES_DIR
from meridian.sim.upgrade import rolling_upgrade


def _release(tmp_path: Path) -> Path:
    try:
        return extract_release(tmp_path / "release")
    except ReleaseMissing as missing:
        pytest.fail(str(missing))


LOG_TAIL_LINES = 60


def _node_log_tails(folder: Path) -> list[str]:
    """The last lines of every node's log: a failed run's folder is gone once CI ends, and a
    stuck game has so far been seen only there."""
    tails = []
    for log in sorted(folder.glob("**/logs/*.log")):
        lines = log.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
        tails += [f"--- {log.name}, last {len(lines)} lines", *lines]
    return tails


def test_a_missing_release_tag_fails_saying_how_to_fetch_it(tmp_path: Path) -> None:
    with pytest.raises(ReleaseMissing) as missing:
        extract_release(tmp_path / "release", tag="release-never-made")
    assert "git fetch" in str(missing.value) and "git tag release-never-made" in str(missing.value)


def test_the_shipped_release_is_used_without_git_and_refused_when_altered(tmp_path: Path) -> None:
    """A copy of the code without .git (or a shallow clone without tags) still has the previous
    release; a shipped archive that is not the recorded one is refused, not run."""
    tree = extract_release(tmp_path / "release", repo=tmp_path)  # tmp_path is no git repository
    assert (tree / "meridian" / "__main__.py").is_file()
    altered = tmp_path / "releases"
    altered.mkdir()
    archive = altered / f"{RELEASE_TAG}.tar.gz"
    archive.write_bytes((RELEASES_DIR / archive.name).read_bytes() + b"\0")
    with pytest.raises(ReleaseMissing, match="sha256"):
        check_shipped_release(archive, RELEASE_TAG)


@pytest.mark.integration
def test_the_previous_release_is_present_and_speaks_protocol_2_only(tmp_path: Path) -> None:
    tree = _release(tmp_path)
    engine = (tree / "sync" / "engine.py").read_text()
    assert "SUPPORTED_VERSIONS = (2, 2)" in engine, f"{RELEASE_TAG} is not the protocol 2 release"
    assert (tree / "meridian" / "node").is_symlink()  # git archive keeps the links


@pytest.mark.integration
async def test_an_old_node_among_new_ones_plays_then_upgrades_in_place(tmp_path: Path) -> None:
    """eu runs release-0.2, us and ap this code; bots play across regions; eu is drained mid
    game and restarted on this code with its data directory. Every game finishes, no move is
    lost, every region ends with the same game log and documents."""
    _release(tmp_path)  # fail early, with the fetch instructions, if the tag is missing
    lines: list[str] = []
    report = await rolling_upgrade(tmp_path / "run", old_regions=["eu"], games=2, say=lines.append)
    assert report.ok, "\n".join(lines + report.lines() + _node_log_tails(tmp_path / "run"))
    before, after = report.protocols, report.protocols_after
    assert before["us-1 <- eu-1"] == before["eu-1 <- us-1"] == 2, before  # old with new: 2
    assert before["us-1 <- ap-1"] == before["ap-1 <- us-1"] == 3, before  # new with new: 3
    assert set(after.values()) == {3} and len(after) == 6, after
    assert report.players_moved >= 1  # eu had players when it was drained
    assert report.games_finished == 4 and report.games_interrupted == report.moves_lost == 0


def test_the_upgrade_command_refuses_unknown_regions(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "meridian", "sim", "upgrade", "--old", "eu,mars"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2 and "mars" in result.stderr, result.stderr


def _run_in_own_group(command: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Run `command`; on a timeout kill it with the node processes it started (else they
    outlive the test)."""
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
            raise AssertionError(f"timed out after {timeout} s:\n{stdout}{stderr}") from None
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


@pytest.mark.integration
def test_the_upgrade_command_upgrades_all_three_regions_with_nothing_lost(tmp_path: Path) -> None:
    _release(tmp_path)
    result = _run_in_own_group(
        [sys.executable, "-m", "meridian", "sim", "upgrade", "--dir", str(tmp_path / "run")], 120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for region in ("eu", "us", "ap"):
        assert f"{region} drained, exit code 0" in result.stdout
    assert "games interrupted: 0 (target 0)" in result.stdout
    assert "moves lost: 0 (target 0)" in result.stdout
    assert "after the upgrade, link eu-1 <- us-1: protocol 3" in result.stdout
