"""``fi_run report LOG...``: what held a build up, from fi_run's --log / FI_RUN_LOG lines.

Also ``python -m fi_run.tools.report LOG...``. The command line only; the summary is observe/report.py.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

if __name__ == "__main__" and not __package__:
    # Run by path: import fi_run from the directory above the package, and take this directory (where
    # trace.py would shadow the standard library's trace) off the path.
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    __package__ = "fi_run.tools"

from ..errors import EXIT_IOERR, EXIT_USAGE
from ..messages import write_result
from ..observe.report import DEFAULT_TOP, JSON_KEYS, render, summarize, to_json
from .scaffold import exit_statuses, log_parser, parse_and_read, safe_stdout

if TYPE_CHECKING:
    from collections.abc import Sequence


def main(argv: Sequence[str]) -> int:
    """``fi_run report ARGS``: the exit status; raises UsageError (cli.main reports it)."""
    parser = log_parser(
        "report",
        "Summarize fi_run --log / FI_RUN_LOG files: steps, failures, retries by contention family, and per "
        "shared resource the lock waits (total, p50, p95, max), time held, the steps that waited longest, "
        "the steps that made them wait, what each mode waited behind, and whether more --semaphore seats "
        "would have paid (replayed from the log).",
        epilog="Log a build with FI_RUN_LOG=$PWD/fi_run.log ninja, then: fi_run report fi_run.log\n"
        + exit_statuses(EXIT_USAGE, EXIT_IOERR, first="0")
        + " Unreadable lines are skipped and counted.\n"
        "--json keys:\n" + "\n".join(f"  {key}: {meaning}" for key, meaning in JSON_KEYS.items()),
    )
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON document")
    parser.add_argument(
        "--top",
        type=int,
        default=DEFAULT_TOP,
        metavar="N",
        help=f"list the N longest waits and the N steps that made others wait longest, per resource "
        f"(default {DEFAULT_TOP}; the longest wait is always named)",
    )
    parsed = parse_and_read(
        parser, argv, lambda args: f"--top expects a number >= 0, got {args.top}" if args.top < 0 else None
    )
    if parsed is None:
        return 0
    args, log = parsed
    summary = summarize(log)
    safe_stdout()
    if args.json:
        import json

        return write_result(json.dumps(to_json(summary, args.top), indent=2) + "\n")
    import shutil

    from ..messages import colour_for, is_terminal

    width = shutil.get_terminal_size((120, 24)).columns if is_terminal(sys.stdout) else 120
    return write_result(render(summary, colour_for(sys.stdout), width, args.top))


if __name__ == "__main__":
    from .scaffold import run_by_path

    run_by_path("report")
