"""A Windows job object around one attempt's process tree: for --timeout, interrupts, and a killed fi_run.

Windows has no process groups to signal; `taskkill /T` finds a tree through parent ids, so it misses a
grandchild whose parent already exited, and it can fail outright. A job object holds every process the
command starts (children join their parent's job), and the kernel can end all of them at once:

- ``terminate()``: TerminateJobObject, for --timeout and after an interrupt;
- kill-on-close: when fi_run dies without cleaning up (TerminateProcess, `taskkill /F`, a crash), the
  kernel closes its handle to the job and ends the whole tree with it, so nothing outlives fi_run;
- ``release()``: a step that ended normally clears kill-on-close before closing the handle, so a daemon the
  command left running on purpose (mspdbsrv.exe, a compiler server) lives on as it would without fi_run.

The command is created suspended and resumed only once it is in the job, so not even its first child can
escape. Only ctypes and _winapi (no pywin32): fi_run has no dependency for this.
"""

from __future__ import annotations

import sys

# Type checkers skip the rest of this module off Windows; nothing imports it there.
assert sys.platform == "win32"

import _winapi  # noqa: E402
import ctypes  # noqa: E402
from ctypes import wintypes  # noqa: E402

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

CREATE_SUSPENDED: Final = 0x00000004
_JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE: Final = 0x00002000
_JOB_OBJECT_EXTENDED_LIMIT_INFORMATION: Final = 9  # the JOBOBJECTINFOCLASS value
_PROCESS_TERMINATE: Final = 0x0001
_PROCESS_SET_QUOTA: Final = 0x0100
_PROCESS_SUSPEND_RESUME: Final = 0x0800


class _BasicLimits(ctypes.Structure):
    _fields_ = (
        ("PerProcessUserTimeLimit", ctypes.c_int64),
        ("PerJobUserTimeLimit", ctypes.c_int64),
        ("LimitFlags", wintypes.DWORD),
        ("MinimumWorkingSetSize", ctypes.c_size_t),
        ("MaximumWorkingSetSize", ctypes.c_size_t),
        ("ActiveProcessLimit", wintypes.DWORD),
        ("Affinity", ctypes.c_size_t),
        ("PriorityClass", wintypes.DWORD),
        ("SchedulingClass", wintypes.DWORD),
    )


class _ExtendedLimits(ctypes.Structure):
    _fields_ = (
        ("BasicLimitInformation", _BasicLimits),
        ("IoInfo", ctypes.c_uint64 * 6),
        ("ProcessMemoryLimit", ctypes.c_size_t),
        ("JobMemoryLimit", ctypes.c_size_t),
        ("PeakProcessMemoryUsed", ctypes.c_size_t),
        ("PeakJobMemoryUsed", ctypes.c_size_t),
    )


_kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
_kernel32.CreateJobObjectW.restype = wintypes.HANDLE
_kernel32.CreateJobObjectW.argtypes = (ctypes.c_void_p, wintypes.LPCWSTR)
_kernel32.SetInformationJobObject.argtypes = (wintypes.HANDLE, ctypes.c_int, ctypes.c_void_p, wintypes.DWORD)
_kernel32.AssignProcessToJobObject.argtypes = (wintypes.HANDLE, wintypes.HANDLE)
_kernel32.TerminateJobObject.argtypes = (wintypes.HANDLE, wintypes.UINT)
_kernel32.CloseHandle.argtypes = (wintypes.HANDLE,)


def _set_kill_on_close(job: int, on: bool) -> bool:
    limits = _ExtendedLimits()
    limits.BasicLimitInformation.LimitFlags = _JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE if on else 0
    return bool(
        _kernel32.SetInformationJobObject(
            job, _JOB_OBJECT_EXTENDED_LIMIT_INFORMATION, ctypes.byref(limits), ctypes.sizeof(limits)
        )
    )


def resume(process: int) -> None:
    """Resume every thread of a process created suspended (its only thread, here)."""
    # NtResumeProcess takes the process handle subprocess keeps; the thread handle CreateProcess returned
    # is closed inside subprocess. It is in ntdll on every Windows since XP (and in Wine).
    ntdll = ctypes.WinDLL("ntdll")
    ntdll.NtResumeProcess.argtypes = (wintypes.HANDLE,)
    ntdll.NtResumeProcess(process)


class Job:
    """The job of one attempt; ``handle`` is None where none could be made (then taskkill is all there is)."""

    def __init__(self) -> None:
        handle = _kernel32.CreateJobObjectW(None, None)
        self.handle: int | None = handle or None
        if self.handle is not None and not _set_kill_on_close(self.handle, True):
            self.close()

    def adopt(self, pid: int) -> bool:
        """Put the (suspended) process into the job and resume it. False: it runs, outside any job."""
        access = _PROCESS_SET_QUOTA | _PROCESS_TERMINATE | _PROCESS_SUSPEND_RESUME
        process = _winapi.OpenProcess(access, False, pid)
        try:
            assigned = self.handle is not None and bool(
                _kernel32.AssignProcessToJobObject(self.handle, process)
            )
            resume(process)
        finally:
            _winapi.CloseHandle(process)
        if not assigned:
            self.close()
        return assigned

    def terminate(self, status: int = 1) -> bool:
        """End every process of the job now. False: there is no job."""
        return self.handle is not None and bool(_kernel32.TerminateJobObject(self.handle, status))

    def release(self) -> None:
        """The step is over: let whatever the command left running on purpose live on."""
        if self.handle is not None:
            _set_kill_on_close(self.handle, False)
        self.close()

    def close(self) -> None:
        """Close the handle; with kill-on-close still set, the processes of the job end with it."""
        if self.handle is not None:
            _kernel32.CloseHandle(self.handle)
            self.handle = None
