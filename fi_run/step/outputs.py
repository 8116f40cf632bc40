"""--output: each declared file must exist after the command and have been written since fi_run started.

"Written" is judged against the file as it was when the step started, not against the clock: the clock
alone let an output through that the command never wrote, when its mtime lay in the future (issue 22: clock
skew, NFS, files unpacked from an archive), and refused one written with an old mtime kept on purpose (a
copy with ``cp -p``, an archive extracted, a file replaced by rename). So ``before`` records each output's
identity, size, mtime and ctime when the step starts, and ``check`` requires, after the command, that the
file exists and that it did not exist before or that one of them changed. Renaming over the file gives a
new inode; writing into it moves its mtime and ctime (ctime cannot be set from user space).

One case is left to the clock: the file is unchanged, but only because the command rewrote it within the
same timestamp step as the write before (FAT keeps mtimes to 2 s; ext3, HFS+ and some NFS servers to 1 s),
with the same size. Such a file's mtime lies within ``GRANULARITY_SECONDS`` of the start, and it is
accepted, as it was before issue 22; a file dated further from the start, before or after, is not.

Only a step with --output imports this module (docs/performance.md: fi_run's own modules cost about 50 us
each), and it pays one stat per output before the command and one after.
"""

from __future__ import annotations

import os
import time

from ..errors import OutputError

TYPE_CHECKING = False  # not typing's: saves importing typing (~6 ms) per step
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Final

    Identity = tuple[int, int, int, int, int]  # st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns

GRANULARITY_SECONDS: Final = 2.0  # the coarsest mtimes fi_run expects: FAT's


class Before:
    """The declared outputs as they were when the step started (None: not there, or not stat-able)."""

    __slots__ = ("identities", "paths", "taken")

    def __init__(self, paths: Sequence[str]) -> None:
        self.taken = time.time()
        self.paths = tuple(paths)
        self.identities = tuple(_identity(path) for path in self.paths)


def _identity(path: str) -> Identity | None:
    try:
        found = os.stat(path)
    except OSError:
        return None
    return (found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns, found.st_ctime_ns)


def not_written(before: Identity | None, after: Identity, taken: float) -> str | None:
    """Why the file now described by ``after`` was not written since ``taken``; None if it was.

    ``before`` is the file as it was at ``taken`` (None: it did not exist). A pure function of its
    arguments, so that the coarse-timestamp cases can be checked on any filesystem.
    """
    if before != after:
        return None  # created, replaced (a new inode), or written (size, mtime or ctime moved)
    offset = after[3] / 1e9 - taken
    if abs(offset) <= GRANULARITY_SECONDS:
        return None  # maybe rewritten within one timestamp step: the benefit of the doubt
    if offset > 0:  # a clock ahead (NFS), or a date kept from elsewhere (an archive)
        return f"unchanged since the step started, and dated {offset:.0f} s after that start"
    return "unchanged since the step started"


def check(before: Before) -> None:
    """Raise OutputError (exit 65) for the first declared output that is missing or was not written."""
    for path, was in zip(before.paths, before.identities, strict=True):
        try:
            found = os.stat(path)
        except OSError as exc:
            raise OutputError(f"--output {path!r} was not written by the command ({exc.strerror})") from None
        now = (found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns, found.st_ctime_ns)
        reason = not_written(was, now, before.taken)
        if reason is not None:
            raise OutputError(f"--output {path!r} was not written by this run ({reason})")
