"""Fixtures of the demo's tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.demo.process import Demo
from tests.helpers import closed_after


@pytest.fixture
def start() -> Iterator[Callable[..., Demo]]:
    """``start(*command)``: a Demo, killed at the end of the test if it is still running
    (a fleet's nodes then see their pipe close, and end)."""
    yield from closed_after(Demo, Demo.close)
