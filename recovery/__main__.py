"""Command line: ``python -m recovery demo`` and ``python -m recovery tune TRACE``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="recovery", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    # Each command's module is imported only when that command runs.
    from recovery import demo, tune

    for name, module in (("demo", demo), ("tune", tune)):
        summary = (module.__doc__ or "").strip().splitlines()[0]
        module.add_arguments(commands.add_parser(name, help=summary, description=module.__doc__))
    args = parser.parse_args(argv)
    command = demo if args.command == "demo" else tune
    return int(command.run(args))


if __name__ == "__main__":
    sys.exit(main())
