"""The EHR's look (SMART `smart_style_url`) applied to the clinician view, safely.

SMART App Launch lets the EHR hand the app a style document (colours, fonts, sizes) so the app
looks like the EHR around it. We fetch it only from the EHR the session came from: the URL must
be https (http is accepted in development), and its origin must be the origin of the launch's
`iss` or of one of the tenant's `fhir_servers`; anything else is ignored (and logged by reason).
The fetch has a short timeout and a size limit, and the answer is cached per URL (an hour; a
failure for five minutes, so a broken style never slows every view down).

Every value is checked before it reaches CSS: colours as ``#rgb``/``#rrggbb``, sizes as a number
with ``px``, ``em`` or ``rem``, font families as comma-separated names of letters, digits,
spaces, hyphens and quotes. Anything else is dropped: a hostile style document can change
colours and fonts, never inject CSS. The text and background colours are applied only when
their contrast meets WCAG AA (4.5:1); the highlight colour marks borders, never text, so an
EHR's light accent cannot make links unreadable.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
from cachetools import TTLCache

__all__ = ["CSS_VARIABLES", "StyleCache", "allowed_style_url", "contrast", "style_css"]

log = logging.getLogger(__name__)

MAX_BYTES = 64 * 1024
TIMEOUT_SECONDS = 2.0
TTL_SECONDS = 3600.0
FAILURE_TTL_SECONDS = 300.0

#: SMART style field → the CSS variable the view's stylesheet reads (with its own fallback).
CSS_VARIABLES = {
    "color_background": "--smart-background",
    "color_text": "--smart-text",
    "color_highlight": "--smart-highlight",
    "color_error": "--smart-error",
    "color_success": "--smart-success",
    "dim_border_radius": "--smart-radius",
    "dim_font_size": "--smart-font-size",
    "dim_spacing_size": "--smart-spacing",
    "font_family_body": "--smart-font-body",
    "font_family_heading": "--smart-font-heading",
}
_COLOR = re.compile(r"#[0-9a-fA-F]{3}|#[0-9a-fA-F]{6}")
#: WCAG 2.1 AA for body text: an EHR's text and background colours below it are not applied.
MIN_CONTRAST = 4.5
_SIZE = re.compile(r"(?:\d{1,3}(?:\.\d{1,3})?)(?:px|em|rem)")
_FONT = re.compile(r"[A-Za-z0-9 \-'\"]{1,60}(?:,[A-Za-z0-9 \-'\"]{1,60}){0,7}")


def _origin(url: str) -> tuple[str, str, int | None] | None:
    try:
        parts = urlsplit(url)
        return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port
    except ValueError:
        return None


def allowed_style_url(
    url: str | None, *, iss: str, fhir_servers: Sequence[str], development: bool
) -> str | None:
    """Why `url` must not be fetched, or None when it may (see the module doc)."""
    if not url:
        return "no smart_style_url"
    origin = _origin(url)
    if origin is None or origin[0] not in ("https", "http") or not origin[1]:
        return "smart_style_url is not an http(s) URL"
    if origin[0] != "https" and not development:
        return "smart_style_url is not https"
    trusted = {_origin(base) for base in (iss, *fhir_servers)}
    if origin not in trusted:
        return "smart_style_url is not on the EHR's own origin"
    return None


def _value(field: str, raw: Any) -> str | None:
    if not isinstance(raw, str):
        return None
    text = raw.strip()
    if field.startswith("color_"):
        return text if _COLOR.fullmatch(text) else None
    if field.startswith("dim_"):
        return text if _SIZE.fullmatch(text) else None
    if field.startswith("font_family_"):
        return text if _FONT.fullmatch(text) and text.count('"') % 2 == 0 else None
    return None


def _luminance(color: str) -> float:
    """WCAG relative luminance of ``#rgb`` or ``#rrggbb``."""
    digits = color[1:]
    if len(digits) == 3:
        digits = "".join(c * 2 for c in digits)
    channels = [int(digits[i : i + 2], 16) / 255 for i in (0, 2, 4)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(first: str, second: str) -> float:
    """The WCAG contrast ratio of two colours (1 to 21)."""
    high, low = sorted((_luminance(first), _luminance(second)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def style_css(document: Mapping[str, Any]) -> str:
    """The style document's acceptable values as CSS custom properties (``:root{...}``);
    empty when none is acceptable. Text and background go together, and only when they read
    (contrast at least `MIN_CONTRAST`, checked against our defaults when one is missing)."""
    values = {field: _value(field, document.get(field)) for field in CSS_VARIABLES}
    text = values["color_text"] or "#1a1a1a"
    background = values["color_background"] or "#ffffff"
    if contrast(text, background) < MIN_CONTRAST:
        values["color_text"] = values["color_background"] = None
    declarations = [
        f"{CSS_VARIABLES[field]}:{value}" for field, value in values.items() if value is not None
    ]
    return ":root{" + ";".join(declarations) + "}" if declarations else ""


class StyleCache:
    """Style documents by URL, fetched once an hour at most (module doc)."""

    def __init__(self, *, clock: Any = time.monotonic) -> None:
        self._found: TTLCache[str, str] = TTLCache(maxsize=256, ttl=TTL_SECONDS, timer=clock)
        self._failed: TTLCache[str, bool] = TTLCache(
            maxsize=256, ttl=FAILURE_TTL_SECONDS, timer=clock
        )

    async def css(self, http: httpx.AsyncClient, url: str) -> str:
        """The CSS of the style at `url` ("" when it cannot be had)."""
        if url in self._found:
            return self._found[url]
        if url in self._failed:
            return ""
        try:
            async with http.stream(
                "GET", url, timeout=TIMEOUT_SECONDS, headers={"Accept": "application/json"}
            ) as response:
                if response.status_code != 200:
                    raise ValueError(f"status {response.status_code}")
                body = b""
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_BYTES:
                        raise ValueError("larger than 64 KiB")
            document = orjson.loads(body)
            if not isinstance(document, dict):
                raise ValueError("not a JSON object")
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("smart style not applied: %s", type(exc).__name__)
            self._failed[url] = True
            return ""
        css = style_css(document)
        self._found[url] = css
        return css
