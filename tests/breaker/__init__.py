"""Tests of ``recovery.breaker`` and its two outcome windows (the compiled one and its
pure-Python twin): behaviour, defaults, misuse, threads, the windows' contract and model,
the dispatcher's hot path and call latency."""
