"""Reading --log files: one JSON object per line (schema.py), for ``fi_run report`` and ``fi_run trace``.

Only these tools import this module (and json with it), never a build step. A line that is not a whole
record (a writer killed mid-line on a full disk, a foreign line, a hand edit) is skipped and counted, never
fatal: the rest of the log is still worth reading.
"""

from __future__ import annotations

import json
import math
import os
import stat
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from ..errors import UsageError
from .schema import Attempt, Loan, Lock, Step

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence
    from typing import BinaryIO

# How many skipped lines are named (file:line) in messages and in --json; the count is always exact.
SKIPPED_NAMED = 10

# The most read of one log (docs/reference.md, "What the tools read"). A source without an end (/dev/zero,
# `yes`, /proc/self/pagemap) read whole ended in a MemoryError, exit 70 (issue 22); a real log of this size
# holds about two million steps, which take several GB once parsed.
MAX_LOG_BYTES: Final = 1 << 30
# A longer line is skipped and counted without being held: no record is near this (an argv is at most a few
# MB even escaped), and a source of endless bytes without a newline must not fill memory before the limit.
MAX_LINE_BYTES: Final = 64 << 20


class LogReadError(UsageError):
    """A log file that cannot be read at all (missing, a directory, no permission): one line, exit 2."""


@dataclass
class Log:
    steps: list[Step] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    skipped: int = 0
    skipped_at: list[str] = field(default_factory=list)  # the first SKIPPED_NAMED, as file:line

    def skip(self, where: str) -> None:
        self.skipped += 1
        if len(self.skipped_at) < SKIPPED_NAMED:
            self.skipped_at.append(where)

    def skipped_note(self) -> str:
        """'skipped 3 unreadable lines (a.log:4, a.log:9, b.log:1)', or '' if none were."""
        if not self.skipped:
            return ""
        plural = "line" if self.skipped == 1 else "lines"
        more = ", ..." if self.skipped > len(self.skipped_at) else ""
        return f"skipped {self.skipped} unreadable {plural} ({', '.join(self.skipped_at)}{more})"


# Every number a record holds is bounded, so that what the tools compute from any number of records stays
# finite and fits the formats they print (issue 22: a wait of 1.7e308 made trace exit 70 with OverflowError,
# and two of them made report --json print Infinity, which is not JSON).
# - Every float is seconds, at most MAX_SECONDS either way: the span from 1970 to the end of the year 9999.
#   start and end are dates, so they are also never before 1970: a date past 9999 would make the date
#   functions overflow (report once printed a traceback for start: 1e300). A million such numbers still add
#   up to less than 1e18, and trace's microseconds (an int each) never overflow.
# - Every int (v, pid, status, slots) fits in 64 bits (signed), which JSON readers in other languages take.
_LAST_TIMESTAMP = 253402300799.0  # 9999-12-31 23:59:59 UTC
MAX_SECONDS: Final = _LAST_TIMESTAMP
MAX_INTEGER: Final = (1 << 63) - 1
_DATES: Final = ("start", "end")


class _Bad(Exception):
    pass


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Bad
    if not -MAX_SECONDS <= value <= MAX_SECONDS:  # false for NaN too; 1e400 and Infinity read as inf
        raise _Bad
    return float(value)


def _integer(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not -MAX_INTEGER - 1 <= value <= MAX_INTEGER:
        raise _Bad
    return value


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise _Bad
    return value


def _boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise _Bad
    return value


def _texts(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise _Bad
    return tuple(_text(item) for item in value)


def _records(record_type: type[Attempt | Lock | Loan]) -> Callable[[object], tuple[object, ...]]:
    def check(value: object) -> tuple[object, ...]:
        if not isinstance(value, list):
            raise _Bad
        return tuple(_record(record_type, item) for item in value)

    return check


# One check per field type that schema.py uses, keyed by the annotation's text: a new field of a known type
# needs nothing here. "X | None" fields also accept null.
_CHECKS: dict[str, Callable[[object], object]] = {
    "int": _integer,
    "float": _number,
    "str": _text,
    "bool": _boolean,
    "tuple[str, ...]": _texts,
    "tuple[Attempt, ...]": _records(Attempt),
    "tuple[Lock, ...]": _records(Lock),
    "tuple[Loan, ...]": _records(Loan),
}


def _record(record_type: type[Step | Attempt | Lock | Loan], value: object, **extra: object) -> object:
    """A decoded JSON object -> the schema record, every field checked against its annotation. A missing
    key takes the field's default (older logs lack newer fields); keys the schema does not know are ignored
    (newer logs)."""
    if not isinstance(value, dict):
        raise _Bad
    fields: dict[str, object] = {}
    for name, annotation in record_type.__annotations__.items():
        if name in extra:
            continue
        if name not in value:
            if not hasattr(record_type, name):  # no default: required
                raise _Bad(name)
            continue
        text = str(annotation)
        item = value[name]
        optional = text.endswith(" | None")
        if item is None and optional:
            fields[name] = None
            continue
        try:
            fields[name] = _CHECKS[text.removesuffix(" | None")](item)
        except _Bad as exc:
            raise _Bad(exc.args[0] if exc.args else name) from None
    return record_type(**fields, **extra)  # type: ignore[arg-type]  # each field checked above


def parse_record(record: object, source: str = "") -> Step:
    """A decoded log line -> Step; ValueError if it is not a fi_run step record."""
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    try:
        step = _record(Step, record, source=source)
    except _Bad as exc:
        raise ValueError(f"missing or malformed field {exc.args[0]!r}") from None
    assert isinstance(step, Step)
    if step.v < 1:
        raise ValueError("missing or malformed field 'v'")
    for name in _DATES:
        if getattr(step, name) < 0:  # before 1970: no fi_run record (the upper bound is every float's)
            raise ValueError(f"missing or malformed field {name!r}")
    return step


def parse_line(raw: bytes, where: str, log: Log) -> None:
    """Add the record on one line (its bytes) to ``log``; skip and count it if it is not one."""
    if not raw.strip():
        return  # blank lines (and the end of the file) are not records, nor broken ones
    try:
        step = parse_record(json.loads(raw.decode("utf-8")), where)
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        log.skip(where)
        return
    log.steps.append(step)


class _TooLong(Exception):
    pass


def _lines(stream: BinaryIO) -> Iterator[bytes | None]:
    """The lines of a stream, read one at a time (a fifo or a device is read like standard input); None for
    a line longer than MAX_LINE_BYTES, which is read through without being held. _TooLong past
    MAX_LOG_BYTES."""
    left = MAX_LOG_BYTES

    def piece() -> bytes:
        nonlocal left
        raw = stream.readline(min(left, MAX_LINE_BYTES) + 1)
        left -= len(raw)
        if left < 0:
            raise _TooLong
        return raw

    while raw := piece():
        if len(raw) <= MAX_LINE_BYTES or raw.endswith(b"\n"):
            yield raw
            continue
        while raw and not raw.endswith(b"\n"):
            raw = piece()
        yield None


def _read_one(stream: BinaryIO, path: str, name: str, log: Log) -> None:
    """Add the records of one log, read from ``stream``, to ``log``; ``name`` is its name in file:line.
    LogReadError if it is longer than MAX_LOG_BYTES (or a regular file says so at once)."""
    too_long = LogReadError(
        f"cannot read log {'standard input' if path == '-' else repr(path)}: more than "
        f"{MAX_LOG_BYTES >> 30} GiB, the most report and trace read of one log "
        "(give them the part you want, e.g. tail -c 512M LOG | fi_run report -)"
    )
    try:
        info: os.stat_result | None = os.fstat(stream.fileno())
    except ValueError:  # io.UnsupportedOperation: a stream without a descriptor (an embedding's stdin)
        info = None
    if info is not None and stat.S_ISREG(info.st_mode) and info.st_size > MAX_LOG_BYTES:
        raise too_long  # say so before parsing it: a gigabyte of records takes a minute and gigabytes
    try:
        for number, raw in enumerate(_lines(stream), 1):
            if raw is None:
                log.skip(f"{name}:{number}")
            else:
                parse_line(raw, f"{name}:{number}", log)
    except _TooLong:
        raise too_long from None


def read_logs(paths: Sequence[str]) -> Log:
    """Read and parse every log in ``paths`` ('-' is standard input). LogReadError names the first that
    cannot be read."""
    log = Log()
    for path in paths:
        name = "<stdin>" if path == "-" else os.path.basename(path) or path
        log.files.append(path)
        try:
            if path == "-":
                if sys.stdin is None:  # descriptor 0 was closed when Python started (`<&-`)
                    raise LogReadError("cannot read log standard input: it is closed")
                _read_one(sys.stdin.buffer, path, name, log)
            else:
                with open(path, "rb") as stream:
                    _read_one(stream, path, name, log)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            where = "standard input" if path == "-" else repr(path)
            raise LogReadError(f"cannot read log {where}: {reason}") from None
    log.steps.sort(key=lambda step: (step.start, step.end))
    return log


def percentile(values: Iterable[float], p: float) -> float:
    """The p-th percentile (0..100) by linear interpolation between closest ranks (numpy's default,
    statistics.quantiles(method='inclusive')): rank (n - 1) * p / 100 in the sorted values."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    rank = (len(ordered) - 1) * p / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def short_command(step: Step, limit: int = 80) -> str:
    """The step's command for a person: argv[0]'s basename, paths under the step's directory made relative,
    quoted like a shell would, cut to ``limit`` characters."""
    import shlex

    words = []
    base = (step.command_cwd or step.cwd or "").rstrip("/\\")
    for index, arg in enumerate(step.argv):
        word = arg
        if index == 0:
            word = os.path.basename(arg.replace("\\", "/")) or arg
        elif base and arg[len(base) : len(base) + 1] in ("/", "\\") and arg.startswith(base):
            word = arg[len(base) + 1 :]
        words.append(shlex.quote(word) if word else "''")
    text = " ".join(words)
    return text if len(text) <= limit else text[: max(limit - 3, 1)] + "..."


def step_label(step: Step) -> str:
    """What ninja calls the step: its stamp relative to where fi_run started, else ''."""
    if step.stamp is None:
        return ""
    base = (step.cwd or "").rstrip("/\\")
    if base and step.stamp[len(base) : len(base) + 1] in ("/", "\\") and step.stamp.startswith(base):
        return step.stamp[len(base) + 1 :]
    return step.stamp
