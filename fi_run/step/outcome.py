"""What one attempt of the command came to."""

from __future__ import annotations

import os


class Outcome:
    __slots__ = ("status", "timed_out")

    def __init__(self, status: int, timed_out: bool) -> None:
        self.status = status  # the exit status fi_run passes on: the command's, or 128 + N for signal N
        self.timed_out = timed_out

    def __repr__(self) -> str:
        return f"Outcome(status={self.status}, timed_out={self.timed_out})"


def exit_status(wait_status: int) -> int:
    """A POSIX wait status as a shell reports it: the exit code, or 128 + N for a death by signal N."""
    code = os.waitstatus_to_exitcode(wait_status)
    return 128 - code if code < 0 else code


def os_exit_code(status: int, *, windows: bool) -> int:
    """What to hand os._exit so that the parent sees ``status``.

    Windows exit codes are unsigned 32-bit (0xC000013A, STATUS_CONTROL_C_EXIT, is 3221225786), but os._exit
    takes a C int and raises OverflowError above 2**31 - 1. The same 32 bits as a negative int are the same
    exit code to the parent, so the command's status passes through exactly (ninja reads 0xC000013A as
    "interrupted").
    """
    if windows and status > 0x7FFFFFFF:
        return (status & 0xFFFFFFFF) - (1 << 32)
    return status
