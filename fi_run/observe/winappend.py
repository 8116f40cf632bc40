"""--log on Windows: a record is whole or absent, however many processes append at once.

POSIX O_APPEND moves the end of file and writes under the inode's lock. The UCRT's O_APPEND does not: it
seeks to the end, then writes, so two processes can both write at the same old end and one line is lost
(about 280 of 6,000 in a test of 4 processes). So on Windows each record is written

- under a lock (filelock, on ``LOG.lock`` beside the log), which serialises fi_run's writers wherever the
  lock works: LockFileEx, local disks and SMB shares, and Wine;
- with ONE WriteFile on a handle opened with FILE_APPEND_DATA only (no FILE_WRITE_DATA): Windows then writes
  at the end of file whatever the offset, so a writer that takes no lock (an older fi_run) cannot overwrite.

The lock costs the filelock import (~45 ms on Windows) for each step run with --log.
"""

from __future__ import annotations

import sys

# Type checkers skip the rest of this module off Windows; steplog imports it only there.
assert sys.platform == "win32"

import _winapi  # noqa: E402

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

_FILE_APPEND_DATA: Final = 0x0004
_SYNCHRONIZE: Final = 0x00100000
_FILE_SHARE_ALL: Final = 0x1 | 0x2 | 0x4  # read, write, delete: readers and other writers go on
_OPEN_ALWAYS: Final = 4
_FILE_ATTRIBUTE_NORMAL: Final = 0x80
# A writer holds the lock only for one write; one that has not let go after this long is stuck (a frozen
# process), and the record is written without it rather than lost.
LOCK_TIMEOUT: Final = 10.0


def _write(path: str, data: bytes) -> int:
    handle = _winapi.CreateFile(
        path, _FILE_APPEND_DATA | _SYNCHRONIZE, _FILE_SHARE_ALL, 0, _OPEN_ALWAYS, _FILE_ATTRIBUTE_NORMAL, 0
    )
    try:
        written, _error = _winapi.WriteFile(handle, data)
        return int(written)
    finally:
        _winapi.CloseHandle(handle)


def append_bytes(path: str, data: bytes) -> int:
    """Append ``data`` to ``path`` with one write; returns the number of bytes written."""
    from filelock import FileLock, Timeout

    # A short poll: the lock is held for one write, and a 50 ms default poll would dominate.
    lock = FileLock(path + ".lock", timeout=LOCK_TIMEOUT, poll_interval=0.001)
    try:
        with lock:
            return _write(path, data)
    except Timeout:
        return _write(path, data)
