"""The built wheel, installed in a fresh venv outside the repository, runs on its own.

The source tree is copied (as a fresh clone would have it, symbolic links kept) and installed by
``configs/deploy/install.sh``, the container image's install step (no container engine is
needed): it builds the wheel with ``pip wheel --no-deps`` and installs that file into a new venv
in a temporary folder, its dependencies from the package registry pip is configured with.
Everything then runs from a folder outside the repository with no PYTHONPATH, so only the
installed package can answer: the demo on free ports, a shipped scenario by name, the web
client from a node, and the demo's default configs (copied below the working directory, never
written into the package).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from meridian.node.localcluster import cluster_env, fetch_health, write_configs
from tests.conftest import REGIONS

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
# What .gitignore keeps out of a clone; other tests may write some of it meanwhile (the
# hypothesis database, screenshots), and node_modules holds TypeScript after `make jscheck`.
NOT_SOURCE = (
    *(".git", ".venv", "data", "build", "reports", "*.egg-info", "__pycache__", ".*_cache"),
    *(".hypothesis", "artifacts", "node_modules"),
)
STEP_TIMEOUT_S = 180  # a cold pip cache fetches the dependencies first


def run(command: list[str | Path], cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=STEP_TIMEOUT_S,
    )
    assert result.returncode == 0, f"{command} exited {result.returncode}:\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin folder of a fresh venv holding only the built wheel and its dependencies."""
    base = tmp_path_factory.mktemp("wheel")
    assert not base.is_relative_to(ROOT)
    source = base / "src"
    shutil.copytree(ROOT, source, symlinks=True, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    script = source / "configs" / "deploy" / "install.sh"
    run(["sh", script, source, base / "venv", sys.executable], base, _clean_env())
    return base / "venv" / "bin"


def _clean_env() -> dict[str, str]:
    env = cluster_env()
    env.pop("PYTHONPATH", None)
    return env


def test_the_wheel_carries_one_package_with_configs_scenarios_web_client_and_release(
    installed: Path, tmp_path: Path
) -> None:
    code = (
        "import meridian, meridian.node.web as web, meridian.resources as r;"
        "print(meridian.__file__); print(r.is_checkout());"
        "print(sorted(p.name for p in r.SCENARIOS_DIR.glob('*.toml')));"
        "print(sorted(p.name for p in r.LOCAL_CONFIGS_DIR.glob('*.toml')));"
        "print((web.STATIC_DIR / 'index.html').is_file());"
        "import meridian.node.localcluster as lc, pathlib;"
        "print(lc.extract_release(pathlib.Path('release')).is_dir())"
    )
    lines = run([installed / "python", "-c", code], tmp_path, _clean_env()).splitlines()
    assert Path(lines[0]).is_relative_to(installed.parent), lines[0]
    assert lines[1] == "False"
    assert "'partition-heal.toml'" in lines[2]
    assert lines[3] == "['ap.toml', 'eu.toml', 'us.toml']"
    assert lines[4] == "True"
    assert lines[5] == "True"  # the previous release ships too: `meridian sim upgrade` runs
    top_level = run([installed / "python", "-c", _TOP_LEVEL], tmp_path, _clean_env()).split()
    assert top_level == ["meridian"]


_TOP_LEVEL = (
    "from importlib.metadata import distribution as d;"
    "print(*sorted({f.parts[0] for f in d('meridian').files if not f.parts[0].endswith("
    "('.dist-info', '..'))} - {'bin'}))"
)


def test_installed_demo_sim_and_node_run_from_outside_the_repository(
    installed: Path, tmp_path: Path
) -> None:
    env = _clean_env()
    work = tmp_path / "work"
    work.mkdir()
    configs = tmp_path / "configs"
    paths = write_configs(configs, REGIONS)

    out = run(
        [installed / "meridian", "demo", "--exit-when-ready", "--bots", "0", "--config-dir",
         configs],
        work,
        env,
    )  # fmt: skip
    assert "Meridian local cluster is up" in out

    sim: list[str | Path] = [
        installed / "meridian",
        "sim",
        "run",
        "partition-heal",
        "--seeds",
        "1..2",
    ]
    out = run(sim, work, env)
    assert "2/2 seeds passed" in out

    # The default configs come from the package and are copied below the working directory.
    status_command: list[str | Path] = [installed / "meridian", "demo", "status"]
    status = subprocess.run(status_command, cwd=work, env=env, capture_output=True, text=True)
    assert status.returncode == 1 and "no demo running" in status.stderr, status.stderr
    assert str(work / "meridian-data" / "data" / "demo-state.json") in status.stderr
    assert sorted(p.name for p in (work / "meridian-data/configs/local").glob("*.toml")) == [
        "ap.toml",
        "eu.toml",
        "us.toml",
    ]

    with subprocess.Popen(  # the with block closes the stderr pipe whatever happens
        [installed / "meridian", "node", "--config", paths[0]],
        cwd=work,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ) as node:
        try:
            url = _public_url(paths[0])
            deadline = time.monotonic() + 30
            while fetch_health(url) is None:
                assert node.poll() is None, node.stderr.read() if node.stderr else ""
                assert time.monotonic() < deadline, "the installed node did not answer /healthz"
                time.sleep(0.2)
            with urllib.request.urlopen(f"{url}/", timeout=5) as page:
                assert page.status == 200
                assert "/static/js/app.js" in page.read().decode()
            with urllib.request.urlopen(f"{url}/static/js/app.js", timeout=5) as script:
                assert script.status == 200
        finally:
            node.send_signal(signal.SIGTERM)
            assert node.wait(timeout=30) == 0


def _public_url(path: Path) -> str:
    from meridian.node.config import load_config

    return load_config(path, cluster_env()).public_url


def test_the_source_checkout_keeps_its_demo_data_in_the_repository(tmp_path: Path) -> None:
    from meridian.resources import LOCAL_CONFIGS_DIR, demo_configs_dir, is_checkout

    assert is_checkout()
    assert demo_configs_dir(tmp_path) == LOCAL_CONFIGS_DIR == ROOT / "configs" / "local"
    assert not any(tmp_path.iterdir())  # nothing copied: configs/local's data_dir stays in data/


def test_the_resource_module_imports_no_layer() -> None:
    """Every layer may use meridian.resources, so it must not import any of them."""
    import ast

    tree = ast.parse((ROOT / "meridian" / "resources.py").read_text())
    nodes = list(ast.walk(tree))
    imported = [a.name for n in nodes if isinstance(n, ast.Import) for a in n.names]
    imported += [n.module or "" for n in nodes if isinstance(n, ast.ImportFrom)]
    assert not [name for name in imported if name.startswith("meridian")], imported
