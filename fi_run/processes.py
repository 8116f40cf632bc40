"""Is a process still running? The one answer, for the lock queue, the holder records and the recognizer.

Only a proven death counts as dead. A process that exists but cannot be looked at (another user's: EPERM on
POSIX, access denied on Windows) is alive: a waiter's or holder's entry must never be taken for stale, and
another build's holder for gone, just because it is not ours to signal (issue 17: two checks used to
disagree on what such an error means).
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # not typing's: saves importing typing on the steps that import this
if TYPE_CHECKING:
    from typing import Final


def alive(pid: int) -> bool:
    """Is process ``pid`` still running? (One killed with SIGKILL/TerminateProcess is not.)"""
    if pid <= 0:
        return False  # os.kill(0, 0) and os.kill(-1, 0) would ask about a group, not a process
    if sys.platform == "win32":
        return _alive_windows(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # EPERM: it exists, it is another user's
    return True


def zombie(pid: int) -> bool:
    """Finished but not yet reaped by its parent (Linux /proc; elsewhere never known, so False)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rpartition(b")")[2].split()[0] == b"Z"
    except (OSError, IndexError):
        return False


_PROCESS_QUERY_LIMITED_INFORMATION: Final = 0x1000
_ERROR_INVALID_PARAMETER: Final = 87
_STILL_ACTIVE: Final = 259

if sys.platform == "win32":

    def _alive_windows(pid: int) -> bool:
        # os.kill(pid, 0) would *terminate* the process on Windows. A process runs while its exit code
        # reads STILL_ACTIVE; one that cannot be opened at all (ERROR_INVALID_PARAMETER) does not exist.
        # Access denied (another user's process) counts as alive: only a proven death is dead.
        import _winapi

        try:
            handle = _winapi.OpenProcess(_PROCESS_QUERY_LIMITED_INFORMATION, False, pid)
        except OSError as exc:
            return getattr(exc, "winerror", None) != _ERROR_INVALID_PARAMETER
        try:
            return bool(_winapi.GetExitCodeProcess(handle) == _STILL_ACTIVE)
        finally:
            _winapi.CloseHandle(handle)
