"""The EHR's SMART style: fetched only from the EHR's own origin, every value checked before it
reaches CSS, text colours applied only when they read, cached, failures remembered."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from cds_service.smart.style import StyleCache, allowed_style_url, contrast, style_css
from cds_service.smart.view import render_app
from tests.smart.simulator import SMART_STYLE
from tests.smart_view.helpers import check_html, full_view

ISS = "https://ehr.example.org/fhir/r4"
LAUNCHER_STYLE = SMART_STYLE  # the SMART App Launcher's sample style


@pytest.mark.parametrize(
    ("url", "development", "refusal"),
    [
        ("https://ehr.example.org/style.json", False, None),
        ("https://fhir.other-host.example/style.json", False, None),  # a tenant FHIR server
        ("https://ehr.example.org:8443/style.json", False, "not on the EHR's own origin"),
        ("https://evil.example/style.json", False, "not on the EHR's own origin"),
        ("http://ehr.example.org/style.json", False, "not https"),
        ("http://ehr.example.org/style.json", True, "not on the EHR's own origin"),  # scheme
        ("javascript:alert(1)", True, "not an http(s) URL"),
        ("", False, "no smart_style_url"),
        (None, False, "no smart_style_url"),
    ],
)
def test_only_the_ehrs_own_origin(url: str | None, development: bool, refusal: str | None) -> None:
    found = allowed_style_url(
        url,
        iss=ISS,
        fhir_servers=["https://fhir.other-host.example/r4"],
        development=development,
    )
    assert (found is None) if refusal is None else (found is not None and refusal in found)


def test_http_in_development_from_the_same_origin() -> None:
    found = allowed_style_url(
        "http://127.0.0.1:9000/sim/smart-style.json",
        iss="http://127.0.0.1:9000/sim/fhir",
        fhir_servers=[],
        development=True,
    )
    assert found is None


def test_the_launchers_style_becomes_css_variables() -> None:
    css = style_css(LAUNCHER_STYLE)
    assert css == (
        ":root{--smart-background:#edeae3;--smart-text:#303030;--smart-highlight:#69b5ce;"
        "--smart-error:#9e2d2d;--smart-success:#498e49;--smart-radius:6px;"
        "--smart-font-size:13px;--smart-spacing:20px;"
        "--smart-font-body:Georgia, Times, 'Times New Roman', serif;"
        "--smart-font-heading:'HelveticaNeue-Light', Helvetica, Arial, sans-serif}"
    )


@pytest.mark.parametrize(
    "hostile",
    [
        {"color_background": "red;}</style><script>alert(1)</script>"},
        {"color_text": "#303030; background: url(https://evil.example/x)"},
        {"font_family_body": "x;} body{display:none"},
        {"font_family_body": "Georgia\\"},
        {"dim_font_size": "expression(alert(1))"},
        {"dim_border_radius": "6px;}"},
        {"color_highlight": 42},
        {"font_family_heading": 'Arial, "unclosed'},
    ],
)
def test_nothing_hostile_reaches_css(hostile: dict[str, Any]) -> None:
    assert style_css(hostile) == ""


def test_text_colours_that_do_not_read_are_not_applied() -> None:
    assert contrast("#000000", "#ffffff") == pytest.approx(21.0)
    assert contrast("#777777", "#ffffff") < 4.5 < contrast("#595959", "#ffffff")
    grey_on_white = style_css({"color_text": "#999999", "color_highlight": "#69b5ce"})
    assert grey_on_white == ":root{--smart-highlight:#69b5ce}"
    dark_on_dark = style_css({"color_background": "#222222", "color_text": "#444444"})
    assert dark_on_dark == ""


def test_the_view_carries_the_style_in_its_one_stylesheet() -> None:
    document = render_app(full_view(style_css=style_css(LAUNCHER_STYLE)))
    checker = check_html(document)
    assert len(checker.tags("style")) == 1
    head = document.split("</style>")[0]
    assert ":root{--smart-background:#edeae3;" in head
    assert "background:var(--smart-background,#fff)" in head  # our own value as the fallback
    assert "a{color:#0b57a4}" in head  # links keep a colour that reads


def test_fetched_once_an_hour_and_failures_remembered() -> None:
    calls: list[str] = []
    now = [0.0]

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if request.url.path == "/style.json":
            return httpx.Response(200, json=LAUNCHER_STYLE)
        if request.url.path == "/huge.json":
            return httpx.Response(200, content=json.dumps({"x": "y" * 70_000}).encode())
        return httpx.Response(404)

    async def run() -> list[str]:
        cache = StyleCache(clock=lambda: now[0])
        async with httpx.AsyncClient(transport=httpx.MockTransport(handle)) as http:
            found = [await cache.css(http, "https://ehr.example.org/style.json") for _ in range(3)]
            found.append(await cache.css(http, "https://ehr.example.org/missing.json"))
            found.append(await cache.css(http, "https://ehr.example.org/missing.json"))
            found.append(await cache.css(http, "https://ehr.example.org/huge.json"))
            now[0] += 3601
            found.append(await cache.css(http, "https://ehr.example.org/style.json"))
            found.append(await cache.css(http, "https://ehr.example.org/missing.json"))
        return found

    found = asyncio.run(run())
    css = style_css(LAUNCHER_STYLE)
    assert found == [css, css, css, "", "", "", css, ""]
    assert calls == [
        "/style.json",
        "/missing.json",  # once: the failure is remembered
        "/huge.json",
        "/style.json",  # an hour later
        "/missing.json",
    ]
