"""The SVG line charts: structure, geometry, ordering, edge cases, escaping, determinism."""

from __future__ import annotations

import math
import re
from dataclasses import replace
from datetime import datetime

import pytest

from cds_service.smart.charts import format_number, line_chart
from cds_service.smart.viewmodel import Measurement, Series
from tests.smart_view.helpers import bp_series, check_html, hba1c_series, m

NUMBER = r"-?\d+(?:\.\d+)?"


def polyline_points(svg: str, kind: str) -> list[tuple[float, float]]:
    found = re.search(rf'<polyline class="{kind}" points="([^"]+)"', svg)
    assert found, f"no {kind} polyline"
    pairs = [pair.split(",") for pair in found.group(1).split()]
    return [(float(x), float(y)) for x, y in pairs]


def test_structure_and_accessibility() -> None:
    svg = line_chart(hba1c_series())
    checker = check_html(svg)
    (root,) = checker.tags("svg")
    assert root["role"] == "img"
    assert root["viewbox"] == "0 0 560 180"
    assert root["aria-label"] == "HbA1c (%)"
    assert svg.startswith("<svg ") and svg.endswith("</svg>")
    assert "<title>HbA1c (%)</title>" in svg
    assert "<desc>4 measurements from 2020-01-15 to 2023-01-15; latest 6.8 % on 2023-01-15." in svg
    assert len(checker.tags("circle")) == 4
    assert len(polyline_points(svg, "primary")) == 4
    assert "<title>2020-01-15: 7.9 %</title>" in svg
    # first and last date labels, a few y ticks
    assert '<text class="date"' in svg
    assert ">2020-01-15</text>" in svg and ">2023-01-15</text>" in svg
    assert 3 <= len(checker.tags("line")) <= 8
    assert "dasharray" not in svg
    assert "id=" not in svg


def test_coordinates_within_viewbox() -> None:
    for width, height in ((560, 180), (320, 120)):
        svg = line_chart(bp_series(), width=width, height=height)
        xs = [float(v) for v in re.findall(rf' (?:x|x1|x2|cx)="({NUMBER})"', svg)]
        ys = [float(v) for v in re.findall(rf' (?:y|y1|y2|cy)="({NUMBER})"', svg)]
        for kind in ("primary", "second"):
            for x, y in polyline_points(svg, kind):
                xs.append(x)
                ys.append(y)
        assert xs and ys
        assert all(0 <= x <= width for x in xs)
        assert all(0 <= y <= height for y in ys)


def test_points_ordered_by_time() -> None:
    series = bp_series()  # given out of order
    svg = line_chart(series)
    coords = polyline_points(svg, "primary")
    xs = [x for x, _ in coords]
    assert xs == sorted(xs)
    # the y of each point follows its value in time order: 146 (2019), 138 (2021), 128 (2023)
    ys = [y for _, y in coords]
    assert ys[0] < ys[1] < ys[2]  # higher values are higher up (smaller y)
    tooltips = re.findall(r'<circle class="dot primary"[^>]*><title>([^<]+)</title>', svg)
    assert tooltips == [
        "2019-10-10: 146 mmHg",
        "2021-03-01: 138 mmHg",
        "2023-04-01: 128 mmHg",
    ]


def test_second_line_dashed_with_legend() -> None:
    svg = line_chart(bp_series())
    second = polyline_points(svg, "second")
    assert len(second) == 3
    assert [x for x, _ in second] == sorted(x for x, _ in second)
    assert re.search(r'<polyline class="second"[^>]*stroke-dasharray', svg)
    assert not re.search(r'<polyline class="primary"[^>]*stroke-dasharray', svg)
    assert ">Diastolic</text>" in svg and ">Systolic</text>" in svg
    assert "<title>2019-10-10: 92 mmHg (Diastolic)</title>" in svg
    # diastolic lies below systolic on the same axes
    primary = polyline_points(svg, "primary")
    assert all(s[1] > p[1] for s, p in zip(second, primary, strict=True))


def test_target_band_inside_the_plot() -> None:
    svg = line_chart(bp_series())
    band = re.search(
        rf'<rect class="target" x="({NUMBER})" y="({NUMBER})" width="({NUMBER})"'
        rf' height="({NUMBER})"',
        svg,
    )
    assert band
    x, y, w, h = (float(v) for v in band.groups())
    assert w > 0 and h > 0 and x + w <= 560 and y + h <= 180
    assert "<title>target 90 to 130 mmHg</title>" in svg
    assert "Target 90 to 130 mmHg." in svg
    # a reversed band is drawn the same way
    assert line_chart(replace(bp_series(), target=(130, 90))) == svg
    assert '<rect class="target"' not in line_chart(replace(bp_series(), target=None))


def test_single_point_draws_a_dot() -> None:
    svg = line_chart(Series("egfr", "eGFR", "mL/min", (m("2024-02-02", 61, "mL/min"),)))
    check_html(svg)
    assert "<polyline" not in svg
    (dot,) = re.findall(rf'<circle class="dot primary" cx="({NUMBER})" cy="({NUMBER})"', svg)
    cx, cy = float(dot[0]), float(dot[1])
    assert 0 < cx < 560 and 0 < cy < 180
    assert "<title>2024-02-02: 61 mL/min</title>" in svg
    assert svg.count(">2024-02-02</text>") == 1  # one date label, not first and last
    assert "1 measurement on 2024-02-02: 61 mL/min." in svg


def test_y_range_is_padded_with_round_ticks() -> None:
    svg = line_chart(
        Series("k", "Potassium", "mmol/L", (m("2024-01-01", 4.0), m("2024-02-01", 4.0)))
    )
    ticks = [
        float(v)
        for v in re.findall(r'dy="0.35em" text-anchor="end" fill="#333333">([^<]+)</text>', svg)
    ]
    assert len(ticks) >= 3
    assert min(ticks) < 4.0 < max(ticks)
    assert all(math.isclose(t * 10, round(t * 10)) for t in ticks)
    # lab values never get a negative axis
    low = line_chart(Series("c", "CRP", "mg/L", (m("2024-01-01", 0.5), m("2024-02-01", 9))))
    assert not re.search(r">-\d", low)


def test_no_points_returns_empty() -> None:
    assert line_chart(Series("x", "X", "u", ())) == ""
    assert line_chart(Series("x", "X", "u", (m("2024-01-01", math.nan),))) == ""


def test_non_finite_values_are_skipped() -> None:
    series = Series(
        "x", "X", "u", (m("2024-01-01", 1), m("2024-01-02", math.inf), m("2024-01-03", 2))
    )
    svg = line_chart(series)
    assert len(polyline_points(svg, "primary")) == 2
    assert "inf" not in svg and "nan" not in svg


def test_naive_and_aware_datetimes_mix() -> None:
    naive = Measurement(datetime(2024, 1, 1, 12), 5.0, "u")
    aware = m("2024-06-01", 6.0, "u")
    svg = line_chart(Series("x", "X", "u", (aware, naive)))
    assert len(polyline_points(svg, "primary")) == 2


def test_text_is_escaped() -> None:
    series = Series(
        "x<y",
        '<b>"Title"</b> & co',
        "<u>",
        (m("2024-01-01", 1, "<u>"), m("2024-01-02", 2, "<u>")),
        second=(m("2024-01-01", 0.5, "<u>"),),
        second_label="<i>two</i>",
    )
    svg = line_chart(series)
    check_html(svg)
    assert "<b>" not in svg and "<u>" not in svg and "<i>" not in svg
    assert "&lt;b&gt;&quot;Title&quot;&lt;/b&gt; &amp; co" in svg
    assert "&lt;i&gt;two&lt;/i&gt;" in svg


def test_deterministic() -> None:
    assert line_chart(bp_series()) == line_chart(bp_series())
    assert line_chart(hba1c_series(), width=400) == line_chart(hba1c_series(), width=400)


def test_numbers_are_compact() -> None:
    svg = line_chart(hba1c_series())
    coordinates = re.findall(r' (?:x|y|x1|y1|x2|y2|cx|cy|width|height|points)="([^"]+)"', svg)
    assert len(coordinates) > 20
    for value in coordinates:
        for number in re.split(r"[ ,]", value):
            assert re.fullmatch(r"-?\d+(\.\d)?", number), value
            assert not number.endswith(".0"), value
    assert format_number(146.0) == "146"
    assert format_number(7.25) == "7.25"
    assert format_number(0.125, 1) == "0.1"
    assert format_number(-0.0001) == "0"
    assert format_number(12.30) == "12.3"


def test_too_small_a_chart_is_refused() -> None:
    with pytest.raises(ValueError, match="too small"):
        line_chart(hba1c_series(), width=60, height=40)
