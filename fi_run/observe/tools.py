"""What ``fi_run report`` and ``fi_run trace`` share on the command line: their parser and their output.

Their errors take the wrapper's path: a bad option or an unreadable log raises UsageError, and ``cli.main``
prints its one ``fi_run:`` line and returns its exit status. Reading the logs is logfile.py's job.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from ..errors import UsageError
from .logfile import read_logs

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Sequence
    from typing import NoReturn

    from .logfile import Log


def tool_parser(prog: str, description: str, epilog: str = "") -> argparse.ArgumentParser:
    """An ArgumentParser for a tool that reads logs (its LOG arguments already added) whose errors raise
    UsageError (one ``fi_run: ...`` line, exit 2), like fi_run's own."""
    import argparse

    class Parser(argparse.ArgumentParser):
        def error(self, message: str) -> NoReturn:
            raise UsageError(f"{self.prog.removeprefix('fi_run ')}: {message} (see {self.prog} --help)")

    parser = Parser(
        prog=prog,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("logs", nargs="+", metavar="LOG", help="a log file ('-': standard input)")
    return parser


def parse_and_read(
    parser: argparse.ArgumentParser,
    argv: Sequence[str],
    check: Callable[[argparse.Namespace], str | None] = lambda args: None,
) -> tuple[argparse.Namespace, Log] | None:
    """A tool's arguments and the logs they name; None after --help (printed: the tool exits 0).

    ``check`` returns a usage problem or None. Raises UsageError for a bad option or an unreadable log."""
    try:
        args = parser.parse_args(list(argv))
    except SystemExit:  # only --help gets here: every error raises UsageError first
        return None
    problem = check(args)
    if problem is not None:
        parser.error(problem)
    return args, read_logs(args.logs)


def safe_stdout() -> None:
    """A command line or path the console cannot encode is shown escaped, never a UnicodeEncodeError."""
    import io

    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors="backslashreplace")


def write_stdout(text: str) -> int:
    """Write a tool's result to stdout: 0, or 1 if the reader went away (`fi_run report LOG | head`)."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        # Point stdout at the null device, so that the interpreter's final flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 1
    return 0


def run_by_path(tool: str) -> NoReturn:
    """``python -m fi_run.observe.report`` or ``python .../report.py``: the same as ``fi_run report``."""
    from ..cli import main

    sys.exit(main([tool, *sys.argv[1:]]))
