"""What the clinician's risk view shows: plain, immutable data, already gathered and human-readable.

The SMART app's request handler fills an `AppView` from the launch context and the FHIR server's
answers; `cds_service.smart.view.render_app` turns it into HTML. Nothing here talks to a network.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cds_service.scores.ascvd_what_if import Scenario

__all__ = ["AppView", "Banner", "Change", "InputRow", "Measurement", "ScoreView", "Series"]


@dataclass(frozen=True, slots=True)
class Measurement:
    """One dated value, e.g. an HbA1c result; `source` is its reference ("Observation/123")."""

    when: datetime
    value: float
    unit: str
    source: str | None = None


@dataclass(frozen=True, slots=True)
class Series:
    """A trend: measurements of one kind over time, with an optional target / normal band.

    `second` is a companion line drawn dashed on the same axes (diastolic with systolic), named
    `second_label`.
    """

    key: str
    title: str
    unit: str
    points: tuple[Measurement, ...]
    target: tuple[float, float] | None = None
    second: tuple[Measurement, ...] | None = None
    second_label: str | None = None


@dataclass(frozen=True, slots=True)
class InputRow:
    """One input as a clinician reads it."""

    key: str
    label: str
    value: str  # "212 mg/dL", "yes"; "" when not on record
    kind: str | None  # "Lab result", "Problem list", "None on record", …; None: missing
    reference: str | None  # "Observation/123", shown on demand
    when: str | None  # "3 months ago (2026-09-01)"
    stale: str | None  # "3.2 years old (older than 2 years)"
    to_record: str | None  # for a missing input: what to order or record
    unknown: str | None = None  # why the input is unknown: its data failed to load


@dataclass(frozen=True, slots=True)
class Change:
    """A point score with one factor changed (`cds_service.smart.what_changes`)."""

    label: str  # "Antiplatelet or NSAID stopped"
    value: float  # the score then
    category: str  # its category then
    was: str  # the category now

    @property
    def moves(self) -> bool:
        return self.category != self.was


@dataclass(frozen=True, slots=True)
class ScoreView:
    """One risk score as computed (or not computable, `value` None, with `reason`).

    `inputs` maps input key -> value; `sources` maps input key -> ``Type/id date`` (as in
    `cds_service.scores.base.FhirInputs.sources`). `reason` beside a value is a note to show.
    """

    name: str
    title: str
    value: float | None
    unit: str | None
    reason: str | None
    inputs: Mapping[str, Any]
    sources: Mapping[str, str]
    computed_at: str | None
    interpretation: str | None = None
    headline: str | None = None  # "10-year ASCVD risk 15.4 % — intermediate"
    category: str | None = None
    rows: tuple[InputRow, ...] = ()  # the inputs as a clinician reads them (presentation.py)
    what_if: tuple[Scenario, ...] = ()  # ASCVD: what therapy would change (ascvd_what_if.py)
    changes: tuple[Change, ...] = ()  # point scores: what would move the category


@dataclass(frozen=True, slots=True)
class Banner:
    """The patient banner (shown unless the EHR says `need_patient_banner` is false)."""

    name: str
    gender: str | None
    birth_date: str | None
    age: int | None
    identifier: str | None


@dataclass(frozen=True, slots=True)
class AppView:
    """Everything the clinician view renders.

    `banner` is None when the EHR shows its own banner. `context` is what the card's `appContext`
    pointed to, as human text. `missing` lists data that could not be found, `problems` data that
    could not be loaded. `style_url` is SMART's `smart_style_url`; `style_css` what of it was
    fetched and accepted (`cds_service.smart.style`).
    """

    banner: Banner | None
    scores: tuple[ScoreView, ...]
    series: tuple[Series, ...]
    context: str | None
    missing: tuple[str, ...]
    problems: tuple[str, ...]
    style_url: str | None
    logout_url: str
    relaunch_url: str | None
    generated_at: datetime
    focus: str | None = None  # the score the card was about: shown first, the others folded
    style_css: str = ""  # the EHR's style as checked CSS variables (smart/style.py)
    save_action: str | None = None  # where "Save to chart" posts; None: not offered
    csrf: str = ""  # the session's form token
    notice: tuple[bool, str] | None = None  # (saved?, what happened) after a save
    encounter: str | None = None  # the launch's encounter in one line (or why it is unknown)
    suggestions: tuple[str, ...] = ()  # what the card suggests, as the EHR offers it
    not_applicable: tuple[tuple[str, str], ...] = ()  # (score title, why), left out of the view
