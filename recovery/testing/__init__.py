"""Helpers that the library's tests and its users' tests share."""

from recovery.testing.clock import FakeClock

__all__ = ["FakeClock"]
