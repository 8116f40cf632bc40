"""How long to wait before retrying an attempt that failed with lock contention.

Exponential with jitter, capped per wait, in count and in total. The numbers come from tools that already
retry their own lock contention:
- git's lockfile.c waits for a held lock with a backoff that grows from 1 ms, each wait multiplied by a
  random factor in [0.75, 1.25] so that waiters started together do not retry in lockstep: our jitter.
- MSBuild's Copy task retries a file locked by another process 10 times, 1 s apart: the order of the
  per-wait cap (and the default count, records.py's DEFAULT_RETRIES).
- uv gives up waiting for a lock after 300 s (UV_LOCK_TIMEOUT's default): our cap on the total wait.
The first wait is 0.25 s rather than git's 1 ms because a retry here restarts a whole tool (hundreds of
ms), not one open(2); holders of a venv or a git index hold it for about that long.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # not typing's: saves typing (~6 ms) on an unlocked step that retries
if TYPE_CHECKING:
    from typing import Final

FIRST_DELAY: Final = 0.25
MAX_DELAY: Final = 10.0
MAX_TOTAL_WAIT: Final = 300.0
JITTER_LOW: Final = 0.75
JITTER_HIGH: Final = 1.25


def unit_random() -> float:
    """A float in [0, 1) from os.urandom: the random module costs an import on every step."""
    return int.from_bytes(os.urandom(7), "big") / (1 << 56)


def delay(retry: int, rand: float) -> float:
    """Seconds to wait before retry number ``retry`` (1-based), ``rand`` in [0, 1)."""
    base = min(FIRST_DELAY * 2.0 ** (retry - 1), MAX_DELAY)
    return base * (JITTER_LOW + (JITTER_HIGH - JITTER_LOW) * rand)
