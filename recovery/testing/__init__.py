"""Helpers that the library's tests and its users' tests share."""

from recovery.testing.audit import RecordingAuditLogger
from recovery.testing.clock import FakeClock
from recovery.testing.plugins import (
    FlakyError,
    FlakyPlugin,
    InitializationCrash,
    PluginNotRunningError,
)

__all__ = [
    "FakeClock",
    "FlakyError",
    "FlakyPlugin",
    "InitializationCrash",
    "PluginNotRunningError",
    "RecordingAuditLogger",
]
