"""Tests of ``recovery.dashboard``: the single-process page and its stream, the fleet view,
their handling of hostile input, and both in a real Chromium (the browser tests)."""
