"""Wake-ups for lock waiters, so that a released lock is taken within a millisecond, not a poll later.

filelock waits by polling (try the lock, sleep ``poll_interval``, 50 ms by default). With 40 steps waiting
on one venv that is either slow hand-off or a lot of CPU spent polling. filelock stays the lock; this module
only tells waiters *when* to try again: each waiter binds a UDP socket on the loopback interface and leaves
its port in the resource's ``waiters`` directory; whoever releases the resource sends each port one empty
datagram. Waiters block in select() and still poll now and then (``SAFETY_POLL``) for wake-ups that cannot
come: a holder killed with SIGKILL releases its flock in the kernel but rings no bell.

Where no loopback socket can be had (a sandbox without networking) waiters fall back to polling every
``FALLBACK_POLL`` seconds; nothing else changes.
"""

from __future__ import annotations

import os
import select

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket as _socket
    from typing import Final
else:
    import _socket  # `socket` imports enum and selectors; the C module is all this needs

SAFETY_POLL: Final = 0.1
FALLBACK_POLL: Final = 0.005
_LOOPBACK: Final = "127.0.0.1"


class Waiter:
    """One process's registration as a waiter on one resource directory."""

    def __init__(self, waiters_dir: str) -> None:
        self._sock: _socket.socket | None = None
        self._entry: str | None = None
        try:
            sock = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
            sock.bind((_LOOPBACK, 0))
            sock.setblocking(False)
            port = sock.getsockname()[1]
            os.makedirs(waiters_dir, exist_ok=True)
            _prune(waiters_dir)
            entry = os.path.join(waiters_dir, f"{os.getpid()}-{port}")
            with open(entry, "w"):
                pass
        except OSError:
            return  # no loopback or no directory: poll instead
        self._sock = sock
        self._entry = entry

    def wait(self, seconds: float) -> None:
        """Sleep until rung or until ``seconds`` (at most SAFETY_POLL) have passed."""
        if self._sock is None:
            select.select([], [], [], max(0.0, min(seconds, FALLBACK_POLL)))
            return
        ready, _, _ = select.select([self._sock], [], [], max(0.0, min(seconds, SAFETY_POLL)))
        if ready:
            try:
                while True:
                    self._sock.recv(16)
            except OSError:  # drained (BlockingIOError) or anything else: either way, try the lock now
                pass

    def close(self) -> None:
        if self._entry is not None:
            try:
                os.unlink(self._entry)
            except OSError:
                pass
            self._entry = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> Waiter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def ring(waiters_dir: str) -> None:
    """Wake every process waiting on the resource: one datagram to each registered port."""
    try:
        entries = os.listdir(waiters_dir)
    except OSError:
        return
    if not entries:
        return
    try:
        sock = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
    except OSError:
        return
    own = f"{os.getpid()}-"
    try:
        for entry in entries:
            if entry.startswith(own):
                continue
            try:
                sock.sendto(b"", (_LOOPBACK, int(entry.rpartition("-")[2])))
            except (OSError, ValueError):
                continue  # a waiter that died: its entry is stale and harmless (see _prune)
    finally:
        sock.close()


def _prune(waiters_dir: str) -> None:
    """Remove the entries of waiters that no longer exist (killed before they could clean up)."""
    if os.name == "nt":  # pragma: no cover - os.kill(pid, 0) would terminate the process on Windows
        return
    try:
        entries = os.listdir(waiters_dir)
    except OSError:
        return
    for entry in entries:
        try:
            os.kill(int(entry.partition("-")[0]), 0)
        except ProcessLookupError:
            try:
                os.unlink(os.path.join(waiters_dir, entry))
            except OSError:
                pass
        except (OSError, ValueError):
            continue
