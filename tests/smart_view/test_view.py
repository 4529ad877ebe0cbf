"""The clinician view, the error page and the EHR chooser as HTML."""

from __future__ import annotations

import re
from datetime import datetime

from cds_service.smart.view import render_app, render_chooser, render_error
from cds_service.smart.viewmodel import Banner, ScoreView, Series
from tests.smart_view.helpers import ascvd_score, check_html, full_view, m, with_rows

EXTERNAL = re.compile(r"""(?:src|href|action)\s*=\s*["']?(?:https?:)?//""", re.IGNORECASE)


def text_of(document: str) -> str:
    """The visible text, whitespace collapsed."""
    return " ".join("".join(check_html(document).text).split())


def table_rows(document: str) -> list[str]:
    """Each <tr> of the inputs table as text, cells separated by " | "."""
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", document, re.DOTALL)
    return [" | ".join(re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row)) for row in rows]


def assert_self_contained(document: str) -> None:
    """No scripts, handlers or external resources: renders offline under the strict CSP."""
    assert "<script" not in document.lower()
    assert not re.search(r"\son[a-z]+\s*=", document, re.IGNORECASE)
    assert "javascript:" not in document.lower()
    assert "<link" not in document and "<img" not in document and "@import" not in document
    assert "url(" not in document
    assert not EXTERNAL.search(document)


def test_full_view() -> None:
    document = render_app(full_view())
    checker = check_html(document)
    assert document.startswith('<!DOCTYPE html>\n<html lang="en">')
    assert '<meta charset="utf-8">' in document
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in document
    assert "<title>Risk assessment</title>" in document
    assert len(checker.tags("style")) == 1
    assert "@media print" in document
    text = text_of(document)
    # banner
    assert "Jane Q. Doe" in text
    assert "female" in text
    assert "55 years (born 1971-03-02)" in text
    assert "ID MRN 12345" in text
    # context
    assert "Opened from: Statin therapy recommended (ASCVD >= 7.5%)" in text
    # the score: value and unit, interpretation, input rows with sources, computed time
    assert '<span class="num">12.4</span> <span class="unit">%</span>' in document
    assert "Intermediate risk (7.5% to &lt; 20%)" in document
    # inputs as a clinician reads them: label, value with unit, kind of source (the resource
    # id folded under it), how long ago; stale and missing inputs flagged
    rows = table_rows(document)
    assert rows[0] == "Input | Value | Source | When"
    lab = '<details class="ref"><summary>Lab result</summary><code>Observation/{}</code></details>'
    assert (
        f"Total cholesterol | 213 mg/dL | {lab.format('chol-7')} | 2.6 years ago (2024-05-01)"
        in rows
    )
    assert (
        f"HDL cholesterol | 50.5 mg/dL | {lab.format('hdl-3')} | 7.6 years ago (2019-05-01) "
        '<span class="stale">Stale: 7.6 years old (older than 5 years)</span>'
    ) in rows
    demographics = '<details class="ref"><summary>Demographics</summary><code>Patient/p1</code>'
    assert f"Age | 55 years | {demographics}</details> | " in rows
    assert 'Current smoker | no | <span class="absent">None on record</span> | ' in rows
    assert 'Race (for the equations) | <span class="absent">not recorded</span> |  | ' in rows
    assert document.count('class="is-stale"') == 1
    assert "Computed 2026-11-28 12:00 UTC" in text
    # charts: one per series with points, the right number of points, the target band
    svgs = re.findall(r"<svg .*?</svg>", document, re.DOTALL)
    assert len(svgs) == 2
    bp, hba1c = svgs
    assert bp.count('<circle class="dot primary"') == 3
    assert bp.count('<circle class="dot second"') == 3
    assert hba1c.count('<circle class="dot primary"') == 4
    assert re.search(
        r'<polyline class="primary" points="(?:[\d.]+,[\d.]+ ){3}[\d.]+,[\d.]+"', hba1c
    )
    assert '<rect class="target"' in bp and '<rect class="target"' in hba1c
    assert "Latest: 128 mmHg on 2023-04-01 (Observation/bp-3)" in text
    assert "Latest: 6.8 % on 2023-01-15" in text
    # the series without points
    ldl = re.search(r'<section class="series" data-series="ldl">.*?</section>', document, re.DOTALL)
    assert ldl and "No data" in ldl.group(0) and "<svg" not in ldl.group(0)
    # missing data, no problems section
    assert "Missing data" in text and "no LDL cholesterol in the last 5 years" in text
    assert 'class="problems"' not in document
    # footer: the logout form (POST, no JS), relaunch, generation time
    (form,) = checker.tags("form")
    assert form == {"method": "post", "action": "/smart/logout"}
    assert '<button type="submit">Log out</button>' in document
    assert 'href="/smart/launch?iss=https%3A%2F%2Fehr.example%2Ffhir">Relaunch</a>' in document
    assert "Generated 2026-11-28 12:00 UTC" in text
    assert_self_contained(document)


def test_order_of_sections() -> None:
    document = render_app(full_view(problems=("Observations could not be loaded (timeout)",)))
    order = [
        document.index('class="banner"'),
        document.index("Opened from:"),
        document.index('class="problems"'),
        document.index('class="score"'),
        document.index('class="series"'),
        document.index('class="missing"'),
        document.index("<footer>"),
    ]
    assert order == sorted(order)


def test_problems_shown_prominently() -> None:
    document = render_app(
        full_view(problems=("Observations could not be loaded (FHIR server error)",))
    )
    check_html(document)
    section = re.search(
        r'<section class="problems" role="alert">.*?</section>', document, re.DOTALL
    )
    assert section
    assert "<h2>Problems</h2>" in section.group(0)
    assert "<li>Observations could not be loaded (FHIR server error)</li>" in section.group(0)


def test_banner_hidden() -> None:
    document = render_app(full_view(banner=None))
    check_html(document)
    assert 'class="banner"' not in document
    assert "Jane Q. Doe" not in document
    assert "12.4" in document


def test_banner_with_partial_data() -> None:
    banner = Banner(name="A B", gender=None, birth_date=None, age=None, identifier=None)
    header = re.search(r'<header class="banner".*?</header>', render_app(full_view(banner=banner)))
    assert header
    text = text_of(header.group(0))
    assert text == "A B"
    only_birth = Banner(name="A B", gender=None, birth_date="1980-01-01", age=None, identifier=None)
    assert "A B born 1980-01-01" in text_of(render_app(full_view(banner=only_birth)))


def test_score_not_computable_shows_the_reason() -> None:
    score = with_rows(
        ScoreView(
            name="egfr",
            title="eGFR (CKD-EPI 2021)",
            value=None,
            unit="mL/min/1.73m2",
            reason="no serum creatinine in the last 12 months",
            inputs={"age": 55, "creatinine": None},
            sources={"age": "Patient/p1 1971-03-02"},
            computed_at=None,
        ),
        {"age": "age", "creatinine": "creatinine"},
    )
    document = render_app(full_view(scores=(score,)))
    check_html(document)
    assert (
        '<p class="not-computable">Not computable: no serum creatinine in the last 12 months</p>'
        in document
    )
    assert '<span class="num">' not in document
    assert (
        'Serum creatinine | <span class="absent">not recorded</span>: order a serum creatinine'
        " |  | " in table_rows(document)
    )
    assert "Computed" not in document


def test_value_with_a_note() -> None:
    note = "race not recorded: computed with the white/other equations"
    document = render_app(full_view(scores=(ascvd_score(reason=note),)))
    assert f'<p class="note">Note: {note}</p>' in document
    assert "Not computable" not in document


def test_no_scores_and_no_series_is_not_blank() -> None:
    document = render_app(full_view(scores=(), series=(), missing=(), context=None))
    text = text_of(document)
    assert "No risk scores to show for this patient." in text
    assert "Opened from" not in text
    assert "Log out" in text


def test_series_without_points_says_no_data() -> None:
    series = Series("ldl", "LDL cholesterol", "mg/dL", ())
    document = render_app(full_view(series=(series,)))
    check_html(document)
    assert "<svg" not in document
    assert '<p class="nodata">No data</p>' in document
    assert "LDL cholesterol" in document


def test_escaping() -> None:
    evil = "<script>alert(1)</script>"
    reason = 'weird "&<> reason'
    view = full_view(
        banner=Banner(name=evil, gender="<b>", birth_date='"1970"', age=1, identifier="<id>"),
        scores=(
            ascvd_score(
                name='a"b',
                title="<h1>t</h1>",
                value=None,
                reason=reason,
                inputs={"<k>": "<v>", "x": {"a": "<c>"}},
                sources={"<k>": '<Observation/1> "2020"'},
                interpretation="<em>i</em>",
            ),
        ),
        series=(Series('s"', "<svg>", "<u>", (m("2024-01-01", 1, "<u>", '<src">'),)),),
        context="<iframe src=x>",
        missing=("<li>missing</li>",),
        problems=("<marquee>",),
        style_url='https://ehr.example/style"><script>',
        relaunch_url='/smart/launch?a=1&b="2"',
    )
    document = render_app(view)
    checker = check_html(document)
    for raw in (
        "<script",
        "<b>",
        "<h1>t",
        "<k>",
        "<v>",
        "<c>",
        "<em>",
        "<iframe",
        "<marquee",
        "<u>",
    ):
        assert raw not in document
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in document
    assert "Not computable: weird &quot;&amp;&lt;&gt; reason" in document
    assert "Opened from: <strong>&lt;iframe src=x&gt;</strong>" in document
    assert 'href="/smart/launch?a=1&amp;b=&quot;2&quot;"' in document
    assert 'data-smart-style-url="https://ehr.example/style&quot;&gt;&lt;script&gt;"' in document
    # parsed back, the text is what was given
    text = "".join(checker.text)
    assert evil in text and reason in text and "<iframe src=x>" in text
    assert len(checker.tags("svg")) == 1
    assert_self_contained(document.replace("https://ehr.example/style", "x"))


def test_unsafe_urls_are_neutralised() -> None:
    document = render_app(
        full_view(logout_url="javascript:alert(1)", relaunch_url=" JavaScript:alert(2)")
    )
    assert "alert(" not in document
    assert '<form method="post" action="#">' in document
    assert 'href="#">Relaunch</a>' in document


def test_deterministic_and_naive_times() -> None:
    view = full_view(generated_at=datetime(2026, 1, 2, 3, 4))
    assert render_app(view) == render_app(view)
    assert "Generated 2026-01-02 03:04" in text_of(render_app(view))
    assert "UTC" not in text_of(render_app(view)).split("Generated")[1]


def test_error_page_with_relaunch() -> None:
    document = render_error(
        title="Session expired",
        message="Your session has ended after 15 minutes without activity.",
        relaunch_url="/smart/launch?iss=https%3A%2F%2Fehr.example%2Ffhir",
        status=401,
    )
    checker = check_html(document)
    text = text_of(document)
    assert "<title>Session expired - Risk assessment</title>" in document
    assert "<h1>Session expired</h1>" in document
    assert "Your session has ended after 15 minutes without activity." in text
    (link,) = [a for a in checker.tags("a") if a.get("class") == "button"]
    assert link["href"] == "/smart/launch?iss=https%3A%2F%2Fehr.example%2Ffhir"
    assert "Relaunch" in text
    assert "Error code 401" in text
    assert_self_contained(document)


def test_error_page_without_relaunch_says_how_to_get_back() -> None:
    document = render_error(
        title="Unknown EHR <x>",
        message='The server "https://evil.example/fhir" is not registered & <b>',
        relaunch_url=None,
        status=400,
    )
    check_html(document)
    text = text_of(document)
    assert "<a " not in document
    assert "open the app again from the patient's chart in your EHR" in text
    assert "&lt;b&gt;" in document and "<b>" not in document
    assert "Unknown EHR &lt;x&gt;" in document


def test_error_page_never_shows_a_stack_trace() -> None:
    message = 'Traceback (most recent call last):\n  File "x.py", line 1\nKeyError: token'
    document = render_error(title="Error", message=message, relaunch_url=None, status=500)
    assert "Traceback" not in document and "x.py" not in document and "token" not in document
    assert "An unexpected error occurred." in document
    long = render_error(title="Error", message="x" * 5000, relaunch_url=None, status=502)
    assert "x" * 1000 not in long and "…" in long


def test_chooser() -> None:
    options = [
        ("Epic sandbox", "/smart/launch?iss=https%3A%2F%2Fepic.example%2Ffhir"),
        ("Cerner <test> & co", '/smart/launch?iss=a&x="y"'),
        ("Bad", "javascript:alert(1)"),
    ]
    document = render_chooser(options)
    checker = check_html(document)
    links = [(a["href"]) for a in checker.tags("a")]
    assert links == [
        "/smart/launch?iss=https%3A%2F%2Fepic.example%2Ffhir",
        '/smart/launch?iss=a&x="y"',
        "#",
    ]
    assert ">Epic sandbox</a>" in document
    assert "Cerner &lt;test&gt; &amp; co" in document
    assert "choose your EHR" in text_of(document)
    assert_self_contained(document)


def test_chooser_without_options() -> None:
    document = render_chooser([])
    check_html(document)
    assert "No EHR is configured for standalone launch." in text_of(document)
    assert "<a " not in document


def test_the_cards_score_opens_the_page_the_others_folded() -> None:
    from cds_service.scores.ascvd_what_if import Scenario

    focus = ascvd_score(
        headline="10-year ASCVD risk 12.4 % — intermediate",
        category="intermediate",
        what_if=(
            Scenario("Current risk", 12.4, "Pooled Cohort Equations"),
            Scenario("High-intensity statin", 8.17, "LDL-C 130 mg/dL lowered by 50 %; CTT"),
        ),
    )
    egfr = ScoreView(
        "egfr", "eGFR", 52.0, "mL/min/{1.73_m2}", None, {}, {}, None, headline="eGFR 52 — G3a"
    )
    view = full_view(
        scores=(egfr, focus),
        focus="ascvd",
        not_applicable=(("CHA2DS2-VASc", "no atrial fibrillation on record"),),
    )
    document = render_app(view)
    check_html(document)
    order = [
        document.index('<section class="score focus" data-score="ascvd">'),
        document.index('<h2 class="headline">10-year ASCVD risk 12.4 % — intermediate</h2>'),
        document.index('<table class="what-if">'),
        document.index('<table class="inputs">'),
        document.index("<h2>Other scores</h2>"),
        document.index('<details class="score other" data-score="egfr"><summary>eGFR 52 — G3a'),
        document.index("Not shown, as they do not apply: CHA2DS2-VASc: no atrial fibrillation"),
    ]
    assert order == sorted(order)
    rows = table_rows(document)
    assert "Current risk | 15.4 % | Pooled Cohort Equations" not in rows
    assert "Current risk | 12.4 % | Pooled Cohort Equations" in rows
    assert "High-intensity statin | 8.2 % (-4.2) | LDL-C 130 mg/dL lowered by 50 %; CTT" in rows
