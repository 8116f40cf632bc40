"""The records every layer shares: what a step was asked to do, and what it did.

- ``StepSpec`` (with ``LockRequest`` and ``EnvOp``): everything fi_run was asked to do, parsed once from argv
  and the environment by cli.parse. The rest of fi_run sees only this frozen value, never argv or an
  argparse Namespace.
- ``StepRecord``: what one invocation did, in the order it happened: attempts, lock waits and holds, job
  slots lent. ``Outcome``: what a run of the command came to, and ``RunOnce`` the one contract of the POSIX
  and Windows runners that produce it.

They sit at the bottom of the package so that the locks, the lender and the log can read the spec and fill
in the record without importing the pipeline that drives them: step/ sits above contention/ and observe/,
and imports flow one way (issue 17). One module, not two: every step imports it, and each module of
fi_run's own costs a step about 50 us to find and load (docs/performance.md).
"""

from __future__ import annotations

import os
import time

TYPE_CHECKING = False  # not typing's: saves importing typing (~6 ms) per unlocked step (docs/performance.md)
if TYPE_CHECKING:
    from dataclasses import dataclass
    from typing import Final, Literal, Protocol

    from .memory import OomMark

    LockMode = Literal["exclusive", "shared", "semaphore"]
    EnvOpKind = Literal["set", "unset", "prepend", "venv"]
    JSON = None | bool | int | float | str | list["JSON"] | dict[str, "JSON"]

    class Signals(Protocol):
        """What the layers below the pipeline need of a step's signal handling (step/interrupts.py)."""

        signum: int | None

        def spawning(self) -> None:
            """Record signals instead of raising them: a child is about to start, or tokens move."""

        def idle(self) -> None:
            """Nothing runs: raise for a signal that came (and for later ones)."""

        def child_started(self, pid: int, group: int | None) -> None:
            """Forward signals to the child (and its group) from now on."""

        def child_finished(self) -> None:
            """Stop forwarding."""

    class RunOnce(Protocol):
        def __call__(
            self,
            executable: str,
            argv: tuple[str, ...],
            *,
            env: dict[str, str],
            cwd: str | None,
            stdout: int | None,
            stderr: int | None,
            timeout: float | None,
            interrupts: Signals,
        ) -> Outcome:
            """Start ``executable`` with ``argv``, wait for it (at most ``timeout`` seconds, then stop
            everything it started) and return its status. ``stdout``/``stderr``: file descriptors for the
            command's streams, None to inherit fi_run's. Raises NotExecutableError if it cannot start."""
            ...
else:
    from ._record import dataclass  # not dataclasses': saves ~10 ms (inspect, re) on an unlocked step


# --- what the step was asked to do

# MSBuild's Copy task retries a file locked by another process 10 times, 1 s apart: our default count (the
# per-wait cap in contention/backoff.py is of the same order). The one home of this default.
DEFAULT_RETRIES: Final = 10

# --lend-slot: when a step gives its ninja job slot back while it waits (contention/lending.py).
LEND_POLICIES: Final = ("auto", "always", "never")


@dataclass(frozen=True)
class EnvOp:
    """One environment change, applied in command-line order (step/environment.py)."""

    kind: EnvOpKind
    name: str  # the variable (for "venv": the directory)
    value: str = ""  # "set": the value; "prepend": the directory


@dataclass(frozen=True)
class LockRequest:
    resource: str  # as spelled by the user; canonicalised by the locks module
    mode: LockMode
    slots: int = 1  # --semaphore RESOURCE=N: at most N holders (N seats)
    weight: int = 1  # --semaphore RESOURCE=N:K: this step takes K of the N seats, all at once (issue 19)


@dataclass(frozen=True)
class StepSpec:
    command: tuple[str, ...]
    start_dir: str  # absolute: where fi_run started; fi_run's own relative paths are taken from here
    env_ops: tuple[EnvOp, ...] = ()
    cwd: str | None = None  # absolute
    stamp: str | None = None  # absolute
    outputs: tuple[str, ...] = ()  # absolute
    timeout: float | None = None
    quiet_on_success: bool = False
    verbosity: int = 1
    locks: tuple[LockRequest, ...] = ()
    lock_dir: str | None = None  # absolute
    lock_timeout: float | None = None
    retries: int = DEFAULT_RETRIES
    retry_on: tuple[str, ...] = ()
    log: str | None = None  # absolute
    lend_slot: str = "auto"  # --lend-slot: one of LEND_POLICIES
    mem: int | None = None  # --mem: the step's declared peak memory, bytes (a share of the memory budget)
    mem_limit: int | None = None  # --mem-limit: the budget, bytes; None (or 0): the machine's (memory.py)


# --- what it did


class Outcome:
    """What one run of the command came to; from step/attempts.run_attempts, what all of them came to."""

    __slots__ = ("attempts", "killed_pid", "oom_mark", "status", "timed_out")

    def __init__(
        self,
        status: int,
        timed_out: bool,
        attempts: int = 1,
        *,
        oom_mark: OomMark | None = None,
        killed_pid: int | None = None,
    ) -> None:
        self.status = status  # the exit status fi_run passes on: the command's, or 128 + N for signal N
        self.timed_out = timed_out
        self.attempts = attempts  # how many runs of the command it took
        # The kernel's OOM counters as read before the command started (memory.py reads them again after a
        # failure: did the OOM killer strike while it ran?). None where there are none (not Linux).
        self.oom_mark = oom_mark
        # The command's pid when it died of SIGKILL itself (not a shell exiting 137): the kernel's log of
        # OOM kills can then say whether the OOM killer was what killed it (memory.oom_victims).
        self.killed_pid = killed_pid

    def __repr__(self) -> str:
        return f"Outcome(status={self.status}, timed_out={self.timed_out}, attempts={self.attempts})"


def exit_status(wait_status: int) -> int:
    """A POSIX wait status as a shell reports it: the exit code, or 128 + N for a death by signal N."""
    code = os.waitstatus_to_exitcode(wait_status)
    return 128 - code if code < 0 else code


def _clock_anchor() -> tuple[float, float]:
    """The wall clock and the monotonic clock read at one instant, as near as this process can tell.

    Reports line steps up by ``started_wall + offset``, so a skew between the two readings moves every
    lock of this step. Read one after the other, a preemption between them (a busy build machine, issue
    18's hand-off benchmark under CPU hogs) skewed a step by milliseconds and made two holders of one lock
    seem to overlap. The wall reading is taken between two monotonic ones, retried while they are more
    than 50 us apart, and paired with their midpoint.
    """
    best = (float("inf"), 0.0, 0.0)
    for _ in range(3):
        before = time.monotonic()
        wall = time.time()
        after = time.monotonic()
        if after - before < best[0]:
            best = (after - before, wall, (before + after) / 2)
        if after - before <= 50e-6:
            break
    return best[1], best[2]


class StepRecord:
    """What one invocation did, in the order it happened, until steplog.as_step makes it a schema.Step.

    Offsets are seconds from ``started_mono``. Every step keeps one (attempts and locks use its clock), but
    only a logged one needs the schema: until then, attempts and locks are plain dicts of the schema's
    fields, and schema.py is imported then (0.2 ms saved on every step without --log). locks.py fills in a
    lock's ``held`` just before it releases the lock, after the wait was recorded.
    """

    def __init__(self) -> None:
        self.started_wall, self.started_mono = _clock_anchor()
        self.attempts: list[dict[str, JSON]] = []
        self.locks: list[dict[str, JSON]] = []
        self.loans: list[dict[str, JSON]] = []  # job slots lent to the jobserver (contention/lending.py)
        self.peak_rss: int | None = None  # bytes: the largest peak of the command over its attempts

    def offset(self) -> float:
        return time.monotonic() - self.started_mono

    def add_attempt(
        self, start: float, status: int, family: str | None, line: str | None, peak_rss: int | None = None
    ) -> None:
        end = self.offset()
        if peak_rss is not None and (self.peak_rss is None or peak_rss > self.peak_rss):
            self.peak_rss = peak_rss
        self.attempts.append(
            {
                "start": round(start, 6),
                "duration": round(end - start, 6),
                "status": status,
                "family": family,
                "line": line,
            }
        )

    def add_lock(
        self, resource: str, mode: str, slots: int, wait_start: float, weight: int = 1
    ) -> dict[str, JSON]:
        entry: dict[str, JSON] = {
            "resource": resource,
            "mode": mode,
            "slots": slots,
            "wait_start": round(wait_start, 6),
            "wait": round(self.offset() - wait_start, 6),
            "held": None,
        }
        if weight != 1:
            entry["weight"] = weight
        self.locks.append(entry)
        return entry

    def add_loan(self, resource: str | None) -> dict[str, JSON]:
        """The slot was lent now, while waiting for ``resource`` (None: a retry back-off)."""
        entry: dict[str, JSON] = {"start": round(self.offset(), 6), "duration": None, "resource": resource}
        self.loans.append(entry)
        return entry

    def end_loan(self, entry: dict[str, JSON], *, credit: bool, lost: bool = False) -> None:
        """The step goes on: with a token taken back, on credit (it repays one after its command: see
        lending.REPAY_AFTER), or without one (lost: it could not take one back)."""
        start = entry["start"]
        assert isinstance(start, float)
        entry["duration"] = round(self.offset() - start, 6)
        if credit:
            entry["credit"] = True
        if lost:
            entry["lost"] = True
