"""Make the labelled traces the early-warning benchmark replays (``bench_forecast.py``).

    python benchmarks/traces/generate_forecast.py [--seed 1] [--rate 20] [--out DIR]

writes one CSV per scenario (header ``t,ok,latency,healthy``) into ``DIR``
(default: this folder). The same seed gives the same files. Calls arrive as a
Poisson process; a successful call's latency is log-normal around the median of
its moment; ``healthy`` is false from the first second a dependency starts to
degrade until it is healthy again.

Scenarios (each draws its own rates and lengths from the seed, so that seeds
differ in more than noise):

- ``ramp_geometric``: four outages that creep in: the failure rate grows by the
  same factor every second, from the baseline (0.1, 0.5, 1 or 2 %, one per
  trace) to 100 % over 30-120 s,
  stays there 30 s, then the dependency is healthy again for 5 minutes.
- ``ramp_linear``: the same, the rate growing by the same step every second.
- ``latency_creep``: three slow-downs: the median latency doubles every 60 s for
  four minutes (20 ms to 320 ms), no change in errors; then 5 healthy minutes.
- ``noise_2pct`` / ``noise_5pct``: 2 % / 5 % random failures, always healthy.
- ``traffic_double`` / ``traffic_halve``: 2 % failures while the traffic doubles
  (halves) every 5 minutes and goes back, always healthy.
- ``blips``: 2 % failures and, every two minutes, one second in which every call
  fails. Each blip is labelled unhealthy; it is over before a breaker could help.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import random
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

HERE = Path(__file__).resolve().parent


class Segment(NamedTuple):
    """A stretch of traffic: its length, arrivals per second, and, at each fraction ``u``
    in [0, 1) of the way through, the failure rate and the median latency."""

    seconds: float
    healthy: bool
    calls_per_second: float
    error_rate: Callable[[float], float]
    median_latency: Callable[[float], float] = lambda u: 0.02


def constant(value: float) -> Callable[[float], float]:
    return lambda u: value


def geometric(start: float, end: float) -> Callable[[float], float]:
    """From ``start`` to ``end``, multiplied by the same factor every second."""
    return lambda u: start * (end / start) ** u


def linear(start: float, end: float) -> Callable[[float], float]:
    return lambda u: start + (end - start) * u


Row = tuple[float, int, float, int]


def rows(segments: Sequence[Segment], rng: random.Random) -> Iterator[Row]:
    """Poisson arrivals through ``segments`` in turn."""
    begin = 0.0
    for segment in segments:
        t = begin
        end = begin + segment.seconds
        while True:
            t += rng.expovariate(segment.calls_per_second)
            if t >= end:
                break
            u = (t - begin) / segment.seconds
            ok = rng.random() >= segment.error_rate(u)
            if ok:
                latency = rng.lognormvariate(math.log(segment.median_latency(u)), 0.4)
            else:
                latency = 0.002 * rng.uniform(0.5, 1.5)
            yield (t, int(ok), latency, int(segment.healthy))
        begin = end


def _ramps(shape: Callable[[float, float], Callable[[float], float]]) -> Callable[
    [float, random.Random], list[Segment]
]:
    def scenario(rate: float, rng: random.Random) -> list[Segment]:
        segments: list[Segment] = []
        baseline = rng.choice((0.001, 0.005, 0.01, 0.02))
        for _ in range(4):
            segments += [
                Segment(300.0, True, rate, constant(baseline)),
                Segment(rng.uniform(30.0, 120.0), False, rate, shape(baseline, 1.0)),
                Segment(30.0, False, rate, constant(1.0)),
            ]
        return [*segments, Segment(300.0, True, rate, constant(baseline))]

    return scenario


def latency_creep(rate: float, rng: random.Random) -> list[Segment]:
    segments: list[Segment] = []
    for _ in range(3):
        segments += [
            Segment(300.0, True, rate, constant(0.005)),
            Segment(240.0, False, rate, constant(0.005), lambda u: 0.02 * 2 ** (u * 4)),
        ]
    return [*segments, Segment(300.0, True, rate, constant(0.005))]


def noise(error_rate: float) -> Callable[[float, random.Random], list[Segment]]:
    def scenario(rate: float, rng: random.Random) -> list[Segment]:
        return [Segment(1200.0, True, rate, constant(error_rate))]

    return scenario


def traffic(factor: float) -> Callable[[float, random.Random], list[Segment]]:
    def scenario(rate: float, rng: random.Random) -> list[Segment]:
        low = rate if factor > 1 else rate / factor
        levels = [low, low * factor] * 2
        return [Segment(300.0, True, level, constant(0.02)) for level in levels]

    return scenario


def blips(rate: float, rng: random.Random) -> list[Segment]:
    segments: list[Segment] = []
    for _ in range(10):
        segments += [
            Segment(rng.uniform(100.0, 140.0), True, rate, constant(0.02)),
            Segment(1.0, False, rate, constant(1.0)),
        ]
    return [*segments, Segment(120.0, True, rate, constant(0.02))]


SCENARIOS: dict[str, Callable[[float, random.Random], list[Segment]]] = {
    "ramp_geometric": _ramps(geometric),
    "ramp_linear": _ramps(linear),
    "latency_creep": latency_creep,
    "noise_2pct": noise(0.02),
    "noise_5pct": noise(0.05),
    "traffic_double": traffic(2.0),
    "traffic_halve": traffic(0.5),
    "blips": blips,
}


def generate(name: str, *, seed: int = 1, rate: float = 20.0) -> Iterator[Row]:
    """The events of scenario ``name`` at about ``rate`` calls per second; the seed, the
    name and the rate fix them."""
    rng = random.Random(f"{name}:{seed}:{rate}")
    return rows(SCENARIOS[name](rate, rng), rng)


def _writer() -> Callable[..., int]:
    """``generate.py``'s CSV writer (one format for every committed trace)."""
    spec = importlib.util.spec_from_file_location("trace_generator", HERE / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    write: Callable[..., int] = module.write
    return write


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rate", type=float, default=20.0, help="calls per second")
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args(argv)
    write = _writer()
    for name in SCENARIOS:
        path = args.out / f"{name}.csv"
        events = write(path, generate(name, seed=args.seed, rate=args.rate))
        print(f"{path}: {events} events")


if __name__ == "__main__":
    main()
