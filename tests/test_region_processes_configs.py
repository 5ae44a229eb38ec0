"""The configs of several processes per region: `write_configs(processes=N)` for throwaway
clusters and `node.region_processes.derive_configs` for the demo (no process is started)."""

from __future__ import annotations

from pathlib import Path

import pytest

from meridian.node.config import load_config
from meridian.node.localcluster import cluster_env, ensure_keys, write_configs
from meridian.node.region_processes import PORT_STEP, ProcessesError, derive_configs


def test_write_configs_makes_n_full_members_per_region(tmp_path: Path) -> None:
    env = cluster_env()
    configs = [load_config(p, env) for p in write_configs(tmp_path, ["eu", "us"], processes=2)]
    assert [(c.node_id, c.region) for c in configs] == [
        ("eu-1", "eu"),
        ("eu-2", "eu"),
        ("us-1", "us"),
        ("us-2", "us"),
    ]
    assert len({c.data_dir for c in configs}) == len({c.key_file for c in configs}) == 4
    for config in configs:  # a full mesh: every process lists every other
        others = {c.public_url for c in configs if c is not config}
        assert set(config.peers) == others


def test_one_process_per_region_keeps_the_names_tests_and_docs_use(tmp_path: Path) -> None:
    paths = write_configs(tmp_path, ["eu"])
    config = load_config(paths[0], cluster_env())
    assert paths[0].name == "eu.toml" and config.node_id == "eu-1"
    assert config.data_dir == (tmp_path / "data" / "eu").resolve()


def test_the_demo_derives_processes_from_one_config_per_region(tmp_path: Path) -> None:
    env = cluster_env()
    base = [load_config(p, env) for p in write_configs(tmp_path / "base", ["eu", "us"])]
    paths = derive_configs(base, 3, tmp_path / "derived")
    configs = [load_config(p, env) for p in paths]
    eu = [c for c in configs if c.region == "eu"]
    assert [c.node_id for c in eu] == ["eu-1", "eu-2", "eu-3"]
    first = base[0]
    assert eu[0].listen_port == first.listen_port and eu[0].data_dir == first.data_dir
    assert [c.listen_port for c in eu[1:]] == [
        first.listen_port + PORT_STEP,
        first.listen_port + 2 * PORT_STEP,
    ]
    assert eu[1].data_dir == first.data_dir.with_name("eu-2")
    assert eu[2].key_file == first.key_file.with_name("eu-3.key")
    assert all(len(c.peers) == 5 for c in configs)
    assert all(c.sync == first.sync and c.limits == first.limits for c in configs)
    ensure_keys(configs)  # the keys of the new processes are made, the keyring lists all six
    keyring = first.keyring_file.read_text()
    assert all(f"[nodes.{c.node_id}]" in keyring for c in configs)


def test_a_keyring_keeps_processes_of_an_earlier_run(tmp_path: Path) -> None:
    """Run with two processes, then with one: eu-2's records stay verifiable."""
    env = cluster_env()
    base = [load_config(p, env) for p in write_configs(tmp_path, ["eu"])]
    ensure_keys([load_config(p, env) for p in derive_configs(base, 2, tmp_path / "two")])
    ensure_keys(base)
    assert "[nodes.eu-2]" in base[0].keyring_file.read_text()


def test_configs_that_already_run_several_processes_are_not_multiplied(tmp_path: Path) -> None:
    env = cluster_env()
    configs = [load_config(p, env) for p in write_configs(tmp_path, ["eu"], processes=2)]
    with pytest.raises(ProcessesError, match="already run several processes"):
        derive_configs(configs, 2, tmp_path / "derived")
    with pytest.raises(ProcessesError, match="1 to 9"):
        derive_configs(configs[:1], 10, tmp_path / "derived")
