"""Running one attempt on Windows: subprocess, and taskkill for --timeout.

Not run by fi_run's CI (Linux only); type-checked with ``mypy --platform win32`` and its pure parts are
unit-tested on Linux. The child stays in fi_run's console process group, so the CTRL_BREAK_EVENT that ninja
sends to the group on Ctrl-C reaches it directly; fi_run notes it (SIGBREAK) and waits.
"""

from __future__ import annotations

from ..errors import NotExecutableError
from .outcome import Outcome

TYPE_CHECKING = False  # not typing's: saves importing typing on an unlocked Windows step
if TYPE_CHECKING:
    from .interrupts import Interrupts

# After --timeout expires, `taskkill /T` asks the tree to stop; this much later it is forced.
KILL_GRACE_SECONDS = 2.0


def taskkill_argv(pid: int, *, force: bool) -> list[str]:
    """The command that stops a process and every process it started (/T: the whole tree)."""
    argv = ["taskkill", "/T", "/PID", str(pid)]
    if force:
        argv.insert(1, "/F")
    return argv


def run_once(
    executable: str,
    argv: tuple[str, ...],
    env: dict[str, str],
    cwd: str | None,
    stdout: int | None,
    stderr: int | None,
    timeout: float | None,
    interrupts: Interrupts,
) -> Outcome:
    import subprocess

    interrupts.spawning()
    # argv[0] stays as written; `executable` is the program found on the command's PATH (CreateProcess
    # would search fi_run's PATH, not the child's).
    try:
        proc = subprocess.Popen(
            list(argv), executable=executable, env=env, cwd=cwd, stdout=stdout, stderr=stderr
        )
    except OSError as exc:
        raise NotExecutableError(f"cannot execute {argv[0]!r}: {exc.strerror or exc}") from None
    interrupts.child_started(proc.pid, None)
    timed_out = False
    try:
        try:
            returncode = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            subprocess.call(
                taskkill_argv(proc.pid, force=False), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            try:
                returncode = proc.wait(timeout=KILL_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                subprocess.call(
                    taskkill_argv(proc.pid, force=True), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                )
                returncode = proc.wait()
    finally:
        interrupts.child_finished()
    # Windows exit codes are unsigned 32-bit (e.g. 0xC000013A for STATUS_CONTROL_C_EXIT): pass them on.
    return Outcome(returncode & 0xFFFFFFFF if returncode < 0 else returncode, timed_out)
