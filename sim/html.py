"""The report page: one self-contained HTML file with inline SVG (no scripts, fonts or images).

It shows the verdicts, a timeline (faults as bars; per node, when its process was down and, per
peer, when the network path was cut and when a link was up; heal, convergence, reconnects and the
game service's merges marked) and replication lag over time per link, on the same time axis.
"""

from __future__ import annotations

from collections.abc import Iterable
from html import escape
from itertools import pairwise
from typing import Any

from meridian.sim.history import History, TimelineEvent
from meridian.sim.world import RunResult

WIDTH = 980
LEFT = 110
RIGHT = 20
LANE = 12
FAULT_ROW = 16
LAG_HEIGHT = 220
MAX_POINTS = 4000
RECONNECT_GAP_S = 0.001
MERGE_COLORS = {
    "name": "#ff7f0e",
    "double_login": "#9467bd",
    "same_ply": "#d62728",
    "two_games": "#17becf",
}
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")
STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; }
table { border-collapse: collapse; margin: 8px 0 16px; }
td, th { border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top; }
.pass { color: #1a7f37; font-weight: bold; } .fail { color: #c62828; font-weight: bold; }
pre { background: #f6f6f6; padding: 6px; margin: 4px 0; white-space: pre-wrap; }
svg text { font: 11px system-ui, sans-serif; }
"""

Interval = tuple[float, float]


class Axis:
    """Maps virtual seconds to x pixels."""

    def __init__(self, end: float) -> None:
        self.end = end

    def x(self, t: float) -> float:
        return round(LEFT + max(0.0, min(t, self.end)) / self.end * (WIDTH - LEFT - RIGHT), 1)

    def ticks(self, y: float) -> str:
        step = _nice_step(self.end / 10)
        parts, t = [], 0.0
        while t <= self.end + 1e-9:
            parts.append(f'<line x1="{self.x(t)}" y1="0" x2="{self.x(t)}" y2="{y}" stroke="#eee"/>')
            parts.append(f'<text x="{self.x(t)}" y="{y + 12}" text-anchor="middle">{t:g} s</text>')
            t += step
        return "".join(parts)


def _nice_step(raw: float) -> float:
    for step in (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000):
        if step >= raw:
            return float(step)
    return 1000.0


def render_html(result: RunResult, report: dict[str, Any]) -> str:
    history = result.history
    axis = Axis(history.end_at)
    title = f"{escape(result.scenario.name)}, seed {result.seed}"
    status = '<span class="pass">PASS</span>' if result.ok else '<span class="fail">FAIL</span>'
    return "".join(
        [
            f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title>",
            f"<style>{STYLE}</style></head><body>",
            f"<h1>{title}: {status}</h1><p>{escape(result.scenario.description)}</p>",
            f"<p>Replay: <code>{escape(report['replay'])}</code></p>",
            _verdicts(report),
            "<h2>Timeline</h2>",
            "<p>Bars on top: faults. Per node: grey = process down; per peer lane: red = network ",
            "path from this node cut, blue = link up, green triangle = reconnect (anti-entropy ",
            "merges what both sides wrote meanwhile), diamond = a merge by that node's game ",
            f"service ({_merge_legend()}). Black line: heal; green: converged.</p>",
            _timeline_svg(history, axis),
            "<h2>Replication lag</h2><p>Each dot is a put: when it was written (x) and how long ",
            "it took to be integrated on another node (y), coloured by link.</p>",
            _lag_svg(history, axis),
            _lag_table(report),
            _writes_table(report),
            _merges_table(report),
            "</body></html>\n",
        ]
    )


def _verdicts(report: dict[str, Any]) -> str:
    rows = []
    for verdict in report["verdicts"]:
        mark = (
            '<span class="pass">pass</span>' if verdict["ok"] else '<span class="fail">FAIL</span>'
        )
        excerpt = "".join(f"{escape(line)}\n" for line in verdict["excerpt"])
        detail = escape(verdict["message"]) + (f"<pre>{excerpt}</pre>" if excerpt else "")
        rows.append(
            f"<tr><td>{escape(verdict['checker'])}</td><td>{mark}</td><td>{detail}</td></tr>"
        )
    return "<table><tr><th>checker</th><th></th><th>verdict</th></tr>" + "".join(rows) + "</table>"


# --- timeline ----------------------------------------------------------------------------------


def _timeline_svg(history: History, axis: Axis) -> str:
    faults = _fault_bars(history)
    parts: list[str] = []
    y = 4.0
    for label, (start, end) in faults:
        width = max(axis.x(end) - axis.x(start), 2)
        parts.append(
            f'<rect x="{axis.x(start)}" y="{y}" width="{width}" height="{FAULT_ROW - 4}" '
            f'fill="#f4b6b6"/><text x="{axis.x(start) + 3}" y="{y + 10}">{escape(label)}</text>'
        )
        y += FAULT_ROW
    y += 6
    for node in history.nodes:
        y = _node_rows(history, axis, node, y, parts)
    height = y + 4
    parts.append(_marker(axis, history.heal_at, height, "#000", "heal"))
    if history.converged_at is not None:
        converged = _marker(axis, history.converged_at, height, "#1a7f37", "converged", 10)
        parts.append(converged)
    return _svg(height + 16, axis.ticks(height) + "".join(parts))


def _node_rows(history: History, axis: Axis, node: str, y: float, parts: list[str]) -> float:
    peers = [peer for peer in history.nodes if peer != node]
    height = LANE * len(peers) + 6
    parts.append(f'<text x="4" y="{y + height / 2 + 4}" font-weight="bold">{escape(node)}</text>')
    for start, end in _down_intervals(history, node):
        parts.append(_rect(axis, start, end, y, height, "#bbb"))
    for merge in history.merges:
        if merge.node == node:
            parts.append(_merge_mark(axis, merge.t, y + height / 2, merge.kind, merge.detail))
    for index, peer in enumerate(peers):
        lane_y = y + 3 + index * LANE
        parts.append(f'<text x="40" y="{lane_y + 9}" fill="#666">to {escape(peer)}</text>')
        for start, end in _intervals(history, node, peer, "path-down", "path-up"):
            parts.append(_rect(axis, start, end, lane_y, LANE - 2, "#f28b82"))
        links = _intervals(history, node, peer, "link-up", "link-closed")
        for start, end in links:
            parts.append(_rect(axis, start, end, lane_y + 3, LANE - 8, "#1f77b4"))
        for (_, ended), (start, _) in pairwise(links):
            if start - ended > RECONNECT_GAP_S:  # not a duplicate link replaced on the spot
                parts.append(_reconnect(axis, start, lane_y))
    parts.append(f'<line x1="{LEFT}" y1="{y + height}" x2="{WIDTH - RIGHT}" y2="{y + height}" '
                 'stroke="#ddd"/>')  # fmt: skip
    return y + height + 2


def _fault_bars(history: History) -> list[tuple[str, Interval]]:
    bars: list[tuple[str, Interval]] = []
    open_bars: dict[str, list[int]] = {}
    for event in history.timeline:
        if event.kind == "fault":
            open_bars.setdefault(event.detail, []).append(len(bars))
            bars.append((event.detail, (event.t, history.end_at)))
        elif event.kind == "fault-end" and open_bars.get(event.detail):
            index = open_bars[event.detail].pop(0)
            bars[index] = (event.detail, (bars[index][1][0], event.t))
    return bars


def _down_intervals(history: History, node: str) -> list[Interval]:
    intervals, down_since = [], None
    for event in _events(history.timeline, node, None):
        if event.kind in ("crash", "stop") and down_since is None:
            down_since = event.t
        elif event.kind == "restart" and down_since is not None:
            intervals.append((down_since, event.t))
            down_since = None
    if down_since is not None:
        intervals.append((down_since, history.end_at))
    return intervals


def _intervals(history: History, node: str, peer: str, opens: str, closes: str) -> list[Interval]:
    """Where a count of open-minus-close events for (node, peer) is above zero."""
    intervals: list[Interval] = []
    count, since = 0, 0.0
    for event in _events(history.timeline, node, peer):
        if event.kind == opens:
            if count == 0:
                since = event.t
            count += 1
        elif event.kind == closes and count > 0:
            count -= 1
            if count == 0:
                intervals.append((since, event.t))
    if count > 0:
        intervals.append((since, history.end_at))
    return intervals


def _events(timeline: Iterable[TimelineEvent], node: str, peer: str | None) -> list[TimelineEvent]:
    return [e for e in timeline if e.node == node and (peer is None or e.peer == peer)]


def _rect(axis: Axis, start: float, end: float, y: float, height: float, color: str) -> str:
    width = max(axis.x(end) - axis.x(start), 1)
    return f'<rect x="{axis.x(start)}" y="{y}" width="{width}" height="{height}" fill="{color}"/>'


def _reconnect(axis: Axis, t: float, y: float) -> str:
    """A link back up after being down: anti-entropy merges what both sides wrote meanwhile."""
    x = axis.x(t)
    points = f"{x},{y + LANE - 2} {x - 4},{y + LANE + 4} {x + 4},{y + LANE + 4}"
    return f'<polygon points="{points}" fill="#1a7f37"><title>reconnect: merge</title></polygon>'


def _merge_mark(axis: Axis, t: float, y: float, kind: str, detail: str) -> str:
    x, color = axis.x(t), MERGE_COLORS.get(kind, "#555")
    points = f"{x},{y - 5} {x + 4},{y} {x},{y + 5} {x - 4},{y}"
    title = f"<title>{escape(kind)}: {escape(detail)}</title>"
    return f'<polygon points="{points}" fill="{color}">{title}</polygon>'


def _merge_legend() -> str:
    return ", ".join(
        f'<span style="color:{color}">&#9670; {escape(kind)}</span>'
        for kind, color in MERGE_COLORS.items()
    )


def _marker(
    axis: Axis, t: float, height: float, color: str, label: str, label_y: float | None = None
) -> str:
    x = axis.x(t)
    y = height - 3 if label_y is None else label_y
    return (
        f'<line x1="{x}" y1="0" x2="{x}" y2="{height}" stroke="{color}" stroke-width="1.5"/>'
        f'<text x="{x + 3}" y="{y}" fill="{color}">{label}</text>'
    )


def _svg(height: float, body: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}">{body}</svg>'
    )


# --- lag -------------------------------------------------------------------------------------


def _lag_svg(history: History, axis: Axis) -> str:
    samples = history.lag
    if not samples:
        return "<p>No replication samples.</p>"
    top = max(sample.lag for sample in samples) or 1.0
    links = sorted({sample.link for sample in samples})
    color = {link: COLORS[i % len(COLORS)] for i, link in enumerate(links)}
    stride = max(1, len(samples) // MAX_POINTS)
    parts = [axis.ticks(LAG_HEIGHT)]
    for sample in samples[::stride]:
        y = round(LAG_HEIGHT - sample.lag / top * (LAG_HEIGHT - 10), 1)
        parts.append(
            f'<circle cx="{axis.x(sample.t)}" cy="{y}" r="1.6" fill="{color[sample.link]}"/>'
        )
    for fraction in (0.0, 0.5, 1.0):
        y = round(LAG_HEIGHT - fraction * (LAG_HEIGHT - 10), 1)
        parts.append(
            f'<text x="{LEFT - 4}" y="{y + 4}" text-anchor="end">{fraction * top:.2f} s</text>'
        )
    parts.append(_marker(axis, history.heal_at, LAG_HEIGHT, "#000", "heal"))
    legend = " ".join(
        f'<span style="color:{color[link]}">&#9679; {escape(link)}</span>' for link in links
    )
    return f"<p>{legend}</p>" + _svg(LAG_HEIGHT + 16, "".join(parts))


def _lag_table(report: dict[str, Any]) -> str:
    rows = []
    for link, figures in report["lag_s"]["links"].items():
        cells = "".join(f"<td>{figures[k]:.3f}</td>" for k in ("p50", "p90", "p99", "max"))
        rows.append(f"<tr><td>{escape(link)}</td><td>{figures['count']}</td>{cells}</tr>")
    head = "".join(
        f"<th>{name}</th>" for name in ("link", "puts", "p50 s", "p90 s", "p99 s", "max s")
    )
    return f"<table><tr>{head}</tr>" + "".join(rows) + "</table>"


def _writes_table(report: dict[str, Any]) -> str:
    writes = report["writes"]
    outcomes = ", ".join(f"{name}: {count}" for name, count in writes["outcomes"].items())
    convergence = report["convergence"]["seconds_after_heal"]
    converged = "never" if convergence is None else f"{convergence:.3f} s after heal"
    return (
        "<h2>Writes</h2><table>"
        f"<tr><td>writes</td><td>{writes['total']} ({escape(outcomes)})</td></tr>"
        f"<tr><td>acknowledged</td><td>{writes['acknowledged']}</td></tr>"
        f"<tr><td>acknowledged and lost</td><td>{writes['lost_acknowledged']}</td></tr>"
        f"<tr><td>converged</td><td>{converged}</td></tr>"
        f"<tr><td>events / frames / wire bytes</td><td>{report['events']} / {report['frames']} / "
        f"{report['wire_bytes']}</td></tr></table>"
    )


def _merges_table(report: dict[str, Any]) -> str:
    merges = report["merges"]
    if not merges["by_kind"]:
        return "<h2>Merges</h2><p>None: the game service never had to merge.</p>"
    rows = "".join(
        f"<tr><td>{escape(kind)}</td><td>{counts['distinct']}</td><td>{counts['events']}</td></tr>"
        for kind, counts in merges["by_kind"].items()
    )
    head = "<tr><th>kind</th><th>merges</th><th>counted by nodes</th></tr>"
    return f"<h2>Merges</h2><table>{head}{rows}</table>"
