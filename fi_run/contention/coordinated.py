"""A step's locks from the build's coordinator, when ``fi-run jobserver`` runs one (issue 18).

``fi-run jobserver`` sets FI_RUN_COORDINATOR to a local socket. A step that finds it asks the coordinator
for its locks instead of taking them itself: one request, one answer. The coordinator takes the same
OS-level locks in the same lock directory, through filelock, on the build's behalf (coordinator.py), so
exclusion against other builds and tools is exactly what it is without it; within the build it serves in
arrival order and hands a resource from step to step without a trip through the OS where it can.

What the step gains is what it does not import: filelock (about 48 ms of a 78 ms locked step) and the
``socket`` module; this module needs only ``_socket``, the C module (issue 18's probe: a locked step then
costs about what a plain one does).

Whatever dies, nothing runs twice inside a lock:

- The grant carries the locked descriptors (SCM_RIGHTS); the step lets its command inherit them, as a step
  without a coordinator does its own. If the coordinator is killed, the running commands still hold the
  OS-level locks, so the steps that fall back to the lock directory wait for them.
- While it holds its locks the step lets its command inherit the connection too: the coordinator sees the
  step gone only when the step and every process that kept the connection are gone. A step killed with
  SIGKILL while its command runs keeps its resources held until that command has ended (no pid to reuse).
- A step that finds no coordinator, or loses it while waiting, takes its locks through the lock directory
  as any step would (one warning), and pays for filelock then.

A redis:// resource (issue 21) is asked of the coordinator like any other; its grant carries the resource's
fencing number (exported as FI_RUN_FENCE_<NAME>) and the token of the coordinator's hold on the server. While
the command runs, a thread of the step's waits on the connection: if the coordinator dies, it takes the
renewal of those holds over (remote.Renewer), so a running command keeps its seat.

Windows steps always take the lock-directory path: the coordinator needs AF_UNIX descriptor passing.
"""

from __future__ import annotations

import os
import sys
import time

from ..errors import EXIT_USAGE, FiRunError, LockTimeoutError
from .lockdir import default_lock_dir, describe_modes, merge_requests
from .wire import MAX_FDS, Reader, encode, encode_modes

# Type checkers skip the rest of this module for Windows (mypy --platform win32): no step imports it
# there.
assert sys.platform != "win32"

TYPE_CHECKING = False  # not typing's: a coordinated step is meant to cost what a plain one does
if TYPE_CHECKING:
    import socket as _socket
    from collections.abc import Sequence
    from contextlib import AbstractContextManager
    from typing import Final

    from ..messages import Reporter
    from ..records import JSON, LockRequest, StepRecord, StepSpec
    from .hold import RemoteHold
    from .lending import Lender
    from .remote import Renewer, Seat
else:
    import _socket  # `socket` imports enum and selectors, about 13 ms: the C module is all this needs

# Set by `fi-run jobserver` to its coordinator's socket. step/execute.py reads it by name (a test keeps the
# two spellings equal) so that a step without a coordinator imports nothing of this.
MARK: Final = "FI_RUN_COORDINATOR"
WAIT_NOTICE_SECONDS: Final = 2.0  # as locks.py: a person watching is told once what the step waits for
CANCEL_BOUND_SECONDS: Final = 5.0  # how long a step that gave up waits for the coordinator to confirm


class CoordinatorGone(Exception):
    """The coordinator cannot be reached, or went away before it answered: take the file path."""


def _stderr_is_tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


class CoordinatedLocks:
    """Hold the step's locks through the coordinator at ``address``: a context manager like held_locks."""

    def __init__(
        self,
        address: str,
        spec: StepSpec,
        reporter: Reporter,
        record: StepRecord,
        lender: Lender | None = None,
        *,
        requests: Sequence[LockRequest] | None = None,
    ) -> None:
        self.address = address
        self.spec = spec
        self.reporter = reporter
        self.record = record
        # The step's lender (lending.py): the coordinator lends the slot for it, into this jobserver, and
        # says so (WAIT ... lent, then LOAN returned|credit); the lender only writes the loan into the log.
        self.lender = lender
        self.requests = spec.locks if requests is None else requests  # what to take (--mem's share too)
        self.wanted = merge_requests(self.requests, spec.start_dir, windows=False)
        self.sock: _socket.socket | None = None
        self.fds: list[int] = []
        self.acquired: list[tuple[dict[str, JSON], float]] = []
        self._fallback: AbstractContextManager[RemoteHold | None] | None = None  # if the coordinator is gone
        self.remote: list[str] = []  # from the grant, per redis:// resource: its name, fence and token
        self.done = False  # DONE sent: the end of the connection is ours, not the coordinator dying
        self.takeover: tuple[Renewer, list[Seat]] | None = None

    # --- the protocol

    def _connect(self) -> _socket.socket:
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            sock.connect(self.address)
        except OSError as exc:
            sock.close()
            raise CoordinatorGone(exc.strerror or str(exc)) from None
        return sock

    def _send(self, fields: list[str]) -> None:
        assert self.sock is not None
        self.sock.sendall(encode(fields))

    def _receive(self, reader: Reader, seconds: float | None) -> list[list[str]]:
        """The next messages (at least one), collecting the descriptors that come with them; [] if
        ``seconds`` passed first. Raises CoordinatorGone at end-of-file."""
        assert self.sock is not None
        self.sock.settimeout(seconds)
        try:
            data, ancillary, _flags, _address = self.sock.recvmsg(65536, _socket.CMSG_SPACE(4 * MAX_FDS))
        except TimeoutError:
            return []
        except OSError as exc:
            raise CoordinatorGone(exc.strerror or str(exc)) from None
        for level, kind, payload in ancillary:
            if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
                usable = len(payload) - len(payload) % 4
                self.fds.extend(
                    int.from_bytes(payload[i : i + 4], sys.byteorder) for i in range(0, usable, 4)
                )
        if not data:
            raise CoordinatorGone("it closed the connection")
        try:
            return reader.feed(data)
        except ValueError as exc:
            raise CoordinatorGone(f"it sent {exc}") from None

    def _what(self, canonical: str) -> str:
        modes = next((m for c, m in self.wanted if c == canonical), (("exclusive", 1, 1),))
        return describe_modes(canonical, modes)

    def _ask(self) -> None:
        """Send the request and wait for the grant. Raises CoordinatorGone, LockTimeoutError, UsageError."""
        lock_dir = self.spec.lock_dir or default_lock_dir(windows=False, environ=os.environ)
        lends_to = self.lender.auth if self.lender is not None and not self.lender.broken else ""
        request = ["LOCK", str(os.getpid()), lock_dir, " ".join(self.spec.command), lends_to]
        for canonical, modes in self.wanted:
            request += [canonical, encode_modes(modes)]
        started = time.monotonic()
        deadline = None if self.spec.lock_timeout is None else started + self.spec.lock_timeout
        notice_at = (
            started + WAIT_NOTICE_SECONDS if self.reporter.verbosity >= 2 or _stderr_is_tty() else None
        )
        self.sock = self._connect()
        self._send(request)
        reader = Reader()
        waiting_for = ""
        holder = ""
        while True:
            now = time.monotonic()
            limits = [t - now for t in (deadline, notice_at) if t is not None]
            for message in self._receive(reader, max(min(limits), 0.0) if limits else None):
                kind = message[0]
                if kind == "GRANT":
                    for fd in self.fds:  # the command inherits the locks, as without a coordinator
                        os.set_inheritable(fd, True)
                    self.remote = message[1 : 1 + (len(message) - 1) // 3 * 3]
                    return
                if kind == "WAIT" and len(message) >= 3:
                    waiting_for, holder = message[1], message[2]
                    # Not free at once: the coordinator lent the job slot for the step, unless enough of the
                    # build's steps wait with theirs lent already (coordinator._tell_wait).
                    if self.lender is not None and message[3:4] == ["lent"]:
                        self.lender.lent_for_us(waiting_for)
                elif kind == "LOAN" and len(message) >= 2:
                    if self.lender is not None:  # the slot is back: from the pool, or on the build's credit
                        self.lender.back_for_us(credit=message[1] == "credit")
                elif kind == "ERR" and len(message) >= 3:
                    error = FiRunError(message[2])
                    error.exit_status = int(message[1]) if message[1].isdigit() else EXIT_USAGE
                    raise error
            now = time.monotonic()
            if notice_at is not None and now >= notice_at:
                notice_at = None
                held = f", held by {holder}" if holder else ""
                self.reporter.info(f"waiting for {self._what(waiting_for)}{held}")
            if deadline is not None and now >= deadline:
                self._give_up(reader, waiting_for, holder)

    def _give_up(self, reader: Reader, waiting_for: str, holder: str) -> None:
        """--lock-timeout expired: cancel, and name the holder the coordinator names. A grant that crossed
        the cancel on the way is given back by closing: the coordinator takes that cancel as done."""
        bound = time.monotonic() + CANCEL_BOUND_SECONDS
        answered = False
        try:
            self._send(["CANCEL"])
            while not answered and (left := bound - time.monotonic()) > 0:
                for message in self._receive(reader, left):
                    if message[0] in ("GRANT", "CANCELLED"):
                        if message[0] == "CANCELLED" and len(message) >= 2 and message[1]:
                            holder = message[1]
                        answered = True
                        break
        except (OSError, CoordinatorGone):
            pass  # gone as well: the step has timed out all the same
        on_whom = f" (held by {holder})" if holder else ""
        raise LockTimeoutError(
            f"gave up after {self.spec.lock_timeout:g} s waiting for {self._what(waiting_for)}{on_whom}"
        )

    def _close(self) -> None:
        for fd in self.fds:
            try:
                os.close(fd)  # never LOCK_UN: that would unlock every copy, the coordinator's included
            except OSError:
                pass
        self.fds = []
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None

    # --- the context manager

    def __enter__(self) -> RemoteHold | None:
        wait_start = self.record.offset()
        asked = time.monotonic()
        try:
            self._ask()
        except CoordinatorGone as exc:
            self._close()
            if self.lender is not None:  # a slot the coordinator lent went with it (the jobserver is gone)
                self.lender.back_for_us(credit=False)
            self.reporter.warning(
                f"the build's lock coordinator ({self.address}) cannot be reached ({exc}): "
                "taking the locks through the lock directory"
            )
            # --lock-timeout counts from the first ask, not from the fallback. The slot is not lent from here
            # on: without the coordinator nothing bounds how many of the build's waiting steps lend, and each
            # one lent starts another step.
            deadline = None if self.spec.lock_timeout is None else asked + self.spec.lock_timeout
            fallback: AbstractContextManager[RemoteHold | None]
            if any(canonical.startswith("redis://") for canonical, _modes in self.wanted):
                from .remote import held

                fallback = held(
                    self.spec, self.reporter, self.record, None, deadline=deadline, requests=self.requests
                )
            else:
                from .locks import held_locks

                fallback = held_locks(
                    self.spec, self.reporter, self.record, None, deadline=deadline, requests=self.requests
                )
            value = fallback.__enter__()
            self._fallback = fallback
            return value
        except BaseException:  # a lock timeout, an error, an interrupt: the wait still goes into the log
            self._close()
            if self.lender is not None:  # the coordinator takes a slot it lent back when the step leaves
                self.lender.back_for_us(credit=False)
            for canonical, modes in self.wanted:
                for mode, seats, weight in modes:
                    self.record.add_lock(canonical, mode, seats, wait_start, weight)
            raise
        held_since = self.record.offset()
        fences = {self.remote[i]: int(self.remote[i + 1]) for i in range(0, len(self.remote), 3)}
        for canonical, modes in self.wanted:
            for mode, seats, weight in modes:
                entry = self.record.add_lock(canonical, mode, seats, wait_start, weight)
                if canonical in fences:
                    entry["host"] = _socket.gethostname()
                    entry["fence"] = fences[canonical]
                self.acquired.append((entry, held_since))
        assert self.sock is not None
        # While the step holds its locks its commands inherit the connection: the coordinator takes the
        # resources back only when the step and everything that kept the connection are gone (see above).
        os.set_inheritable(self.sock.fileno(), True)
        waited = self.record.offset() - wait_start
        self.reporter.debug(
            f"locks held after {waited:.3f} s (from the build's coordinator): "
            + ", ".join(describe_modes(c, m) for c, m in self.wanted)
        )
        if not fences:
            return None
        import _thread

        from .hold import hold_from_grant  # not remote.py: its client is needed only if the coordinator dies

        self.sock.settimeout(None)
        _thread.start_new_thread(self._watch, ())
        return hold_from_grant(self.remote, os.environ)

    def _watch(self) -> None:
        """(A thread, for a step holding redis:// resources) wait for the end of the connection: the
        coordinator dying while the command runs. Then this step renews its remote holds itself."""
        sock = self.sock
        try:
            while sock is not None and sock.recv(4096):
                pass
        except OSError:
            pass
        if self.done:
            return
        from .redis_url import parse_url
        from .remote import Renewer, Seat, Settings, who_text

        settings = Settings.from_environ(os.environ)
        renewer = Renewer(settings, self.reporter)
        seats = []
        modes_of = dict(self.wanted)
        for i in range(0, len(self.remote), 3):
            canonical, fence, token = self.remote[i : i + 3]
            seat = Seat(
                parse_url(canonical),
                modes_of[canonical],
                who_text(os.getpid(), " ".join(self.spec.command)),
                settings,
            )
            seat.token, seat.ticket, seat.held_since = token, int(fence), time.monotonic()
            seats.append(seat)
        self.takeover = (renewer, seats)
        self.reporter.warning(
            "the build's lock coordinator is gone: this step renews its hold on "
            + ", ".join(repr(seat.target.canonical) for seat in seats)
            + " itself"
        )
        for seat in seats:
            renewer.add(seat)

    def __exit__(self, *exc: object) -> None:
        if self._fallback is not None:
            self._fallback.__exit__(None, None, None)
            return
        released = self.record.offset()
        for entry, held_since in self.acquired:
            entry["held"] = round(released - held_since, 6)
        self.done = True
        try:
            self._send(["DONE"])
        except OSError:
            pass  # the coordinator is gone: closing the descriptors below releases what it held for us
        if self.remote and self.sock is not None:
            try:
                self.sock.shutdown(_socket.SHUT_RD)  # ends the watching thread's wait (_watch)
            except OSError:
                pass
        self._close()
        if self.takeover is not None:  # the coordinator died while the command ran: let go of the seats here
            from .remote import release_seats

            renewer, seats = self.takeover
            renewer.stop()
            release_seats(seats, self.reporter)
