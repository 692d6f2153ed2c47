"""Tests of ``recovery.manager``: episodes and calls, verification, crash loops, contained
callbacks, bad input, dependencies, the learned strategy order, early warning, the status,
and a manager in a forked child."""
