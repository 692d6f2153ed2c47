"""MkDocs hook: settings tables built from the attrs fields, so they cannot drift.

A page writes a marker where a table belongs::

    <!-- settings: recovery.CircuitBreakerConfig -->

and the built page has, in its place, one row per attrs field of that class, in
declaration order: the field, its default (read from attrs, so a changed default
shows at once) and its meaning, taken from the class docstring's field list
(``- ``name`` (default): meaning``; several names may share one item). A field the
docstring does not describe, or a docstring item naming no field, fails the build:
a new setting cannot reach the site undocumented.
"""

from __future__ import annotations

import importlib
import inspect
import re
from typing import Any

import attrs

MARKER = re.compile(r"<!--\s*settings:\s*(?P<target>[\w.]+)\s*-->")
# One item of a docstring's field list: "- ``a`` (1), ``b`` (2): meaning ...".
PAREN = r"\((?:[^()]|\([^()]*\))*\)"  # "(default)", one level of nesting allowed
ITEM = re.compile(rf"^- (?P<names>(?:``\w+``(?: {PAREN})?(?:, | and )?)+):\s*(?P<meaning>.*)$",
                  re.DOTALL)
NAME = re.compile(r"``(\w+)``")


class SettingsTableError(Exception):
    """A settings marker that cannot be turned into a table."""


def _load(target: str) -> type[Any]:
    module_name, _, class_name = target.rpartition(".")
    cls = getattr(importlib.import_module(module_name), class_name)
    if not attrs.has(cls):
        raise SettingsTableError(f"{target} is not an attrs class")
    return cls  # type: ignore[no-any-return]


def docstring_meanings(cls: type[Any]) -> dict[str, str]:
    """Field name -> meaning, from the field list of ``cls``'s docstring."""
    doc = inspect.cleandoc(cls.__doc__ or "")
    items: list[str] = []
    for line in doc.splitlines():
        if line.startswith("- "):
            items.append(line)
        elif items and line.startswith("  ") and not items[-1].endswith("\n"):
            items[-1] += " " + line.strip()
        elif items:
            items[-1] += "\n"  # the item ended
    meanings: dict[str, str] = {}
    for item in items:
        match = ITEM.match(item.strip())
        if match is None:
            continue
        meaning = " ".join(match["meaning"].split())
        for name in NAME.findall(match["names"]):
            meanings[name] = meaning
    return meanings


def _show(value: Any) -> str:
    """A default as a reader would write it."""
    if isinstance(value, type):
        return value.__name__
    if isinstance(value, tuple):
        inner = ", ".join(_show(item) for item in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if attrs.has(type(value)) and value == type(value)():
        return f"{type(value).__name__}()"
    return repr(value)


def _default(cls: type[Any], field: attrs.Attribute[Any]) -> str:
    """The value a config built without arguments holds (a factory that reads other
    fields, ``takes_self``, included)."""
    return _show(getattr(cls(), field.name))


def _markdown(text: str) -> str:
    """Docstring reST literals as Markdown code, pipes escaped for the table."""
    return re.sub(r":\w+:`~?([^`]+)`", r"`\1`", text.replace("``", "`")).replace("|", "\\|")


def settings_table(target: str) -> str:
    cls = _load(target)
    meanings = docstring_meanings(cls)
    fields = attrs.fields(cls)
    names = {field.name for field in fields}
    undocumented = [field.name for field in fields if field.name not in meanings]
    unknown = sorted(set(meanings) - names)
    if undocumented or unknown:
        raise SettingsTableError(
            f"{target}'s docstring must describe each field once: "
            f"undocumented {undocumented}, not fields {unknown}"
        )
    rows = ["| field | default | meaning |", "|---|---|---|"]
    rows += [
        f"| `{field.name}` | `{_default(cls, field)}` | {_markdown(meanings[field.name])} |"
        for field in fields
    ]
    return "\n".join(rows)


def on_page_markdown(markdown: str, **_: Any) -> str:
    return MARKER.sub(lambda match: settings_table(match["target"]), markdown)
