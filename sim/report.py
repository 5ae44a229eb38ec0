"""A run's report: ``report.json`` (verdicts and figures), ``history.jsonl`` and ``report.html``.

Everything written depends only on the scenario and the seed (no wall-clock times, no paths
other than the scenario as given), so the same seed gives byte-identical files.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from meridian.sim.checkers import lag_by_link, lost_acknowledged_writes, overall_lag
from meridian.sim.history import History
from meridian.sim.html import render_html
from meridian.sim.world import RunResult

LOST_LISTED = 20  # the count is complete; the list shows the first ones
MERGES_LISTED = 50
TIMELINE_KINDS = (
    "fault",
    "fault-end",
    "crash",
    "stop",
    "restart",
    "heal",
    "converged",
    "diverged",
    "settle",
)


def replay_command(scenario_arg: str, seed: int) -> str:
    return f"meridian sim run {scenario_arg} --seed {seed} --report sim-report-{seed}"


def build_report(result: RunResult, scenario_arg: str) -> dict[str, Any]:
    history = result.history
    lost = lost_acknowledged_writes(history, result.final)
    converged = history.converged_at
    return {
        "scenario": result.scenario.name,
        "description": result.scenario.description,
        "seed": result.seed,
        "ok": result.ok,
        "virtual_time_s": history.end_at,
        "events": result.events,
        "frames": result.frames,
        "wire_bytes": result.wire_bytes,
        "verdicts": [
            {
                "checker": v.checker,
                "ok": v.ok,
                "message": v.message,
                "excerpt": list(v.excerpt),
                "figures": v.figures,
            }
            for v in result.verdicts
        ],
        "writes": {
            "total": len(history.writes),
            "acknowledged": sum(1 for w in history.writes if w.acknowledged),
            "lost_acknowledged": len(lost),
            "lost": [
                f"{item.write.describe()}: on {item.node}, {item.reason}"
                for item in lost[:LOST_LISTED]
            ],
            "outcomes": dict(sorted(Counter(w.outcome for w in history.writes).items())),
        },
        "lag_s": {"all": overall_lag(history), "links": lag_by_link(history)},
        "convergence": {
            "heal_at_s": history.heal_at,
            "converged_at_s": None if converged is None else round(converged, 6),
            "seconds_after_heal": None
            if converged is None
            else round(converged - history.heal_at, 6),
        },
        "merges": merge_figures(history),
        "timeline": [e.to_json() for e in history.timeline if e.kind in TIMELINE_KINDS],
        "replay": replay_command(scenario_arg, result.seed),
    }


def merge_figures(history: History) -> dict[str, Any]:
    """Merges by kind: how many distinct ones, and how many times nodes counted them (each
    node that sees a merge counts it, as ``meridian_merges_total`` does)."""
    by_kind: dict[str, dict[str, int]] = {}
    seen: set[tuple[str, str]] = set()
    by_node: dict[str, dict[str, int]] = {}
    for merge in history.merges:
        counts = by_kind.setdefault(merge.kind, {"distinct": 0, "events": 0})
        counts["events"] += 1
        if (merge.kind, merge.detail) not in seen:
            seen.add((merge.kind, merge.detail))
            counts["distinct"] += 1
        node = by_node.setdefault(merge.node, {})
        node[merge.kind] = node.get(merge.kind, 0) + 1
    return {
        "by_kind": dict(sorted(by_kind.items())),
        "by_node": {node: dict(sorted(k.items())) for node, k in sorted(by_node.items())},
        "first": [merge.describe() for merge in history.merges[:MERGES_LISTED]],
    }


def write_report(result: RunResult, scenario_arg: str, folder: Path) -> Path:
    """Write the three files into ``folder``; returns the HTML page's path."""
    folder.mkdir(parents=True, exist_ok=True)
    report = build_report(result, scenario_arg)
    (folder / "report.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    (folder / "history.jsonl").write_text(result.history.to_jsonl())
    page = folder / "report.html"
    page.write_text(render_html(result, report))
    return page
