"""Builders for view models, and an HTML checker for the SMART view tests."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any

from cds_service.smart.presentation import input_rows
from cds_service.smart.viewmodel import AppView, Banner, Measurement, ScoreView, Series

GENERATED = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)

# Elements with no end tag in HTML5.
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}


def m(day: str, value: float, unit: str = "mm[Hg]", source: str | None = None) -> Measurement:
    """A measurement on `day` (ISO date), at noon UTC."""
    when = datetime.fromisoformat(day).replace(hour=12, tzinfo=UTC)
    return Measurement(when, value, unit, source)


def bp_series() -> Series:
    return Series(
        key="bp",
        title="Systolic",
        unit="mm[Hg]",
        points=(
            m("2021-03-01", 138, source="Observation/bp-2"),
            m("2019-10-10", 146, source="Observation/bp-1"),
            m("2023-04-01", 128, source="Observation/bp-3"),
        ),
        target=(90, 130),
        second=(m("2019-10-10", 92), m("2023-04-01", 81), m("2021-03-01", 88)),
        second_label="Diastolic",
    )


def hba1c_series() -> Series:
    return Series(
        key="hba1c",
        title="HbA1c",
        unit="%",
        points=(
            m("2020-01-15", 7.9, "%"),
            m("2021-01-15", 7.4, "%"),
            m("2022-01-15", 7.1, "%"),
            m("2023-01-15", 6.8, "%"),
        ),
        target=(4.0, 5.7),
    )


def with_rows(score: ScoreView, quantities: dict[str, str | None] | None = None) -> ScoreView:
    """`score` with its input rows, as `build_view` words them (at GENERATED)."""
    quantities = quantities or {
        "age": "age",
        "total_cholesterol": "cholesterol",
        "hdl": "cholesterol",
    }
    rows = input_rows(score.name, score.inputs, score.sources, quantities, {}, GENERATED)
    return replace(score, rows=rows)


def ascvd_score(**changes: Any) -> ScoreView:
    score = ScoreView(
        name="ascvd",
        title="ASCVD 10-year risk",
        value=12.4,
        unit="%",
        reason=None,
        inputs={
            "age": 55,
            "sex": "female",
            "total_cholesterol": 213.0,
            "hdl": 50.5,
            "smoker": False,
            "race": None,
        },
        sources={
            "age": "Patient/p1 1971-03-02",
            "total_cholesterol": "Observation/chol-7 2024-05-01",
            "hdl": "Observation/hdl-3 2019-05-01",
        },
        computed_at="2026-11-28T12:00:00+00:00",
        interpretation="Intermediate risk (7.5% to < 20%)",
    )
    return with_rows(replace(score, **changes))


def full_view(**changes: Any) -> AppView:
    view = AppView(
        banner=Banner(
            name="Jane Q. Doe",
            gender="female",
            birth_date="1971-03-02",
            age=55,
            identifier="MRN 12345",
        ),
        scores=(ascvd_score(),),
        series=(bp_series(), hba1c_series(), Series("ldl", "LDL cholesterol", "mg/dL", ())),
        context="Statin therapy recommended (ASCVD >= 7.5%)",
        missing=("no LDL cholesterol in the last 5 years",),
        problems=(),
        style_url=None,
        logout_url="/smart/logout",
        relaunch_url="/smart/launch?iss=https%3A%2F%2Fehr.example%2Ffhir",
        generated_at=GENERATED,
    )
    return replace(view, **changes)


class TagChecker(HTMLParser):
    """Records start/end tags and fails on any end tag that does not close the innermost element."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.starts: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.starts.append((tag, dict(attrs)))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.starts.append((tag, dict(attrs)))  # <line .../> in SVG: opens and closes

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> while open: {self.stack}")
            return
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        if not self.stack or self.stack[-1] not in ("style", "title", "desc"):
            self.text.append(data)

    def tags(self, name: str) -> list[dict[str, str | None]]:
        return [attrs for tag, attrs in self.starts if tag == name]


def check_html(document: str) -> TagChecker:
    """Parse `document`, asserting that every element is closed in order."""
    checker = TagChecker()
    checker.feed(document)
    checker.close()
    assert checker.errors == []
    assert checker.stack == []
    return checker
