"""Running one attempt on Windows: subprocess, a job object around the command's tree, taskkill as fallback.

The child stays in fi_run's console process group, so the CTRL_BREAK_EVENT that ninja sends to the group on
Ctrl-C reaches it directly; fi_run notes it (SIGBREAK), waits for the child, then ends whatever the command
left running. The job object (winjob.py) also stops the tree on --timeout, and ends it with fi_run when fi_run
itself is killed. Run under Wine by the Windows stage of CI (.ci/windows/); see docs/windows.md.
"""

from __future__ import annotations

import sys

from ..errors import NotExecutableError
from ..records import Outcome

# Type checkers skip the rest of this module off Windows; run_posix serves there.
assert sys.platform == "win32"

TYPE_CHECKING = False  # not typing's: saves importing typing on an unlocked Windows step
if TYPE_CHECKING:
    import subprocess

    from ..records import Signals
    from ..winjob import Job

# After --timeout expires, `taskkill /T` asks the tree to stop; this much later it is forced.
KILL_GRACE_SECONDS = 2.0
# taskkill itself gets this long; a taskkill that hangs must not hang the step.
_TASKKILL_SECONDS = 10.0


def taskkill_argv(pid: int, *, force: bool) -> list[str]:
    """The command that stops a process and every process it started (/T: the whole tree)."""
    argv = ["taskkill", "/T", "/PID", str(pid)]
    if force:
        argv.insert(1, "/F")
    return argv


def _taskkill(pid: int, *, force: bool) -> None:
    import subprocess

    try:
        subprocess.call(
            taskkill_argv(pid, force=force),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=_TASKKILL_SECONDS,
        )
    except (OSError, subprocess.SubprocessError):
        pass  # no taskkill, or it hung: the job object or TerminateProcess comes next


def _stop(proc: subprocess.Popen[bytes], job: Job) -> int:
    """--timeout expired: ask the tree to stop, then end it; returns the command's exit code."""
    import subprocess

    _taskkill(proc.pid, force=False)  # console programs ignore this; windowed ones get WM_CLOSE
    try:
        return proc.wait(timeout=KILL_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        pass
    if not job.terminate():
        _taskkill(proc.pid, force=True)
        try:
            return proc.wait(timeout=KILL_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            proc.kill()  # taskkill failed too: TerminateProcess ends at least the command itself
    return proc.wait()


def run_once(
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
    import subprocess

    from ..winjob import CREATE_SUSPENDED, Job

    interrupts.spawning()
    job = Job()
    # argv[0] stays as written; `executable` is the program found on the command's PATH (CreateProcess
    # would search fi_run's PATH, not the child's). Suspended until it is in the job (winjob.py).
    try:
        proc = subprocess.Popen(
            list(argv),
            executable=executable,
            env=env,
            cwd=cwd,
            stdout=stdout,
            stderr=stderr,
            creationflags=CREATE_SUSPENDED if job.handle is not None else 0,
        )
    except OSError as exc:
        job.close()
        raise NotExecutableError(f"cannot execute {argv[0]!r}: {exc.strerror or exc}") from None
    if job.handle is not None:
        try:
            job.adopt(proc.pid)
        except OSError as exc:  # cannot resume it: it must not stay suspended, or fi_run waits forever
            proc.kill()
            proc.wait()
            job.close()
            raise NotExecutableError(f"cannot start {argv[0]!r}: {exc.strerror or exc}") from None
    interrupts.child_started(proc.pid, None)
    timed_out = False
    ended_normally = False
    try:
        try:
            returncode = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            returncode = _stop(proc, job)
        if timed_out or interrupts.signum is not None:
            # The command is gone; what it started (a grandchild whose parent already exited included)
            # goes with it.
            job.terminate()
        else:
            ended_normally = True
    finally:
        interrupts.child_finished()
        if ended_normally:
            job.release()
        else:
            job.close()  # kill-on-close: on any other way out, nothing of the tree is left behind
    # Windows exit codes are unsigned 32-bit (e.g. 0xC000013A for STATUS_CONTROL_C_EXIT): pass them on.
    return Outcome(returncode & 0xFFFFFFFF if returncode < 0 else returncode, timed_out)
