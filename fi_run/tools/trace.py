"""``fi_run trace LOG... -o trace.json``: a Chrome trace-event file of a build, from fi_run's --log lines.

Also ``python -m fi_run.tools.trace``. The command line only; the trace is built by observe/trace.py.
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

from ..errors import EXIT_IOERR, EXIT_USAGE, ResultError, UsageError
from ..messages import Reporter, write_result
from ..observe.trace import build_trace
from .scaffold import exit_statuses, log_parser, parse_and_read

if TYPE_CHECKING:
    from collections.abc import Sequence


def main(argv: Sequence[str]) -> int:
    """``fi_run trace ARGS``: the exit status; raises UsageError (cli.main reports it)."""
    parser = log_parser(
        "trace",
        "Write a Chrome trace-event JSON file of the steps in fi_run --log / FI_RUN_LOG files: one track per "
        "concurrent slot, lock waits and attempts as slices, retries as instant events, and an arrow from "
        "the step each wait was behind to the wait.",
        epilog="Open the file in https://ui.perfetto.dev (Open trace file) or chrome://tracing (Load).\n"
        + exit_statuses(EXIT_USAGE, EXIT_IOERR, first="0"),
    )
    parser.add_argument(
        "-o", "--output", metavar="FILE", default="-", help="where to write the trace (default: stdout)"
    )
    parsed = parse_and_read(parser, argv)
    if parsed is None:
        return 0
    args, log = parsed
    import json

    trace = build_trace(log)
    text = json.dumps(trace, ensure_ascii=True, separators=(",", ":")) + "\n"
    reporter = Reporter()
    if log.skipped:
        reporter.warning(log.skipped_note())
    if args.output == "-":
        return write_result(text)
    try:
        stream = open(args.output, "w", encoding="ascii")  # noqa: SIM115 - the two failures differ
    except OSError as exc:  # a place that cannot be a file (a directory, no such directory): the argument
        raise UsageError(f"cannot write the trace to {args.output!r}: {exc.strerror or exc}") from None
    try:
        with stream:
            stream.write(text)
    except OSError as exc:  # a full disk, an I/O error: the output, not the argument
        raise ResultError(f"cannot write the trace to {args.output!r}: {exc.strerror or exc}") from None
    other = trace["otherData"]
    steps = "no steps logged" if not other["steps"] else f"{other['steps']} steps on {other['slots']} tracks"
    reporter.info(f"wrote {args.output} ({steps}); open it in https://ui.perfetto.dev or chrome://tracing")
    return 0


if __name__ == "__main__":
    from .scaffold import run_by_path

    run_by_path("trace")
