"""The build's lock coordinator: ``fi-run jobserver`` takes its steps' locks on their behalf (issue 18).

Every locked step used to import filelock (about 48 ms of CPU) and coordinate alone through files. The
jobserver is already the one process per build, so it also runs this coordinator, on a thread: steps ask it
over a local socket (coordinated.py, the step's side) and it takes the OS-level locks for them, in the same
lock directory and by the same protocol as every fi_run outside the build (locks.py). So exclusion across
builds, other tools and plain fi_run runs is exactly what it is without it.

Within the build, per resource:

- **First come, first served.** Requests queue in arrival order; the head is served when it fits with what
  the build's steps already hold (an exclusive step alone, readers together, at most N counted ones). A step
  that asks for several resources gets them in the global order, holding the earlier ones while it waits for
  the later, as without a coordinator: no deadlock. A waiter that is stopped (SIGSTOP; Linux's /proc tells)
  keeps its place but is passed over while it is stopped: it holds up nobody it does not block.
- **One trip through the OS for many steps.** The build holds at most one OS-level claim of each kind per
  resource: the exclusive lock (gate), one shared slot for all of its readers, and one counted slot per
  counted holder. Consecutive exclusive steps, and every reader while one reads, go without a trip through
  the lock files, unless a process outside the build that began to wait before the build's next step is in
  the resource's line: then the build lets its claim go once its holders are done and queues again. Its
  entry in the line carries the time its next step began to wait, so the build's steps and the processes
  outside it are served in the order they came, one line. A claim just won serves the step it was taken
  for first: that was its place in the line.
- **The OS-level waits** run on a worker thread each (locks.Acquirer, the same code as a step's), which wakes
  the loop when it is done; the loop itself never blocks.

**Job slots.** A step that must wait lends its job slot so that ninja starts other work meanwhile. Under the
coordinator the coordinator lends it for the step: the jobserver's pool is in this very process, so the
coordinator puts the token in and takes it back when the step is granted (or, if the pool is empty then, as
soon as one comes back: the step runs on credit meanwhile), and when the step goes away without a grant. A
step killed while its slot is lent so leaks nothing (it used to leak one token, issue 18's stress run: 44
tokens for 100 killed steps). At most -j waiting steps have their slot lent at once (_tell_wait).

What dies, and what happens (docs/jobserver.md has the table):

- A step killed while it waits: the connection closes; its request leaves the queue.
- A step killed while its command runs: the command inherited the connection, so the coordinator takes the
  resource back only when the command (and anything that kept the connection) has ended.
- The coordinator killed: the granted steps' commands hold the OS-level locks through the descriptors they
  were given (and inherited), so nobody outside or inside the build runs beside them; waiting steps and
  later ones find no coordinator and take the lock-directory path (coordinated.py).
"""

from __future__ import annotations

import errno
import os
import selectors
import socket
import sys
import threading
import time
from functools import partial
from typing import TYPE_CHECKING

from ..errors import EXIT_SOFTWARE, FiRunError
from ..records import StepSpec
from .doorbell import parse_entry, still_waiting
from .lockdir import NOFOLLOW, describe_modes, is_remote, prepare_lock_dir, resource_dir_name
from .locks import Acquirer, Plan, holder_of, holder_record, release, write_holder
from .wire import MAX_FDS, Reader, decode_modes, encode

# Type checkers skip the rest of this module for Windows (mypy --platform win32): AF_UNIX descriptor passing,
# which the coordinator is made of; a Windows jobserver runs none (tools/jobserver.py), its steps take the
# lock-directory path.
assert sys.platform != "win32"

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Final, Protocol

    from filelock import BaseFileLock

    from ..messages import Reporter
    from .lockdir import LockDir, Modes
    from .remote_hub import Ask, Hub

    Held = list[tuple[BaseFileLock, str, bool]]

    class Tokens(Protocol):
        """The jobserver's pool (tools/jobserver._Server): the coordinator lends the steps' slots into it."""

        auth: str
        fd: int  # readable when a token is in the pool

        def take(self, seconds: float) -> bool: ...
        def give(self) -> None: ...


SOCKET_NAME: Final = "coordinator.sock"
# In a lock directory, a file per coordinator that serves steps using it, named by its pid and holding its
# socket's path: how `fi-run locks` finds the builds' own lines (a dead pid's file is ignored).
COORDINATORS: Final = "coordinators"
TICK: Final = 0.1  # the loop looks at stopped waiters and outsiders this often, whatever else happens


class _Client:
    """One connected step (or one `fi-run locks` asking for the state)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = Reader()
        self.pid = 0
        self.command = ""
        self.wants: list[_Want] = []
        self.next = 0  # the index of the want it waits for; len(wants) once granted everything
        self.told_wait = False
        self.may_lend = False  # the step lends into this jobserver: the coordinator may lend its slot
        self.closed = False
        self.arrived = time.monotonic()
        self.fences: list[str] = []  # for each redis:// resource granted: its name, fence and token (GRANT)

    @property
    def granted(self) -> bool:
        return bool(self.wants) and self.next >= len(self.wants)

    def describe(self) -> str:
        return f"pid {self.pid}: {self.command}" if self.command else f"pid {self.pid}"


class _Want:
    """What one step asks of one resource."""

    def __init__(self, client: _Client, resource: _Resource, modes: Modes) -> None:
        self.client = client
        self.resource = resource
        self.modes = modes
        self.exclusive = modes[0][0] == "exclusive"
        self.shared = any(mode == "shared" for mode, _, _ in modes)
        # --semaphore R=N:K: N seats (0: not counted), of which this step takes K at once (issue 19)
        self.counted, self.weight = next(((n, k) for mode, n, k in modes if mode == "semaphore"), (0, 0))
        self.slot: Held = []  # the counted slots the build holds for this step (K of them)
        self.since = time.monotonic()  # queued, then granted
        self.ask: Ask | None = None  # a redis:// resource: the step's ticket in the server's line


class _Resource:
    """One resource in one lock directory, as the build holds it and waits for it."""

    def __init__(self, canonical: str, lock_dir: LockDir) -> None:
        self.canonical = canonical
        self.lock_dir = lock_dir
        self.directory = os.path.join(lock_dir.path, resource_dir_name(canonical))
        self.waiters = os.path.join(self.directory, "waiters")
        self.queue: list[_Want] = []
        self.holders: list[_Want] = []
        self.exclusive: Held = []  # the gate (and the slots drained), while the build holds it exclusively
        self.shared: Held = []  # one shared slot, for all of the build's readers
        self.spare: Held = []  # counted slots held with no step in them yet (just claimed, or handed over)
        self.pending: _Pending | None = None
        self.fresh = False  # a claim was just won and has served no step yet (_pump)
        self.remote = is_remote(canonical)  # a redis:// resource: its line is the server's (remote_hub.py)

    def idle(self) -> bool:
        return not (self.queue or self.holders or self.exclusive or self.shared or self.spare or self.pending)


class _Pending(threading.Thread):
    """One OS-level claim being waited for, on a thread of its own: the same wait as a step's."""

    def __init__(
        self,
        coordinator: Coordinator,
        resource: _Resource,
        modes: Modes,
        holder: tuple[int, str],
        arrived: float,
    ) -> None:
        super().__init__(name=f"fi_run coordinator: {resource.canonical}", daemon=True)
        self.coordinator = coordinator
        self.resource = resource
        self.modes = modes
        self.holder = holder
        self.arrived = arrived  # when the step this claim is for began to wait: its place in the line
        self.held: Held = []
        self.error: BaseException | None = None

    def run(self) -> None:
        resource = self.resource
        spec = StepSpec(command=("fi-run jobserver",), start_dir=os.sep, lock_dir=resource.lock_dir.path)
        acquirer = Acquirer(
            spec,
            self.coordinator.reporter,
            resource.lock_dir,
            thread_local=False,
            holder=self.holder,
            arrived=self.arrived,
        )
        acquirer.notice_wanted = False  # the steps say what they wait for, not the jobserver
        try:
            acquirer.acquire(Plan(resource.canonical, resource.directory, self.modes))
        except BaseException as exc:
            self.error = exc
        self.held = acquirer.held
        self.coordinator.finished(self)


def _stopped(pid: int) -> bool:
    """Is ``pid`` stopped (SIGSTOP, a debugger)? Linux's /proc; elsewhere never known, so False."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rpartition(b")")[2].split()[0] in (b"T", b"t")
    except (OSError, IndexError):
        return False


def _fd(entry: tuple[BaseFileLock, str, bool]) -> int:
    fd = getattr(getattr(entry[0], "_context", None), "lock_file_fd", None)
    assert isinstance(fd, int)
    return fd


class Coordinator:
    """The loop: a listening socket in the jobserver's private directory, served on a thread of its own."""

    def __init__(self, directory: str, reporter: Reporter, jobs: int, tokens: Tokens | None = None) -> None:
        self.reporter = reporter
        # At most this many of the build's steps waiting for one resource hold their job slots lent (see
        # _tell_wait).
        self.lend_limit = max(jobs, 1)
        self.tokens = tokens  # None: no lending (a jobserver the command does not read)
        # The steps whose slot the coordinator has lent (a token each), and the resource each waits for.
        self.lending: dict[_Client, tuple[str, str]] = {}
        self.debt = 0  # tokens lent and not yet taken back, of steps granted or gone (_take_back)
        self._collecting = False  # the pool's descriptor is in the selector, for the debt
        self._taking = True  # False once the build has ended: a token still owed is counted, not taken
        self.outstanding: int | None = None  # set by stop(): tokens of ours still in the pool
        self.path = os.path.join(directory, SOCKET_NAME)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.listener.bind(self.path)
            self.listener.listen(1024)
        except OSError:
            self.listener.close()
            raise
        self.listener.setblocking(False)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ, None)
        self._listening = True
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)
        self.selector.register(self._wake_read, selectors.EVENT_READ, None)
        self._done: list[_Pending] = []
        self._calls: list[Callable[[], None]] = []  # from the redis:// hub's threads, run on the loop
        self._done_lock = threading.Lock()
        self.hub: Hub | None = None  # made when a step first names a redis:// resource
        self.resources: dict[tuple[str, str], _Resource] = {}
        self.lock_dirs: dict[str, LockDir] = {}
        self.clients: set[_Client] = set()
        self._dirty: set[_Resource] = set()  # resources whose line must be served again
        self.registered: list[str] = []  # coordinators/PID entries left in lock directories
        self._stopping = False
        self.thread = threading.Thread(target=self._loop, name="fi_run coordinator", daemon=True)

    # --- life

    def start(self) -> Coordinator:
        self.thread.start()
        return self

    def stop(self) -> int:
        """End the loop and let go of everything the build still holds (the build has ended). Returns how
        many tokens the coordinator put into the pool and did not take back (the server's accounting takes
        them off its count). Only the first call does anything."""
        if self.outstanding is not None:
            return self.outstanding
        self._stopping = True
        self._wake()
        self.thread.join(timeout=10)
        self._taking = False  # the build has ended: a token still lent is counted, not taken back
        for client in list(self.clients):
            self._drop(client)
        if self.hub is not None:
            self.hub.stop()
        for resource in self.resources.values():
            self._let_go(resource, resource.exclusive + resource.shared + resource.spare)
            resource.exclusive, resource.shared, resource.spare = [], [], []
        self.selector.close()
        for closing in (
            self.listener.close,
            lambda: os.close(self._wake_read),
            lambda: os.close(self._wake_write),
        ):
            try:
                closing()
            except OSError:
                pass
        for path in (self.path, *self.registered):
            try:
                os.unlink(path)
            except OSError:
                pass
        self.outstanding = self.debt
        return self.outstanding

    def call_soon(self, call: Callable[[], None]) -> None:
        """(Another thread) run ``call`` on the loop."""
        with self._done_lock:
            self._calls.append(call)
        self._wake()

    def _wake(self) -> None:
        try:
            os.write(self._wake_write, b"x")
        except OSError:
            pass  # full: the loop is awake already

    def finished(self, pending: _Pending) -> None:
        """(A worker thread) an OS-level claim is held, or failed: hand it to the loop."""
        with self._done_lock:
            self._done.append(pending)
        self._wake()

    def _loop(self) -> None:
        last_tick = time.monotonic()
        while not self._stopping:
            try:
                events = self.selector.select(timeout=TICK)
            except OSError:
                continue
            for key, _mask in events:
                if key.fileobj is self.listener:
                    self._accept()
                elif key.data == "tokens":
                    self._collect()
                elif key.fileobj == self._wake_read:
                    try:
                        while os.read(self._wake_read, 512):
                            pass
                    except OSError:
                        pass
                else:
                    self._readable(key.data)
            with self._done_lock:
                done, self._done = self._done, []
                calls, self._calls = self._calls, []
            for pending in done:
                self._claimed(pending)
            for call in calls:
                call()
            if time.monotonic() - last_tick >= TICK:
                last_tick = time.monotonic()
                if not self._listening:
                    self.selector.register(self.listener, selectors.EVENT_READ, None)
                    self._listening = True
                self._dirty.update(resource for resource in self.resources.values() if resource.queue)
            self._settle()

    def _settle(self) -> None:
        """Serve every line something changed in, until nothing more changes."""
        while self._dirty:
            self._pump(self._dirty.pop())

    # --- connections

    def _accept(self) -> None:
        while True:
            try:
                sock, _address = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE):
                    # Out of descriptors: the steps wait in the listen backlog until one leaves; stop
                    # listening until the next tick, or select() would report the backlog at once, forever.
                    self.selector.unregister(self.listener)
                    self._listening = False
                return
            sock.setblocking(True)
            sock.settimeout(5.0)  # a step that stops reading must not stall the loop for ever
            client = _Client(sock)
            self.clients.add(client)
            self.selector.register(sock, selectors.EVENT_READ, client)

    def _readable(self, client: _Client) -> None:
        try:
            data = client.sock.recv(65536)
        except OSError:
            data = b""
        if not data:
            self._drop(client)
            return
        try:
            messages = client.reader.feed(data)
        except ValueError:
            self._drop(client)
            return
        for message in messages:
            if client.closed:
                return
            self._message(client, message)

    def _send(self, client: _Client, fields: list[str], fds: list[int] | None = None) -> None:
        data = encode(fields)
        try:
            if not fds:
                client.sock.sendall(data)
                return
            import array

            for start in range(0, len(fds), MAX_FDS):
                chunk = array.array("i", fds[start : start + MAX_FDS]).tobytes()
                last = start + MAX_FDS >= len(fds)
                client.sock.sendmsg(
                    [data if last else encode(["FDS"])], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, chunk)]
                )
        except OSError:
            self._drop(client)

    def _drop(self, client: _Client) -> None:
        """The step is gone (end-of-file: it and everything that kept the connection), or said it is done:
        its requests leave the queues and what it held is given back."""
        if client.closed:
            return
        client.closed = True
        self.clients.discard(client)
        if self.lending.pop(client, None) is not None:  # gone without a grant: its slot comes back no more
            self._take_back()
        try:
            self.selector.unregister(client.sock)
        except (KeyError, ValueError, OSError):
            pass
        try:
            client.sock.close()
        except OSError:
            pass
        for want in client.wants:
            resource = want.resource
            if want in resource.queue:
                resource.queue.remove(want)
            if want in resource.holders:
                resource.holders.remove(want)
                resource.spare.extend(want.slot)  # the next counted step may take it without the OS
                want.slot = []
            if want.ask is not None and self.hub is not None:
                self.hub.forget(want.ask)  # out of the server's line, or let go
                want.ask = None
            self._dirty.add(resource)  # served by the loop (_settle), not from inside whatever called this

    # --- requests

    def _message(self, client: _Client, message: list[str]) -> None:
        kind = message[0]
        if kind == "LOCK" and not client.wants:
            self._lock(client, message)
        elif kind == "CANCEL":
            if client.granted:
                self._drop(client)  # the grant crossed the cancel: the step gave it back
                return
            blocker = self._blocker(client)
            self._send(client, ["CANCELLED", blocker])
            self._drop(client)
        elif kind == "DONE":
            self._drop(client)
        elif kind == "LIST":
            self._list(client)
        else:
            self._send(client, ["ERR", str(EXIT_SOFTWARE), f"coordinator: unexpected {kind!r} message"])
            self._drop(client)

    def _lock(self, client: _Client, message: list[str]) -> None:
        try:
            client.pid = int(message[1])
            lock_dir_path, client.command, lends_to = message[2], message[3], message[4]
            client.may_lend = self.tokens is not None and lends_to == self.tokens.auth
            pairs = message[5:]
            if not pairs or len(pairs) % 2:
                raise ValueError("no resources")
            wanted = [(pairs[i], decode_modes(pairs[i + 1])) for i in range(0, len(pairs), 2)]
        except (IndexError, ValueError) as exc:
            self._send(client, ["ERR", str(EXIT_SOFTWARE), f"coordinator: a malformed request ({exc})"])
            self._drop(client)
            return
        try:
            lock_dir = self._lock_dir(lock_dir_path)
        except FiRunError as exc:
            self._send(client, ["ERR", str(exc.exit_status), exc.message])
            self._drop(client)
            return
        for canonical, modes in wanted:
            key = (lock_dir.path, canonical)
            resource = self.resources.get(key)
            if resource is None:
                resource = self.resources[key] = _Resource(canonical, lock_dir)
            client.wants.append(_Want(client, resource, modes))
        self._queue(client)

    def _lock_dir(self, path: str) -> LockDir:
        lock_dir = self.lock_dirs.get(path)
        if lock_dir is None:
            spec = StepSpec(command=("fi-run jobserver",), start_dir=os.sep, lock_dir=path)
            lock_dir = self.lock_dirs[path] = prepare_lock_dir(spec)
            self._register(lock_dir)
        return lock_dir

    def _register(self, lock_dir: LockDir) -> None:
        """Leave ``coordinators/PID`` (this socket's path) in the lock directory, so that `fi-run locks` can
        ask this coordinator what its build holds and waits for. For that view only: a failure is ignored."""
        directory = os.path.join(lock_dir.path, COORDINATORS)
        try:
            os.makedirs(directory, mode=lock_dir.dir_mode, exist_ok=True)
            entry = os.path.join(directory, str(os.getpid()))
            fd = os.open(entry, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | NOFOLLOW, lock_dir.file_mode)
            try:
                os.write(fd, os.fsencode(self.path))
            finally:
                os.close(fd)
        except OSError:
            return
        self.registered.append(entry)

    def _queue(self, client: _Client) -> None:
        """Put the client's next want in its resource's line, and serve the line."""
        want = client.wants[client.next]
        want.since = time.monotonic()
        want.resource.queue.append(want)
        self._pump(want.resource)
        if want.resource.remote:
            return  # told once the server says it is not free at once (_remote_waiting)
        if not client.closed and not client.granted and want in want.resource.queue and not client.told_wait:
            self._tell_wait(client, want)

    def _tell_wait(self, client: _Client, want: _Want) -> None:
        """The step's first wait: lend its job slot for it, and say so (``WAIT resource blocker lent|keep``).

        When the build's steps mostly wait for one resource, each slot lent starts another step that waits
        and lends in turn, until every step of the build is a process waiting at once (2,000 Python
        processes for a 2,000-step build at -j64). So at most -j of the steps waiting for one resource have
        their slot lent at any time (more waiting for it would not be served sooner); the others wait with
        theirs. The bound is per resource, not for the whole build: with one for the build, the steps
        waiting for a few venvs kept the build's slots from its independent steps (the seed-like build took
        1.42 x its lower bound at -j16, against 1.09 x when every waiting step lent)."""
        client.told_wait = True
        key = (want.resource.lock_dir.path, want.resource.canonical)
        lent = (
            client.may_lend
            and sum(1 for waits_for in self.lending.values() if waits_for == key) < self.lend_limit
            and self._lend()
        )
        if lent:
            self.lending[client] = key
        fields = [want.resource.canonical, self._blocker(client), "lent" if lent else "keep"]
        self._send(client, ["WAIT", *fields])

    # --- job slots: the jobserver's pool is in this process

    def _lend(self) -> bool:
        assert self.tokens is not None
        try:
            self.tokens.give()
        except OSError as exc:
            self.reporter.warning(
                f"jobserver: cannot lend a waiting step's job slot ({exc}): no more lending"
            )
            self.lend_limit = 0
            return False
        return True

    def _take_back(self) -> bool:
        """Take a lent token back from the pool now if it has one; else owe it, and take the next one that
        comes back (_collect). True if taken now."""
        if self.tokens is not None and self._taking:
            try:
                if self.tokens.take(0):
                    return True
            except OSError:
                pass
        self.debt += 1
        if self.tokens is not None and not self._collecting and self._taking:
            try:
                self.selector.register(self.tokens.fd, selectors.EVENT_READ, "tokens")
                self._collecting = True
            except (OSError, ValueError, KeyError):
                pass
        return False

    def _collect(self) -> None:
        """The pool is readable and tokens are owed: take them, until none is owed."""
        try:
            while self.debt and self.tokens is not None and self.tokens.take(0):
                self.debt -= 1
        except OSError:
            pass
        if not self.debt and self._collecting and self.tokens is not None:
            self.selector.unregister(self.tokens.fd)
            self._collecting = False

    def _blocker(self, client: _Client) -> str:
        """Who holds what the client waits for: a step of this build, or a process outside it."""
        if client.granted or not client.wants:
            return ""
        resource = client.wants[min(client.next, len(client.wants) - 1)].resource
        if resource.holders:
            return f"{resource.holders[0].client.describe()} (in this build)"
        if resource.remote:
            want = client.wants[min(client.next, len(client.wants) - 1)]
            return self.hub.blocker(want.ask) if self.hub is not None and want.ask is not None else ""
        for name in (
            "gate.lock",
            *sorted(os.listdir(resource.directory) if os.path.isdir(resource.directory) else []),
        ):
            if name.endswith(".lock"):
                holder = holder_of(os.path.join(resource.directory, name))
                if holder and not holder.startswith(f"pid {os.getpid()}"):
                    return holder
        return ""

    # --- serving a resource's line

    def _head(self, resource: _Resource) -> _Want | None:
        """The first waiter that is not stopped (a stopped one keeps its place; it is passed over)."""
        for want in resource.queue:
            if not _stopped(want.client.pid):
                return want
        return None

    def _first_outsider(self, resource: _Resource) -> float | None:
        """When the earliest process outside this build that is in the resource's line (or draining it, for
        an exclusive lock) began to wait, in time.monotonic() seconds (its entry's name says: doorbell.py);
        None if nobody outside waits. An entry whose pid is dead or whose port is closed is stale (a reused
        pid must not make the build hand its claim over: doorbell.still_waiting)."""
        try:
            names = os.listdir(resource.waiters)
        except OSError:
            return None
        own = os.getpid()
        first: int | None = None
        for name in names:
            parsed = parse_entry(name)
            if parsed is None:
                continue
            ns, pid, port, _kind = parsed
            if pid != own and (first is None or ns < first) and still_waiting(pid, port):
                first = ns
        return None if first is None else first / 1e9

    def _fits(self, want: _Want, resource: _Resource) -> bool:
        holders = resource.holders
        if want.exclusive:
            return not holders
        if any(h.exclusive for h in holders):
            return False
        if want.counted:  # K seats at once, of the N (a step wider than N takes all: merge_requests)
            return sum(h.weight for h in holders if h.counted) + want.weight <= want.counted
        return True

    def _pump(self, resource: _Resource) -> None:
        """Serve the resource's line as far as it goes; let go of what the build holds and needs no more."""
        if resource.remote:
            self._pump_remote(resource)
            return
        while resource.queue and resource.pending is None:
            head = self._head(resource)
            if head is None or not self._fits(head, resource):
                break
            # Someone outside the build who began to wait before the head did: the build's claims go to
            # them once its holders are done, and it queues again behind them, so that the build and the
            # processes outside it are served in the order they came (one line, first come first served).
            # A claim the build has only just won serves its head first: that was the build's place in the
            # lock directory's line (fi-run locks found a build giving away each claim as it won it).
            first_outside = None if resource.fresh else self._first_outsider(resource)
            outsider = first_outside is not None and first_outside < head.since
            need: list[tuple[str, int, int]] = []
            if head.exclusive:
                if resource.exclusive and outsider:
                    self._let_go(resource, resource.exclusive)  # its turn outside: queue behind it
                    resource.exclusive = []
                if not resource.exclusive:
                    need.append(("exclusive", 1, 1))
            else:
                if resource.exclusive:  # nobody holds it (head fits): a reader does not need the gate
                    self._let_go(resource, resource.exclusive)
                    resource.exclusive = []
                if head.counted:
                    if resource.spare and outsider:
                        self._let_go(resource, resource.spare)
                        resource.spare = []
                    if len(resource.spare) < head.weight:  # claim the rest, in one pass, all or none
                        need.append(("semaphore", head.counted, head.weight - len(resource.spare)))
                if head.shared:
                    if resource.shared and outsider:
                        # No more readers under the build's slot while someone outside waits: the build's
                        # readers finish, it lets the slot go and queues again, behind the outsider.
                        if any(h.shared for h in resource.holders):
                            break
                        self._let_go(resource, resource.shared)
                        resource.shared = []
                    if not resource.shared:
                        need.append(("shared", 1, 1))
            if need:
                if head.exclusive:  # the build's own slots would keep it from draining them
                    self._let_go(resource, resource.shared + resource.spare)
                    resource.shared, resource.spare = [], []
                resource.pending = _Pending(
                    self, resource, tuple(need), (head.client.pid, head.client.command), head.since
                )
                resource.pending.start()
                break
            self._grant(head)
        self._tidy(resource)

    def _tidy(self, resource: _Resource) -> None:
        """Let go of OS-level claims no step holds and the head of the line does not need."""
        head = self._head(resource) if resource.queue else None
        if resource.exclusive and not resource.holders and not (head is not None and head.exclusive):
            self._let_go(resource, resource.exclusive)
            resource.exclusive = []
        wanted = head is not None and head.shared
        if resource.shared and not any(h.shared for h in resource.holders) and not wanted:
            self._let_go(resource, resource.shared)
            resource.shared = []
        if resource.spare and not (head is not None and head.counted):
            self._let_go(resource, resource.spare)
            resource.spare = []
        if resource.idle():
            self.resources.pop((resource.lock_dir.path, resource.canonical), None)

    # --- a redis:// resource (issue 21): each step's want is its own ticket in the server's line

    def _pump_remote(self, resource: _Resource) -> None:
        for want in resource.queue:
            if want.ask is None:
                if self.hub is None:
                    from .remote_hub import Hub

                    self.hub = Hub(self.call_soon, self.reporter)
                want.ask = self.hub.ask(
                    resource.canonical,
                    want.modes,
                    want.client.pid,
                    want.client.command,
                    partial(self._remote_granted, want),
                    partial(self._remote_failed, want),
                    partial(self._remote_waiting, want),
                )
        if resource.idle():
            self.resources.pop((resource.lock_dir.path, resource.canonical), None)

    def _remote_granted(self, want: _Want, fence: int, token: str) -> None:
        if want.client.closed or want not in want.resource.queue:
            return  # gone meanwhile: _drop told the hub to let go
        want.client.fences += [want.resource.canonical, str(fence), token]
        self._grant(want)

    def _remote_waiting(self, want: _Want) -> None:
        client = want.client
        if not client.closed and want in want.resource.queue and not client.told_wait:
            self._tell_wait(client, want)

    def _remote_failed(self, want: _Want, error: FiRunError) -> None:
        if not want.client.closed:
            self._send(want.client, ["ERR", str(error.exit_status), error.message])
            self._drop(want.client)

    def _let_go(self, resource: _Resource, held: Held) -> None:
        if held:
            release(list(held), self.reporter)

    def _claimed(self, pending: _Pending) -> None:
        resource = pending.resource
        resource.pending = None
        if pending.error is not None:
            self._let_go(resource, pending.held)
            error = pending.error
            status, text = (
                (error.exit_status, error.message)
                if isinstance(error, FiRunError)
                else (EXIT_SOFTWARE, f"coordinator: {type(error).__name__}: {error}")
            )
            for want in list(resource.queue):
                self._send(want.client, ["ERR", str(status), text])
                self._drop(want.client)
            return
        resource.fresh = bool(pending.held)
        for entry in pending.held:
            name = os.path.basename(entry[0].lock_file)
            if name.startswith("sem-"):
                resource.spare.append(entry)
            elif name.startswith("shared-"):
                resource.shared.append(entry)
            else:
                resource.exclusive.append(entry)
        self._pump(resource)

    def _grant(self, want: _Want) -> None:
        resource = want.resource
        resource.fresh = False
        resource.queue.remove(want)
        resource.holders.append(want)
        want.since = time.monotonic()
        if want.counted:
            want.slot, resource.spare = resource.spare[: want.weight], resource.spare[want.weight :]
        client = want.client
        # Who holds the resource now, for the messages of anyone outside who waits for it.
        record = holder_record(client.pid, client.command)
        for entry in self._covering(want):
            write_holder(entry[0].lock_file, record, resource.lock_dir.file_mode)
        client.next += 1
        if client.next < len(client.wants):
            self._queue(client)
            return
        if self.lending.pop(client, None) is not None:  # its slot comes back: from the pool, or on credit
            self._send(client, ["LOAN", "returned" if self._take_back() else "credit"])
        fds = [_fd(entry) for each in client.wants for entry in self._covering(each)]
        self._send(client, ["GRANT", *client.fences], fds)

    def _covering(self, want: _Want) -> Held:
        """The OS-level locks that stand for this step's hold: passed to it, and inherited by its command."""
        resource = want.resource
        if want.exclusive:
            return [entry for entry in resource.exclusive if entry[2]][:1]  # the gate keeps everyone out
        return [*want.slot, *(resource.shared[:1] if want.shared else [])]

    # --- fi-run locks

    def _list(self, client: _Client) -> None:
        now = time.monotonic()
        for resource in self.resources.values():
            for kind, wants in (("holds", resource.holders), ("waits", resource.queue)):
                for want in wants:
                    state = "stopped" if kind == "waits" and _stopped(want.client.pid) else kind
                    what = describe_modes(resource.canonical, want.modes)
                    since = f"{now - want.since:.3f}"
                    fields = [resource.lock_dir.path, resource.canonical, state, str(want.client.pid)]
                    # Last, since when in time.monotonic() (the waiters' entries' clock): the view compares it
                    # with the outside entries as _pump does (a later field: older views read the 8 before).
                    fields += [want.client.command, what, since, repr(want.since)]
                    self._send(client, ["STATE", *fields])
        self._send(client, ["END", str(os.getpid())])
        self._drop(client)


def start(directory: str, reporter: Reporter, jobs: int, tokens: Tokens | None = None) -> Coordinator | None:
    """A coordinator listening in ``directory`` (the jobserver's private one), or None where it cannot be
    (a socket path too long for AF_UNIX, say): the steps then take the lock-directory path. ``jobs``: the
    build's -j, which bounds how many of its waiting steps may have their slots lent at once; ``tokens``:
    the jobserver's pool, to lend them into (None: no lending)."""
    try:
        return Coordinator(directory, reporter, jobs, tokens).start()
    except OSError as exc:
        reporter.warning(
            f"jobserver: no lock coordinator ({exc.strerror or exc}): the steps take their locks through the "
            "lock directory"
        )
        return None
