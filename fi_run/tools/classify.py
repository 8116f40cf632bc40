"""`fi-run classify`: would fi_run retry a step that failed with this output, and why?

    fi-run classify [--platform posix|windows] [--command NAME] [--retry-on REGEX]... [--check-holders]
                    [FILE|-]

Reads a failed step's output (a file, or standard input), runs the same recognizer a step runs after a
failed attempt, and prints the verdict with its evidence: the tier that decided, the family, the lines,
the holder check. Exit status 0 if fi_run would retry, 1 if it would not, 2 for bad input.
"""

from __future__ import annotations

import os
import stat
import sys
from typing import TYPE_CHECKING

from ..contention.recognizer import TAIL_CHARS, Verdict, check_user_regex, classify
from ..errors import EXIT_IOERR, EXIT_USAGE, FiRunError, UsageError
from ..messages import write_result
from .scaffold import exit_statuses, parse, tool_parser

if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence
    from typing import BinaryIO, Final

# Enough bytes for TAIL_CHARS characters of UTF-8 (up to 4 bytes each): the file's start is never read.
_READ_BYTES = 4 * TAIL_CHARS
# A stream (standard input, a fifo, a device, a /proc file) is read to its end for its tail, but not past
# this: /dev/zero read whole ended in a MemoryError, exit 70 (issue 22), and one kept to its tail would
# never end. docs/reference.md, "What the tools read".
MAX_STREAM_BYTES: Final = 1 << 30
_CHUNK = 1 << 20
EXIT_RETRY = 0
EXIT_NO_RETRY = 1


class ClassifyInputError(FiRunError):
    """The output to classify cannot be read."""

    exit_status = EXIT_USAGE


def _parser() -> argparse.ArgumentParser:
    parser = tool_parser(
        "classify",
        "Say whether fi_run would retry a step that failed with this output (lock contention), and why:\n"
        "the verdict, the tier that decided (catalogue, generic, windows-hint, user), the family,\n"
        "the evidence lines and the holder check. See docs/retries.md.",
        epilog=exit_statuses(EXIT_USAGE, EXIT_IOERR, first="0 if fi_run would retry, 1 if it would not")
        + "\nExample: ninja 2>&1 | tail -200 > out.txt; fi_run classify --command pip out.txt",
    )
    parser.add_argument(
        "file", nargs="?", default="-", metavar="FILE", help="the output ('-' or none: stdin)"
    )
    parser.add_argument(
        "--platform",
        choices=("posix", "windows"),
        default="windows" if sys.platform == "win32" else "posix",
        help="where the output was printed (default: this machine's); Windows codes count only there",
    )
    parser.add_argument(
        "--command",
        default="",
        metavar="NAME",
        help="the command that printed it (pip, npm, go...): Windows hints",
    )
    parser.add_argument(
        "--retry-on",
        action="append",
        default=[],
        metavar="REGEX",
        help="a --retry-on regex, as given to a step",
    )
    parser.add_argument(
        "--check-holders",
        action="store_true",
        help="look at a pid the output names now (only meaningful for output printed moments ago)",
    )
    return parser


def _stream_tail(stream: BinaryIO, name: str) -> bytes:
    """The last _READ_BYTES of what ``stream`` gives until its end; at most MAX_STREAM_BYTES are read."""
    data = b""
    read = 0
    while chunk := stream.read(_CHUNK):
        read += len(chunk)
        if read > MAX_STREAM_BYTES:
            raise ClassifyInputError(
                f"classify: cannot read {name}: more than {MAX_STREAM_BYTES >> 30} GiB, the most classify "
                "reads of a stream (give it the end of the output, e.g. tail -c 1M)"
            )
        data = chunk[-_READ_BYTES:] if len(chunk) >= _READ_BYTES else (data + chunk)[-_READ_BYTES:]
    return data


def read_tail(name: str) -> str:
    """The end of a file or of standard input, decoded leniently (a build log is not always UTF-8).

    Only a regular file that has a size is read from near its end; anything else (a fifo or ``<(cmd)``, a
    device, a /proc file, whose size is 0) is read like standard input (issue 22)."""
    label = "standard input" if name == "-" else name
    try:
        if name == "-":
            if sys.stdin is None:  # descriptor 0 was closed when Python started (`<&-`)
                raise ClassifyInputError("classify: cannot read standard input: it is closed")
            data = _stream_tail(sys.stdin.buffer, label)
        else:
            with open(name, "rb") as file:
                info = os.fstat(file.fileno())
                if stat.S_ISREG(info.st_mode) and info.st_size > 0:
                    file.seek(max(0, info.st_size - _READ_BYTES))
                data = _stream_tail(file, label)
    except OSError as exc:
        raise ClassifyInputError(f"classify: cannot read {label}: {exc.strerror or exc}") from None
    return data.decode("utf-8", errors="replace")


def describe(verdict: Verdict) -> str:
    """The verdict and its evidence, a few lines for a person."""
    out = [f"verdict: {'retry' if verdict.retry else 'no retry'} ({verdict.kind})"]
    if verdict.tier:
        out.append(f"tier: {verdict.tier}")
    if verdict.family:
        out.append(f"family: {verdict.family}")
    out.append(f"reason: {verdict.reason}")
    if verdict.lines:
        out.append("evidence:")
        out.extend(f"  {line.strip()}" for line in verdict.lines)
    if verdict.holder is not None:
        out.append(f"holder: pid {verdict.holder}, {verdict.holder_check}")
    if verdict.held_file:
        out.append(f"file: {verdict.held_file}, {verdict.file_check}")
    if verdict.stale_file:
        out.append(f"stale lock file: {verdict.stale_file}")
    if verdict.max_retries is not None:
        out.append(f"retries capped at {verdict.max_retries} for this kind of evidence")
    return "\n".join(out) + "\n"


def main(argv: Sequence[str]) -> int:
    args = parse(_parser(), argv)
    if args is None:  # --help
        return 0
    for regex in args.retry_on:
        problem = check_user_regex(regex)
        if problem is not None:
            raise UsageError(f"classify: --retry-on expects a regular expression, got {regex!r}: {problem}")
    text = read_tail(args.file)
    verdict = classify(
        text,
        windows=args.platform == "windows",
        command=args.command,
        extra=tuple(args.retry_on),
        check_holders=args.check_holders,
    )
    if write_result(describe(verdict)):
        return 1  # the reader went away
    return EXIT_RETRY if verdict.retry else EXIT_NO_RETRY
