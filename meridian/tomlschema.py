"""A strict reader for TOML files with a fixed schema: typed getters whose errors name the key.

Used by the node's config (``node.config``) and the simulator's scenarios (``sim.scenario``):
every bad value raises a one-line :class:`ConfigError` naming the file, the dotted key, what is
wrong and what was expected. It imports nothing of Meridian, so any layer may use it.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class ConfigError(Exception):
    """A config problem, as one line: ``{path}: {key}: {message}``."""

    def __init__(self, path: str | Path, key: str, message: str) -> None:
        self.path = str(path)
        self.key = key
        self.message = " ".join(message.split())  # one line, whatever the cause said
        super().__init__(f"{self.path}: {self.key}: {self.message}")


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except FileNotFoundError:
        raise ConfigError(path, "(file)", "config file not found") from None
    except OSError as error:
        raise ConfigError(path, "(file)", f"cannot read config file: {error.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(path, "(toml)", "config file is not valid UTF-8") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(path, "(toml)", f"invalid TOML: {error}") from None


@dataclass(frozen=True)
class TomlReader:
    """What every table needs to resolve values: the config file and the environment."""

    path: Path
    environ: Mapping[str, str]

    @property
    def folder(self) -> Path:
        return self.path.resolve().parent

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(self.path, key, message)


MISSING: Any = object()


class TomlTable:
    """One TOML table with typed getters; every error names the dotted key."""

    def __init__(self, reader: TomlReader, prefix: str, values: Mapping[str, Any]) -> None:
        self.reader = reader
        self.prefix = prefix
        self.values = values

    def dotted(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix else key

    def raw(self, key: str, default: Any, expected: str) -> Any:
        if key in self.values:
            return self.values[key]
        if default is MISSING:
            raise self.reader.error(self.dotted(key), f"missing; expected {expected}")
        return default

    def wrong_type(self, key: str, value: Any, expected: str) -> ConfigError:
        return self.reader.error(
            self.dotted(key), f"expected {expected}, got {describe_value(value)}"
        )

    def table(self, key: str, *, required: bool) -> TomlTable:
        value = self.raw(key, MISSING if required else {}, "a table")
        if not isinstance(value, dict):
            raise self.wrong_type(key, value, "a table")
        return TomlTable(self.reader, self.dotted(key), value)

    def string(self, key: str, default: Any = MISSING, expected: str = "a string") -> str:
        value = self.raw(key, default, expected)
        if not isinstance(value, str):
            raise self.wrong_type(key, value, expected)
        return value

    def optional_string(self, key: str, expected: str) -> str | None:
        if key not in self.values:
            return None
        return self.string(key, expected=expected)

    def boolean(self, key: str, default: bool) -> bool:
        value = self.raw(key, default, "true or false")
        if not isinstance(value, bool):
            raise self.wrong_type(key, value, "true or false")
        return value

    def integer(self, key: str, default: int, minimum: int) -> int:
        expected = f"an integer >= {minimum}"
        value = self.raw(key, default, expected)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.wrong_type(key, value, expected)
        if value < minimum:
            raise self.reader.error(self.dotted(key), f"expected {expected}, got {value}")
        if value >= 2**53:  # beyond this, JSON and pycrdt lose precision
            raise self.reader.error(self.dotted(key), f"expected a value below 2**53, got {value}")
        return value

    def number(self, key: str, default: float, minimum: float, *, inclusive: bool) -> float:
        bound = f">= {minimum:g}" if inclusive else f"> {minimum:g}"
        expected = f"a number {bound}"
        value = self.raw(key, default, expected)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.wrong_type(key, value, expected)
        too_small = value < minimum if inclusive else value <= minimum
        if too_small or not math.isfinite(value):  # TOML allows nan and inf
            raise self.reader.error(self.dotted(key), f"expected {expected}, got {value}")
        return float(value)

    def string_list(self, key: str, expected: str) -> list[str]:
        value = self.raw(key, [], f"a list of {expected}")
        if not isinstance(value, list):
            raise self.wrong_type(key, value, f"a list of {expected}")
        for index, item in enumerate(value):
            if not isinstance(item, str):
                raise self.wrong_type(f"{key}[{index}]", item, expected)
        return value


def describe_value(value: Any) -> str:
    names = {bool: "boolean", int: "integer", float: "float", str: "string"}
    names |= {list: "array", dict: "table"}
    kind = names.get(type(value), type(value).__name__)
    text = repr(value)
    return f"{kind} {text}" if len(text) <= 40 else kind
