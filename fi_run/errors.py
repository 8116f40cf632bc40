"""fi_run's own failures and the exit status of each: the one place that maps errors to statuses.

The command's own exit status passes through untouched; these are the statuses fi_run uses when it,
not the command, decides how the step ends. They follow timeout(1), POSIX shells and sysexits.h so
that build tools and people already know them.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: saves importing typing (~6 ms) per unlocked step (docs/performance.md)
if TYPE_CHECKING:
    from typing import Final

EXIT_USAGE: Final = 2  # the invocation is wrong: argv, a response file, an environment default, a path
EXIT_OUTPUT: Final = 65  # sysexits EX_DATAERR: the command succeeded but a declared --output was not written
# sysexits EX_UNAVAILABLE: the server of a redis:// resource could not be reached (issue 21); never a silent
# fall back to a local lock, which would exclude nothing on the other machines
EXIT_UNAVAILABLE: Final = 69
EXIT_SOFTWARE: Final = 70  # sysexits EX_SOFTWARE: a bug in fi_run (reported in one line, never a traceback)
EXIT_IOERR: Final = 74  # sysexits EX_IOERR: fi_run could not write its stamp, or a tool its result (stdout)
EXIT_TEMPFAIL: Final = 75  # sysexits EX_TEMPFAIL: --lock-timeout expired before the lock was free
EXIT_TIMEOUT: Final = 124  # as timeout(1): --timeout expired and the command was stopped
EXIT_NOT_EXECUTABLE: Final = 126  # as POSIX shells: found but cannot be executed
EXIT_NOT_FOUND: Final = 127  # as POSIX shells: no such command
EXIT_SIGNAL_BASE: Final = 128  # a command killed by signal N, or fi_run interrupted by it, exits 128 + N
EXIT_INTERRUPTED: Final = 130  # 128 + SIGINT; also used for Windows' CTRL_C / CTRL_BREAK

# The one exit-status table: --help's epilog and docs/reference.md (checked by a test) are built from it.
EXIT_STATUSES: Final = (
    (EXIT_USAGE, "usage error"),
    (EXIT_OUTPUT, "a declared --output missing or stale"),
    (EXIT_UNAVAILABLE, "the server of a redis:// resource unreachable"),
    (EXIT_SOFTWARE, "internal error"),
    (EXIT_IOERR, "stamp or result not written"),
    (EXIT_TEMPFAIL, "lock timeout"),
    (EXIT_TIMEOUT, "timeout"),
    (EXIT_NOT_EXECUTABLE, "not executable"),
    (EXIT_NOT_FOUND, "not found"),
    (EXIT_SIGNAL_BASE, "+N killed by or interrupted by signal N (130: Ctrl-C)"),
)


class FiRunError(Exception):
    """A failure fi_run reports in one line on stderr and turns into its exit status."""

    exit_status: int = EXIT_SOFTWARE

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(FiRunError):
    exit_status = EXIT_USAGE


class CommandNotFoundError(FiRunError):
    exit_status = EXIT_NOT_FOUND


class NotExecutableError(FiRunError):
    exit_status = EXIT_NOT_EXECUTABLE


class LockTimeoutError(FiRunError):
    exit_status = EXIT_TEMPFAIL


class RemoteUnavailableError(FiRunError):
    exit_status = EXIT_UNAVAILABLE


class StampError(FiRunError):
    exit_status = EXIT_IOERR


class ResultError(FiRunError):
    """What fi_run itself prints (--version, --help, a tool's result) could not be written to stdout."""

    exit_status = EXIT_IOERR


class OutputError(FiRunError):
    exit_status = EXIT_OUTPUT
