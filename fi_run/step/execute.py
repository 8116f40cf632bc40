"""The pipeline for one build step: spec -> environment -> locks -> attempts -> outputs -> stamp -> status.

``execute`` returns the exit status; it never calls sys.exit. fi_run's own failures are raised as
FiRunError subclasses, which ``cli.main`` turns into one stderr line and their exit status.

``StepRecord`` is what the step did, in the order it happened: attempts, lock waits and holds, job slots
lent. Every step keeps one (attempts, locks and the lender use its clock and fill it in); only a logged step
turns it into the log's schema and writes it (observe/steplog.py), so a step without --log imports nothing
from observe/.
"""

from __future__ import annotations

import os
import time

from ..errors import FiRunError, OutputError, UsageError
from . import stamp as stamps
from .attempts import run_attempts
from .capture import Capture
from .environment import build_environment, find_executable
from .interrupts import Interrupted, Interrupts, exit_status_for, signal_name

TYPE_CHECKING = False  # not typing's: saves importing typing (~6 ms) per unlocked step (docs/performance.md)
if TYPE_CHECKING:
    from ..contention.jobserver import Lender
    from ..messages import Reporter
    from ..observe.schema import JSON
    from .attempts import Outcome
    from .spec import StepSpec


class StepRecord:
    """What one invocation did, in the order it happened, until steplog.as_step makes it a schema.Step.

    Offsets are seconds from ``started_mono``. Every step keeps one (attempts and locks use its clock), but
    only a logged one needs the schema: until then, attempts and locks are plain dicts of the schema's
    fields, and schema.py is imported then (0.2 ms saved on every step without --log). locks.py fills in a
    lock's ``held`` just before it releases the lock, after the wait was recorded.
    """

    def __init__(self) -> None:
        self.started_wall = time.time()
        self.started_mono = time.monotonic()
        self.attempts: list[dict[str, JSON]] = []
        self.locks: list[dict[str, JSON]] = []
        self.loans: list[dict[str, JSON]] = []  # job slots lent to the jobserver (contention/jobserver.py)

    def offset(self) -> float:
        return time.monotonic() - self.started_mono

    def add_attempt(self, start: float, status: int, family: str | None, line: str | None) -> None:
        end = self.offset()
        self.attempts.append(
            {
                "start": round(start, 6),
                "duration": round(end - start, 6),
                "status": status,
                "family": family,
                "line": line,
            }
        )

    def add_lock(self, resource: str, mode: str, slots: int, wait_start: float) -> dict[str, JSON]:
        entry: dict[str, JSON] = {
            "resource": resource,
            "mode": mode,
            "slots": slots,
            "wait_start": round(wait_start, 6),
            "wait": round(self.offset() - wait_start, 6),
            "held": None,
        }
        self.locks.append(entry)
        return entry

    def add_loan(self, resource: str | None) -> dict[str, JSON]:
        """The slot was lent now, while waiting for ``resource`` (None: a retry back-off)."""
        entry: dict[str, JSON] = {"start": round(self.offset(), 6), "duration": None, "resource": resource}
        self.loans.append(entry)
        return entry

    def end_loan(self, entry: dict[str, JSON], *, credit: bool, lost: bool = False) -> None:
        """The step goes on: with a token taken back, on credit (it repays one after its command: see
        jobserver.REPAY_AFTER), or without one (lost: it could not take one back)."""
        start = entry["start"]
        assert isinstance(start, float)
        entry["duration"] = round(self.offset() - start, 6)
        if credit:
            entry["credit"] = True
        if lost:
            entry["lost"] = True


def _check_outputs(outputs: tuple[str, ...], started: float) -> None:
    """--output: each file must exist and have been written by this run.

    Filesystem timestamps come from a coarse clock (Linux: the last timer tick) and may be truncated to
    whole seconds, so a file written just after the start can carry an mtime slightly before it; the check
    therefore allows the second before the start. A stale output is normally much older than that.
    """
    reference = int(started) - 1
    for path in outputs:
        try:
            mtime = os.stat(path).st_mtime
        except OSError as exc:
            raise OutputError(f"--output {path!r} was not written by the command ({exc.strerror})") from None
        if mtime < reference:
            raise OutputError(f"--output {path!r} was not written by this run (older than the run's start)")


def execute(spec: StepSpec, reporter: Reporter) -> int:
    """Run the step; with --log, append what happened, whatever the outcome (fi_run's own errors too)."""
    record = StepRecord()
    if spec.log is None:
        return _execute(spec, reporter, record)
    from ..observe.steplog import append, as_step

    try:
        status = _execute(spec, reporter, record)
    except FiRunError as exc:
        append(spec.log, as_step(record, spec, exc.exit_status, exc.message), reporter)
        raise
    append(spec.log, as_step(record, spec, status, None), reporter)
    return status


def _execute(spec: StepSpec, reporter: Reporter, record: StepRecord) -> int:
    windows = os.name == "nt"
    if spec.stamp is not None:  # first of all: whatever happens next, no stale stamp says "done"
        stamps.prepare(spec.stamp)
    if spec.cwd is not None and not os.path.isdir(spec.cwd):
        raise UsageError(f"--cwd is not a directory: {spec.cwd!r}")
    env = build_environment(os.environ, spec.env_ops, windows=windows, start_dir=spec.start_dir)
    executable = find_executable(spec.command[0], env, cwd=spec.cwd or spec.start_dir, windows=windows)
    reporter.debug(f"running {list(spec.command)!r} ({executable})")
    capture = Capture(wanted=spec.quiet_on_success or spec.retries > 0, terminals=spec.quiet_on_success)
    if capture.unavailable is not None:  # a full or read-only $TMPDIR must not change the step's result
        reporter.warning(
            f"cannot hold the command's output ({capture.unavailable}): it is shown as it comes"
            + (", even on success" if spec.quiet_on_success else "")
            + (", and a failure is not retried" if spec.retries > 0 else "")
        )
    result: Outcome | None = None
    with Interrupts() as interrupts:
        lender: Lender | None = None
        # Lending needs a jobserver, which MAKEFLAGS names: without one nothing more is even imported.
        if spec.lend_slot != "never" and "MAKEFLAGS" in os.environ and (spec.locks or spec.retries):
            from ..contention.jobserver import lender_for

            lender = lender_for(spec.lend_slot, os.environ, reporter, record, interrupts)
        # A retry's back-off lends the slot for its length when there is a jobserver to lend to.
        sleep = time.sleep if lender is None else lender.sleep
        try:
            started = time.time()
            if spec.locks:
                from ..contention.locks import held_locks

                with held_locks(spec, reporter, record, lender.lend if lender else None):
                    if lender is not None:
                        lender.take_back()
                    result = run_attempts(
                        spec, executable, env, reporter, interrupts, record, capture, sleep=sleep
                    )
            else:
                result = run_attempts(
                    spec, executable, env, reporter, interrupts, record, capture, sleep=sleep
                )
        except Interrupted:
            pass  # interrupts.signum says by what
        finally:
            # The command's output is shown once the locks are free: the next holder need not wait for it.
            succeeded = result is not None and result.status == 0 and interrupts.signum is None
            if not (succeeded and spec.quiet_on_success):
                capture.replay()
            capture.close()
            if lender is not None:  # after the locks: a slot owed is repaid without holding anyone up
                lender.settle()
        if interrupts.signum is not None:
            reporter.error(f"interrupted by {signal_name(interrupts.signum)}; no stamp written")
            return exit_status_for(interrupts.signum)
    assert result is not None
    if result.timed_out:
        reporter.error(
            f"timed out after {spec.timeout:g} s: stopped {spec.command[0]!r} and its process group "
            "(a process that left the group, such as a setsid daemon, is not stopped)"
        )
        return result.status
    if result.status != 0:
        return result.status
    _check_outputs(spec.outputs, started)
    if spec.stamp is not None:
        stamps.write(spec.stamp)
    return 0
