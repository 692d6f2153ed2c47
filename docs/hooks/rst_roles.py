"""Griffe extension: the docstrings' reST roles (:class:`~recovery.X`) as Markdown code.

The code's docstrings are written for ``help()`` and editors, in reST's habits; on the
site a role is shown as the code it names (``X``; the ``~`` form keeps the last part).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:class|meth|func|attr|mod|exc|data|obj):`(?P<tilde>~?)(?P<target>[^`]+)`")


def _code(match: re.Match[str]) -> str:
    target = match["target"]
    return f"`{target.rsplit('.', 1)[-1] if match['tilde'] else target}`"


class RstRoles(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **_: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = ROLE.sub(_code, obj.docstring.value)
