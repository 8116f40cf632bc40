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
