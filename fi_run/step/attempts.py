"""Attempts: run the command, classify a failure, back off and run it again, or stop.

One attempt is one run of the platform's runner, behind one contract (``records.RunOnce``), which
``platform_runner()`` alone chooses: ``run_posix.run_once`` (posix_spawn, process groups, SIGALRM for
--timeout) or ``run_windows.run_once`` (CreateProcess, a job object, taskkill). They differ in everything
but that contract and its result, ``Outcome``. ``fi_run jobserver`` runs its build through it too.

Only a failed attempt is examined, and only the end of its own output (contention/recognizer.py); a
failure the recognizer does not call contention is never retried, so its exit status passes through
after one attempt. A retried attempt's output is dropped: what the build log shows is the final attempt's
output plus one fi_run line per retry.

An attempt that was SIGKILLed (or whose output says a process it ran was) is judged first, by the kernel's
OOM-kill counts before and after it (memory.py, issue 19): retried only if the OOM killer struck, and then
after the back-off and once as much memory is available as the attempts had (their peak RSS), waiting
at most as long as the attempt ran (1 to 60 s). That wait keeps the job slot: lending it would let ninja
start one more job into the memory shortage.
"""

from __future__ import annotations

import sys
import time

from ..errors import EXIT_TIMEOUT
from ..records import Outcome

TYPE_CHECKING = False  # not typing's: saves importing typing (~6 ms) per unlocked step (docs/performance.md)
if TYPE_CHECKING:
    from collections.abc import Callable

    from ..messages import Reporter
    from ..records import RunOnce, StepRecord, StepSpec
    from .capture import Capture
    from .interrupts import Interrupts


def platform_runner() -> RunOnce:
    """The runner for the platform fi_run runs on: the only place that chooses it.

    Imported on the first call: the other platform's runner is never loaded (nor type-checked there).
    """
    if sys.platform == "win32":  # pragma: no cover - Windows only
        from .run_windows import run_once
    else:
        from .run_posix import run_once
    return run_once


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
    hold: Callable[[float], None] = time.sleep,
) -> Outcome:
    """Run the command until it succeeds, fails for good, times out or is interrupted.

    The final attempt's output stays in ``capture``: the caller shows it once the locks are released, so that
    the next holder does not wait for this step's output to be copied. ``sleep``: a contention back-off (it
    may lend the job slot); ``hold``: the waits of an OOM retry, which keep it.
    """
    deadline = None if spec.timeout is None else time.monotonic() + spec.timeout
    retries_done = 0
    waited = 0.0
    blockers: list[str] = []  # who blocked each attempt, as the contention verdicts named them, in a row
    run_once = platform_runner()
    while True:
        remaining = None if deadline is None else max(deadline - time.monotonic(), 0.001)
        attempt_start = record.offset()
        outcome: Outcome = run_once(
            executable,
            spec.command,
            env=env,
            cwd=spec.cwd,
            stdout=capture.child_fd(1),
            stderr=capture.child_fd(2),
            timeout=remaining,
            interrupts=interrupts,
        )
        if outcome.status == 0 or outcome.timed_out or interrupts.signum is not None:
            peak = None
            if spec.log is not None:  # only the log wants it (memory.py and resource cost ~0.25 ms)
                from ..memory import children_peak_rss

                peak = children_peak_rss()
            record.add_attempt(attempt_start, outcome.status, None, None, peak)
            break
        from .. import memory

        peak = memory.children_peak_rss()
        if retries_done >= spec.retries or not capture.active:
            record.add_attempt(attempt_start, outcome.status, None, None, peak)
            break
        # Only a failed attempt pays for these imports: the catalogue compiles regexes, the back-off is math.
        from ..contention import backoff
        from ..contention.recognizer import HOLDER_REPEATS, USER_REGEX_SECONDS, classify, oom_verdict

        attempt_seconds = record.offset() - attempt_start
        user_seconds = USER_REGEX_SECONDS
        if deadline is not None:
            user_seconds = max(min(user_seconds, deadline - time.monotonic()), 0.01)
        try:
            interrupts.idle()  # a signal during classification ends the step now, as during the back-off
            text = capture.text()
            verdict = None
            if sys.platform != "win32":  # Windows has no OOM killer: a process is refused memory instead
                kills = memory.oom_kills_since(outcome.oom_mark)
                victims = None
                if kills is not None and kills[0] > 0 and outcome.killed_pid is not None:
                    victims = memory.oom_victims(record.started_mono + attempt_start)
                verdict = oom_verdict(
                    text, status=outcome.status, kills=kills, pid=outcome.killed_pid, victims=victims
                )
            if verdict is None:
                verdict = classify(
                    text,
                    windows=sys.platform == "win32",
                    command=spec.command[0] if spec.command else "",
                    extra=spec.retry_on,
                    check_holders=True,
                    user_regex_seconds=user_seconds,
                    commands=interrupts.started,
                    started=record.started_wall,
                    cwd=spec.cwd,
                )
        except BaseException:
            record.add_attempt(attempt_start, outcome.status, None, None, peak)
            raise
        if verdict.retry:
            record.add_attempt(attempt_start, outcome.status, verdict.family, verdict.line, peak)
        else:
            record.add_attempt(attempt_start, outcome.status, None, None, peak)
        if verdict.kind in ("stale", "self-held", "killed"):
            reporter.warning(f"not retried: {verdict.reason}")
        if not verdict.retry:
            break
        limit = spec.retries if verdict.max_retries is None else min(spec.retries, verdict.max_retries)
        if retries_done >= limit:
            break
        oom = verdict.kind == "oom"
        if not oom:
            blockers = (
                [*blockers, verdict.blocker]
                if blockers and blockers[-1] == verdict.blocker
                else [verdict.blocker]
            )
            if verdict.blocker and len(blockers) >= HOLDER_REPEATS:
                reporter.warning(
                    f"not retried: {verdict.blocker} has held the lock through {len(blockers)} attempts"
                )
                break
        pause = backoff.delay(retries_done + 1, backoff.unit_random())
        if deadline is not None and time.monotonic() + pause >= deadline:
            break  # the retry could not finish in time; let this failure stand
        if waited + pause > backoff.MAX_TOTAL_WAIT:
            break
        retries_done += 1
        capture.reset()
        if not oom:
            reporter.warning(
                f'lock contention ({verdict.family}: "{_shorten(verdict.line)}"), '
                f"retry {retries_done}/{limit} in {pause:.1f} s"
            )
            interrupts.idle()
            sleep(pause)
            waited += pause
            continue
        bound = min(memory.memory_wait_bound(attempt_seconds), backoff.MAX_TOTAL_WAIT - waited - pause)
        if deadline is not None:
            bound = min(bound, deadline - time.monotonic() - pause)
        then = ""
        if peak is not None and bound >= memory.POLL_SECONDS:
            then = f", then once {memory.format_size(peak)} is available (at most {bound:.0f} s)"
        reporter.warning(
            f'out of memory ({verdict.family}: "{_shorten(verdict.line)}"; {verdict.oom_kills}), '
            f"retry {retries_done}/{limit} in {pause:.1f} s{then}"
        )
        interrupts.idle()
        hold(pause)
        waited += pause
        if then:
            assert peak is not None
            waited += memory.wait_for_memory(peak, bound, hold, memory.MemoryProbe().available)
    if outcome.timed_out:
        return Outcome(EXIT_TIMEOUT, True, attempts=retries_done + 1)
    return Outcome(outcome.status, False, attempts=retries_done + 1)
