"""A name as a metric label: valid UTF-8 whatever the name holds.

Breaker and plugin names are any ``str``, and a name built from a file name
(:func:`os.fsdecode`) can carry a lone surrogate, which UTF-8 cannot encode.
Prometheus' exposition and OpenTelemetry's attributes must be UTF-8, and one
such label used to make the whole scrape fail. A lone surrogate is written as
its ``\\udcXX`` escape instead, as Python's ``repr`` and JSON (``/status.json``)
write it; every other character, backslashes included, is left as it is, so no
ordinary name changes.
"""

from __future__ import annotations


def label(name: str) -> str:
    """``name`` with each lone surrogate as its ``\\uXXXX`` escape (a valid UTF-8 str)."""
    if name.isascii():  # the common case: nothing to look at
        return name
    return name.encode("utf-8", "backslashreplace").decode("utf-8")
