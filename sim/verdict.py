"""A checker's answer, and what a checker is (shared by sim.checkers and sim.gamecheck)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from meridian.sim.history import FinalStates, History


@dataclass(frozen=True)
class Verdict:
    checker: str
    ok: bool
    message: str
    excerpt: tuple[str, ...] = ()
    figures: dict[str, Any] = field(default_factory=dict)


Checker = Callable[[History, FinalStates], Verdict]
