"""A simulation report as a text table (a terminal, CI logs) and as one HTML page with charts.

The HTML page stands alone (inline CSS and SVG, no script, nothing fetched), so it can be
attached to a change review or opened from disk: card rate per service and hook against the
limit, fire rate per rule with its outcomes, and calls and cards per month.
"""

from __future__ import annotations

from html import escape

from cds_service.population.report import SimulationReport

__all__ = ["html", "table"]

BAR_WIDTH = 240


def table(report: SimulationReport) -> str:
    lines = [
        f"{report.patients} patients, {report.calls} calls ({', '.join(report.hooks)})"
        + (
            f"; {report.patients_without_calls} patients with no call"
            if report.patients_without_calls
            else ""
        ),
        "",
        f"{'service':<30}{'hook':<22}{'calls':>7}{'carded':>8}{'rate':>8}",
    ]
    for row in report.services:
        flag = "  over" if row.over_limit else ""
        lines.append(
            f"{row.service:<30}{row.hook:<22}{row.calls:>7}{row.carded:>8}{row.card_rate:>8.1%}"
            + flag
        )
    lines += ["", f"{'rule':<44}{'calls':>7}{'fired':>7}{'rate':>8}  other outcomes"]
    for rule in sorted(report.rules, key=lambda r: (r.service, r.hook, r.rule)):
        others = ", ".join(
            f"{k} {v}" for k, v in rule.statuses.items() if k not in ("fired", "shadow")
        )
        name = rule.rule + (" (draft)" if rule.draft else "")
        lines.append(f"{name:<44}{rule.calls:>7}{rule.fired:>7}{rule.fire_rate:>8.1%}  {others}")
        lines += [f"    error: {e}" for e in rule.errors]
    return "\n".join(lines) + "\n"


def _bar(rate: float, limit: float | None, over: bool) -> str:
    width = round(rate * BAR_WIDTH)
    colour = "#b3261e" if over else "#2f6f4e"
    mark = ""
    if limit is not None:
        x = round(limit * BAR_WIDTH)
        mark = f'<line x1="{x}" y1="0" x2="{x}" y2="18" stroke="#444" stroke-dasharray="3,2"/>'
    return (
        f'<svg class="bar" width="{BAR_WIDTH}" height="18" role="img" '
        f'aria-label="{rate:.1%}"><rect width="{BAR_WIDTH}" height="18" fill="#eee"/>'
        f'<rect width="{width}" height="18" fill="{colour}"/>{mark}</svg>'
    )


def _months_chart(report: SimulationReport) -> str:
    months: dict[str, list[int]] = {}
    for row in report.months:
        counts = months.setdefault(row.month, [0, 0])
        counts[0] += row.calls
        counts[1] += row.carded
    if not months:
        return "<p>No calls.</p>"
    peak = max(calls for calls, _ in months.values()) or 1
    step = max(6, min(40, 720 // len(months)))
    height = 120
    bars = []
    for i, (month, (calls, carded)) in enumerate(sorted(months.items())):
        x = i * step
        h_calls = round(calls / peak * height)
        h_cards = round(carded / peak * height)
        bars.append(
            f"<g><title>{escape(month)}: {calls} calls, {carded} with a card</title>"
            f'<rect x="{x}" y="{height - h_calls}" width="{step - 2}" height="{h_calls}" '
            f'fill="#c7d7e8"/><rect x="{x}" y="{height - h_cards}" width="{step - 2}" '
            f'height="{h_cards}" fill="#1f5f99"/></g>'
        )
    first, last = min(months), max(months)
    return (
        f'<svg class="months" width="{len(months) * step}" height="{height + 16}" role="img" '
        f'aria-label="calls and cards per month">{"".join(bars)}'
        f'<text x="0" y="{height + 14}" font-size="11">{escape(first)}</text>'
        f'<text x="{max(0, len(months) * step - 48)}" y="{height + 14}" font-size="11">'
        f"{escape(last)}</text></svg>"
        '<p class="legend"><span class="swatch calls"></span> calls '
        '<span class="swatch cards"></span> calls with a card</p>'
    )


STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #1d1d1d; max-width: 1100px; }
h1 { font-size: 20px; } h2 { font-size: 16px; margin-top: 28px; }
table { border-collapse: collapse; } td, th { padding: 4px 10px; text-align: left; }
th { border-bottom: 1px solid #999; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
tr.over td { color: #b3261e; font-weight: 600; } .muted { color: #666; }
td.ids { font: 11px ui-monospace, monospace; max-width: 260px; word-break: break-all; }
td.errors { font-size: 12px; max-width: 320px; }
.swatch { display: inline-block; width: 10px; height: 10px; }
.swatch.calls { background: #c7d7e8; } .swatch.cards { background: #1f5f99; }
"""


def html(report: SimulationReport, title: str = "Rule simulation") -> str:
    limit = report.max_card_rate
    service_rows = "".join(
        f'<tr class="{"over" if r.over_limit else ""}"><td>{escape(r.service)}</td>'
        f'<td>{escape(r.hook)}</td><td class="n">{r.calls}</td><td class="n">{r.carded}</td>'
        f'<td class="n">{r.card_rate:.1%}</td>'
        f"<td>{_bar(r.card_rate, limit, r.over_limit)}</td></tr>"
        for r in report.services
    )
    rule_rows = "".join(
        f"<tr><td>{escape(r.rule)}{' <span class=muted>(draft)</span>' if r.draft else ''}</td>"
        f'<td>{escape(r.service)}</td><td>{escape(r.hook)}</td><td class="n">{r.calls}</td>'
        f'<td class="n">{r.fired}</td><td class="n">{r.fire_rate:.1%}</td>'
        f"<td>{_bar(r.fire_rate, None, bool(r.errors))}</td>"
        f"<td>{escape(', '.join(f'{k} {v}' for k, v in r.statuses.items()))}</td>"
        f"<td class=ids>{'<br>'.join(escape(p) for p in r.example_patients)}</td>"
        f"<td class=errors>{'<br>'.join(escape(e) for e in r.errors)}</td></tr>"
        for r in sorted(report.rules, key=lambda r: (r.service, r.hook, r.rule))
    )
    not_simulated = "".join(
        f"<li><code>{escape(h)}</code>: {escape(why)}</li>"
        for h, why in sorted(report.not_simulated.items())
    )
    return (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{escape(title)}</title>"
        f"<style>{STYLE}</style></head><body><h1>{escape(title)}</h1>"
        f"<p>{report.patients} patients, {report.calls} calls "
        f"({escape(', '.join(report.hooks))}); card-rate limit {limit:.0%}.</p>"
        "<h2>Card rate per service and hook</h2><table id=services><tr><th>service</th>"
        "<th>hook</th><th>calls</th><th>with a card</th><th>card rate</th><th></th></tr>"
        f"{service_rows}</table>"
        "<h2>Rules</h2><table id=rules><tr><th>rule</th><th>service</th><th>hook</th>"
        "<th>calls</th><th>fired</th><th>fire rate</th><th></th><th>outcomes</th>"
        f"<th>example patients</th><th>first errors</th></tr>{rule_rows}</table>"
        f"<h2>Per month</h2>{_months_chart(report)}"
        f"<h2>Not simulated</h2><ul>{not_simulated}</ul></body></html>\n"
    )
