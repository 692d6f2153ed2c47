"""Make the labelled synthetic traces that ``python -m recovery tune`` and the benchmarks replay.

    python benchmarks/traces/generate.py [--seed 1] [--rate 20] [--duration 1000] [--out DIR]

writes one CSV per scenario (header ``t,ok,latency,healthy``; times in seconds)
into ``DIR`` (default: this folder). The same seed gives the same files, so the
committed traces can be regenerated and compared. Calls arrive as a Poisson
process at ``rate`` per second; a successful call's latency is log-normal around
its phase's median; ``healthy`` is the truth a breaker should discover.

Scenarios (each a list of phases):

- ``steady``: 2% errors throughout, always healthy. A good config never opens.
- ``outage``: healthy (0.5% errors), then two hard outages (every call fails fast,
  as on "connection refused"), each followed by a full recovery.
- ``brownout``: a long stretch at 30-50% errors (the rate redrawn every 10 s), some
  failures being 1 s timeouts; labelled unhealthy. Count rules may miss it; rate
  rules should not.
- ``flapping``: healthy and dead periods of 5-40 s in turn. Tests recovery speed
  against false recoveries.
- ``latency_spike``: no errors at all; latency goes from ~20 ms to ~1.5 s for a
  while. Labelled unhealthy: slow calls hold the caller's workers, and only a
  slow-call rule can see it.
- ``blip``: the steady trace's 2% errors, and every 100 s a 0.5 s blip in which
  every call fails (about 10 calls). Labelled unhealthy, but over before any
  breaker could help much: opening for one costs a whole open period of good
  calls.
- ``long_outage``: the steady trace's 2% errors around one 120 s hard outage.
  The case a breaker exists for: cut it off fast, come back soon after.
"""

from __future__ import annotations

import argparse
import math
import random
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

HERE = Path(__file__).resolve().parent


class Phase(NamedTuple):
    """A stretch of traffic with one behaviour."""

    seconds: float
    healthy: bool
    error_rate: float
    latency: float = 0.02  # median latency of a successful call
    failure_latency: float = 0.002  # latency of a failed call


Row = tuple[float, int, float, int]


def rows(phases: Sequence[Phase], rate: float, rng: random.Random) -> Iterator[Row]:
    """Poisson arrivals at ``rate``/s through ``phases`` in turn."""
    t = 0.0
    end = 0.0
    for phase in phases:
        end += phase.seconds
        while True:
            t += rng.expovariate(rate)
            if t >= end:
                t = end  # the next phase starts at its boundary
                break
            ok = rng.random() >= phase.error_rate
            if ok:
                latency = rng.lognormvariate(math.log(phase.latency), 0.4)
            else:
                latency = phase.failure_latency * rng.uniform(0.5, 1.5)
            yield (t, int(ok), latency, int(phase.healthy))


def steady(duration: float, rng: random.Random) -> list[Phase]:
    return [Phase(duration, True, 0.02)]


def outage(duration: float, rng: random.Random) -> list[Phase]:
    part = duration / 10
    return [
        Phase(3 * part, True, 0.005),
        Phase(part, False, 1.0),
        Phase(3 * part, True, 0.005),
        Phase(0.5 * part, False, 1.0),
        Phase(2.5 * part, True, 0.005),
    ]


def brownout(duration: float, rng: random.Random) -> list[Phase]:
    part = duration / 10
    browning = [
        Phase(10.0, False, rng.uniform(0.3, 0.5), failure_latency=rng.choice((0.002, 1.0)))
        for _ in range(int(4 * part / 10))
    ]
    return [Phase(3 * part, True, 0.005), *browning, Phase(3 * part, True, 0.005)]


def flapping(duration: float, rng: random.Random) -> list[Phase]:
    phases: list[Phase] = []
    total = 0.0
    healthy = True
    while total < duration:
        seconds = min(rng.uniform(5.0, 40.0), duration - total)
        phases.append(Phase(seconds, healthy, 0.005 if healthy else 1.0))
        total += seconds
        healthy = not healthy
    return phases


def latency_spike(duration: float, rng: random.Random) -> list[Phase]:
    part = duration / 10
    return [
        Phase(4 * part, True, 0.0),
        Phase(2 * part, False, 0.0, latency=1.5),
        Phase(4 * part, True, 0.0),
    ]


def blip(duration: float, rng: random.Random) -> list[Phase]:
    period = 100.0
    phases: list[Phase] = []
    for _ in range(int(duration // period)):
        phases += [Phase(period - 0.5, True, 0.02), Phase(0.5, False, 1.0)]
    return phases


def long_outage(duration: float, rng: random.Random) -> list[Phase]:
    start = 0.3 * duration
    return [
        Phase(start, True, 0.02),
        Phase(120.0, False, 1.0),
        Phase(duration - start - 120.0, True, 0.02),
    ]


SCENARIOS: dict[str, Callable[[float, random.Random], list[Phase]]] = {
    "steady": steady,
    "outage": outage,
    "brownout": brownout,
    "flapping": flapping,
    "latency_spike": latency_spike,
    "blip": blip,
    "long_outage": long_outage,
}


def write(path: Path, events: Iterator[Row], *, labels: bool = True) -> int:
    """Write a trace CSV; returns the number of events. ``labels=False`` leaves out the
    ``healthy`` column, as a production recording would."""
    count = 0
    with path.open("w", encoding="utf-8", newline="") as file:
        file.write("t,ok,latency,healthy\n" if labels else "t,ok,latency\n")
        for t, ok, latency, healthy in events:
            if labels:
                file.write(f"{t:.6f},{ok},{latency:.6f},{healthy}\n")
            else:
                file.write(f"{t:.6f},{ok},{latency:.6f}\n")
            count += 1
    return count


def generate(
    name: str, *, seed: int = 1, rate: float = 20.0, duration: float = 1000.0
) -> Iterator[Row]:
    """The events of scenario ``name``; the seed and the name fix them."""
    rng = random.Random(f"{name}:{seed}")
    return rows(SCENARIOS[name](duration, rng), rate, rng)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rate", type=float, default=20.0, help="calls per second")
    parser.add_argument("--duration", type=float, default=1000.0, help="seconds per trace")
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args(argv)
    for name in SCENARIOS:
        path = args.out / f"{name}.csv"
        events = write(path, generate(name, seed=args.seed, rate=args.rate, duration=args.duration))
        print(f"{path}: {events} events")


if __name__ == "__main__":
    main()
