"""Pick the outcome window: the compiled one, or its pure-Python twin.

The twin is used when the extension was not built or when the environment sets
``RECOVERY_NO_EXTENSIONS=1`` (the convention of aio-libs' multidict/frozenlist).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

__all__ = ["EXTENSION_ACTIVE", "Window"]

EXTENSION_ACTIVE = False

if TYPE_CHECKING:
    from recovery._window_py import Window as Window
else:
    from recovery._window_py import Window

    if os.environ.get("RECOVERY_NO_EXTENSIONS", "") != "1":
        try:
            from recovery._window import Window
        except ImportError:  # not built: the twin serves
            pass
        else:
            EXTENSION_ACTIVE = True
