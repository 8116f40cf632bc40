"""Standard descriptors that were closed when fi_run started (``fi_run ... >&-``).

A closed descriptor 0, 1 or 2 is dangerous in the process that finds it closed: the next file it opens
gets that number (a lock file, the capture file), and the command would then write its output into it.
So fi_run parks /dev/null on each closed one for itself, remembers which they were, and closes them again
in the command (a posix_spawn close action): the command sees exactly what it would see without fi_run,
and its own exit status passes through.
"""

from __future__ import annotations

import os

# The standard descriptors that were closed at start; fi_run's own copies now point at os.devnull.
CLOSED: set[int] = set()


def reserve_closed() -> None:
    """Park os.devnull on every closed standard descriptor (lowest first, so each lands on its own number)."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd, inheritable=False)
                os.close(null)
            else:
                os.set_inheritable(fd, False)
            CLOSED.add(fd)
