"""Wake-ups for lock waiters, so that a released lock is taken within a millisecond, not a poll later.

filelock waits by polling (try the lock, sleep ``poll_interval``, 50 ms by default). With 40 steps waiting
on one venv that is either slow hand-off or a lot of CPU spent polling. filelock stays the lock; this module
only tells waiters *when* to try again: each waiter binds a UDP socket on the loopback interface and leaves
an entry in the resource's ``waiters`` directory; whoever releases the resource sends a datagram to the
waiter that should try next. Waiters block in select() and still poll now and then (``SAFETY_POLL``) for a
wake-up that cannot come: a holder killed with SIGKILL releases its flock in the kernel but rings no bell.

One waiter is woken per release, the oldest of the right kind, not all of them: with 40 waiters on two
cores, waking all of them to have 39 fail costs more CPU than the hand-off itself (a thundering herd), and
the oldest-first order makes the queue fair. Entry names start with the time the waiter began waiting
(CLOCK_MONOTONIC, shared by all processes), so sorting them gives that order. A waiter's kind says what it
waits for, so the releaser wakes one that can use what was released:

- ``gate``: the resource's gate (an exclusive holder's whole lock, or the moment a slot is claimed);
- ``drain``: an exclusive waiter that has the gate and waits for shared or counted holders to leave;
- ``slot``: a counted (--semaphore) waiter that found all N slots taken.

Where no loopback socket can be had (a sandbox without networking) waiters fall back to polling every
``FALLBACK_POLL`` seconds; nothing else changes.
"""

from __future__ import annotations

import os
import select
import time

from ..processes import alive

TYPE_CHECKING = False  # saves nothing: only a locked step imports this, and filelock imports typing
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

    def __init__(self, waiters_dir: str, kind: str, since_ns: int | None = None) -> None:
        """``since_ns``: when the wait began (time.monotonic_ns()), if before now: the entry's place in the
        line. The build's coordinator queues for a step that has waited in the build since then (issue 18:
        the build and the processes outside it in one line, in the order they came)."""
        self._dir = waiters_dir
        self._sock: _socket.socket | None = None
        self._entry: str | None = None
        self._prefix = ""
        try:
            sock = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
            sock.bind((_LOOPBACK, 0))
            sock.setblocking(False)
            port = sock.getsockname()[1]
            os.makedirs(waiters_dir, exist_ok=True)
            now = time.monotonic_ns()
            began = now if since_ns is None else min(since_ns, now)
            self._prefix = f"{began:020d}-{os.getpid()}-{port}"
            entry = os.path.join(waiters_dir, f"{self._prefix}.{kind}")
            # O_EXCL | O_NOFOLLOW: never create a file through a symlink planted in a shared lock directory.
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
            os.close(os.open(entry, flags, 0o644))
            self._sock = sock
            self._entry = entry
        except OSError:
            return  # no loopback or no directory: poll instead
        except BaseException:
            # Interrupted (SIGINT, SIGTERM) right after the entry was made: the caller never gets this
            # object to close, so the entry must go now, or it would look like a waiter to everyone.
            try:
                os.unlink(entry)
            except (OSError, NameError):
                pass
            self._entry = None
            raise

    def set_kind(self, kind: str) -> None:
        """Wait for something else now (an exclusive waiter that got the gate now waits to drain)."""
        if self._entry is None or self._entry.endswith("." + kind):
            return
        entry = os.path.join(self._dir, f"{self._prefix}.{kind}")
        try:
            os.replace(self._entry, entry)
        except OSError:
            return
        self._entry = entry

    def ahead(self) -> bool:
        """Is a live waiter in line older than this one? Then it is not this one's turn (FIFO)."""
        if self._entry is None:
            return False  # unregistered (no loopback): first come, first served cannot be kept; just try
        return first_in_line(self._dir, before=os.path.basename(self._entry))

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


# The kinds of waiter that stand in the resource's line: one waiting for the gate, and a counted one that
# found every slot taken. A later arrival queues behind both: a --lock that came after a --semaphore waiter
# must not take the gate and drain the slots before it (issue 22). An exclusive waiter that has the gate and
# waits for holders to leave ("drain") is past the line.
_IN_LINE: Final = (".gate", ".slot")


def first_in_line(waiters_dir: str, before: str | None = None) -> bool:
    """Is there a live waiter in line (older than the entry ``before``, if given) in ``waiters_dir``?

    Entries sort in arrival order (their names start with the monotonic time of arrival). A waiter killed
    with SIGKILL leaves its entry behind: its pid is checked, so it never holds up the line.
    """
    try:
        names = sorted(name for name in os.listdir(waiters_dir) if name.endswith(_IN_LINE))
    except OSError:
        return False
    for name in names:
        if before is not None and name >= before:
            return False
        try:
            _ns, pid_text, port_text = name.partition(".")[0].split("-")
            pid, port = int(pid_text), int(port_text)
        except ValueError:
            continue
        if pid != os.getpid() and alive(pid) and _port_taken(port):
            return True
    return False


def parse_entry(name: str) -> tuple[int, int, int, str] | None:
    """An entry's name, ``<monotonic ns>-<pid>-<port>.<kind>``, as (ns, pid, port, kind); None for another
    name. For `fi-run locks`, which lists the line (the steps parse names inline: they run once per step)."""
    stem, _, kind = name.partition(".")
    try:
        ns_text, pid_text, port_text = stem.split("-")
        return int(ns_text), int(pid_text), int(port_text), kind
    except ValueError:
        return None


def still_waiting(pid: int, port: int) -> bool:
    """Is the waiter that made an entry with this pid and port still waiting (the test first_in_line makes):
    its process alive and its port still bound? A dead pid or a closed port is a stale entry."""
    return alive(pid) and _port_taken(port)


def _port_taken(port: int) -> bool:
    """Is the waiter's loopback port still bound? A live pid alone could be a reused one: an entry left by
    a killed waiter must never hold up the line (a live but stopped waiter does: docs/faults.md)."""
    try:
        probe = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
    except OSError:
        return True
    try:
        probe.bind((_LOOPBACK, port))
    except OSError:
        return True  # in use: the waiter still listens
    finally:
        probe.close()
    return False


def ring(waiters_dir: str, kind: str, *, everyone: bool = False) -> None:
    """Wake the oldest live waiter of ``kind`` (all of them with ``everyone``) with one datagram each."""
    try:
        entries = sorted(name for name in os.listdir(waiters_dir) if name.endswith("." + kind))
    except OSError:
        return
    if not entries:
        return
    try:
        sock = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
    except OSError:
        return
    own = os.getpid()
    try:
        for entry in entries:
            try:
                _ns, pid_text, port_text = entry.partition(".")[0].split("-")
                pid, port = int(pid_text), int(port_text)
            except ValueError:
                continue
            if pid == own:
                continue
            if not alive(pid):  # killed while waiting: its entry is stale; the next one is woken instead
                try:
                    os.unlink(os.path.join(waiters_dir, entry))
                except OSError:
                    pass
                continue
            try:
                sock.sendto(b"", (_LOOPBACK, port))
            except OSError:
                continue
            if not everyone:
                return
    finally:
        sock.close()
