"""Simulated plugins with scripted failure modes: :class:`FlakyPlugin` and its errors.

They live in ``recovery._flaky`` because the demo ships with them and shipped code
does not import ``recovery.testing``; tests (ours and users') import them from here.
"""

from recovery._flaky import FlakyError, FlakyPlugin, InitializationCrash, PluginNotRunningError

__all__ = ["FlakyError", "FlakyPlugin", "InitializationCrash", "PluginNotRunningError"]
