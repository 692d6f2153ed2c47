"""Serve the live dashboard of a whole fleet, read from the cluster's Redis.

Every process whose recovery.cluster.Cluster is started publishes a status
summary once a second on the namespace's summaries channel; this page shows
them node by node, and breaker by breaker (which nodes have it open). A node
that stops publishing is shown as silent after 5 seconds and dropped after 60.

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
    try:
        _wait_for_ctrl_c()
    except KeyboardInterrupt:
        print("recovery dashboard: stopped", file=sys.stderr)
    finally:
        board.stop()
    return 0


def _wait_for_ctrl_c() -> None:
    """Sleep until Ctrl-C raises KeyboardInterrupt, waking twice a second to let it.

    The kernel hands a SIGINT sent to the process to any one thread that does not
    block it, here sometimes the feed's or the server's. Python then only notes the
    signal; its handler, which raises KeyboardInterrupt, runs in the main thread at
    the next bytecode that thread executes. A main thread asleep in an untimed wait
    executes none, and the dashboard would ignore Ctrl-C for ever: the timed wait
    gives it one twice a second.
    """
    asleep = threading.Event()
    while not asleep.wait(0.5):
        pass
