"""Attempts: run the command, classify a failure, back off and run it again, or stop.

Only a failed attempt is examined, and only its own output; a failure without a contention signature
is never retried, so its exit status passes through after one attempt. A retried attempt's output is
dropped: what the build log shows is the final attempt's output plus one fi_run line per retry.
"""

from __future__ import annotations

import os
import sys
import time

from ..errors import EXIT_TIMEOUT

TYPE_CHECKING = False  # not typing's: saves importing typing (~6 ms) per unlocked step (docs/performance.md)
if TYPE_CHECKING:
    from collections.abc import Callable

    from ..messages import Reporter
    from ..observe.steplog import StepRecord
    from .capture import Capture
    from .interrupts import Interrupts
    from .outcome import Outcome
    from .spec import StepSpec

if sys.platform == "win32":  # pragma: no cover - Windows only
    from .run_windows import run_once
else:
    from .run_posix import run_once


class StepResult:
    __slots__ = ("attempts", "status", "timed_out")

    def __init__(self, status: int, attempts: int, timed_out: bool) -> None:
        self.status = status
        self.attempts = attempts
        self.timed_out = timed_out


def _shorten(line: str, limit: int = 160) -> str:
    line = line.strip()
    return line if len(line) <= limit else "..." + line[-(limit - 3) :]


def run_attempts(
    spec: StepSpec,
    executable: str,
    env: dict[str, str],
    reporter: Reporter,
    interrupts: Interrupts,
    record: StepRecord,
    capture: Capture,
    sleep: Callable[[float], None] = time.sleep,
) -> StepResult:
    """Run the command until it succeeds, fails for good, times out or is interrupted.

    The final attempt's output stays in ``capture``: the caller shows it once the locks are released, so that
    the next holder does not wait for this step's output to be copied.
    """
    deadline = None if spec.timeout is None else time.monotonic() + spec.timeout
    retries_done = 0
    waited = 0.0
    while True:
        remaining = None if deadline is None else max(deadline - time.monotonic(), 0.001)
        attempt_start = record.offset()
        outcome: Outcome = run_once(
            executable,
            spec.command,
            env,
            spec.cwd,
            capture.child_fd(1),
            capture.child_fd(2),
            remaining,
            interrupts,
        )
        if outcome.status == 0 or outcome.timed_out or interrupts.signum is not None:
            record.add_attempt(attempt_start, outcome.status, None, None)
            break
        if retries_done >= spec.retries or not capture.active:
            record.add_attempt(attempt_start, outcome.status, None, None)
            break
        # Only a failed attempt pays for these imports: the catalogue compiles regexes, the back-off is math.
        from ..contention import backoff
        from ..contention.signatures import active_signatures, find_contention

        signatures = active_signatures(windows=os.name == "nt", extra=spec.retry_on)
        match = find_contention(capture.text(), signatures)
        record.add_attempt(
            attempt_start, outcome.status, *((match.family, match.line) if match else (None, None))
        )
        if match is None:
            break
        pause = backoff.delay(retries_done + 1, backoff.unit_random())
        if deadline is not None and time.monotonic() + pause >= deadline:
            break  # the retry could not finish in time; let this failure stand
        if waited + pause > backoff.MAX_TOTAL_WAIT:
            break
        retries_done += 1
        reporter.warning(
            f'lock contention ({match.family}: "{_shorten(match.line)}"), '
            f"retry {retries_done}/{spec.retries} in {pause:.1f} s"
        )
        capture.reset()
        interrupts.idle()
        sleep(pause)
        waited += pause
    if outcome.timed_out:
        return StepResult(EXIT_TIMEOUT, retries_done + 1, True)
    return StepResult(outcome.status, retries_done + 1, False)
