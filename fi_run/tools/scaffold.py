"""What fi_run's tools share: their parser, their errors and their standard output.

The tools are ``fi_run jobserver``, ``classify``, ``report``, ``trace`` and ``locks`` (cli.TOOLS): programs of
their own behind one name, each a ``main(argv) -> int`` in this package. They take fi_run's path for errors: a
bad option raises UsageError, and ``cli.main`` prints its one ``fi_run: NAME: ...`` line and returns exit 2,
never argparse's usage block and status. What they print goes through ``messages.write_result``: a reader
that went away (``| head``) ends the tool quietly, a closed or full stdout is one line and exit 74.

argparse is fine here: a tool runs once per build or once per person, not once per step.
"""

from __future__ import annotations

import argparse
import sys

from ..errors import EXIT_STATUSES, UsageError

TYPE_CHECKING = False  # not typing's: every tool imports this (`fi-run locks` is timed: issue 18)
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import NoReturn

    from ..observe.logfile import Log


class ToolParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are fi_run's: ``NAME: message (see fi_run NAME --help)``, exit 2."""

    def __init__(self, name: str, **kwargs: object) -> None:
        super().__init__(
            prog=f"fi_run {name}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
            **kwargs,  # type: ignore[arg-type]
        )
        self.tool = name

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.tool}: {message} (see fi_run {self.tool} --help)")


def tool_parser(name: str, description: str, epilog: str = "", *, usage: str | None = None) -> ToolParser:
    return ToolParser(name, description=description, epilog=epilog, usage=usage)


def exit_statuses(*statuses: int, first: str = "the command's own") -> str:
    """An epilog's exit-status line, its meanings taken from errors.EXIT_STATUSES (the one table)."""
    meanings = dict(EXIT_STATUSES)
    described = [first, *(f"{status} {meanings[status]}" for status in statuses)]
    return "exit status: " + "; ".join(described) + "."


def parse(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.Namespace | None:
    """The tool's arguments; None after --help (printed: the tool exits 0). Errors raise UsageError."""
    try:
        return parser.parse_args(list(argv))
    except SystemExit:  # only --help gets here: every error raises UsageError first
        return None


def log_parser(name: str, description: str, epilog: str = "") -> ToolParser:
    """The parser of a tool that reads --log files (report, trace), its LOG arguments already added."""
    parser = tool_parser(name, description, epilog)
    parser.add_argument("logs", nargs="+", metavar="LOG", help="a log file ('-': standard input)")
    return parser


def parse_and_read(
    parser: argparse.ArgumentParser,
    argv: Sequence[str],
    check: Callable[[argparse.Namespace], str | None] = lambda args: None,
) -> tuple[argparse.Namespace, Log] | None:
    """A log tool's arguments and the logs they name; None after --help.

    ``check`` returns a usage problem or None. Raises UsageError for a bad option or an unreadable log."""
    from ..observe.logfile import read_logs

    args = parse(parser, argv)
    if args is None:
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


def run_by_path(tool: str) -> NoReturn:
    """``python -m fi_run.tools.report`` or ``python .../report.py``: the same as ``fi_run report``."""
    from ..cli import main

    sys.exit(main([tool, *sys.argv[1:]]))
