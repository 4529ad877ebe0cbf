"""Server-rendered HTML for the SMART app: the clinician's risk view, error pages, EHR chooser.

Plain HTML5 with one small inline ``<style>``: no scripts, no event handlers, no external fonts or
images, so the pages render fully offline under ``Content-Security-Policy: default-src 'none';
style-src 'unsafe-inline'`` and inside an EHR's (often narrow) iframe. Everything that comes from
the patient record, the EHR or configuration is HTML-escaped; links and form actions that are not
http(s) or relative are replaced by ``#``. The EHR's SMART style (`smart_style_url`), fetched and
checked by `cds_service.smart.style`, sets the CSS variables the stylesheet reads (colours,
fonts, font size, border radius), each with our own value as the fallback.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from html import escape
from typing import Any
from urllib.parse import urlsplit

from cds_service.smart.chart import OUTCOMES
from cds_service.smart.charts import format_number, line_chart, ordered_points
from cds_service.smart.presentation import short_title
from cds_service.smart.unit_text import unit_text
from cds_service.smart.viewmodel import AppView, Banner, InputRow, ScoreView, Series

__all__ = ["render_app", "render_chooser", "render_error"]

APP_NAME = "Risk assessment"
MAX_MESSAGE = 1000

STYLE = """
:root{color-scheme:light}
*{box-sizing:border-box}
body{margin:0;padding:12px 16px 20px;font-size:var(--smart-font-size,15px);line-height:1.45;
font-family:var(--smart-font-body,system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,
sans-serif);color:var(--smart-text,#1a1a1a);background:var(--smart-background,#fff);max-width:60rem}
h1,h2{font-family:var(--smart-font-heading,inherit)}
h1{font-size:1.25rem;margin:.2rem 0 .6rem}
h2{font-size:1.05rem;margin:0 0 .4rem}
a{color:#0b57a4}
.banner{display:flex;flex-wrap:wrap;gap:.2rem 1.2rem;align-items:baseline;padding:.5rem .75rem;
margin:0 0 .75rem;background:#f1f4f8;border-left:4px solid var(--smart-highlight,#0b57a4)}
.banner .name{font-size:1.15rem;font-weight:700}
.banner .label{color:#555}
.context{margin:0 0 .75rem;color:#333}
.problems{margin:0 0 .9rem;padding:.5rem .75rem;background:#fdecea;border:1px solid #e0a39c;
border-left:4px solid #b3261e;color:#5f1410}
.problems h2{color:#8c1d18}
.problems ul,.missing ul{margin:.2rem 0;padding-left:1.2rem}
section.score,section.series,section.missing{margin:0 0 1rem;padding:.6rem .75rem;
border:1px solid #dcdfe4;border-radius:var(--smart-radius,4px);break-inside:avoid}
.value{margin:.1rem 0 .3rem}
.value .num{font-size:2rem;font-weight:700;line-height:1.1}
.value .unit{font-size:1rem;color:#444;margin-left:.25rem}
.interpretation{margin:0 0 .4rem;font-weight:600}
.headline{font-size:1.35rem;margin:.1rem 0 .2rem}
.focus{border-left:4px solid var(--smart-highlight,#0b57a4)}
.category{margin:0 0 .4rem;font-weight:600}
details.score{margin:0 0 .5rem;padding:.4rem .75rem;border:1px solid #dcdfe4;
border-radius:var(--smart-radius,4px)}
details.score summary{cursor:pointer;font-weight:600}
details.ref summary{cursor:pointer;color:#0b57a4}
details.ref code{font-size:.8rem;overflow-wrap:anywhere}
table.what-if td.risk{white-space:nowrap;font-weight:600}
table.what-if td.basis{color:#555;font-size:.82rem}
.notice{margin:0 0 .8rem;padding:.5rem .75rem;border-left:4px solid}
.notice.saved{background:#e8f3e8;border-color:#2e6b2e;color:#1d4a1d}
.notice.failed{background:#fdecea;border-color:#b3261e;color:#5f1410}
form.save{margin:.5rem 0 0}
.suggestions{margin:.3rem 0 .6rem;padding:.4rem .75rem;background:#f1f4f8;border-radius:4px}
.suggestions h3{font-size:.95rem;margin:0 0 .2rem}
.suggestions ul{margin:.2rem 0;padding-left:1.2rem}
.stale{display:inline-block;margin-left:.3rem;padding:0 .3rem;background:#fff6e0;
border:1px solid #c58a00;border-radius:3px;color:#5c3d00;font-size:.8rem}
.note{margin:0 0 .4rem;color:#6a4a00}
.not-computable{margin:.2rem 0 .5rem;padding:.3rem .5rem;background:#fff6e0;border-left:4px solid
#c58a00}
.table{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-size:.88rem;margin:.3rem 0}
td.date{white-space:nowrap;overflow-wrap:normal}
th,td{text-align:left;padding:.2rem .4rem;border-bottom:1px solid #e6e8eb;vertical-align:top}
th{font-weight:600;color:#444;background:#f7f8fa}
.absent{color:#5f5f5f;font-style:italic}
.unknown{color:#8a4b00;font-weight:600}
.meta{margin:.3rem 0 0;color:#666;font-size:.82rem}
.chart{display:block;width:100%;max-width:560px;height:auto}
.nodata{color:#666;font-style:italic;margin:.2rem 0}
.actions{display:flex;flex-wrap:wrap;gap:.5rem 1rem;align-items:center}
.actions form{margin:0}
button,.button{font:inherit;padding:.3rem .8rem;border:1px solid #0b57a4;border-radius:4px;
background:#fff;color:#0b57a4;cursor:pointer;text-decoration:none;display:inline-block}
footer{margin-top:1.2rem;padding-top:.6rem;border-top:1px solid #dcdfe4;color:#555;
font-size:.85rem}
.choices{list-style:none;padding:0}
.choices li{margin:.4rem 0}
@media (max-width:420px){body{padding:8px 10px}.value .num{font-size:1.6rem}
table{font-size:.8rem}th,td{padding:.15rem .25rem}td.date{white-space:normal}}
@media print{body{max-width:none;padding:0;font-size:10.5pt}.actions,form,.button{display:none}
section.score,section.series,section.missing{border-color:#999}a{color:inherit}}
""".strip()


def _e(text: object) -> str:
    """HTML-escape `text` for element content and (double-quoted) attributes."""
    return escape(str(text), quote=True)


def _safe_url(url: str | None) -> str:
    """`url` escaped for an attribute when it is http(s) or relative; "#" otherwise."""
    if not url:
        return "#"
    try:
        scheme = urlsplit(url.strip()).scheme.lower()
    except ValueError:
        return "#"
    if scheme not in ("", "http", "https") or any(ord(c) < 32 for c in url):
        return "#"
    return _e(url.strip())


def _page(title: str, body: str, *, body_attrs: str = "", style_css: str = "") -> str:
    # `style_css` comes from smart/style.py, where every value was checked; "</" cannot occur.
    ehr_style = f"{style_css}\n" if style_css and "<" not in style_css else ""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="referrer" content="no-referrer">\n'
        f"<title>{_e(title)}</title>\n<style>\n{ehr_style}{STYLE}\n</style>\n</head>\n"
        f"<body{body_attrs}>\n{body}</body>\n</html>\n"
    )


def _time_text(when: datetime) -> str:
    """`when` as ``YYYY-MM-DD HH:MM UTC`` (naive: as given, without a zone)."""
    if when.tzinfo is None:
        return when.strftime("%Y-%m-%d %H:%M")
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _time(when: datetime) -> str:
    return f'<time datetime="{_e(when.isoformat())}">{_e(_time_text(when))}</time>'


def _iso_text(text: str) -> str:
    """An ISO 8601 date-time string made a little easier to read; other text unchanged."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return text
    return _time_text(parsed)


def _value_text(value: Any) -> str:
    """An input value as short human text (not escaped)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return format_number(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, datetime):
        return _time_text(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {_value_text(v)}" for k, v in value.items())
    if isinstance(value, list | tuple | set | frozenset):
        return ", ".join(_value_text(v) for v in value)
    return str(value)


def _label(key: str) -> str:
    """An input key as a label: ``total_cholesterol`` -> ``total cholesterol``."""
    return key.replace("_", " ").strip() or key


def _split_source(source: str) -> tuple[str, str]:
    """``"Observation/123 2019-10-10"`` -> (reference, date); no date -> (source, "")."""
    parts = source.strip().split(None, 1)
    if not parts:
        return "", ""
    return parts[0], parts[1] if len(parts) > 1 else ""


def _banner(banner: Banner) -> str:
    parts = [f'<span class="name">{_e(banner.name or "Unnamed patient")}</span>']
    if banner.gender:
        parts.append(f'<span class="gender">{_e(banner.gender)}</span>')
    if banner.age is not None and banner.birth_date:
        parts.append(
            f'<span class="age">{_e(banner.age)} years '
            f'<span class="label">(born {_e(banner.birth_date)})</span></span>'
        )
    elif banner.age is not None:
        parts.append(f'<span class="age">{_e(banner.age)} years</span>')
    elif banner.birth_date:
        parts.append(
            f'<span class="age"><span class="label">born</span> {_e(banner.birth_date)}</span>'
        )
    if banner.identifier:
        parts.append(
            f'<span class="identifier"><span class="label">ID</span> {_e(banner.identifier)}</span>'
        )
    return '<header class="banner" aria-label="Patient">' + "\n".join(parts) + "</header>\n"


def _list_section(css: str, heading: str, items: Iterable[str], *, alert: bool = False) -> str:
    role = ' role="alert"' if alert else ""
    rows = "".join(f"<li>{_e(item)}</li>" for item in items)
    return f'<section class="{css}"{role}>\n<h2>{_e(heading)}</h2>\n<ul>{rows}</ul>\n</section>\n'


def _table(css: str, caption: str, headers: Sequence[str], rows: Sequence[str]) -> str:
    """A table of the view: its rows (already HTML) under a caption and column headers."""
    head = "".join(f'<th scope="col">{_e(h)}</th>' for h in headers)
    return (
        f'<div class="table"><table class="{css}">\n'
        f'<caption class="meta">{_e(caption)}</caption>\n'
        f"<thead><tr>{head}</tr></thead>\n<tbody>\n"
        + "\n".join(rows)
        + "\n</tbody>\n</table></div>\n"
    )


def _source_cell(row: InputRow) -> str:
    """The kind of source, the resource id folded under it (shown on demand)."""
    if row.kind is None:
        return ""
    if row.reference is None:  # none on record, or assumed
        return f'<span class="absent">{_e(row.kind)}</span>'
    return (
        f'<details class="ref"><summary>{_e(row.kind)}</summary>'
        f"<code>{_e(row.reference)}</code></details>"
    )


def _inputs_table(score: ScoreView) -> str:
    if not score.rows:
        return '<p class="meta">No inputs recorded.</p>\n'
    lines: list[str] = []
    for row in score.rows:
        if row.unknown:
            shown = f'<span class="unknown">unknown: {_e(row.unknown)}</span>'
        elif row.value:
            shown = _e(row.value)
        else:
            todo = f": {_e(row.to_record)}" if row.to_record else ""
            shown = f'<span class="absent">not recorded</span>{todo}'
        when = _e(row.when or "")
        if row.stale:
            when += f' <span class="stale">Stale: {_e(row.stale)}</span>'
        css = ' class="is-stale"' if row.stale else ""
        lines.append(
            f'<tr{css} data-input="{_e(row.key)}"><th scope="row">{_e(row.label)}</th>'
            f"<td>{shown}</td><td>{_source_cell(row)}</td><td>{when}</td></tr>"
        )
    headers = ("Input", "Value", "Source", "When")
    return _table("inputs", "Inputs and where each came from", headers, lines)


def _what_if_table(score: ScoreView) -> str:
    """What therapy would change (ASCVD): each scenario's estimated risk and its basis."""
    if not score.what_if:
        return ""
    current = score.what_if[0].risk
    lines = []
    for scenario in score.what_if:
        risk = f"{format_number(scenario.risk, 1)} %"
        if scenario is not score.what_if[0]:
            risk += f" ({scenario.risk - current:+.1f})"
        lines.append(
            f'<tr data-scenario="{_e(scenario.label)}"><th scope="row">{_e(scenario.label)}</th>'
            f'<td class="risk">{_e(risk)}</td><td class="basis">{_e(scenario.basis)}</td></tr>'
        )
    caption = "What would change it: estimates for the conversation, not predictions"
    return _table("what-if", caption, ("If", "10-year risk", "Estimated from"), lines)


def _changes_table(score: ScoreView) -> str:
    """What would move a point score to another category."""
    if not score.changes:
        return ""
    unit = unit_text(score.unit)
    lines = [
        f'<tr data-change="{_e(c.label)}"><th scope="row">{_e(c.label)}</th>'
        f'<td class="risk">{_e(format_number(c.value, 1))} {_e(unit)}</td>'
        f"<td>{_e(c.category)}{' (changes)' if c.moves else ''}</td></tr>"
        for c in score.changes
    ]
    caption = "What would change the category"
    return _table("what-if changes", caption, ("If", "Score", "Category"), lines)


def _score_body(score: ScoreView) -> str:
    out = []
    if score.value is not None:
        if score.reason:
            out.append(f'<p class="note">Note: {_e(score.reason)}</p>\n')
    else:
        reason = score.reason or "the inputs are incomplete"
        reason = reason.removeprefix("not computable: ")  # said once
        out.append(f'<p class="not-computable">Not computable: {_e(reason)}</p>\n')
    if score.interpretation:
        out.append(f'<p class="interpretation">{_e(score.interpretation)}</p>\n')
    out.append(_what_if_table(score))
    out.append(_changes_table(score))
    out.append(_inputs_table(score))
    if score.computed_at:
        out.append(
            f'<p class="meta">Computed <time datetime="{_e(score.computed_at)}">'
            f"{_e(_iso_text(score.computed_at))}</time></p>\n"
        )
    return "".join(out)


def _score(score: ScoreView, *, focus: bool = False, save: str = "", lead: str = "") -> str:
    """A score: the card's one opens the page, under its one-line answer."""
    line = score.headline or score.title
    css = "score focus" if focus else "score"
    out = [f'<section class="{css}" data-score="{_e(score.name)}">\n']
    if focus:
        out.append(f'<h2 class="headline">{_e(line)}</h2>\n<p class="meta">{_e(score.title)}</p>\n')
        out.append(lead)
    else:
        out.append(f"<h2>{_e(score.title)}</h2>\n")
        if score.value is not None:
            unit = f' <span class="unit">{_e(unit_text(score.unit))}</span>' if score.unit else ""
            number = _e(format_number(score.value, 1))
            out.append(f'<p class="value"><span class="num">{number}</span>{unit}</p>\n')
            if score.category:
                out.append(f'<p class="category">{_e(score.category)}</p>\n')
    out.append(_score_body(score))
    out.append(save)
    out.append("</section>\n")
    return "".join(out)


def _save_form(score: ScoreView, view: AppView) -> str:
    """ "Save to chart" for a computed score the EHR lets us write (chart.py)."""
    if view.save_action is None or score.value is None or score.name not in OUTCOMES:
        return ""
    return (
        f'<form class="save" method="post" action="{_safe_url(view.save_action)}">'
        f'<input type="hidden" name="score" value="{_e(score.name)}">'
        f'<input type="hidden" name="csrf" value="{_e(view.csrf)}">'
        f'<button type="submit">Save {_e(short_title(score.name, score.title))} to chart'
        "</button></form>\n"
    )


def _folded_score(score: ScoreView, view: AppView) -> str:
    """A score other than the card's: one line, its details on demand."""
    return (
        f'<details class="score other" data-score="{_e(score.name)}">'
        f"<summary>{_e(score.headline or score.title)}</summary>\n"
        f"{_score_body(score)}{_save_form(score, view)}</details>\n"
    )


def _series(series: Series) -> str:
    heading = _e(series.title) + (
        f' <span class="meta">({_e(unit_text(series.unit))})</span>' if series.unit else ""
    )
    out = [f'<section class="series" data-series="{_e(series.key)}">\n<h2>{heading}</h2>\n']
    chart = line_chart(series)
    if not chart:
        out.append('<p class="nodata">No data</p>\n')
    else:
        out.append(chart + "\n")
        latest = ordered_points(series.points)[-1]
        unit = unit_text(latest.unit or series.unit)
        text = f"Latest: {format_number(latest.value)}{' ' + unit if unit else ''}"
        text += f" on {latest.when.date().isoformat()}"
        if latest.source:
            text += f" ({latest.source})"
        out.append(f'<p class="meta">{_e(text)}</p>\n')
    out.append("</section>\n")
    return "".join(out)


def render_app(view: AppView) -> str:
    """The clinician's risk view as a complete HTML5 document."""
    body: list[str] = []
    if view.banner is not None:
        body.append(_banner(view.banner))
    body.append(f"<main>\n<h1>{_e(APP_NAME)}</h1>\n")
    if view.context:
        body.append(f'<p class="context">Opened from: <strong>{_e(view.context)}</strong></p>\n')
    if view.encounter:
        body.append(f'<p class="context encounter">Encounter: {_e(view.encounter)}</p>\n')
    if view.problems:
        body.append(_list_section("problems", "Problems", view.problems, alert=True))
    if view.notice is not None:
        ok, text = view.notice
        css, role = ("notice saved", "status") if ok else ("notice failed", "alert")
        body.append(f'<p class="{css}" role="{role}">{_e(text)}</p>\n')
    if view.focus is not None:
        todo = ""
        if view.suggestions:
            items = "".join(f"<li>{_e(label)}</li>" for label in view.suggestions)
            todo = (
                '<div class="suggestions"><h3>The card suggests</h3>'
                f'<ul>{items}</ul><p class="meta">Accept a suggestion on the card in your EHR.'
                "</p></div>\n"
            )
        body.extend(
            _score(s, focus=True, lead=todo, save=_save_form(s, view))
            for s in view.scores
            if s.name == view.focus
        )
        others = [s for s in view.scores if s.name != view.focus]
        if others:
            body.append('<section class="others">\n<h2>Other scores</h2>\n')
            body.extend(_folded_score(s, view) for s in others)
            body.append("</section>\n")
    elif view.scores:
        body.extend(_score(score, save=_save_form(score, view)) for score in view.scores)
    else:
        body.append('<p class="nodata">No risk scores to show for this patient.</p>\n')
    if view.not_applicable:
        listed = "; ".join(f"{title}: {why}" for title, why in view.not_applicable)
        body.append(
            f'<p class="meta not-applicable">Not shown, as they do not apply: {_e(listed)}.</p>\n'
        )
    body.extend(_series(series) for series in view.series)
    if view.missing:
        body.append(_list_section("missing", "Missing data", view.missing))
    body.append("</main>\n")
    relaunch = ""
    if view.relaunch_url:
        relaunch = f'<a class="button" href="{_safe_url(view.relaunch_url)}">Relaunch</a>'
    body.append(
        '<footer>\n<div class="actions">'
        f'<form method="post" action="{_safe_url(view.logout_url)}">'
        '<button type="submit">Log out</button></form>\n'
        f"{relaunch}\n<span>Generated {_time(view.generated_at)}</span></div>\n</footer>\n"
    )
    attrs = ""
    if view.style_url:
        attrs = f' data-smart-style-url="{_e(view.style_url)}"'
    return _page(APP_NAME, "".join(body), body_attrs=attrs, style_css=view.style_css)


def _clean_message(message: str) -> str:
    """No stack traces, and nothing overlong, on an error page."""
    if "Traceback (most recent call last)" in message:
        return "An unexpected error occurred."
    message = message.strip()
    if len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 1].rstrip() + "…"
    return message


def render_error(*, title: str, message: str, relaunch_url: str | None, status: int) -> str:
    """A readable error page with a way back (a Relaunch link, or a hint to reopen from the EHR)."""
    body = [
        '<main class="error">\n',
        f"<h1>{_e(title)}</h1>\n",
        f"<p>{_e(_clean_message(message))}</p>\n",
    ]
    if relaunch_url:
        href = _safe_url(relaunch_url)
        body.append(f'<p class="actions"><a class="button" href="{href}">Relaunch</a></p>\n')
        body.append(
            '<p class="meta">Or open the app again from the patient\'s chart in your EHR.</p>\n'
        )
    else:
        body.append(
            "<p>Please close this window and open the app again from the patient's chart in your"
            " EHR.</p>\n"
        )
    if status >= 400:  # a page that is no error (signed out) shows no error code
        body.append(f'<p class="meta">Error code {_e(status)}</p>\n')
    body.append("</main>\n")
    return _page(f"{title} - {APP_NAME}", "".join(body))


def render_chooser(options: Sequence[tuple[str, str]]) -> str:
    """The standalone-launch page: a link per configured EHR, as (label, url)."""
    body = [f"<main>\n<h1>{_e(APP_NAME)}: choose your EHR</h1>\n"]
    if options:
        body.append("<p>Sign in through the EHR whose patient you want to look at.</p>\n")
        items = "".join(
            f'<li><a class="button" href="{_safe_url(url)}">{_e(label)}</a></li>'
            for label, url in options
        )
        body.append(f'<ul class="choices">{items}</ul>\n')
    else:
        body.append(
            "<p>No EHR is configured for standalone launch. Open the app from the patient's chart"
            " in your EHR, or ask your administrator.</p>\n"
        )
    body.append("</main>\n")
    return _page(f"Choose your EHR - {APP_NAME}", "".join(body))
