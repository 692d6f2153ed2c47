"""Opening rules of a config that can never fire before another one (a warning, and
points ``--search`` skips)."""

from __future__ import annotations

import math

from recovery.config import CircuitBreakerConfig

# -- rules that cannot fire ---------------------------------------------------------------


def _fewest_failures(rate_threshold: float, calls: int) -> int:
    """The fewest failures among ``calls`` outcomes that reach the rate (as the window checks)."""
    failures = min(calls, math.ceil(rate_threshold * calls))
    while failures > 0 and (failures - 1) / calls >= rate_threshold:
        failures -= 1
    while failures < calls and failures / calls < rate_threshold:
        failures += 1
    return failures


def redundant_rules(config: CircuitBreakerConfig) -> list[str]:
    """Why an enabled opening rule of ``config`` can never fire before another one, if so.

    The window checks its rules once it holds ``minimum_requests`` outcomes (at
    most ``sliding_window_size``). The rate rule needs at least
    ``fewest = ceil(rate * minimum_requests)`` failures, so it can never be
    first when the count rule already fires at ``failure_threshold <= fewest``.
    The count rule can never be first when even a full window makes
    ``failure_threshold / sliding_window_size`` reach the rate (a count rule set
    to the window size is how one switches it off, and is not reported). The
    slow-call rate needs ``slow_call_duration``, and the duration does nothing
    without the rate.
    """
    notes = []
    count, window = config.failure_threshold, config.sliding_window_size
    minimum, share = config.minimum_requests, config.failure_rate_threshold
    if share is not None:
        fewest = _fewest_failures(share, minimum)
        if count <= fewest:
            notes.append(
                f"failure_rate_threshold={share:g} can never open the circuit before the "
                f"count rule: at minimum_requests={minimum} it needs {fewest} failures, and "
                f"failure_threshold={count} opens it at {count}; raise failure_threshold above "
                f"{fewest} (up to sliding_window_size={window} to leave opening to the rate)"
            )
        elif count < window and count / window >= share:
            notes.append(
                f"failure_threshold={count} can never open the circuit before the rate rule: "
                f"{count} failures in a full window of {window} is already a rate of "
                f"{count / window:.2g} >= failure_rate_threshold={share:g}; lower "
                f"failure_threshold below {math.ceil(share * window)}, or set it to {window} "
                "to say the rate alone decides"
            )
    if config.slow_call_rate_threshold is not None and config.slow_call_duration is None:
        notes.append(
            f"slow_call_rate_threshold={config.slow_call_rate_threshold:g} never fires: "
            "no call is slow until slow_call_duration is set"
        )
    if config.slow_call_duration is not None and config.slow_call_rate_threshold is None:
        notes.append(
            f"slow_call_duration={config.slow_call_duration:g} opens nothing without "
            "slow_call_rate_threshold"
        )
    return notes
