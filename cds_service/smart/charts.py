"""Small, dependency-free SVG line charts for the clinician view.

`line_chart` draws one `Series` as an inline ``<svg>``: a y axis with a few round ticks, the first
and last dates on the x axis, the target band as a light rectangle, a line through the points in
time order (a dashed second line for `Series.second`), and a dot per measurement whose tooltip reads
``2019-10-10: 146 mm[Hg]``. The output is deterministic (no ids, no randomness) and every text is
HTML-escaped; non-finite values are skipped. No points gives "" (the page then says "No data").
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from html import escape

from cds_service.smart.unit_text import unit_text
from cds_service.smart.viewmodel import Measurement, Series

__all__ = ["format_number", "line_chart", "ordered_points"]

_XOf = Callable[[datetime], float]
_YOf = Callable[[float], float]

PAD_LEFT = 46
PAD_RIGHT = 14
PAD_TOP = 12
PAD_TOP_LEGEND = 24
PAD_BOTTOM = 24

PRIMARY = "#1d5fa6"
SECOND = "#b34d00"
BAND = "#e2f1e0"
BAND_EDGE = "#9cc79a"
AXIS = "#6b6b6b"
GRID = "#e4e4e4"
TEXT = "#333333"


def format_number(value: float, decimals: int = 2) -> str:
    """`value` compactly: at most `decimals` decimals, no trailing zeros, no "-0"."""
    if not math.isfinite(value):
        return str(value)
    text = f"{value:.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _c(value: float) -> str:
    """A coordinate, one decimal at most."""
    return format_number(value, 1)


def _ts(when: datetime) -> float:
    """Seconds since the epoch; a naive datetime counts as UTC (never the machine's local time)."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def ordered_points(points: Sequence[Measurement] | None) -> list[Measurement]:
    """The finite points in time order (stable for equal times; naive datetimes count as UTC)."""
    if not points:
        return []
    return sorted((p for p in points if math.isfinite(p.value)), key=lambda p: _ts(p.when))


def _nice_step(span: float, count: int = 4) -> float:
    raw = span / count
    magnitude = 10.0 ** math.floor(math.log10(raw))
    for multiple in (1.0, 2.0, 2.5, 5.0, 10.0):
        if raw <= multiple * magnitude * (1 + 1e-9):
            return multiple * magnitude
    return 10.0 * magnitude  # pragma: no cover - unreachable: raw <= 10 * magnitude


def _y_range(values: Sequence[float]) -> tuple[float, float, list[float]] | None:
    """A padded range with round ends, and its ticks; None when it cannot be drawn."""
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.1 if hi > lo else max(abs(lo) * 0.1, 1.0)
    low, high = lo - pad, hi + pad
    if lo >= 0 > low:
        low = 0.0  # lab values: no negative axis
    span = high - low
    if not math.isfinite(span) or span <= 0:
        return None
    step = _nice_step(span)
    start = math.floor(low / step) * step
    end = math.ceil(high / step) * step
    if not (math.isfinite(start) and math.isfinite(end)) or end <= start:
        return None
    ticks: list[float] = []
    count = round((end - start) / step)
    for i in range(count + 1):
        tick = round(start + i * step, 10)
        ticks.append(0.0 if tick == 0 else tick)
    return start, end, ticks


def _date(when: datetime) -> str:
    return when.date().isoformat()


def _tooltip(point: Measurement, unit: str, label: str | None) -> str:
    text = f"{_date(point.when)}: {format_number(point.value)}"
    point_unit = unit_text(point.unit or unit)
    if point_unit:
        text += f" {point_unit}"
    if label:
        text += f" ({label})"
    return escape(text)


def _describe(series: Series, points: list[Measurement], second: list[Measurement]) -> str:
    unit = f" {unit_text(series.unit)}" if series.unit else ""
    first, last = points[0], points[-1]
    if len(points) == 1:
        text = f"1 measurement on {_date(first.when)}: {format_number(first.value)}{unit}."
    else:
        text = (
            f"{len(points)} measurements from {_date(first.when)} to {_date(last.when)};"
            f" latest {format_number(last.value)}{unit} on {_date(last.when)}."
        )
    if second:
        label = series.second_label or "second line"
        text += (
            f" {label}: {len(second)} measurements, latest {format_number(second[-1].value)}{unit}."
        )
    if series.target is not None:
        lo, hi = sorted(series.target)
        text += f" Target {format_number(lo)} to {format_number(hi)}{unit}."
    return escape(text)


def line_chart(series: Series, *, width: int = 560, height: int = 180) -> str:
    """An inline, accessible SVG line chart of `series`, or "" when it has no (finite) points."""
    points = ordered_points(series.points)
    if not points:
        return ""
    second = ordered_points(series.second)
    target: tuple[float, float] | None = None
    if series.target is not None and all(math.isfinite(v) for v in series.target):
        low_target, high_target = sorted(series.target)
        target = (low_target, high_target)

    top = PAD_TOP_LEGEND if second else PAD_TOP
    plot_w = width - PAD_LEFT - PAD_RIGHT
    plot_h = height - top - PAD_BOTTOM
    if plot_w < 40 or plot_h < 30:
        raise ValueError(f"chart too small: {width}x{height}")

    values = [p.value for p in points] + [p.value for p in second]
    if target is not None:
        values.extend(target)
    y_range = _y_range(values)
    if y_range is None:
        return ""
    y_lo, y_hi, ticks = y_range
    times = [_ts(p.when) for p in points] + [_ts(p.when) for p in second]
    t_lo, t_hi = min(times), max(times)
    left, right, bottom = PAD_LEFT, PAD_LEFT + plot_w, top + plot_h

    def x_of(when: datetime) -> float:
        if t_hi == t_lo:
            return left + plot_w / 2
        return left + (_ts(when) - t_lo) / (t_hi - t_lo) * plot_w

    def y_of(value: float) -> float:
        return bottom - (value - y_lo) / (y_hi - y_lo) * plot_h

    title = series.title + (f" ({unit_text(series.unit)})" if series.unit else "")
    out: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img"'
        f' viewBox="0 0 {width} {height}" width="{width}" height="{height}"'
        f' aria-label="{escape(title)}" font-family="sans-serif" font-size="11">',
        f"<title>{escape(title)}</title>",
        f"<desc>{_describe(series, points, second)}</desc>",
    ]
    if target is not None:
        band_top = y_of(min(target[1], y_hi))
        band_bottom = y_of(max(target[0], y_lo))
        out.append(
            f'<rect class="target" x="{_c(left)}" y="{_c(band_top)}" width="{_c(plot_w)}"'
            f' height="{_c(max(band_bottom - band_top, 0.0))}" fill="{BAND}" stroke="{BAND_EDGE}"'
            f' stroke-width="0.5"><title>{escape(_target_text(target, series.unit))}</title></rect>'
        )
    for tick in ticks:
        y = _c(y_of(tick))
        out.append(
            f'<line class="grid" x1="{_c(left)}" y1="{y}" x2="{_c(right)}" y2="{y}"'
            f' stroke="{GRID}" stroke-width="1"/>'
        )
        out.append(
            f'<text x="{_c(left - 6)}" y="{y}" dy="0.35em" text-anchor="end"'
            f' fill="{TEXT}">{escape(format_number(tick))}</text>'
        )
    out.append(
        f'<path class="axis" d="M{_c(left)} {_c(top)}V{_c(bottom)}H{_c(right)}"'
        f' fill="none" stroke="{AXIS}" stroke-width="1"/>'
    )
    everything = sorted(points + second, key=lambda p: _ts(p.when))
    first_date, last_date = _date(everything[0].when), _date(everything[-1].when)
    label_y = _c(height - 6)
    if first_date == last_date:
        out.append(
            f'<text class="date" x="{_c(left + plot_w / 2)}" y="{label_y}" text-anchor="middle"'
            f' fill="{TEXT}">{escape(first_date)}</text>'
        )
    else:
        out.append(
            f'<text class="date" x="{_c(left)}" y="{label_y}" text-anchor="start"'
            f' fill="{TEXT}">{escape(first_date)}</text>'
        )
        out.append(
            f'<text class="date" x="{_c(right)}" y="{label_y}" text-anchor="end"'
            f' fill="{TEXT}">{escape(last_date)}</text>'
        )
    if second:
        out.extend(_legend(series, right))
        out.extend(_line(second, x_of, y_of, SECOND, series, dashed=True))
    out.extend(_line(points, x_of, y_of, PRIMARY, series, dashed=False))
    out.append("</svg>")
    return "".join(out)


def _target_text(target: tuple[float, float], unit: str) -> str:
    text = f"target {format_number(target[0])} to {format_number(target[1])}"
    return f"{text} {unit_text(unit)}" if unit else text


def _legend(series: Series, right: float) -> list[str]:
    """Solid line = the series, dashed = the second line, in the top padding."""
    label = series.second_label or "second"
    y = _c(PAD_TOP_LEGEND / 2)
    x_second = right - 6.5 * len(label) - 24  # ~6.5 px a character at font-size 11
    x_first = x_second - 6.5 * len(series.title) - 36
    out: list[str] = []
    for x, color, dash, text in (
        (x_first, PRIMARY, "", series.title),
        (x_second, SECOND, ' stroke-dasharray="5 3"', label),
    ):
        x = max(x, PAD_LEFT)
        out.append(
            f'<line class="legend" x1="{_c(x)}" y1="{y}" x2="{_c(x + 18)}" y2="{y}"'
            f' stroke="{color}" stroke-width="2"{dash}/>'
        )
        out.append(
            f'<text x="{_c(x + 22)}" y="{y}" dy="0.35em" fill="{TEXT}">{escape(text)}</text>'
        )
    return out


def _line(
    points: list[Measurement],
    x_of: _XOf,
    y_of: _YOf,
    color: str,
    series: Series,
    *,
    dashed: bool,
) -> list[str]:
    coords = [(x_of(p.when), y_of(p.value)) for p in points]
    out: list[str] = []
    kind = "second" if dashed else "primary"
    if len(coords) > 1:
        dash = ' stroke-dasharray="5 3"' if dashed else ""
        joined = " ".join(f"{_c(x)},{_c(y)}" for x, y in coords)
        out.append(
            f'<polyline class="{kind}" points="{joined}" fill="none" stroke="{color}"'
            f' stroke-width="2" stroke-linejoin="round"{dash}/>'
        )
    label = (series.second_label or "second") if dashed else None
    fill = "#ffffff" if dashed else color
    for point, (x, y) in zip(points, coords, strict=True):
        out.append(
            f'<circle class="dot {kind}" cx="{_c(x)}" cy="{_c(y)}" r="3.5" fill="{fill}"'
            f' stroke="{color}" stroke-width="1.5">'
            f"<title>{_tooltip(point, series.unit, label)}</title></circle>"
        )
    return out
