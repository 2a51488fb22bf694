"""Charts drawn on the server as SVG: a stacked bar per time bucket, one colour a key.

No script and no style attribute (the console's CSP allows neither inline): presentation
attributes only. Every bar segment carries its numbers (data-key, data-bucket,
data-value) and a <title> a browser shows as its tooltip."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from html import escape

from markupsafe import Markup

from console.formatting import count, usd

# Colour-blind-friendly (Okabe-Ito, then Tableau), repeated when there are more keys.
PALETTE = (
    "#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442", "#000000",
    "#9c755f", "#bab0ac", "#76b7b2", "#b07aa1",
)  # fmt: skip
WIDTH, HEIGHT = 800, 280
LEFT, RIGHT, TOP, BOTTOM = 72, 28, 14, 44  # room for the axes' labels
TICKS = 4  # horizontal grid lines above zero
X_LABELS = 6  # at most this many times under the x axis
# Round times to label the x axis at, in seconds: from 5 minutes to 4 weeks.
LABEL_EVERY = (300, 600, 900, 1800, 3600, 7200, 10800, 14400, 21600, 43200, 86400, 172800,
               345600, 604800, 1209600, 2419200)  # fmt: skip


@dataclass(frozen=True)
class Chart:
    """One metric over time: `values[(key, bucket start)]`, for `keys` in stacking
    order (the first at the bottom, and first in the legend) and every bucket of the
    range, those without calls too."""

    title: str  # also the y axis's: "Requests", "Tokens", "Cost (USD)"
    keys: Sequence[str]
    buckets: Sequence[datetime]
    bucket_seconds: int
    values: Mapping[tuple[str, datetime], float]
    money: bool = False  # dollars, else a count
    names: Mapping[str, str] = field(default_factory=dict)  # a key's name, if not itself

    def name(self, key: str) -> str:
        return self.names.get(key, key)

    def exact(self, value: float) -> str:
        return usd(value) if self.money else count(value)

    def tick(self, value: float, step: float) -> str:
        """Short, for the y axis (ticks `step` apart): 40, 12k, 3.5M, $0.005, $1.50."""
        if self.money:
            decimals = 0 if step >= 1 else max(2, math.ceil(-math.log10(step) - 1e-9))
            return f"${value:,.{decimals}f}"
        for suffix, size in (("M", 1e6), ("k", 1e3)):
            if value >= size:
                return f"{value / size:.3g}{suffix}"
        return f"{value:g}"


def colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def figure(chart: Chart) -> Markup:
    """The chart as a <figure>: its title, the SVG and the legend."""
    legend = "".join(
        f'<li><svg width="12" height="12" aria-hidden="true"><rect width="12" height="12" '
        f'fill="{colour(i)}"/></svg> {escape(chart.name(key))}</li>'
        for i, key in enumerate(chart.keys)
    )
    return Markup(
        f'<figure class="chart">'
        f"<figcaption>{escape(chart.title)}</figcaption>{svg(chart)}"
        f'<ul class="legend">{legend}</ul></figure>'
    )


def svg(chart: Chart) -> str:
    top = nice_top(max(stack_heights(chart), default=0.0), whole=not chart.money)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(chart.title)}" font-family="system-ui, sans-serif" font-size="13">',
        *y_axis(chart, top),
        *x_axis(chart),
        *bars(chart, top),
        "</svg>",
    ]
    return "".join(parts)


def stack_heights(chart: Chart) -> list[float]:
    return [sum(chart.values.get((k, b), 0.0) for k in chart.keys) for b in chart.buckets]


def nice_top(highest: float, whole: bool = True) -> float:
    """The y axis's top: the highest stack rounded up to TICKS steps of 1, 2, 2.5 or 5
    times a power of ten; whole steps for `whole` numbers (no tick at half a request)."""
    if highest <= 0:
        return float(TICKS) if whole else 0.01 * TICKS
    raw = highest / TICKS
    power = 10.0 ** math.floor(math.log10(raw))
    steps = [m * power for m in (1, 2, 2.5, 5, 10)]
    if whole:
        steps = [max(step, 1.0) for step in steps if max(step, 1.0).is_integer()]
    return next(step for step in steps if step >= raw * (1 - 1e-9)) * TICKS


def plot_width() -> float:
    return WIDTH - LEFT - RIGHT


def plot_height() -> float:
    return HEIGHT - TOP - BOTTOM


def y_of(value: float, top: float) -> float:
    return TOP + plot_height() * (1 - value / top)


def y_axis(chart: Chart, top: float) -> list[str]:
    lines = []
    step = top / TICKS
    for i in range(TICKS + 1):
        value = step * i
        y = y_of(value, top)
        lines.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="#d9dee6" stroke-width="1"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#5b6575">'
            f"{escape(chart.tick(value, step))}</text>"
        )
    middle = TOP + plot_height() / 2
    lines.append(
        f'<text x="14" y="{middle:.1f}" text-anchor="middle" fill="#5b6575" '
        f'transform="rotate(-90 14 {middle:.1f})">{escape(chart.title)}</text>'
    )
    return lines


def x_axis(chart: Chart) -> list[str]:
    n = len(chart.buckets)
    span = timedelta(seconds=chart.bucket_seconds * n)
    baseline = HEIGHT - BOTTOM
    labels = []
    for i in labelled(chart.buckets, chart.bucket_seconds):
        x = LEFT + plot_width() * i / n  # where the bucket starts
        labels.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{baseline}" y2="{baseline + 4}" '
            f'stroke="#5b6575" stroke-width="1"/>'
            f'<text x="{x:.1f}" y="{baseline + 17}" text-anchor="middle" '
            f'fill="#5b6575">{time_label(chart.buckets[i], span)}</text>'
        )
    labels.append(
        f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{baseline}" y2="{baseline}" '
        f'stroke="#5b6575" stroke-width="1"/>'
        f'<text x="{LEFT + plot_width() / 2:.1f}" y="{HEIGHT - 6}" text-anchor="middle" '
        f'fill="#5b6575">time (UTC), {bucket_text(chart.bucket_seconds)} buckets</text>'
    )
    return labels


def labelled(buckets: Sequence[datetime], bucket_seconds: int) -> range | list[int]:
    """The buckets to label: those starting at a round time (every 4 hours, every day...),
    at most X_LABELS; else evenly spaced ones."""
    n = len(buckets)
    for every in LABEL_EVERY:
        if every % bucket_seconds or n * bucket_seconds > every * X_LABELS:
            continue
        return [i for i, b in enumerate(buckets) if int(b.timestamp()) % every == 0]
    return range(0, n, max(1, math.ceil(n / X_LABELS)))


def time_label(moment: datetime, span: timedelta) -> str:
    """Short enough for the axis: the time of day in a day's range, the date in a long one."""
    if span <= timedelta(days=1):
        return moment.strftime("%H:%M")
    if span <= timedelta(days=3):
        return moment.strftime("%m-%d %H:%M")
    return moment.strftime("%m-%d")


def bucket_text(seconds: int) -> str:
    """ "10-minute", "1-hour", "1-day"."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            return f"{seconds // size}-{unit}"
    return f"{seconds}-second"


def bars(chart: Chart, top: float) -> list[str]:
    n = len(chart.buckets)
    slot = plot_width() / max(n, 1)
    width = max(slot * 0.8, 1.0)
    segments = []
    for i, bucket in enumerate(chart.buckets):
        x = LEFT + slot * i + (slot - width) / 2
        below = 0.0
        for k, key in enumerate(chart.keys):
            value = chart.values.get((key, bucket))
            if value is None:  # no calls of this key in this bucket: no point
                continue
            y_top, y_bottom = y_of(below + value, top), y_of(below, top)
            below += value
            tooltip = (
                f"{chart.name(key)} · {bucket.strftime('%Y-%m-%d %H:%M')} UTC · "
                f"{chart.title}: {chart.exact(value)}"
            )
            segments.append(
                f'<rect x="{x:.2f}" y="{y_top:.2f}" width="{width:.2f}" '
                f'height="{y_bottom - y_top:.2f}" fill="{colour(k)}" '
                f'data-key="{escape(key)}" data-bucket="{iso(bucket)}" data-value="{value}">'
                f"<title>{escape(tooltip)}</title></rect>"
            )
    return segments
