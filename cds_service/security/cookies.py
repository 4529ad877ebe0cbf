"""The service's outbound HTTP clients keep no cookies.

One client serves every tenant's calls to EHR FHIR servers (and the JWKS fetches): a cookie that
one server set while answering one tenant's call would otherwise be sent with the next request to
that server, whichever tenant it is for. Nothing the service fetches needs a cookie (FHIR and
OAuth authenticate with bearer tokens), so none is stored, and none is ever sent.
"""

from __future__ import annotations

from http.cookiejar import Cookie, CookieJar
from typing import Any

__all__ = ["NoCookies"]


class NoCookies(CookieJar):
    """A cookie jar that stays empty: `httpx.AsyncClient(cookies=NoCookies())`."""

    def extract_cookies(self, response: Any, request: Any) -> None:
        return None

    def set_cookie(self, cookie: Cookie) -> None:
        return None

    def set_cookie_if_ok(self, cookie: Cookie, request: Any) -> None:
        return None
