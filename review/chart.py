"""A server-rendered stacked bar chart of tokens per day (SVG, no JavaScript).

This module only computes geometry; `templates/review/_usage_chart.svg` draws it, so every
label goes through the template's escaping.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from dataclasses import dataclass, field

from django.utils.translation import gettext as _

from .usage import UsageRow

WIDTH, HEIGHT = 760, 260
LEFT, RIGHT, TOP, BOTTOM = 64, 12, 12, 28
MAX_SERIES = 7  # the rest is stacked as "other"
PALETTE = ["#4d6bfe", "#f59e0b", "#10b981", "#ef4444", "#8b5cf6", "#06b6d4", "#ec4899"]
OTHER_COLOUR = "#9ca3af"


@dataclass
class Bar:
    x: float
    y: float
    width: float
    height: float
    colour: str
    title: str


@dataclass
class Tick:
    y: float
    label: str


@dataclass
class DayLabel:
    x: float
    label: str


@dataclass
class Chart:
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    right_edge: int = WIDTH - RIGHT
    baseline: float = HEIGHT - BOTTOM
    label_y: float = HEIGHT - 8
    bars: list[Bar] = field(default_factory=list)
    ticks: list[Tick] = field(default_factory=list)
    days: list[DayLabel] = field(default_factory=list)
    legend: list[tuple[str, str]] = field(default_factory=list)
    empty: bool = True


def _nice_ceiling(value: int) -> int:
    """1, 2 or 5 times a power of ten, at least `value`."""
    if value <= 0:
        return 1
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * power >= value:
            return step * power
    return 10 * power


def _short(number: int) -> str:
    if number >= 1_000_000:
        return f"{number / 1_000_000:g}M"
    if number >= 1_000:
        return f"{number / 1_000:g}k"
    return str(number)


def usage_chart(rows: list[UsageRow], start: dt.date, end: dt.date, by: str = "model") -> Chart:
    """Total tokens per day from `start` to `end`, stacked by model or by user."""
    days = [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
    per_day: dict[dt.date, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    per_series: dict[str, int] = defaultdict(int)
    for row in rows:
        key = (row.username if by == "user" else row.model) or "—"
        per_day[row.day][key] += row.total_tokens
        per_series[key] += row.total_tokens
    ranked = sorted(per_series, key=lambda k: (-per_series[k], k))
    named = ranked[:MAX_SERIES]
    colours = {key: PALETTE[i] for i, key in enumerate(named)}
    other = _("other")
    chart = Chart(legend=[(colours[k], k) for k in named])
    if len(ranked) > MAX_SERIES:
        chart.legend.append((OTHER_COLOUR, other))
    totals = [sum(per_day[d].values()) for d in days]
    top = _nice_ceiling(max(totals, default=0))
    chart.empty = not any(totals)
    plot_height = chart.baseline - TOP
    slot = (chart.right_edge - LEFT) / max(len(days), 1)
    for i in range(5):
        value = top * i // 4
        chart.ticks.append(
            Tick(y=round(chart.baseline - plot_height * i / 4, 1), label=_short(value))
        )
    every = max(1, math.ceil(len(days) / 10))
    for index, day in enumerate(days):
        x = LEFT + slot * index
        if index % every == 0:
            chart.days.append(DayLabel(x=round(x + slot / 2, 1), label=day.strftime("%m-%d")))
        stack: list[tuple[str, str, int]] = [
            (key, colours[key], per_day[day][key]) for key in named if per_day[day].get(key)
        ]
        rest = sum(v for k, v in per_day[day].items() if k not in colours)
        if rest:
            stack.append((other, OTHER_COLOUR, rest))
        y = chart.baseline
        for key, colour, value in stack:
            height = plot_height * value / top
            y -= height
            chart.bars.append(
                Bar(
                    x=round(x + slot * 0.1, 1),
                    y=round(y, 1),
                    width=round(slot * 0.8, 1),
                    height=round(height, 1),
                    colour=colour,
                    title=f"{day.isoformat()} · {key}: {value:,}",
                )
            )
    return chart
