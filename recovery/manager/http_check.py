"""A health check that is a URL: GET it, healthy on a 2xx or 3xx answer.

For dependencies (an upstream HTTP service's ``/healthz``), with the standard
library only: :mod:`urllib.request`, TLS verified by the default context.
Redirects are not followed (a 3xx is an answer, and healthy); at most
:data:`MAX_BODY` bytes of the body are read, so a service that answers with a
stream cannot hold the check past its timeout or fill memory. The timeout is
the socket's (connect and each read); the health monitor bounds the whole run.
"""

from __future__ import annotations

# The "idna" codec is imported on first use of a host name, by whichever thread
# resolves one first. If that is a health check's thread while the process forks
# (gunicorn --preload forks once the app is loaded), the child inherits the import
# half done and every host name fails there: "LookupError: unknown encoding: idna".
# Importing it here, with the module, leaves nothing to import later.
import encodings.idna  # noqa: F401
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

from recovery.health import HealthCheckResult

MAX_BODY = 64 * 1024
"""The most of a response body a check reads (bytes)."""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a 3xx is the answer: urllib then raises HTTPError with it


def check_url(url: str) -> str:
    """``url`` if it is an http(s) URL with a host, else ValueError naming it."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"health_check must be a callable or an http(s) URL, got {url!r}")
    return url


def url_health_check(url: str, timeout: float) -> Callable[[], HealthCheckResult]:
    """A check that GETs ``url`` with ``timeout`` seconds: healthy on 2xx/3xx."""
    opener = urllib.request.build_opener(
        _NoRedirect(), urllib.request.HTTPSHandler(context=ssl.create_default_context()))

    def check() -> HealthCheckResult:
        started = time.monotonic()
        try:
            with opener.open(urllib.request.Request(url, method="GET"),
                             timeout=timeout) as response:
                status = response.status
                response.read(MAX_BODY)
        except urllib.error.HTTPError as exc:
            status = exc.code
            exc.close()
        healthy = 200 <= status < 400
        return HealthCheckResult(
            healthy=healthy, duration=time.monotonic() - started,
            message=f"GET {url}: {status}", check_type="http")

    return check
