"""Time-series panels as one SVG file: no plotting library, readable in any browser."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

WIDTH, PANEL_H, LEFT, RIGHT, TOP, GAP = 900, 170, 70, 170, 28, 46
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf", "#7f7f7f")
Point = tuple[float, float]


@dataclass
class Panel:
    """One chart: named series of (minutes, value) points sharing a unit."""

    title: str
    unit: str
    series: dict[str, list[Point]] = field(default_factory=dict)


def _ticks(top: float) -> list[float]:
    """Round tick values from 0 to at least top."""
    if top <= 0 or math.isnan(top):
        return [0.0, 1.0]
    step = 10 ** math.floor(math.log10(top))
    for factor in (1, 2, 5, 10):
        if top / (step * factor) <= 5:
            step *= factor
            break
    return [i * step for i in range(math.ceil(top / step) + 1)]


def svg(panels: Sequence[Panel], spans: Sequence[tuple[float, float, str]] = ()) -> str:
    """The panels stacked, one x axis in minutes; spans (start, end, label) shaded on each."""
    xs = [x for p in panels for s in p.series.values() for x, _ in s]
    x_max = max(xs, default=1.0) or 1.0
    plot_w = WIDTH - LEFT - RIGHT
    height = TOP + len(panels) * (PANEL_H + GAP)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}"'
        f' font-family="sans-serif" font-size="11">',
        f'<rect width="{WIDTH}" height="{height}" fill="white"/>',
    ]
    for i, panel in enumerate(panels):
        y0 = TOP + i * (PANEL_H + GAP)
        values = [y for s in panel.series.values() for _, y in s if not math.isnan(y)]
        ticks = _ticks(max(values, default=1.0))
        y_top = ticks[-1] or 1.0

        def px(x: float) -> float:
            return LEFT + plot_w * x / x_max

        def py(y: float, y0: float = y0, y_top: float = y_top) -> float:
            return y0 + PANEL_H - PANEL_H * y / y_top

        out.append(
            f'<text x="{LEFT}" y="{y0 - 8}" font-size="13" font-weight="bold">'
            f"{escape(panel.title)} ({escape(panel.unit)})</text>"
        )
        for start, end, label in spans:
            out.append(
                f'<rect x="{px(start):.1f}" y="{y0}" width="{max(px(end) - px(start), 1):.1f}"'
                f' height="{PANEL_H}" fill="#f3e3c3"><title>{escape(label)}</title></rect>'
            )
        for tick in ticks:
            out.append(
                f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{py(tick):.1f}" y2="{py(tick):.1f}"'
                f' stroke="#ddd"/><text x="{LEFT - 6}" y="{py(tick) + 4:.1f}"'
                f' text-anchor="end">{tick:g}</text>'
            )
        for minute in _ticks(x_max):
            if minute <= x_max:
                out.append(
                    f'<text x="{px(minute):.1f}" y="{y0 + PANEL_H + 14}"'
                    f' text-anchor="middle">{minute:g} min</text>'
                )
        for k, (name, points) in enumerate(sorted(panel.series.items())):
            colour = COLOURS[k % len(COLOURS)]
            path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in points if not math.isnan(y))
            out.append(f'<polyline points="{path}" fill="none" stroke="{colour}"/>')
            out.append(
                f'<text x="{LEFT + plot_w + 10}" y="{y0 + 12 + 14 * k}"'
                f' fill="{colour}">{escape(name)}</text>'
            )
    out.append("</svg>")
    return "\n".join(out) + "\n"
