"""Node config loading: the shipped local configs load, and every bad value is one clear line."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest

from meridian.node.config import NodeConfig, load_config
from meridian.sync.settings import SyncSettings
from meridian.tomlschema import ConfigError

REPO = Path(__file__).resolve().parent.parent
LOCAL_CONFIGS = REPO / "configs" / "local"
CLUSTER_SECRET = "cluster-secret-0123456789"
ADMIN_TOKEN = "admin-token-abcdefghijkl"
ENV = {"MERIDIAN_CLUSTER_SECRET": CLUSTER_SECRET, "MERIDIAN_ADMIN_TOKEN": ADMIN_TOKEN}

MINIMAL = """
[node]
id = "eu-1"
region = "eu"
listen = "127.0.0.1:7101"
data_dir = "data"

[cluster]
secret_env = "MERIDIAN_CLUSTER_SECRET"
admin_token_env = "MERIDIAN_ADMIN_TOKEN"
"""


def write_config(folder: Path, text: str) -> Path:
    path = folder / "node.toml"
    path.write_text(text, encoding="utf-8")
    return path


def edited(old: str, new: str) -> str:
    """MINIMAL with one line replaced; fails loudly if the line is not there."""
    assert old in MINIMAL
    return MINIMAL.replace(old, new)


def load_error(folder: Path, text: str, environ: dict[str, str] | None = None) -> ConfigError:
    path = write_config(folder, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, ENV if environ is None else environ)
    error = caught.value
    assert "\n" not in str(error)
    assert str(error) == f"{path}: {error.key}: {error.message}"
    return error


@pytest.mark.parametrize(
    ("region", "port", "peer_ports"),
    [("eu", 7101, (7102, 7103)), ("us", 7102, (7101, 7103)), ("ap", 7103, (7101, 7102))],
)
def test_local_configs_load(region: str, port: int, peer_ports: tuple[int, int]) -> None:
    config = load_config(LOCAL_CONFIGS / f"{region}.toml", ENV)
    assert config.node_id == f"{region}-1"
    assert config.region == region
    assert (config.listen_host, config.listen_port) == ("127.0.0.1", port)
    assert config.public_url == f"http://127.0.0.1:{port}"
    assert config.peers == tuple(f"http://127.0.0.1:{p}" for p in peer_ports)
    assert config.data_dir == REPO / "data" / region
    assert config.cluster_secret == CLUSTER_SECRET
    assert config.admin_token == ADMIN_TOKEN
    assert config.zeroconf is False
    assert config.sync == SyncSettings()
    assert (config.ack_regions, config.max_clock_ahead_ms, config.log_level) == (0, 60000, "info")
    assert config.config_path == LOCAL_CONFIGS / f"{region}.toml"


def test_minimal_config_gets_documented_defaults(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, MINIMAL), ENV)
    assert config.public_url == "http://127.0.0.1:7101"
    assert config.data_dir == tmp_path / "data"
    assert config.peers == ()
    assert config.sync == SyncSettings()
    assert (config.zeroconf, config.ack_regions, config.max_clock_ahead_ms) == (False, 0, 60000)
    assert config.log_level == "info"
    assert (config.log_format, config.drain_deadline_s) == ("text", 30.0)


def test_log_format_and_drain_deadline_are_read(tmp_path: Path) -> None:
    text = MINIMAL.replace('data_dir = "data"', 'data_dir = "data"\nlog_format = "json"')
    text = text.replace('data_dir = "data"', 'data_dir = "data"\ndrain_deadline_s = 45')
    config = load_config(write_config(tmp_path, text), ENV)
    assert (config.log_format, config.drain_deadline_s) == ("json", 45.0)


def test_game_backups_is_unset_unless_given(tmp_path: Path) -> None:
    assert load_config(write_config(tmp_path, MINIMAL), ENV).game_backups is None
    text = MINIMAL + "\n[replication]\nack_regions = 2\ngame_backups = 1\n"
    config = load_config(write_config(tmp_path, text), ENV)
    assert (config.game_backups, config.ack_regions) == (1, 2)


def test_sync_values_are_read(tmp_path: Path) -> None:
    text = MINIMAL + "[sync]\ncoalesce_ms = 0\nheartbeat_s = 0.5\nrelay = false\n"
    sync = load_config(write_config(tmp_path, text), ENV).sync
    assert (sync.coalesce_ms, sync.heartbeat_s, sync.relay) == (0.0, 0.5, False)
    assert isinstance(sync.coalesce_ms, float)


def test_secrets_never_appear_in_repr_or_str(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, MINIMAL), ENV)
    for text in (repr(config), str(config), f"{config}"):
        assert CLUSTER_SECRET not in text
        assert ADMIN_TOKEN not in text
        assert "cluster_secret='***'" in text
        assert "node_id='eu-1'" in text


def test_secrets_never_appear_in_log_lines(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = load_config(write_config(tmp_path, MINIMAL), ENV)
    with caplog.at_level(logging.INFO):
        logging.getLogger("test").info("loaded %s", config)
        logging.getLogger("test").info("loaded %r", config)
    assert CLUSTER_SECRET not in caplog.text
    assert ADMIN_TOKEN not in caplog.text


def test_secrets_from_files_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "cluster").write_text(f"  {CLUSTER_SECRET}\n", encoding="utf-8")
    (tmp_path / "secrets" / "admin").write_text(ADMIN_TOKEN + "\n", encoding="utf-8")
    text = edited('secret_env = "MERIDIAN_CLUSTER_SECRET"', 'secret_file = "secrets/cluster"')
    text = text.replace(
        'admin_token_env = "MERIDIAN_ADMIN_TOKEN"', 'admin_token_file = "secrets/admin"'
    )
    config = load_config(write_config(tmp_path, text), environ={})
    assert config.cluster_secret == CLUSTER_SECRET
    assert config.admin_token == ADMIN_TOKEN


def test_environ_defaults_to_the_process_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    assert load_config(write_config(tmp_path, MINIMAL)).admin_token == ADMIN_TOKEN


@pytest.mark.parametrize(
    ("environ", "key", "fragment"),
    [
        ({"MERIDIAN_ADMIN_TOKEN": ADMIN_TOKEN}, "cluster.secret_env", "is not set"),
        ({**ENV, "MERIDIAN_CLUSTER_SECRET": "  "}, "cluster.secret_env", "is empty"),
        ({**ENV, "MERIDIAN_ADMIN_TOKEN": "short-token"}, "cluster.admin_token_env", "11 char"),
    ],
)
def test_bad_env_secrets(tmp_path: Path, environ: dict[str, str], key: str, fragment: str) -> None:
    error = load_error(tmp_path, MINIMAL, environ)
    assert error.key == key
    assert fragment in error.message
    assert "short-token" not in str(error)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [(None, "cannot read secret file"), ("\n \n", "is empty"), ("tooshort", "8 characters")],
    ids=["missing", "blank", "short"],  # ids keep the secret out of tmp_path, hence the message
)
def test_bad_secret_files(tmp_path: Path, content: str | None, fragment: str) -> None:
    if content is not None:
        (tmp_path / "cluster.secret").write_text(content, encoding="utf-8")
    text = edited('secret_env = "MERIDIAN_CLUSTER_SECRET"', 'secret_file = "cluster.secret"')
    error = load_error(tmp_path, text)
    assert error.key == "cluster.secret_file"
    assert fragment in error.message
    assert "tooshort" not in str(error)


def test_secret_needs_exactly_one_source(tmp_path: Path) -> None:
    both = edited(
        'secret_env = "MERIDIAN_CLUSTER_SECRET"',
        'secret_env = "MERIDIAN_CLUSTER_SECRET"\nsecret_file = "x"',
    )
    assert load_error(tmp_path, both).key == "cluster.secret"
    neither = edited('admin_token_env = "MERIDIAN_ADMIN_TOKEN"', "")
    error = load_error(tmp_path, neither)
    assert (error.key, "neither" in error.message) == ("cluster.admin_token", True)


BAD_VALUES = [
    # (line in MINIMAL, replacement, key named in the error, fragment of the message)
    ('id = "eu-1"', 'id = "EU_1"', "node.id", "a-z, 0-9"),
    ('id = "eu-1"', "id = 7", "node.id", "got integer 7"),
    ('id = "eu-1"', "", "node.id", "missing"),
    ('region = "eu"', 'region = "' + "x" * 33 + '"', "node.region", "1 to 32"),
    ('listen = "127.0.0.1:7101"', 'listen = "127.0.0.1"', "node.listen", "host:port"),
    ('listen = "127.0.0.1:7101"', 'listen = "127.0.0.1:70000"', "node.listen", "1 to 65535"),
    ('listen = "127.0.0.1:7101"', 'listen = "0.0.0.0:7101"', "node.public_url", "required"),
    ('data_dir = "data"', 'data_dir = "data"\npublic_url = "ftp://x:1"', "node.public_url", "http"),
    ('data_dir = "data"', 'data_dir = "data"\nlog_level = "loud"', "node.log_level", "'debug'"),
    ('data_dir = "data"', 'data_dir = "data"\nlistn = "x"', "node.listn", "unknown key"),
    ('data_dir = "data"', 'data_dir = "data"\nlog_format = "xml"', "node.log_format", "'json'"),
    ("[cluster]", "drain_deadline_s = 0\n[cluster]", "node.drain_deadline_s", "> 0"),
    ("[cluster]", '[cluster]\npeers = "http://x:1"', "cluster.peers", "a list of"),
    ("[cluster]", '[cluster]\npeers = ["http:/x"]', "cluster.peers[0]", "http:// or https://"),
    ("[cluster]", '[cluster]\npeers = ["http://127.0.0.1:7101"]', "cluster.peers[0]", "own"),
    ("[cluster]", '[cluster]\npeers = ["http://a:1", "http://a:1/"]', "cluster.peers[1]", "twice"),
    ("[cluster]", '[cluster]\nzeroconf = "yes"', "cluster.zeroconf", "true or false"),
    ("[cluster]", "[clustre]", "clustre", "unknown table"),
]

BAD_EXTRA_TABLES = [
    # (text appended to MINIMAL, key named in the error, fragment of the message)
    ("[sync]\ncoalesce_ms = -1", "sync.coalesce_ms", ">= 0"),
    ("[sync]\nanti_entropy_s = 0", "sync.anti_entropy_s", "> 0"),
    ("[sync]\nheartbeat_s = nan", "sync.heartbeat_s", "got nan"),
    ("[sync]\nheartbeat_s = true", "sync.heartbeat_s", "got boolean"),
    ("[sync]\nheartbeat_s = 2\npeer_timeout_s = 1", "sync.peer_timeout_s", "heartbeat_s"),
    ("[sync]\nmax_frame_bytes = 1.5", "sync.max_frame_bytes", "integer"),
    ("[sync]\nmax_queue_bytes = 65536", "sync.max_queue_bytes", "max_frame_bytes"),
    ("[sync]\nreconnect_min_s = 9", "sync.reconnect_max_s", "reconnect_min_s"),
    ("[sync]\nrelay = 1", "sync.relay", "true or false"),
    ("[sync]\ncoalesce = 5", "sync.coalesce", "unknown key"),
    ("[replication]\nack_regions = -1", "replication.ack_regions", ">= 0"),
    ("[replication]\ngame_backups = -1", "replication.game_backups", ">= 0"),
    ("[replication]\ngame_backups = 0\nack_regions = 2", "replication.ack_regions", "at most"),
    ("[clock]\nmax_ahead_ms = 0", "clock.max_ahead_ms", ">= 1"),
    ("[clock]\nmax_ahead_ms = 1e3", "clock.max_ahead_ms", "got float"),
    ("sync = 5", "sync", "a table"),
]


@pytest.mark.parametrize(("old", "new", "key", "fragment"), BAD_VALUES)
def test_bad_values_name_the_key(
    tmp_path: Path, old: str, new: str, key: str, fragment: str
) -> None:
    error = load_error(tmp_path, edited(old, new))
    assert (error.key, fragment in error.message) == (key, True), str(error)


@pytest.mark.parametrize(("extra", "key", "fragment"), BAD_EXTRA_TABLES)
def test_bad_optional_tables_name_the_key(
    tmp_path: Path, extra: str, key: str, fragment: str
) -> None:
    text = extra + "\n" + MINIMAL if extra.startswith("sync =") else MINIMAL + extra + "\n"
    error = load_error(tmp_path, text)
    assert (error.key, fragment in error.message) == (key, True), str(error)


def test_missing_file_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as caught:
        load_config(path, ENV)
    assert str(caught.value) == f"{path}: (file): config file not found"


def test_invalid_toml_is_one_line(tmp_path: Path) -> None:
    error = load_error(tmp_path, "[node]\nid = \n")
    assert error.key == "(toml)"
    assert "invalid TOML" in error.message
    assert "line 2" in error.message


def test_configs_compare_and_replace_like_dataclasses(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, MINIMAL), ENV)
    moved = dataclasses.replace(config, listen_port=7201)
    assert isinstance(moved, NodeConfig)
    assert moved.listen_port == 7201
    assert moved != config


def test_the_documented_example_loads(tmp_path: Path) -> None:
    doc = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    example = doc.split("## Full example")[1].split("```toml\n")[1].split("```")[0]
    for name, value in (("cluster-secret", CLUSTER_SECRET), ("admin-token", ADMIN_TOKEN)):
        (tmp_path / name).write_text(value, encoding="utf-8")
        example = example.replace(f"/etc/meridian/{name}", str(tmp_path / name))
    config = load_config(write_config(tmp_path, example), environ={})
    assert config.public_url == "https://eu.meridian.example.com"
    assert config.data_dir == Path("/var/lib/meridian")
    assert config.ack_regions == 1
    assert config.sync == SyncSettings()
