"""Command line: python -m recovery demo, python -m recovery tune TRACE and
python -m recovery dashboard --cluster URL."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

import recovery

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line that says what is wrong, not a usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:  # a Ctrl-C that the command does not handle itself
        print("recovery: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _main(argv: Sequence[str] | None) -> int:
    parser = _Parser(prog="recovery", description=__doc__)  # plain text: it is --help
    hot_path = "compiled" if recovery.EXTENSION_ACTIVE else "pure-Python"
    parser.add_argument(
        "--version", action="version",
        version=f"%(prog)s {recovery.__version__} ({hot_path} hot path)",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    # The command modules are imported here, when the command line is parsed (each
    # adds its own arguments and help), never by `import recovery`.
    from recovery import tune
    from recovery.dashboard import cli as dashboard
    from recovery.demo import cli as demo

    modules = {"demo": demo, "tune": tune, "dashboard": dashboard}
    for name, module in modules.items():
        summary = (module.__doc__ or "").strip().splitlines()[0]
        module.add_arguments(commands.add_parser(name, help=summary, description=module.__doc__))
    args = parser.parse_args(argv)
    return int(modules[args.command].run(args))


if __name__ == "__main__":
    sys.exit(main())
