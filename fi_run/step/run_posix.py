"""Running one attempt on POSIX: posix_spawn, a process group, waitpid, and a timer for --timeout.

posix_spawn + waitpid instead of subprocess: importing subprocess alone costs about as much as starting
Python, and fi_run runs once per build step. No threads and no polling: the timeout is an interval timer
(SIGALRM) whose handler signals the command's process group, and waitpid simply resumes after it. Not wait4:
its rusage result makes CPython import the resource module, about 0.2 ms on every step (measured); the
peak RSS is read afterwards, only where it is needed (attempts.children_peak_rss).

Before the command starts, the kernel's OOM-kill counters are read as they are (``_oom_mark``), unparsed: a
failed attempt reads them again (memory.py) to tell the OOM killer's SIGKILL from anyone else's.
"""

from __future__ import annotations

import os
import sys

from ..errors import CommandNotFoundError, NotExecutableError
from ..records import Outcome, exit_status
from .capture import CLOSED

# Type checkers skip the rest of this module for Windows (mypy --platform win32); run_windows serves there.
assert sys.platform != "win32"

TYPE_CHECKING = False  # not typing's: saves importing typing (~6 ms) per unlocked step (docs/performance.md)
if TYPE_CHECKING:
    import signal as _signal
    from types import FrameType
    from typing import Final

    from ..memory import OomMark
    from ..records import Signals
else:
    import _signal  # `signal` would import enum; see interrupts.py

# After --timeout expires the group gets SIGTERM; whatever is still alive this much later gets SIGKILL.
KILL_GRACE_SECONDS: Final = 2.0


def _read(path: str) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return os.read(fd, 65536)
    except OSError:
        return None
    finally:
        os.close(fd)


def _oom_mark() -> OomMark | None:
    """The kernel's OOM-kill counters before the command starts, as raw bytes (memory.OomMark).

    Every attempt pays for this, so it is the cheap part only (about 6 us here: two small reads, no parsing,
    no import): /proc/self/cgroup and the memory cgroup's counter file where systemd and docker mount the
    hierarchy (v1 memory.oom_control, v2 memory.events; the mount's top for a container that sees only its
    own cgroup there), or /proc/vmstat where there is none. memory.py parses them, and only after a failure.
    """
    if sys.platform != "linux":
        return None
    cgroups = _read("/proc/self/cgroup") or b""
    counter = None
    for line in cgroups.split(b"\n"):
        number, _, rest = line.partition(b":")
        controllers, _, cgroup = rest.partition(b":")
        if b"memory" in controllers.split(b","):
            counter = ("/sys/fs/cgroup/memory", cgroup, "memory.oom_control")
            break
        if number == b"0" and not controllers and cgroup:
            counter = ("/sys/fs/cgroup", cgroup, "memory.events")
    path = data = None
    if counter is not None:
        top, cgroup, name = counter
        for directory in (top + os.fsdecode(cgroup).rstrip("/"), top):
            path = f"{directory}/{name}"
            data = _read(path)
            if data is not None:
                break
    # The machine's counter (/proc/vmstat, the costly read: 10 us) only counts where no cgroup's does:
    # memory.oom_kills_between lets the cgroup's decide whenever it was read.
    return (path if data is not None else None, data, None if data is not None else _read("/proc/vmstat"))


def _terminal_foreground() -> bool:
    """Is fi_run in the terminal's foreground process group (a person, or ninja's console pool)?

    Then the command stays in fi_run's process group: a command in a background group that reads the
    terminal is stopped by SIGTTIN. The terminal itself delivers Ctrl-C to everyone in the group.
    """
    try:
        return os.tcgetpgrp(0) == os.getpgrp()
    except OSError:
        return False


class _Timer:
    """--timeout as an interval timer: SIGTERM to the group when it fires, SIGKILL after a grace period."""

    def __init__(self, pid: int, group: int | None) -> None:
        self.pid = pid
        self.group = group
        self.fired = False
        self._previous: object = None

    def _kill(self, signum: int) -> None:
        try:
            if self.group is not None:
                os.killpg(self.group, signum)
            else:
                os.kill(self.pid, signum)
        except OSError:
            pass  # try/except, not contextlib.suppress: saves contextlib (~2 ms) on an unlocked step

    def _on_alarm(self, signum: int, frame: FrameType | None) -> None:
        if not self.fired:
            self.fired = True
            self._kill(_signal.SIGTERM)
            _signal.setitimer(_signal.ITIMER_REAL, KILL_GRACE_SECONDS)
        else:
            self._kill(_signal.SIGKILL)

    def start(self, seconds: float) -> None:
        self._previous = _signal.signal(_signal.SIGALRM, self._on_alarm)
        _signal.setitimer(_signal.ITIMER_REAL, seconds)

    def stop(self) -> None:
        _signal.setitimer(_signal.ITIMER_REAL, 0)
        _signal.signal(_signal.SIGALRM, self._previous)  # type: ignore[arg-type]
        if self.fired:
            # Grandchildren that ignored SIGTERM, or outlived the command: nothing it started survives.
            self._kill(_signal.SIGKILL)


def _missing_interpreter(executable: str) -> str | None:
    """The interpreter a script's #! line names, when ENOENT came from it and not from the script."""
    try:
        with open(executable, "rb") as f:
            first = f.readline(256)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    words = first[2:].split()
    return os.fsdecode(words[0]) if words else None


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
    """Start the command, wait for it, and return its exit status.

    Raises NotExecutableError (126) if the kernel refuses to start it."""
    file_actions: list[tuple[int, int] | tuple[int, int, int]] = []
    if stdout is not None:
        file_actions.append((os.POSIX_SPAWN_DUP2, stdout, 1))
    if stderr is not None:
        file_actions.append((os.POSIX_SPAWN_DUP2, stderr, 2))
    # Closed when fi_run started: closed for the command too, as without fi_run (capture.CLOSED).
    replaced = {1: stdout, 2: stderr}
    file_actions.extend((os.POSIX_SPAWN_CLOSE, fd) for fd in sorted(CLOSED) if replaced.get(fd) is None)
    # With --timeout the command always gets a group of its own, so that everything it started can be
    # stopped; it then cannot read the terminal (documented). Otherwise a terminal's foreground job keeps
    # the command in its own group (see _terminal_foreground).
    own_group = timeout is not None or not _terminal_foreground()
    saved_cwd = None
    interrupts.spawning()
    oom_mark = _oom_mark()
    try:
        if cwd is not None:
            # os.posix_spawn has no working-directory action. fi_run is single-threaded and uses only
            # absolute paths itself, so it changes its own directory around the spawn and back.
            saved_cwd = os.getcwd()
            os.chdir(cwd)
        # Python ignores SIGPIPE (and SIGXFSZ); the command must get the defaults, as subprocess does.
        defaults = (_signal.SIGPIPE, _signal.SIGXFSZ)
        if own_group:
            pid = os.posix_spawn(
                executable, argv, env, file_actions=file_actions, setpgroup=0, setsigdef=defaults
            )
        else:
            pid = os.posix_spawn(executable, argv, env, file_actions=file_actions, setsigdef=defaults)
    except OSError as exc:
        # The file was found and looked executable, but the kernel refused it: no #! line (ENOEXEC), a
        # missing #! interpreter, a noexec mount, arguments over ARG_MAX. A shell says 126 for these.
        import errno  # this error path only: a step that starts pays nothing for it

        interpreter = _missing_interpreter(executable) if exc.errno == errno.ENOENT else None
        if interpreter is not None:
            # As bash: 127 and "bad interpreter" (the file is there; its #! names nothing that exists).
            raise CommandNotFoundError(
                f"cannot execute {argv[0]!r}: bad interpreter {interpreter!r} in its #! line: "
                f"{exc.strerror or exc}"
            ) from None
        raise NotExecutableError(f"cannot execute {argv[0]!r}: {exc.strerror or exc}") from None
    finally:
        if saved_cwd is not None:
            os.chdir(saved_cwd)
    group = pid if own_group else None
    timer = _Timer(pid, group) if timeout is not None else None
    interrupts.child_started(pid, group)
    try:
        if timer is not None:
            timer.start(timeout)  # type: ignore[arg-type]
        _, wait_status = os.waitpid(pid, 0)
    finally:
        interrupts.child_finished()
        if timer is not None:
            timer.stop()
    killed = os.WIFSIGNALED(wait_status) and os.WTERMSIG(wait_status) == _signal.SIGKILL
    return Outcome(
        exit_status(wait_status),
        timed_out=timer is not None and timer.fired,
        oom_mark=oom_mark,
        killed_pid=pid if killed else None,
    )
