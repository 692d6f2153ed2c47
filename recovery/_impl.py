"""Pick the hot-path classes: the compiled ones, or their pure-Python twins.

The twins are used when the extension was not built or when the environment sets
``RECOVERY_NO_EXTENSIONS=1`` (the convention of aio-libs' multidict/frozenlist).
An extension that is there but does not load (built for another Python or another
version of the sources, so that it fails to link or fails its own import-time
checks, with whatever exception those raise) is an error that says how to rebuild
it: falling back silently would hide a broken install behind a slower breaker.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

__all__ = ["EXTENSION_ACTIVE", "Dispatcher", "Route", "Window"]

EXTENSION_ACTIVE = False


def stale_extension(error: Exception) -> ImportError:
    """The error for a compiled window that is present but does not import."""
    return ImportError(
        f"recovery's compiled window (recovery._window) is installed but does not load: "
        f"{error}. Rebuild it: reinstall recovery (from a checkout: pip install -e . "
        f"--config-settings editable_mode=compat, or python setup.py build_ext "
        f"--inplace), or delete the stale recovery/_window*.so. To run on the "
        f"pure-Python twin meanwhile, set RECOVERY_NO_EXTENSIONS=1."
    )


if TYPE_CHECKING:
    # Type checkers read recovery/_window.pyi, the stub users see; the twin is checked
    # against it by tests/breaker/test_window_contract.py.
    from recovery._window import Dispatcher as Dispatcher
    from recovery._window import Route as Route
    from recovery._window import Window as Window
else:
    from recovery._window_py import Dispatcher, Route, Window

    if os.environ.get("RECOVERY_NO_EXTENSIONS", "") != "1":
        try:
            from recovery._window import Dispatcher, Route, Window
        except ModuleNotFoundError as error:
            if error.name != "recovery._window":  # the extension is there, a need is not
                raise stale_extension(error) from error
            # not built: the twins serve
        except Exception as error:  # a stale build fails its own checks in any way
            raise stale_extension(error) from error
        else:
            EXTENSION_ACTIVE = True
