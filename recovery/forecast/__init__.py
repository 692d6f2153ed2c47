"""Early warning: see a breaker's trip coming, at no cost to the call path.

    fc = recovery.forecast.Forecaster(interval=0.25)
    fc.watch(breaker)
    fc.add_listener(lambda warning: print(warning))
    with fc:
        ...

See :class:`Forecaster` and :class:`Warning`; :func:`score_forecast` measures
it on a recorded trace.
"""

from recovery.forecast.forecaster import Forecaster, Warning, WarningKind, WarningListener
from recovery.forecast.replay import ForecastScore, OutageLead, score_forecast

__all__ = [
    "ForecastScore",
    "Forecaster",
    "OutageLead",
    "Warning",
    "WarningKind",
    "WarningListener",
    "score_forecast",
]
