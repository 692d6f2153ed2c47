"""Pick the hot-path classes: the compiled ones, or their pure-Python twins.

The twins are used when the extension was not built or when the environment sets
``RECOVERY_NO_EXTENSIONS=1`` (the convention of aio-libs' multidict/frozenlist).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

__all__ = ["EXTENSION_ACTIVE", "Dispatcher", "Route", "Window"]

EXTENSION_ACTIVE = False

if TYPE_CHECKING:
    # Type checkers read recovery/_window.pyi, the stub users see; the twin is checked
    # against it by tests/test_window_contract.py.
    from recovery._window import Dispatcher as Dispatcher
    from recovery._window import Route as Route
    from recovery._window import Window as Window
else:
    from recovery._window_py import Dispatcher, Route, Window

    if os.environ.get("RECOVERY_NO_EXTENSIONS", "") != "1":
        try:
            from recovery._window import Dispatcher, Route, Window
        except ImportError:  # not built: the twins serve
            pass
        else:
            EXTENSION_ACTIVE = True
