"""Serve the live dashboard of a whole fleet, read from the cluster's Redis.

Every process whose recovery.cluster.Cluster is started publishes a status
summary once a second on the namespace's summaries channel; this page shows
them node by node, and breaker by breaker (which nodes have it open). A node
that stops publishing is shown as silent after 5 seconds and dropped after 60.

It serves /metrics too (with prometheus-client): every node's breakers,
labelled by node, so one scrape target covers any number of worker processes.

It warns on stderr, in one line, when it cannot reach Redis, and when no node
has published in the namespace after a few seconds (the namespace must be the
one the nodes' Cluster uses: --namespace picks it).

The page is read-only and binds 127.0.0.1 unless --host says otherwise. If the
cluster signs its messages, give the secret through an environment variable
(--secret-env NAME), never on the command line where other users can see it:
summaries not signed with it are dropped and counted on the page.
Stop it with Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

QUIET_AFTER = 5.0  # seconds connected without a summary before saying the namespace is empty


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--cluster", required=True, metavar="URL",
                        help="the cluster's Redis URL (redis://, rediss:// or unix://)")
    parser.add_argument("--namespace", default="recovery", metavar="NS",
                        help="the cluster's namespace (default: %(default)s)")
    parser.add_argument("--port", type=_port, default=0, metavar="P",
                        help="port to serve on (default: a free one, printed)")
    parser.add_argument("--host", default="127.0.0.1", metavar="H",
                        help="address to bind (default: %(default)s, this machine only)")
    parser.add_argument("--secret-env", default=None, metavar="VAR",
                        help="environment variable that holds the cluster's secret")


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be within 0..65535, got {value}")
    return value


def run(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C; 0 then, 2 for a bad argument."""
    secret = None
    if args.secret_env is not None:
        secret = os.environ.get(args.secret_env)
        if not secret:
            print(f"recovery dashboard: error: the environment variable "
                  f"{args.secret_env!r} (--secret-env) is not set or empty", file=sys.stderr)
            return 2
    try:
        from recovery.dashboard import serve_fleet

        board = serve_fleet(args.cluster, args.namespace, args.host, args.port, secret)
    except ImportError as exc:
        print(f"recovery dashboard: error: {exc}", file=sys.stderr)
        return 2
    except (TypeError, ValueError, OSError) as exc:
        print(f"recovery dashboard: error: {exc}", file=sys.stderr)
        return 2
    print(f"fleet dashboard of namespace {args.namespace!r}: {board.url}", flush=True)
    watch = Watch(args.namespace)
    try:
        _wait_for_ctrl_c(lambda: watch(board.snapshot(), time.monotonic()))
    except KeyboardInterrupt:
        print("recovery dashboard: stopped", file=sys.stderr)
    finally:
        board.stop()
    return 0


class Watch:
    """Says on stderr, once each, what would leave the page empty: Redis out of reach
    (and that it is back), or nobody publishing in the namespace."""

    def __init__(self, namespace: str, out: TextIO | None = None) -> None:
        self._namespace = namespace
        self._out = out
        self._unreachable = False
        self._connected_at: float | None = None
        self._told_quiet = False

    def __call__(self, view: dict[str, Any], now: float) -> None:
        redis = view["redis"]
        if not redis["connected"]:
            if redis["last_error"] and not self._unreachable:
                self._unreachable = True
                self._say(f"warning: cannot reach Redis ({redis['last_error']}); retrying, "
                          "and no node can show until it answers")
            return
        if self._unreachable:
            self._unreachable = False
            self._say("Redis answers again")
        if self._connected_at is None:
            self._connected_at = now
        heard = redis["received"] + sum(redis["dropped"].values())
        if self._told_quiet or view["nodes"] or now - self._connected_at < QUIET_AFTER:
            return
        self._told_quiet = True
        if heard == 0:
            self._say(f"warning: no node has published in namespace {self._namespace!r} "
                      f"for {QUIET_AFTER:g}s; it must be the namespace of the nodes' Cluster "
                      "(Cluster(url, namespace=...)): pick it with --namespace NS")
        else:
            reasons = ", ".join(f"{reason} {count}" for reason, count
                                in sorted(redis["dropped"].items()))
            self._say(f"warning: {heard} summaries arrived in namespace {self._namespace!r} "
                      f"but none was accepted ({reasons}); a secret must be the cluster's "
                      "(--secret-env VAR)")

    def _say(self, text: str) -> None:
        print(f"recovery dashboard: {text}", file=self._out or sys.stderr, flush=True)


def _wait_for_ctrl_c(tick: Callable[[], None]) -> None:
    """Sleep until Ctrl-C raises KeyboardInterrupt, waking twice a second to let it
    (and to run ``tick``).

    The kernel hands a SIGINT sent to the process to any one thread that does not
    block it, here sometimes the feed's or the server's. Python then only notes the
    signal; its handler, which raises KeyboardInterrupt, runs in the main thread at
    the next bytecode that thread executes. A main thread asleep in an untimed wait
    executes none, and the dashboard would ignore Ctrl-C for ever: the timed wait
    gives it one twice a second.
    """
    asleep = threading.Event()
    while not asleep.wait(0.5):
        tick()
