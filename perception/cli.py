"""Command line: `perception <command>`; each command lives in its own module.

User mistakes (PerceptionError) print one line and exit 2; bugs keep their traceback.
SIGINT and SIGTERM exit 130 and 143 from the first line of main() on: the handlers are installed
before anything heavy is imported (this module imports only the standard library's lightest parts).
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from perception import __version__
from perception.core.interrupt import (
    exit_on_signals,
    ignore_signals_while_exiting,
    interrupt_exit_code,
    unwind_on_signals,
)

if TYPE_CHECKING:
    import argparse

# command -> module with `register(subparsers)`; the module sets `func(args) -> int` on its parser
COMMANDS: dict[str, str] = {  # in the order `perception --help` lists them
    "run": "perception.commands.run",
    "echo": "perception.commands.echo",
    "stats": "perception.commands.stats",
    "view": "perception.commands.view",
    "keys": "perception.commands.keys",
    "record": "perception.commands.record",
    "compare": "perception.commands.compare",
    "fleet": "perception.commands.fleet",
    "eval": "perception.commands.eval",
    "synth": "perception.commands.synth",
    "train": "perception.commands.train",
    "inspect": "perception.commands.inspect",
    "fold": "perception.commands.fold",
    "build-engine": "perception.commands.build_engine",
    "engines": "perception.commands.engines",
    "doctor": "perception.commands.doctor",
    "bench": "perception.commands.bench",
}


def build_parser() -> argparse.ArgumentParser:
    import argparse

    from perception.core import logs

    parser = argparse.ArgumentParser(
        prog="perception",
        description="Real-time perception node: camera frames -> segmentation engine -> ZeroMQ (msgpack).",
        epilog="`perception COMMAND -h` for each command; docs/protocol.md for the wire format.")
    parser.add_argument("--version", action="version", version=f"perception {__version__}")
    parser.add_argument("--log-level", choices=logs.LEVELS, default="info",
                        help="least severe log messages shown (default info; debug also shows OpenCV's and "
                             "FFmpeg's own warnings)")
    parser.add_argument("--log-json", action="store_true",
                        help="log one JSON object a line (time, level, logger, message, fields), e.g. for journald")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMANDS.values():
        importlib.import_module(module_name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The program (argv None: the handlers stay until the process ends) or a call from Python
    (argv given: signals unwind from the start, and the caller's handlers are put back)."""
    restore = exit_on_signals()  # first, so a signal during the imports below is an exit code too
    if argv is not None:
        unwind_on_signals()  # never os._exit the calling process
    try:
        return _main(argv)
    except KeyboardInterrupt as exc:  # SIGINT, or SIGTERM (Terminated), wherever start-up or the command was
        return interrupt_exit_code(exc)
    finally:
        if argv is None:
            ignore_signals_while_exiting()
        else:
            restore()


def _main(argv: Sequence[str] | None) -> int:
    from perception.core import logs, native_logs
    from perception.core.errors import PerceptionError

    parser = build_parser()
    args = parser.parse_args(argv)
    native_logs.set_native_log_level(args.log_level)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    logs.configure(args.log_level, args.log_json)
    if not getattr(args, "owns_start_up_signals", False):  # `run` switches itself, after its imports
        unwind_on_signals()
    try:
        return int(args.func(args))
    except PerceptionError as exc:
        print(f"perception {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:
        # `perception echo | head`: the reader left; exit quietly like other Unix tools
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
