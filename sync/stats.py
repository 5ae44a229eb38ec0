"""Small statistics helpers shared by metrics, benchmarks and the simulator."""

from __future__ import annotations

from collections.abc import Iterable


def percentile(samples: Iterable[float], fraction: float) -> float | None:
    """The nearest-rank percentile (fraction in 0..1) of the samples, or None if there are none."""
    ordered = sorted(samples)
    if not ordered:
        return None
    rank = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[rank]
