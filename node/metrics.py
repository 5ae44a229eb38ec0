"""Prometheus text exposition of a node's counters (no client library: the format is simple)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from meridian.sync.stats import percentile

QUANTILES = (0.5, 0.9, 0.99)


@dataclass
class MetricFamily:
    name: str
    kind: str  # "counter" | "gauge" | "summary"
    help: str
    samples: list[tuple[dict[str, str], float]] = field(default_factory=list)

    def add(self, value: float, **labels: str) -> None:
        self.samples.append((labels, value))

    def add_quantiles(self, values: Iterable[float], **labels: str) -> None:
        values = list(values)
        for q in QUANTILES:
            result = percentile(values, q)
            if result is not None:
                self.samples.append(({**labels, "quantile": str(q)}, result))


def render(families: Iterable[MetricFamily]) -> str:
    lines: list[str] = []
    for family in families:
        lines.append(f"# HELP {family.name} {family.help}")
        lines.append(f"# TYPE {family.name} {family.kind}")
        for labels, value in family.samples:
            label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
            suffix = f"{{{label_text}}}" if label_text else ""
            lines.append(f"{family.name}{suffix} {value:g}")
    return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
