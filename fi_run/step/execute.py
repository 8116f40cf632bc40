"""The pipeline for one build step: spec -> environment -> locks -> attempts -> outputs -> stamp -> status.

``execute`` returns the exit status; it never calls sys.exit. fi_run's own failures are raised as
FiRunError subclasses, which ``cli.main`` turns into one stderr line and their exit status.

Every step keeps a ``StepRecord`` (records.py): attempts, locks and the lender use its clock and fill it
in; only a logged step turns it into the log's schema and writes it (observe/steplog.py), so a step without
--log imports nothing from observe/.
"""

from __future__ import annotations

import os
import sys
import time

from ..errors import FiRunError, UsageError
from ..messages import VERBOSE
from ..records import StepRecord
from . import stamp as stamps
from .attempts import platform_runner, run_attempts
from .capture import Capture
from .environment import build_environment, describe_changes, find_executable
from .interrupts import Interrupted

TYPE_CHECKING = False  # not typing's: saves importing typing (~6 ms) per unlocked step (docs/performance.md)
if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from ..contention.hold import RemoteHold
    from ..contention.lending import Lender
    from ..messages import Reporter
    from ..records import Outcome, StepSpec
    from .interrupts import Interrupts
    from .outputs import Before


def execute(spec: StepSpec, reporter: Reporter, interrupts: Interrupts) -> int:
    """Run the step; with --log, append what happened, whatever the outcome (fi_run's own errors too).

    ``interrupts`` is already installed (cli._run does it before parsing, so that a signal at any moment
    ends the step the one way: Interrupted, exit 128 + N, no stamp) and stays so until this returns.
    """
    record = StepRecord()
    if spec.log is None:
        return _execute(spec, reporter, record, interrupts)
    from ..observe.steplog import append, as_step

    try:
        status = _execute(spec, reporter, record, interrupts)
    except FiRunError as exc:
        interrupts.spawning()  # the record is written whole: a second signal is only noted
        append(spec.log, as_step(record, spec, exc.exit_status, exc.message), reporter)
        raise
    interrupts.spawning()
    append(spec.log, as_step(record, spec, status, None), reporter)
    return status


def _held(
    spec: StepSpec, reporter: Reporter, record: StepRecord, lender: Lender | None
) -> AbstractContextManager[RemoteHold | None]:
    """The step's locks: from the build's coordinator when `fi-run jobserver` runs one (FI_RUN_COORDINATOR,
    contention/coordinated.py: no filelock to import), else taken through the lock directory, and on their
    Redis servers for redis:// resources (contention/remote.py, issue 21). --mem is one more: a weighted
    share of the memory budget (memory.memory_claim). The value: what the remote holds add to the command
    (their fencing numbers, the cap on the hold), or None."""
    requests = spec.locks
    if spec.mem:
        from ..memory import memory_claim
        from ..records import LockRequest

        claim = memory_claim(spec.mem, spec.mem_limit)
        if claim.warning is not None:
            reporter.warning(claim.warning)
        requests = (*requests, LockRequest(claim.resource, "semaphore", claim.seats, claim.weight))
    if sys.platform != "win32":  # for mypy --platform win32, which skips coordinated.py
        address = coordinator_address()
        if address is not None:
            from ..contention.coordinated import CoordinatedLocks

            return CoordinatedLocks(address, spec, reporter, record, lender, requests=requests)
    on_wait = None if lender is None else lender.lend
    if names_remote(spec):
        from ..contention.remote import held

        return held(spec, reporter, record, on_wait, requests=requests)
    from ..contention.locks import held_locks

    return held_locks(spec, reporter, record, on_wait, requests=requests)


def names_remote(spec: StepSpec) -> bool:
    """Does the step name a redis:// resource? (lockdir.is_remote, spelled here so that a step without one
    imports nothing of contention/ to find out.)"""
    return any(request.resource[:9].lower().startswith(("redis://", "rediss://")) for request in spec.locks)


def preload_lock_modules(spec: StepSpec) -> None:
    """Import what taking this step's locks needs before the garbage collector is turned back on
    (cli._collect_from_now_on): the coordinator's client, or the lock directory's protocol (filelock) and,
    for redis:// resources, remote.py (with filelock only if a path is locked as well)."""
    if coordinator_address() is not None:
        from ..contention import coordinated  # noqa: F401
    elif not names_remote(spec):
        from ..contention import locks
    else:
        from ..contention import remote, resp  # noqa: F401
        from ..contention.lockdir import is_remote

        if spec.mem or not all(is_remote(request.resource) for request in spec.locks):
            from ..contention import locks  # noqa: F401


def coordinator_address() -> str | None:
    """The socket of the build's lock coordinator, if this step has one (never on Windows)."""
    if sys.platform == "win32":
        return None
    return os.environ.get("FI_RUN_COORDINATOR") or None  # coordinated.MARK: a test keeps them equal


def _timed_out_message(spec: StepSpec) -> str:
    if sys.platform == "win32":  # pragma: no cover - Windows only: a job object holds the whole tree
        stopped = "and every process it started (its job object)"
    else:
        stopped = (
            "and its process group (a process that left the group, such as a setsid daemon, is not stopped)"
        )
    return f"timed out after {spec.timeout:g} s: stopped {spec.command[0]!r} {stopped}"


def _execute(spec: StepSpec, reporter: Reporter, record: StepRecord, interrupts: Interrupts) -> int:
    windows = sys.platform == "win32"
    if spec.stamp is not None:  # first of all: whatever happens next, no stale stamp says "done"
        stamps.prepare(spec.stamp)
    if spec.cwd is not None and not os.path.isdir(spec.cwd):
        raise UsageError(f"--cwd is not a directory: {spec.cwd!r}")
    env = build_environment(os.environ, spec.env_ops, windows=windows, start_dir=spec.start_dir)
    if spec.env_ops and reporter.verbosity >= VERBOSE:
        reporter.debug("environment: " + describe_changes(spec.env_ops, env, windows=windows))
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
    capped = ""  # a remote hold's cap, not --timeout, limits the command: what to say when it stops it
    lender: Lender | None = None
    # Lending needs a jobserver, which MAKEFLAGS names: without one nothing more is even imported.
    if spec.lend_slot != "never" and "MAKEFLAGS" in os.environ and (spec.locks or spec.mem or spec.retries):
        from ..contention.lending import lender_for

        lender = lender_for(spec.lend_slot, os.environ, reporter, record, interrupts)
    # A retry's back-off lends the slot for its length when there is a jobserver to lend to.
    sleep = time.sleep if lender is None else lender.sleep
    outputs: Before | None = None
    if spec.outputs:  # as they are now, before any lock is waited for: "written by this run" (outputs.py)
        from .outputs import Before

        outputs = Before(spec.outputs)
    try:
        if spec.locks or spec.mem:
            # The runner is loaded before the wait, not after it: once the lock is handed over, the next
            # thing is the command's start (0.2 ms of the hand-off, benchmarks/handoff.py).
            platform_runner()
            with _held(spec, reporter, record, lender) as hold:
                if lender is not None:
                    lender.take_back()
                run_spec, run_env = (spec, env) if hold is None else hold.apply(spec, env)
                if hold is not None and hold.capped:
                    capped = hold.capped_message()
                result = run_attempts(
                    run_spec, executable, run_env, reporter, interrupts, record, capture, sleep=sleep
                )
        else:
            result = run_attempts(spec, executable, env, reporter, interrupts, record, capture, sleep=sleep)
    except Interrupted:
        pass  # interrupts.signum says by what
    finally:
        # From here on a signal is only noted: the output is shown, the slot repaid, and the step ends the
        # one way an interrupted step ends (below), whenever the signal came (issue 22).
        interrupts.spawning()
        # The command's output is shown once the locks are free: the next holder need not wait for it.
        succeeded = result is not None and result.status == 0 and interrupts.signum is None
        if not (succeeded and spec.quiet_on_success):
            capture.replay()
        capture.close()
        if lender is not None:  # after the locks: a slot owed is repaid without holding anyone up
            lender.settle()
    if interrupts.signum is not None:
        raise Interrupted(interrupts.signum)
    assert result is not None
    if result.timed_out:
        reporter.error(capped or _timed_out_message(spec))
        return result.status
    if result.status != 0:
        return result.status
    if outputs is not None:
        from .outputs import check

        check(outputs)
    if spec.stamp is not None:
        if interrupts.signum is not None:
            raise Interrupted(interrupts.signum)
        stamps.write(spec.stamp)
        if interrupts.signum is not None:  # came while the stamp was written: take it back
            stamps.remove(spec.stamp)
            raise Interrupted(interrupts.signum)
    return 0
