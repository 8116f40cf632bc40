"""Interrupts: let the child see the signal, wait for it, and remember that the step was interrupted.

Ninja on POSIX starts every non-console command in a process group of its own and, on Ctrl-C (or SIGTERM,
SIGHUP), sends the signal to that whole group. fi_run puts the command in a group of its own too (so that
--timeout can stop everything the command started), so it forwards what it receives to that group. On
Windows ninja sends CTRL_BREAK_EVENT to the command's process group; the child shares fi_run's console
group there and receives it directly, so fi_run only takes note (Python maps it to SIGBREAK).

While no child runs (waiting for a lock, backing off before a retry) a signal ends fi_run at once with
``Interrupted``: there is nothing to wait for and nothing to clean up but the locks, which the callers'
``finally`` blocks release.
"""

from __future__ import annotations

import os
import sys

from ..errors import EXIT_INTERRUPTED, EXIT_SIGNAL_BASE, FiRunError

TYPE_CHECKING = False  # not typing's: saves importing typing (~6 ms) per unlocked step (docs/performance.md)
if TYPE_CHECKING:
    import signal as _signal
    from types import FrameType
    from typing import Final
else:
    # The C module, not `signal`: `signal` imports enum for its IntEnum wrappers, a few ms per build step.
    import _signal

# The signals a build system or a terminal sends to stop a step.
HANDLED: tuple[int, ...]
if sys.platform == "win32":  # pragma: no cover - Windows only
    HANDLED = (_signal.SIGINT, _signal.SIGTERM, _signal.SIGBREAK)
else:
    HANDLED = (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP)


_NAMES: Final = {
    1: "SIGHUP",
    2: "SIGINT",
    15: "SIGTERM",
    21: "SIGBREAK (Ctrl-Break)" if sys.platform == "win32" else "SIGTTIN",
}


def signal_name(signum: int) -> str:
    return _NAMES.get(signum, f"signal {signum}")


def exit_status_for(signum: int) -> int:
    """128 + N on POSIX; 130 on Windows, where console control events have no POSIX number."""
    if sys.platform == "win32":  # pragma: no cover - Windows only
        return EXIT_INTERRUPTED
    return EXIT_SIGNAL_BASE + signum


class Interrupted(FiRunError):
    """The step was stopped by a signal: one line, exit 128 + N, no stamp (cli.main's error path).

    Raised by the handler itself while nothing runs (start-up, a lock wait, a back-off), or by the
    pipeline once a signal it recorded while something ran has been dealt with."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by {signal_name(signum)}; no stamp written")
        self.signum = signum
        self.exit_status = exit_status_for(signum)


class Interrupts:
    """Signal handlers for one fi_run invocation; a context manager that restores the old ones."""

    def __init__(self) -> None:
        self.signum: int | None = None
        # The process group to forward signals to while a command runs (None: not forwarding).
        self.forward_to_group: int | None = None
        self.forward_to_pid: int | None = None
        # Every command this invocation started, as (pid, its own process group or None): after a failed
        # attempt the holder checks tell the step's own processes from a neighbour's (issue 20).
        self.started: list[tuple[int, int | None]] = []
        self._idle = True
        self._saved: dict[int, object] = {}

    def __enter__(self) -> Interrupts:
        for signum in HANDLED:
            try:
                previous = _signal.getsignal(signum)
                # A signal the build ignores on purpose (nohup, a CI agent) stays ignored.
                if previous == _signal.SIG_IGN:
                    continue
                _signal.signal(signum, self._handle)
            except (ValueError, OSError):  # not the main thread: run without handlers
                continue
            self._saved[signum] = previous
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, previous in self._saved.items():
            _signal.signal(signum, previous)  # type: ignore[arg-type]
        self._saved.clear()

    def child_started(self, pid: int, group: int | None) -> None:
        """From now on signals are forwarded, not raised. Delivers one that arrived during the spawn."""
        self._idle = False
        self.forward_to_pid = pid
        self.forward_to_group = group
        self.started.append((pid, group))
        if self.signum is not None:
            self._forward(self.signum)

    def child_finished(self) -> None:
        self.forward_to_pid = None
        self.forward_to_group = None

    def spawning(self) -> None:
        """A child is about to start: record signals instead of raising, so it cannot be orphaned."""
        self._idle = False

    def idle(self) -> None:
        """No child runs: a signal now raises Interrupted. Raises at once if one already arrived."""
        self._idle = True
        if self.signum is not None:
            raise Interrupted(self.signum)

    def _forward(self, signum: int) -> None:
        if sys.platform == "win32":  # pragma: no cover - the child received the console event itself
            return
        try:
            if self.forward_to_group is not None:
                os.killpg(self.forward_to_group, signum)
            elif self.forward_to_pid is not None and signum == _signal.SIGTERM:
                # The child shares our (terminal's) process group, which already delivered SIGINT and
                # SIGHUP to it; forwarding those would deliver them twice. SIGTERM usually comes from
                # `kill <pid>`, aimed at fi_run alone.
                os.kill(self.forward_to_pid, signum)
        except OSError:
            pass  # already gone (try/except, not contextlib.suppress: saves ~2 ms on an unlocked step)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
        if self.forward_to_pid is not None:
            self._forward(signum)
        elif self._idle:
            raise Interrupted(signum)
