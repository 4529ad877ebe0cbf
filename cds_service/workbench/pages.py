"""Server-rendered HTML for the workbench: the rules, one rule, the playground, errors.

Plain HTML5 with one stylesheet and one script (`/workbench/static/`), served under a CSP that
allows nothing else (no inline script or style, no other origin). Everything that comes from rules,
the database or the user is HTML-escaped. The pages work without the script except the playground,
whose editor talks to the JSON API (`/workbench/api/playground/...`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any
from urllib.parse import quote

from cds_service.workbench.auth import WorkbenchUser
from cds_service.workbench.highlight import highlight_yaml

__all__ = ["render_error", "render_playground", "render_rule", "render_rules"]

WINDOWS = (7, 30, 90, 365)
CURRENT_PAGE = ' aria-current="page"'
CURRENT = ' aria-current="true"'
CURRENT_ROW = ' class="current"'
NONE = '<p class="empty">None.</p>'
DASH = "\u2013"  # an en dash: no value


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _pct(value: float | None) -> str:
    return DASH if value is None else f"{value * 100:.1f} %"


def _page(title: str, user: WorkbenchUser | None, body: str, *, active: str = "") -> str:
    nav = ""
    if user is not None:
        links = [("rules", "/workbench/rules", "Rules")]
        if user.role == "author":
            links.append(("playground", "/workbench/playground", "Playground"))
        items = "".join(
            f'<a href="{href}"{CURRENT_PAGE if key == active else ""}>{label}</a>'
            for key, href, label in links
        )
        nav = (
            f'<nav aria-label="Workbench">{items}</nav>'
            f'<div class="who"><span>{_e(user.name)} ({_e(user.role)})</span>'
            '<form method="post" action="/workbench/logout">'
            f'<input type="hidden" name="csrf" value="{_e(user.csrf)}">'
            '<button type="submit" class="link">Sign out</button></form></div>'
        )
    csrf = f'<meta name="csrf-token" content="{_e(user.csrf)}">' if user is not None else ""
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'
        f"{csrf}<title>{_e(title)} · cds-service workbench</title>"
        '<link rel="stylesheet" href="/workbench/static/workbench.css">'
        '<script src="/workbench/static/workbench.js" defer></script></head><body>'
        f'<header class="top"><a class="brand" href="/workbench/rules">cds-service workbench</a>'
        f"{nav}</header><main>{body}</main></body></html>"
    )


def _windows(days: int, base: str) -> str:
    links = "".join(
        f'<a href="{base}?days={d}"{CURRENT if d == days else ""}>{d} days</a>' for d in WINDOWS
    )
    return f'<p class="windows">Window: {links}</p>'


def _status(status: str) -> str:
    return f'<span class="status status-{_e(status)}">{_e(status)}</span>'


def render_rules(
    user: WorkbenchUser,
    figures: Sequence[Mapping[str, Any]],
    days: int,
    simulations: Mapping[tuple[str, str], Mapping[str, Any]],
    problem: str | None,
) -> str:
    """Every rule with its figures over the last `days` days."""
    rows = []
    for f in figures:
        sim = simulations.get((f["rule"], f["version"]))
        sim_text = _pct(sim["fireRate"]) if sim else DASH
        reasons = ", ".join(f"{_e(r['display'])} ({r['count']})" for r in f["overrideReasons"][:3])
        rows.append(
            "<tr>"
            f'<td><a href="/workbench/rules/{quote(f["rule"])}">{_e(f["rule"])}</a>'
            f'<div class="title">{_e(f["title"])}</div></td>'
            f"<td>{_status(f['status'])}</td><td>{_e(f['version'])}</td>"
            f"<td>{_e(f['service'])}</td><td>{_e(f['hook'])}</td>"
            f'<td class="n">{f["calls"]}</td><td class="n">{_pct(f["fireRate"])}</td>'
            f'<td class="n">{_pct(f["cardRate"])}</td><td class="n">{f["errors"]}</td>'
            f'<td class="n">{f["accepted"]}</td><td class="n">{f["overridden"]}</td>'
            f'<td class="n">{f["ignored"]}</td><td>{reasons or DASH}</td>'
            f'<td class="n">{sim_text}</td></tr>'
        )
    warning = f'<p class="problem" role="alert">{_e(problem)}</p>' if problem else ""
    body = (
        f"<h1>Rules</h1>{warning}{_windows(days, '/workbench/rules')}"
        '<div class="scroll"><table class="rules"><thead><tr>'
        "<th>Rule</th><th>Status</th><th>Version</th><th>Service</th><th>Hook</th>"
        '<th class="n">Calls</th><th class="n">Fire rate</th><th class="n">Card rate</th>'
        '<th class="n">Errors</th><th class="n">Accepted</th><th class="n">Overridden</th>'
        '<th class="n">Ignored</th><th>Top override reasons</th>'
        '<th class="n">Simulated fire rate</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
        '<p class="note">Calls: hook calls to the rule\'s service on its hook. Fire rate: cards '
        "(and shadow cards of draft rules) per call. Card rate: calls of the service answered "
        "with any card. Ignored: cards nobody sent feedback on. Simulated: the latest "
        "population simulation of the version served.</p>"
    )
    return _page("Rules", user, body, active="rules")


def _yaml_block(text: str, label: str) -> str:
    lines = highlight_yaml(text)
    numbered = "".join(f'<span class="ln">{i}</span>{line}\n' for i, line in enumerate(lines, 1))
    return f'<pre class="yaml" aria-label="{_e(label)}"><code>{numbered}</code></pre>'


def _bars(timeline: Sequence[Mapping[str, Any]]) -> str:
    """Cards issued per day (grey) with accepted (green) and overridden (amber) beside."""
    if not timeline or not any(d["cards"] or d["accepted"] or d["overridden"] for d in timeline):
        return '<p class="empty">No cards or feedback in this window.</p>'
    width, height, pad = 720, 180, 28
    top = max(max(d["cards"], d["accepted"] + d["overridden"]) for d in timeline) or 1
    step = (width - pad) / len(timeline)
    bar = max(step / 2 - 0.5, 0.6)
    parts = []
    for i, d in enumerate(timeline):
        x = pad + i * step
        for offset, value, kind, base in (
            (0.0, d["cards"], "cards", 0),
            (bar, d["accepted"], "accepted", 0),
            (bar, d["overridden"], "overridden", d["accepted"]),
        ):
            if not value:
                continue
            h = (height - 20) * value / top
            y = height - 20 - (height - 20) * base / top - h
            parts.append(
                f'<rect class="bar-{kind}" x="{x + offset:.1f}" y="{y:.1f}" '
                f'width="{bar:.1f}" height="{h:.1f}"><title>{_e(d["day"])}: {value} '
                f"{kind}</title></rect>"
            )
    first, last = timeline[0]["day"], timeline[-1]["day"]
    return (
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="Cards and feedback per day, {first} to {last}">'
        f'<text x="0" y="12" class="axis">{top}</text>'
        f'<line x1="{pad}" y1="{height - 20}" x2="{width}" y2="{height - 20}" class="axis-line"/>'
        f"{''.join(parts)}"
        f'<text x="{pad}" y="{height - 4}" class="axis">{_e(first)}</text>'
        f'<text x="{width}" y="{height - 4}" class="axis" text-anchor="end">{_e(last)}</text>'
        "</svg>"
        '<p class="legend"><span class="key key-cards"></span>cards '
        '<span class="key key-accepted"></span>accepted '
        '<span class="key key-overridden"></span>overridden</p>'
    )


def _tests(results: Mapping[str, Any] | None) -> str:
    if results is None:
        return '<p class="empty">This rule has no test file.</p>'
    rows = []
    for case in results["cases"]:
        mark = "passed" if case["ok"] else "failed"
        detail = ""
        if not case["ok"]:
            detail = "<pre>" + _e("\n".join(case["failures"])) + "</pre>"
        rows.append(
            f'<li class="case case-{mark}"><span class="mark">{mark}</span> '
            f'{_e(case["name"])} <span class="muted">(line {case["line"]}, '
            f"{_e(case['status'] or DASH)})</span>{detail}</li>"
        )
    problems = "".join(
        f"<li>line {p['line']}:{p['col']}: {_e(p['message'])}</li>" for p in results["problems"]
    )
    head = f"<p>{results['passed']} passed, {results['failed']} failed.</p>"
    return (
        head
        + (f'<ul class="problems">{problems}</ul>' if problems else "")
        + (f'<ul class="cases">{"".join(rows)}</ul>')
    )


def _simulations(sims: Sequence[Mapping[str, Any]], version: str) -> str:
    if not sims:
        return (
            '<p class="empty">No population simulation recorded yet (<code>cds-service rules '
            "simulate EXPORT --record</code>, or the button below).</p>"
        )
    rows = "".join(
        f"<tr{CURRENT_ROW if s['version'] == version else ''}><td>{_e(s['version'])}</td>"
        f"<td>{_e(s['at'][:16].replace('T', ' '))}</td><td>{_e(s['source'])}</td>"
        f'<td class="n">{s["patients"]}</td><td class="n">{s["calls"]}</td>'
        f'<td class="n">{s["fired"]}</td><td class="n">{_pct(s["fireRate"])}</td>'
        f'<td class="n">{_pct(s["cardRate"])}</td>'
        f'<td class="n">{s["statuses"].get("error", 0)}</td>'
        f"<td>{_e(', '.join(s['examplePatients'][:5])) or DASH}</td></tr>"
        for s in sims
    )
    return (
        '<div class="scroll"><table><thead><tr><th>Version</th><th>When (UTC)</th>'
        '<th>Population</th><th class="n">Patients</th><th class="n">Calls</th>'
        '<th class="n">Fired</th><th class="n">Fire rate</th><th class="n">Service card rate</th>'
        '<th class="n">Errors</th><th>Example patients</th></tr></thead>'
        f"<tbody>{rows}</tbody></table></div>"
    )


def render_rule(
    user: WorkbenchUser,
    figures: Mapping[str, Any],
    days: int,
    timeline: Sequence[Mapping[str, Any]],
    source: str | None,
    tests_source: str | None,
    tests: Mapping[str, Any] | None,
    simulations: Sequence[Mapping[str, Any]],
    can_simulate: bool,
) -> str:
    """One rule: figures, feedback over time, YAML, tests and their results, simulations."""
    rule = figures["rule"]
    reasons = "".join(
        f'<li>{_e(r["display"])} <span class="muted">({_e(r["code"])})</span>: {r["count"]}</li>'
        for r in figures["overrideReasons"]
    )
    stats = [
        ("Calls", figures["calls"]),
        ("Fire rate", _pct(figures["fireRate"])),
        ("Card rate (service)", _pct(figures["cardRate"])),
        ("Cards", figures["cards"]),
        ("Shadow", figures["shadow"]),
        ("Suppressed", figures["suppressed"]),
        ("Skipped", figures["skipped"]),
        ("Errors", figures["errors"]),
        ("Accepted", figures["accepted"]),
        ("Overridden", figures["overridden"]),
        ("Ignored", figures["ignored"]),
    ]
    stat_html = "".join(f"<div><dt>{k}</dt><dd>{_e(v)}</dd></div>" for k, v in stats)
    simulate_form = ""
    if can_simulate and user.role == "author":
        simulate_form = (
            f'<p><button type="button" data-simulate-rule="{_e(rule)}">Simulate this version '
            'on the sample population</button> <span id="simulate-status" role="status">'
            "</span></p>"
        )
    play = ""
    if user.role == "author" and source is not None:
        href = f"/workbench/playground?rule={quote(rule)}"
        play = f' <a class="button" href="{href}">Open in playground</a>'
    body = (
        f'<p class="crumbs"><a href="/workbench/rules">Rules</a> / {_e(rule)}</p>'
        f"<h1>{_e(figures['title'])}</h1>"
        f"<p>{_status(figures['status'])} <code>{_e(rule)}</code> version {_e(figures['version'])}"
        f" · service <code>{_e(figures['service'])}</code> · hook <code>{_e(figures['hook'])}"
        f"</code>{play}</p>"
        f"{_windows(days, f'/workbench/rules/{quote(rule)}')}"
        f'<section><h2>Live figures, last {days} days</h2><dl class="stats">{stat_html}</dl>'
        f"<h3>Override reasons</h3>"
        f"{f'<ul>{reasons}</ul>' if reasons else NONE}"
        f"<h3>Feedback over time</h3>{_bars(timeline)}</section>"
        f"<section><h2>Population simulation</h2>{_simulations(simulations, figures['version'])}"
        f"{simulate_form}</section>"
        f"<section><h2>Tests</h2>{_tests(tests)}</section>"
    )
    if source is not None:
        body += f"<section><h2>Rule</h2>{_yaml_block(source, 'Rule YAML')}</section>"
    if tests_source is not None:
        body += f"<section><h2>Test file</h2>{_yaml_block(tests_source, 'Test YAML')}</section>"
    return _page(rule, user, body, active="rules")


def render_playground(
    user: WorkbenchUser,
    rule_text: str,
    tests_text: str,
    rules: Sequence[tuple[str, str]],
    population: str | None,
) -> str:
    """The playground: an editor for a rule and its tests, a patient or a request, the card."""
    options = "".join(
        f'<option value="{_e(rule_id)}">{_e(rule_id)} ({_e(hook)})</option>'
        for rule_id, hook in rules
    )
    population_note = (
        f"Sample population: {_e(population)}."
        if population
        else "No sample population (set CDS_WORKBENCH_POPULATION to an NDJSON export)."
    )
    body = (
        "<h1>Playground</h1>"
        '<p class="note">Nothing typed here changes the rules the service serves: the draft is '
        "checked, tested and simulated in a scratch copy. Patient data shown here is never "
        "logged.</p>"
        '<form class="start" method="get" action="/workbench/playground">'
        '<label>Start from <select name="rule"><option value="">a blank rule</option>'
        f'{options}</select></label> <button type="submit">Load</button></form>'
        '<div class="play">'
        '<section class="editor-pane"><h2><label for="rule-editor">Rule (YAML)</label></h2>'
        '<div class="editor"><pre class="gutter" id="rule-gutter" aria-hidden="true"></pre>'
        '<textarea id="rule-editor" spellcheck="false" autocomplete="off" '
        f'aria-describedby="lint">{_e(rule_text)}</textarea></div>'
        '<div id="lint" class="lint" role="status" aria-live="polite"></div>'
        '<h2><label for="tests-editor">Tests (YAML)</label></h2>'
        '<div class="editor small"><pre class="gutter" id="tests-gutter" aria-hidden="true">'
        '</pre><textarea id="tests-editor" spellcheck="false" autocomplete="off">'
        f"{_e(tests_text)}</textarea></div>"
        '<p><button type="button" id="run-tests">Run tests</button> '
        f'<button type="button" id="simulate"{"" if population else " disabled"}>'
        "Simulate on the sample population</button></p>"
        '<div id="tests-result" class="result" role="status" aria-live="polite"></div>'
        '<div id="simulation-result" class="result" role="status" aria-live="polite"></div>'
        "</section>"
        '<section class="try-pane"><h2>Try it</h2>'
        f'<p class="note">{population_note}</p>'
        '<label>Patient <select id="patient"><option value="">(loading…)</option></select>'
        "</label>"
        "<details><summary>…or paste a CDS Hooks request</summary>"
        '<textarea id="request" class="request" spellcheck="false" '
        'placeholder=\'{"hook": "patient-view", "hookInstance": "…", "context": {…}, '
        '"prefetch": {…}}\'></textarea></details>'
        '<label>At <input id="at" type="datetime-local" step="1"></label> '
        '<button type="button" id="evaluate">Evaluate</button>'
        '<div id="card" class="cards" aria-live="polite"></div>'
        '<h2>Explain</h2><div id="trace" class="trace"></div>'
        "</section></div>"
    )
    return _page("Playground", user, body, active="playground")


def render_error(user: WorkbenchUser | None, title: str, message: str) -> str:
    body = f'<h1>{_e(title)}</h1><p class="problem" role="alert">{_e(message)}</p>'
    body += '<p><a href="/workbench/rules">Back to the rules</a></p>'
    return _page(title, user, body)
