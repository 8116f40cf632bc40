"""Reading --log files: one JSON object per line (see fi_run/steplog.py), for ``fi_run report`` and ``trace``.

Only these tools import this module (and json with it), never a build step. A line that is not a whole
record (a writer killed mid-line on a full disk, a foreign line, a hand edit) is skipped and counted, never
fatal: the rest of the log is still worth reading.
"""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Iterable, Sequence
    from typing import NoReturn

# How many skipped lines are named (file:line) in messages and in --json; the count is always exact.
SKIPPED_NAMED = 10


class LogReadError(Exception):
    """A log file that cannot be read at all (missing, a directory, no permission): one line for the user."""


@dataclass(frozen=True)
class Attempt:
    start: float  # seconds from the step's start
    duration: float
    status: int
    family: str | None  # set when this attempt's failure matched a contention signature
    line: str | None  # the output line that matched


@dataclass(frozen=True)
class Lock:
    resource: str  # the real path fi_run locked
    mode: str  # exclusive, shared or semaphore
    slots: int
    wait_start: float  # seconds from the step's start
    wait: float
    held: float | None


@dataclass(frozen=True)
class Loan:
    """The step's ninja job slot, given back to the jobserver while it waited (fi-run jobserver)."""

    start: float  # seconds from the step's start
    duration: float | None  # None: the step ended before it took the slot back (interrupted, failed)
    resource: str | None  # the lock it waited for; None: a retry back-off
    credit: bool = False  # it ran before a token came back, and repaid one after its command
    lost: bool = False  # it could not take a token back within the bound


@dataclass(frozen=True)
class Step:
    """One log line: one fi_run invocation."""

    start: float  # wall clock, epoch seconds
    end: float
    duration: float  # monotonic-derived
    argv: tuple[str, ...]
    status: int
    attempts: tuple[Attempt, ...]
    locks: tuple[Lock, ...]
    pid: int | None = None
    cwd: str | None = None
    command_cwd: str | None = None
    error: str | None = None
    stamp: str | None = None
    env_names: tuple[str, ...] = ()
    source: str = ""  # file:line it came from
    loans: tuple[Loan, ...] = ()  # "lent" in the record: only steps that lent their job slot have it

    @property
    def retried(self) -> tuple[Attempt, ...]:
        """The attempts that failed on contention and were run again (every matched one but a last)."""
        return tuple(a for a in self.attempts[:-1] if a.family is not None)

    @property
    def lock_wait(self) -> float:
        return sum(lock.wait for lock in self.locks)


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


class _Bad(Exception):
    pass


def _number(record: dict[str, object], key: str) -> float:
    value = record.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _Bad(key)
    return float(value)


def _integer(record: dict[str, object], key: str) -> int:
    value = record.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Bad(key)
    return value


def _text(record: dict[str, object], key: str, *, optional: bool = True) -> str | None:
    value = record.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise _Bad(key)
    return value


def _texts(value: object, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _Bad(key)
    return tuple(value)


def _objects(value: object, key: str) -> list[dict[str, object]]:
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise _Bad(key)
    return value


def parse_record(record: object, source: str = "") -> Step:
    """A decoded log line -> Step; ValueError if it is not a fi_run step record."""
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    try:
        if _integer(record, "v") < 1:
            raise _Bad("v")
        attempts = tuple(
            Attempt(
                start=_number(a, "start"),
                duration=_number(a, "duration"),
                status=_integer(a, "status"),
                family=_text(a, "family"),
                line=_text(a, "line"),
            )
            for a in _objects(record.get("attempts"), "attempts")
        )
        locks = []
        for entry in _objects(record.get("locks"), "locks"):
            held = entry.get("held")
            locks.append(
                Lock(
                    resource=str(_text(entry, "resource", optional=False)),
                    mode=str(_text(entry, "mode", optional=False)),
                    slots=_integer(entry, "slots"),
                    wait_start=_number(entry, "wait_start"),
                    wait=_number(entry, "wait"),
                    held=None if held is None else _number(entry, "held"),
                )
            )
        loans = []
        if record.get("lent") is not None:
            for entry in _objects(record.get("lent"), "lent"):
                duration = entry.get("duration")
                loans.append(
                    Loan(
                        start=_number(entry, "start"),
                        duration=None if duration is None else _number(entry, "duration"),
                        resource=_text(entry, "resource"),
                        credit=entry.get("credit") is True,
                        lost=entry.get("lost") is True,
                    )
                )
        pid = record.get("pid")
        env_names = record.get("env_names")
        return Step(
            start=_number(record, "start"),
            end=_number(record, "end"),
            duration=_number(record, "duration"),
            argv=_texts(record.get("argv"), "argv"),
            status=_integer(record, "status"),
            attempts=attempts,
            locks=tuple(locks),
            pid=None if pid is None else _integer(record, "pid"),
            cwd=_text(record, "cwd"),
            command_cwd=_text(record, "command_cwd"),
            error=_text(record, "error"),
            stamp=_text(record, "stamp"),
            env_names=() if env_names is None else _texts(env_names, "env_names"),
            source=source,
            loans=tuple(loans),
        )
    except _Bad as exc:
        raise ValueError(f"missing or malformed field {exc.args[0]!r}") from None


def parse_lines(data: bytes, name: str, log: Log) -> None:
    """Add the records in ``data`` (a whole log file's bytes) to ``log``; skip and count the rest."""
    for number, raw in enumerate(data.split(b"\n"), 1):
        if not raw.strip():
            continue  # blank lines (and the end of the file) are not records, nor broken ones
        where = f"{name}:{number}"
        try:
            step = parse_record(json.loads(raw.decode("utf-8")), where)
        except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            log.skip(where)
            continue
        log.steps.append(step)


def read_logs(paths: Sequence[str]) -> Log:
    """Read and parse every log in ``paths`` ('-' is standard input). LogReadError names the first that
    cannot be read."""
    log = Log()
    for path in paths:
        if path == "-":
            data = sys.stdin.buffer.read()
        else:
            try:
                with open(path, "rb") as stream:
                    data = stream.read()
            except OSError as exc:
                reason = exc.strerror or str(exc)
                raise LogReadError(f"cannot read log {path!r}: {reason}") from None
        log.files.append(path)
        parse_lines(data, "<stdin>" if path == "-" else os.path.basename(path) or path, log)
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


# --- what `fi_run report` and `fi_run trace` share on the command line


class ToolUsageError(Exception):
    pass


def tool_parser(prog: str, description: str, epilog: str = "") -> argparse.ArgumentParser:
    """An ArgumentParser whose errors are one ``fi_run: ...`` line (exit 2), like every fi_run error."""
    import argparse

    class Parser(argparse.ArgumentParser):
        def error(self, message: str) -> NoReturn:
            raise ToolUsageError(f"{self.prog.removeprefix('fi_run ')}: {message} (see {self.prog} --help)")

    return Parser(
        prog=prog,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def parse_and_read(
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    check: Callable[[argparse.Namespace], str | None] = lambda args: None,
) -> tuple[argparse.Namespace, Log] | int:
    """A tool's arguments and the logs they name, or the exit status to return: 0 after --help, 2 after
    one ``fi_run:`` line for a bad option or an unreadable log. ``check`` returns a usage problem or None."""
    try:
        args = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
        problem = check(args)
        if problem is not None:
            parser.error(problem)
    except ToolUsageError as exc:
        return fail(str(exc))
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    try:
        return args, read_logs(args.logs)
    except LogReadError as exc:
        return fail(str(exc))


def fail(message: str) -> int:
    """fi_run's one error line on stderr; the exit status of a tool that could not do its work."""
    sys.stderr.write(f"fi_run: {message}\n")
    sys.stderr.flush()
    return 2


def safe_stdout() -> None:
    """A command line or path the console cannot encode is shown escaped, never a UnicodeEncodeError."""
    import io

    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors="backslashreplace")
