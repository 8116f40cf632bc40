"""The --log line schema: one set of record types, written by steplog.py and read by logfile.py.

A line is one ``Step`` as a JSON object, its keys in field order (``STEP_KEYS``); ``attempts`` and ``locks``
hold ``Attempt`` and ``Lock`` objects. docs/reference.md's "Log line schema" table is checked against these
keys by tests/test_docs.py.

To add a field: add it here with a default (so older logs still read), set it in steplog.py, and describe it
in docs/reference.md. The reader validates every field from its annotation (logfile.py's ``_CHECKS``), so a
field of a new kind of type needs a check there too. A key that changes meaning bumps ``SCHEMA_VERSION``.

The writer imports this module on every logged step (steplog.py's ``finish``, never on a step without
--log), so it stays as light as steplog.py itself: no dataclasses, no json, no typing at run time
(docs/performance.md, "The import budget").
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: saves importing typing (~6 ms) on an unlocked, logged step
if TYPE_CHECKING:
    from dataclasses import dataclass
    from typing import Final

    from ..records import JSON
else:
    from .._record import dataclass  # not dataclasses': saves ~10 ms (inspect, re) on an unlocked step

SCHEMA_VERSION: Final = 1


@dataclass(frozen=True, kw_only=True)
class Attempt:
    """One run of the command. Offsets are seconds from fi_run's start, on the monotonic clock."""

    start: float
    duration: float
    status: int
    family: str | None = None  # the contention signature family its failure matched, if any
    line: str | None = None  # the output line that matched


@dataclass(frozen=True, kw_only=True)
class Lock:
    """One lock, in the order taken."""

    resource: str  # the real path fi_run locked
    mode: str  # exclusive, shared or semaphore
    slots: int  # the semaphore's N (1 otherwise)
    wait_start: float  # seconds from fi_run's start
    wait: float  # seconds until held, or until fi_run gave up
    held: float | None = None  # seconds held; None if never held (a lock timeout or an interrupt)
    weight: int = 1  # the seats of the semaphore's N this step took (--semaphore R=N:K)
    # A redis:// resource only (issue 21); written only when set (SPARSE):
    host: str | None = None  # the machine the step ran on
    fence: int | None = None  # the fencing number it held the resource with (FI_RUN_FENCE_<NAME>)


@dataclass(frozen=True, kw_only=True)
class Loan:
    """The step's ninja job slot, given back to the jobserver while it waited (docs/jobserver.md)."""

    start: float  # seconds from fi_run's start
    duration: float | None = None  # until the step went on; None: it ended first (interrupted, failed)
    resource: str | None = None  # the lock it waited for; None: a retry back-off
    credit: bool = False  # it ran before a token came back, and repaid one after its command
    lost: bool = False  # it could not take a token back within the bound


@dataclass(frozen=True, kw_only=True)
class Step:
    """One log line: one fi_run invocation."""

    v: int  # SCHEMA_VERSION
    pid: int | None = None
    start: float  # wall clock (epoch seconds) when fi_run started
    end: float  # start + duration
    duration: float  # seconds, monotonic clock
    argv: tuple[str, ...]  # the command, everything after '--'
    cwd: str | None = None  # where fi_run started (ninja's build directory)
    command_cwd: str | None = None  # --cwd, absolute
    status: int  # fi_run's exit status
    error: str | None = None  # fi_run's own error message; None when the status is the command's
    attempts: tuple[Attempt, ...]
    locks: tuple[Lock, ...]
    stamp: str | None = None  # --stamp, absolute
    env_names: tuple[str, ...] = ()  # names of the variables fi_run set, changed or removed: never values
    lent: tuple[Loan, ...] = ()  # job slots lent to the jobserver while waiting (fi-run jobserver)
    # Bytes: the command's peak resident set, the largest over its attempts (getrusage's RUSAGE_CHILDREN
    # ru_maxrss: the largest single process of those waited for, not their sum); None when not measured
    # (Windows, no command).
    peak_rss: int | None = None
    source: str = ""  # not logged: the file:line a reader found the record at

    @property
    def retried(self) -> tuple[Attempt, ...]:
        """The attempts that failed on contention and were run again (every matched one but a last)."""
        return tuple(a for a in self.attempts[:-1] if a.family is not None)

    @property
    def lock_wait(self) -> float:
        return sum(lock.wait for lock in self.locks)


NOT_LOGGED: Final = frozenset({"source"})
# Fields a line holds only when they are set: a local lock's record stays as it was (issue 21).
SPARSE: Final = frozenset({"host", "fence"})


def keys(record_type: type) -> tuple[str, ...]:
    """The JSON keys of a record type: its fields in order, without the reader's own."""
    return tuple(name for name in record_type.__annotations__ if name not in NOT_LOGGED)


STEP_KEYS: Final = keys(Step)
ATTEMPT_KEYS: Final = keys(Attempt)
LOCK_KEYS: Final = keys(Lock)
LOAN_KEYS: Final = keys(Loan)


def as_json(value: object) -> JSON:
    """A record (and what it holds) as JSON values: records -> objects, tuples -> lists."""
    if isinstance(value, (Step, Attempt, Lock, Loan)):
        return {
            key: as_json(getattr(value, key))
            for key in keys(type(value))
            if key not in SPARSE or getattr(value, key) is not None
        }
    if isinstance(value, (tuple, list)):
        return [as_json(item) for item in value]
    return value  # type: ignore[return-value]  # str, int, float, bool or None by the fields' types
