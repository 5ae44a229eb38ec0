"""Node configuration: one TOML file per node, loaded into frozen dataclasses.

Strict on purpose: unknown tables and keys are errors (a typo must not silently fall back to
a default), every bad value raises a one-line ``ConfigError`` naming the dotted key, what is
wrong and what was expected. Secrets (cluster secret, admin token) come from an environment
variable or a file, never from the TOML itself, and never appear in a repr, str or log line.
Every key is documented in docs/configuration.md.

The node's identity (its Ed25519 private key, ``cluster.key_file``) and the cluster keyring
(``cluster.keyring_file``) are read by `load_identity` when the node starts, not by
`load_config`: the config names the files, which tooling may generate after writing it
(``node.localcluster`` does for local clusters). A private key file must be readable by its
owner only (mode 0600); its content is never logged.

One setting comes from the environment alone: MERIDIAN_PASSWORD_COST (``node.password_pool``),
so that a test harness can lower it for every node it starts, whatever config it writes, and a
node of an older release (whose configs refuse unknown keys) ignores it.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from meridian.node.password_pool import DEFAULT_PASSWORD_COST, PASSWORD_COST_ENV, PASSWORD_COSTS
from meridian.node.rebalance import DEFAULT_INTERVAL_S, SCORES, Policy, RebalanceSettings
from meridian.node.service_limits import ServiceLimits
from meridian.sync.identity import KeyMaterialError, Keyring, NodeIdentity, public_key_text
from meridian.sync.settings import SyncSettings
from meridian.tomlschema import (
    ConfigError,
    TomlReader,
    TomlTable,
    read_toml,
)

NAME_PATTERN = re.compile(r"[a-z0-9-]{1,32}")
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")
DEFAULT_DRAIN_DEADLINE_S = 30.0
MIN_SECRET_CHARS = 16
SECRET_FIELDS = frozenset({"cluster_secret", "admin_token"})
SECRET_KEYS = ("secret_env", "secret_file", "admin_token_env", "admin_token_file")
IDENTITY_KEYS = ("key_file", "keyring_file")
DEFAULT_KEY_FILE = "node.key"  # in data_dir when cluster.key_file is not set
DEFAULT_KEYRING_FILE = "keyring.toml"  # likewise for cluster.keyring_file


@dataclass(frozen=True, repr=False)
class NodeConfig:
    node_id: str
    region: str
    listen_host: str
    listen_port: int
    public_url: str
    data_dir: Path
    peers: tuple[str, ...]
    cluster_secret: str | None  # not used by protocol 2 (node keys authenticate peers)
    admin_token: str
    zeroconf: bool
    sync: SyncSettings
    ack_regions: int
    max_clock_ahead_ms: int
    log_level: str
    limits: ServiceLimits
    config_path: Path
    key_file: Path = Path(DEFAULT_KEY_FILE)
    keyring_file: Path = Path(DEFAULT_KEYRING_FILE)
    log_format: str = "text"
    drain_deadline_s: float = DEFAULT_DRAIN_DEADLINE_S
    rebalance: RebalanceSettings = dataclasses.field(default_factory=RebalanceSettings)
    # replication.game_backups: k backup regions per game beyond its players' (partial
    # replication, crdt_models.placement); None: every region keeps every game
    game_backups: int | None = None
    password_cost: str = DEFAULT_PASSWORD_COST  # a key of PASSWORD_COSTS (from the environment)

    def __repr__(self) -> str:
        parts = []
        for config_field in dataclasses.fields(self):
            value = getattr(self, config_field.name)
            shown = "'***'" if config_field.name in SECRET_FIELDS else repr(value)
            parts.append(f"{config_field.name}={shown}")
        return f"NodeConfig({', '.join(parts)})"

    __str__ = __repr__


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> NodeConfig:
    """Read and check the TOML config at ``path``; secrets come from ``environ`` or os.environ."""
    config_path = Path(path)
    document = read_toml(config_path)
    reader = TomlReader(config_path, environ if environ is not None else os.environ)
    # Unknown keys first: a misspelt key should be reported as such, not as a missing one.
    _reject_unknown_keys(reader, document)
    return _build_config(reader, TomlTable(reader, "", document))


TABLE_KEYS: dict[str, tuple[str, ...]] = {
    "node": (
        "id",
        "region",
        "listen",
        "public_url",
        "data_dir",
        "log_level",
        "log_format",
        "drain_deadline_s",
    ),
    "cluster": ("peers", *SECRET_KEYS, *IDENTITY_KEYS, "zeroconf"),
    "sync": tuple(sync_field.name for sync_field in dataclasses.fields(SyncSettings)),
    "replication": ("ack_regions", "game_backups"),
    "clock": ("max_ahead_ms",),
    "limits": tuple(limit.name for limit in dataclasses.fields(ServiceLimits)),
    "rebalance": (
        "enabled",
        "interval_s",
        "score",
        "start_above",
        "stop_below",
        "min_excess",
        "min_interval_s",
        "max_moves_per_round",
        "max_extra_rtt_ms",
        "capacity",
    ),
}


def _reject_unknown_keys(reader: TomlReader, document: Mapping[str, Any]) -> None:
    for table_name, table in document.items():
        if table_name not in TABLE_KEYS:
            raise reader.error(
                table_name, f"unknown table; expected one of: {', '.join(TABLE_KEYS)}"
            )
        if not isinstance(table, dict):
            continue  # reported as a type error when the table is read
        for key, value in table.items():
            if key not in TABLE_KEYS[table_name]:
                kind = "table" if isinstance(value, dict) else "key"
                allowed = ", ".join(TABLE_KEYS[table_name])
                raise reader.error(
                    f"{table_name}.{key}", f"unknown {kind}; expected one of: {allowed}"
                )


def _game_backups(table: TomlTable) -> int | None:
    """replication.game_backups, or None when it is not set (full replication). With it, a
    game's moves reach only its replicas: k + 1 regions besides the writer's at least, so
    ack_regions may not ask for more."""
    if "game_backups" not in table.values:
        return None
    backups = table.integer("game_backups", 0, 0)
    ack_regions = table.integer("ack_regions", 0, 0)
    if ack_regions > backups + 1:
        raise table.reader.error(
            table.dotted("ack_regions"),
            f"expected at most game_backups + 1 = {backups + 1} (a game's moves reach only its "
            f"replica regions), got {ack_regions}",
        )
    return backups


def _build_config(reader: TomlReader, root: TomlTable) -> NodeConfig:
    node = root.table("node", required=True)
    cluster = root.table("cluster", required=True)
    node_id = _name(node, "id")
    region = _name(node, "region")
    listen_host, listen_port = _listen(node)
    public_url = node.optional_string("public_url", "an http(s)://host:port URL")
    public_url = _url(node, "public_url", public_url) if public_url else None
    data_dir = reader.folder / node.string("data_dir", expected="a folder path")
    log_level = _log_level(node)
    own_url = public_url or _default_public_url(node, listen_host, listen_port)
    data_dir = data_dir.resolve()
    return NodeConfig(
        node_id=node_id,
        region=region,
        listen_host=listen_host,
        listen_port=listen_port,
        public_url=own_url,
        data_dir=data_dir,
        peers=_peers(cluster, own_url),
        cluster_secret=_secret(reader, cluster, "secret", required=False),
        admin_token=_secret(reader, cluster, "admin_token"),
        zeroconf=cluster.boolean("zeroconf", False),
        sync=sync_settings_from(root.table("sync", required=False)),
        ack_regions=root.table("replication", required=False).integer("ack_regions", 0, 0),
        max_clock_ahead_ms=root.table("clock", required=False).integer("max_ahead_ms", 60_000, 1),
        log_level=log_level,
        limits=_limits(root.table("limits", required=False)),
        config_path=reader.path.resolve(),
        key_file=_path(cluster, "key_file", data_dir / DEFAULT_KEY_FILE),
        keyring_file=_path(cluster, "keyring_file", data_dir / DEFAULT_KEYRING_FILE),
        log_format=_log_format(node),
        drain_deadline_s=node.number(
            "drain_deadline_s", DEFAULT_DRAIN_DEADLINE_S, 0, inclusive=False
        ),
        rebalance=rebalance_settings_from(root.table("rebalance", required=False)),
        game_backups=_game_backups(root.table("replication", required=False)),
        password_cost=_password_cost(reader),
    )


def _password_cost(reader: TomlReader) -> str:
    """MERIDIAN_PASSWORD_COST: the argon2id cost of the passwords this node hashes."""
    cost = reader.environ.get(PASSWORD_COST_ENV, DEFAULT_PASSWORD_COST)
    if cost not in PASSWORD_COSTS:
        expected = ", ".join(repr(name) for name in PASSWORD_COSTS)
        raise reader.error(PASSWORD_COST_ENV, f"expected one of {expected}, got {cost!r}")
    return cost


def rebalance_settings_from(table: TomlTable) -> RebalanceSettings:
    """The ``[rebalance]`` section (docs/configuration.md): off unless ``enabled = true``."""
    default = Policy()
    expected = "one of " + ", ".join(repr(name) for name in SCORES)
    score = table.string("score", "connections", expected)
    if score not in SCORES:
        raise table.reader.error(table.dotted("score"), f"expected {expected}, got {score!r}")
    start_above = table.number("start_above", default.start_above, 1, inclusive=False)
    stop_below = table.number("stop_below", default.stop_below, 1, inclusive=True)
    if not start_above > stop_below:
        raise table.reader.error(
            table.dotted("start_above"),
            f"must be greater than rebalance.stop_below ({stop_below:g}), got {start_above:g}",
        )
    capacity = (
        table.number("capacity", 0, 0, inclusive=False)
        if "capacity" in table.values
        else default.capacity  # none: a region is never overloaded in absolute terms
    )
    policy = Policy(
        start_above=start_above,
        stop_below=stop_below,
        min_interval_s=table.number("min_interval_s", default.min_interval_s, 0, inclusive=True),
        max_moves_per_round=table.integer("max_moves_per_round", default.max_moves_per_round, 1),
        max_extra_rtt_ms=table.number(
            "max_extra_rtt_ms", default.max_extra_rtt_ms, 0, inclusive=True
        ),
        capacity=capacity,
        min_excess=table.number("min_excess", default.min_excess, 0, inclusive=True),
        score=SCORES[score],
    )
    return RebalanceSettings(
        enabled=table.boolean("enabled", False),
        interval_s=table.number("interval_s", DEFAULT_INTERVAL_S, 0, inclusive=False),
        policy=policy,
    )


def _path(table: TomlTable, key: str, default: Path) -> Path:
    """A file path relative to the config file's folder, or `default`."""
    text = table.optional_string(key, "a file path")
    return (table.reader.folder / text).resolve() if text else default


def _limits(table: TomlTable) -> ServiceLimits:
    defaults = ServiceLimits()
    values = {
        limit.name: table.integer(limit.name, getattr(defaults, limit.name), 1)
        for limit in dataclasses.fields(ServiceLimits)
    }
    return ServiceLimits(**values)


def _name(table: TomlTable, key: str) -> str:
    expected = "1 to 32 characters from a-z, 0-9 and '-'"
    value = table.string(key, expected=expected)
    if not NAME_PATTERN.fullmatch(value):
        raise table.reader.error(table.dotted(key), f"expected {expected}, got {value!r}")
    return value


def _listen(table: TomlTable) -> tuple[str, int]:
    expected = "'host:port' with a port from 1 to 65535, e.g. '127.0.0.1:7101'"
    text = table.string("listen", expected=expected)
    host, _, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")  # [::1]:7101
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise table.reader.error(table.dotted("listen"), f"expected {expected}, got {text!r}")
    return host, int(port)


def _default_public_url(table: TomlTable, host: str, port: int) -> str:
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        address = None  # a host name
    if address is not None and address.is_unspecified:
        raise table.reader.error(
            table.dotted("public_url"),
            f"missing; required when node.listen binds all interfaces ({host}): "
            "expected the http(s)://host:port that players and peers use to reach this node",
        )
    url_host = f"[{host}]" if address is not None and address.version == 6 else host
    return f"http://{url_host}:{port}"


def _url(table: TomlTable, key: str, text: str) -> str:
    """Validate an http(s) base URL and return it without a trailing slash."""
    expected = "an http:// or https:// URL with a host, e.g. 'http://10.0.0.5:7101'"
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 -- raises ValueError on a bad port
    except ValueError:
        raise table.reader.error(table.dotted(key), f"expected {expected}, got {text!r}") from None
    extra = parts.query or parts.fragment or parts.path.strip("/")
    if parts.scheme not in ("http", "https") or not parts.hostname or extra:
        raise table.reader.error(table.dotted(key), f"expected {expected}, got {text!r}")
    return text.rstrip("/")


def _log_level(table: TomlTable) -> str:
    expected = "one of " + ", ".join(repr(level) for level in LOG_LEVELS)
    value = table.string("log_level", "info", expected)
    if value not in LOG_LEVELS:
        raise table.reader.error(table.dotted("log_level"), f"expected {expected}, got {value!r}")
    return value


def _log_format(table: TomlTable) -> str:
    expected = "one of " + ", ".join(repr(name) for name in LOG_FORMATS)
    value = table.string("log_format", "text", expected)
    if value not in LOG_FORMATS:
        raise table.reader.error(table.dotted("log_format"), f"expected {expected}, got {value!r}")
    return value


def _peers(table: TomlTable, own_url: str) -> tuple[str, ...]:
    peers: list[str] = []
    for index, text in enumerate(table.string_list("peers", "http(s) URLs")):
        key = f"peers[{index}]"
        url = _url(table, key, text)
        if url == own_url:
            raise table.reader.error(table.dotted(key), f"{url} is this node's own public_url")
        if url in peers:
            raise table.reader.error(table.dotted(key), f"{url} is listed twice")
        peers.append(url)
    return tuple(peers)


def _secret(reader: TomlReader, table: TomlTable, name: str, *, required: bool = True) -> Any:
    """Read secret ``name`` from exactly one of ``{name}_env`` / ``{name}_file`` (None when
    neither is set and the secret is not `required`)."""
    env_key, file_key = f"{name}_env", f"{name}_file"
    variable = table.optional_string(env_key, "the name of an environment variable")
    file_name = table.optional_string(file_key, "a file path")
    if variable is None and file_name is None and not required:
        return None
    if (variable is None) == (file_name is None):
        found = "both" if variable is not None else "neither"
        raise reader.error(
            table.dotted(name), f"set exactly one of {env_key} or {file_key} ({found} is set)"
        )
    if variable is not None:
        key = table.dotted(env_key)
        if variable not in reader.environ:
            raise reader.error(key, f"environment variable {variable} is not set")
        return _checked_secret(reader, key, reader.environ[variable].strip(), variable)
    assert file_name is not None
    return _secret_from_file(reader, table.dotted(file_key), reader.folder / file_name)


def _secret_from_file(reader: TomlReader, key: str, path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise reader.error(key, f"cannot read secret file {path}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise reader.error(key, f"secret file {path} is not valid UTF-8") from None
    return _checked_secret(reader, key, text.strip(), f"file {path}")


def _checked_secret(reader: TomlReader, key: str, secret: str, source: str) -> str:
    # The messages say how long the secret is, never what it is.
    if not secret:
        raise reader.error(key, f"secret from {source} is empty")
    if len(secret) < MIN_SECRET_CHARS:
        raise reader.error(
            key,
            f"secret from {source} is {len(secret)} characters; "
            f"expected at least {MIN_SECRET_CHARS}",
        )
    return secret


def sync_settings_from(table: TomlTable) -> SyncSettings:
    default = SyncSettings()
    settings = SyncSettings(
        coalesce_ms=table.number("coalesce_ms", default.coalesce_ms, 0, inclusive=True),
        coalesce_region_ms=table.number(
            "coalesce_region_ms", default.coalesce_region_ms, 0, inclusive=True
        ),
        anti_entropy_s=table.number("anti_entropy_s", default.anti_entropy_s, 0, inclusive=False),
        heartbeat_s=table.number("heartbeat_s", default.heartbeat_s, 0, inclusive=False),
        peer_timeout_s=table.number("peer_timeout_s", default.peer_timeout_s, 0, inclusive=False),
        max_frame_bytes=table.integer("max_frame_bytes", default.max_frame_bytes, 64 * 1024),
        max_queue_bytes=table.integer("max_queue_bytes", default.max_queue_bytes, 64 * 1024),
        max_update_bytes=table.integer("max_update_bytes", default.max_update_bytes, 64 * 1024),
        new_docs_burst=table.integer("new_docs_burst", default.new_docs_burst, 1),
        new_docs_per_s=table.number("new_docs_per_s", default.new_docs_per_s, 0, inclusive=False),
        reconnect_min_s=table.number(
            "reconnect_min_s", default.reconnect_min_s, 0, inclusive=False
        ),
        reconnect_max_s=table.number(
            "reconnect_max_s", default.reconnect_max_s, 0, inclusive=False
        ),
        connect_timeout_s=table.number(
            "connect_timeout_s", default.connect_timeout_s, 0, inclusive=False
        ),
        relay=table.boolean("relay", default.relay),
    )
    _check_sync_relations(table, settings)
    return settings


def _check_sync_relations(table: TomlTable, settings: SyncSettings) -> None:
    """Checks between sync keys; each error names the key to change and the one it depends on."""
    relations = [
        ("peer_timeout_s", settings.peer_timeout_s > settings.heartbeat_s,
         f"must be greater than sync.heartbeat_s ({settings.heartbeat_s:g})"),
        ("max_queue_bytes", settings.max_queue_bytes >= settings.max_frame_bytes,
         f"must be at least sync.max_frame_bytes ({settings.max_frame_bytes})"),
        ("max_update_bytes", settings.max_update_bytes <= settings.max_frame_bytes,
         f"must be at most sync.max_frame_bytes ({settings.max_frame_bytes})"),
        ("reconnect_max_s", settings.reconnect_max_s >= settings.reconnect_min_s,
         f"must be at least sync.reconnect_min_s ({settings.reconnect_min_s:g})"),
    ]  # fmt: skip
    for key, holds, rule in relations:
        if not holds:
            value = getattr(settings, key)
            raise table.reader.error(table.dotted(key), f"{rule}, got {value:g}")


# --- identity ------------------------------------------------------------------------------


def load_identity(config: NodeConfig) -> tuple[NodeIdentity, Keyring]:
    """This node's key and the cluster keyring, checked against each other.

    Raises ConfigError naming ``cluster.key_file`` or ``cluster.keyring_file``: a missing or
    unreadable file, a key file others can read, a keyring without this node, or a keyring
    that lists another public key or region for it.
    """
    keyring = _load_keyring(config)
    identity = _load_key(config)
    entry = keyring.get(config.node_id)
    where = f"cluster.keyring_file ({config.keyring_file})"
    if entry is None:
        raise ConfigError(config.config_path, where, f"does not list this node ({config.node_id})")
    if public_key_text(entry.public_key) != identity.public_text:
        raise ConfigError(
            config.config_path, where, f"lists another public key for {config.node_id}"
        )
    if entry.region != config.region:
        raise ConfigError(
            config.config_path,
            where,
            f"lists {config.node_id} in region {entry.region!r}, the config says {config.region!r}",
        )
    if entry.removed:
        raise ConfigError(config.config_path, where, f"marks {config.node_id} as removed")
    return identity, keyring


def _load_key(config: NodeConfig) -> NodeIdentity:
    path = config.key_file
    where = "cluster.key_file"
    try:
        mode = path.stat().st_mode
        pem = path.read_bytes()
    except OSError as error:
        raise ConfigError(
            config.config_path, where, f"cannot read {path}: {error.strerror}"
        ) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            config.config_path,
            where,
            f"{path} is accessible to other users (mode {stat.S_IMODE(mode):04o}); "
            "run chmod 600 on it",
        )
    try:
        return NodeIdentity.from_pem(config.node_id, config.region, pem)
    except KeyMaterialError as error:
        raise ConfigError(config.config_path, where, f"{path}: {error.message}") from None


def _load_keyring(config: NodeConfig) -> Keyring:
    path = config.keyring_file
    where = "cluster.keyring_file"
    try:
        table = read_toml(path)
    except ConfigError as error:
        raise ConfigError(config.config_path, where, f"{path}: {error.message}") from None
    try:
        return Keyring.parse(table)
    except KeyMaterialError as error:
        raise ConfigError(config.config_path, where, f"{path}: {error}") from None
