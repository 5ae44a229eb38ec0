"""Typed reading of scenario TOML tables; every error is one line naming the dotted key.

It extends the node config's table reader (``node.config``), so scenario files and node configs
report problems the same way: ``configs/scenarios/x.toml: faults[2].at_s: expected ...``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from meridian.tomlschema import MISSING, ConfigError, TomlReader, TomlTable, describe_value

__all__ = ["ConfigError", "Table"]


class Table(TomlTable):
    """One TOML table of a scenario file, with the getters scenarios need."""

    @classmethod
    def root(cls, path: Path, values: dict[str, Any]) -> Table:
        return cls(TomlReader(path, {}), "", values)

    def error(self, key: str, message: str) -> ConfigError:
        return self.reader.error(self.dotted(key), message)

    def table(self, key: str, *, required: bool) -> Table:
        inner = super().table(key, required=required)
        return Table(self.reader, inner.prefix, inner.values)

    def item(self, key: str, index: int) -> Table:
        """The ``index``-th table of an array of tables such as ``[[faults]]``."""
        values = self.values[key][index]
        name = f"{self.dotted(key)}[{index}]"
        if not isinstance(values, dict):
            raise self.reader.error(name, f"expected a table, got {describe_value(values)}")
        return Table(self.reader, name, values)

    def tables(self, key: str) -> list[Table]:
        value = self.raw(key, [], "an array of tables")
        if not isinstance(value, list):
            raise self.wrong_type(key, value, "an array of tables")
        return [self.item(key, index) for index in range(len(value))]

    def only(self, allowed: Iterable[str]) -> None:
        """Reject keys this table does not know (a typo must not fall back to a default)."""
        known = list(allowed)
        for key in self.values:
            if key not in known:
                expected = f"expected one of: {', '.join(known)}" if known else "it takes none"
                raise self.error(key, f"unknown key; {expected}")

    def fraction(self, key: str, default: float) -> float:
        value = self.number(key, default, 0, inclusive=True)
        if value > 1:
            raise self.error(key, f"expected a probability from 0 to 1, got {value:g}")
        return value

    def optional_number(self, key: str, minimum: float) -> float | None:
        if key not in self.values:
            return None
        return self.number(key, 0.0, minimum, inclusive=True)

    def choice(self, key: str, options: Sequence[str], default: str | None = None) -> str:
        expected = "one of " + ", ".join(repr(option) for option in options)
        value = self.string(key, default if default is not None else MISSING, expected)
        if value not in options:
            raise self.error(key, f"expected {expected}, got {value!r}")
        return value

    def node(self, key: str, nodes: Sequence[str]) -> str:
        return self.choice(key, nodes)

    def node_list(self, key: str, nodes: Sequence[str], value: Any = None) -> list[str]:
        expected = "a list of node names (" + ", ".join(nodes) + ")"
        items = self.raw(key, MISSING, expected) if value is None else value
        if not isinstance(items, list) or not items:
            raise self.wrong_type(key, items, expected)
        for item in items:
            if item not in nodes:
                raise self.error(key, f"expected {expected}, got {item!r}")
        if len(set(items)) != len(items):
            raise self.error(key, "a node is listed twice")
        return items

    def node_pairs(self, key: str, nodes: Sequence[str], default: Any = None) -> list[list[str]]:
        expected = 'a list of [node, node] pairs, e.g. [["eu", "us"]]'
        pairs = self.raw(key, MISSING if default is None else default, expected)
        if not isinstance(pairs, list) or not pairs:
            raise self.wrong_type(key, pairs, expected)
        for index, pair in enumerate(pairs):
            if not isinstance(pair, list) or len(pair) != 2:
                raise self.wrong_type(f"{key}[{index}]", pair, "a pair of node names")
            self.node_list(f"{key}[{index}]", nodes, pair)
        return pairs

    def seconds_range(self, key: str, default: tuple[float, float]) -> tuple[float, float]:
        expected = "[min, max] seconds with 0 < min <= max"
        value = self.raw(key, list(default), expected)
        valid = (
            isinstance(value, list)
            and len(value) == 2
            and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
            and 0 < value[0] <= value[1]
        )
        if not valid:
            raise self.wrong_type(key, value, expected)
        return float(value[0]), float(value[1])
