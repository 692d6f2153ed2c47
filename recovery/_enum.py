"""The base of the library's string enums (states, alert kinds, failure types)."""

from __future__ import annotations

from enum import Enum


class StrEnum(str, Enum):
    """An enum whose members are their string values: ``str(x)`` and ``format(x)``
    give ``x.value``, as status, metrics and logs show them, and a member compares
    equal to its value.

    Not ``enum.StrEnum``: that needs Python 3.11 and the library supports 3.10.
    """

    def __str__(self) -> str:
        return str(self.value)
