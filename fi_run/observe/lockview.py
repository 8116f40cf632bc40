"""``fi-run locks``: every resource, who holds it and who waits for it, in the order they will be served.

What the `locks` tool sees and prints; the command line is tools/locks.py. It only looks: it takes no lock,
writes nothing and removes nothing (a stale entry stays for the steps to clear, as they do). The lock
directory's layout and protocol are contention/locks.py's (its docstring), the line's entries doorbell.py's.

Per resource directory:

- **The resource**: its ``resource`` file (the real path, written by whoever made the directory; for --mem,
  ``memory://SCOPE``, the memory budget the steps share in MEMORY_SEATS seats); a directory made by an older
  fi_run has none and is shown by its name.
- **Its holders**: which lock files (``gate.lock``, ``shared-<i>.lock``, ``sem-<i>.lock``) are held right now
  and by which pids. On Linux the kernel says, in /proc/locks, by inode (contention/holders.py). A lock whose
  taker is gone but whose descriptor lives on (the command of a SIGKILLed fi_run, the steps of a SIGKILLed
  coordinator: docs/faults.md) is shown held by the processes that have it open, as the kernel holds it for
  them. The ``*.holder`` records say the command and since when. Where the kernel does not say who holds a
  flock (macOS, the BSDs), the records of live pids are shown instead, marked "record": fi_run takes no lock
  to find out. On Windows a held lock file is one whose first byte cannot be read (a lock violation).
- **Its waiters**, in the order they will be served: the live entries of ``waiters/``. An exclusive holder
  that has the gate and waits for the slots to drain comes first; then the line (gate and slot waiters) in
  arrival order, which is the order the protocol serves them in (first come, first served). An entry whose
  pid is dead or whose port is closed is stale: it is not listed.
- **The builds**: every coordinator registered in ``coordinators/`` (``fi-run jobserver``) is asked what its
  build holds and queues (``LIST``, contention/wire.py), all at once, for at most COORDINATOR_BOUND seconds.
  A dead pid's registration, and a coordinator that does not answer in time, are reported and ignored.
  Where a holder is a coordinator, its build's holders stand in its place. A build's waiting steps are put
  where its coordinator will serve them (coordinator._pump), by playing the line forward (_Play): the claim
  a coordinator waits for in the line serves its build's first waiting step at that place; after it, and
  for a build that already holds the resource, the build goes on with its next steps under the claims it
  holds (a reader under its shared slot, an exclusive step under its gate once the one before is done, a
  counted step under the seats the one before left) as long as nobody still in line outside the build
  began to wait before that step (the entries' names and the steps' ``since``, one monotonic clock).
  Otherwise, or when the step needs a claim the build does not hold, the coordinator queues again, behind
  everyone in line then. So the build and the processes outside it come in the order they came, but for a
  step that needs a new claim, which goes to the back. Weights count (K of N seats at once, issue 19), and
  which slot files exist (an exclusive claim drains them all, and the build keeps those its next step can
  use). A build not in the line that holds nothing of the resource queues at the back.
- **Not foreseen**: what happens after the snapshot (new arrivals, and the order in which steps that are
  inside together leave), and races between processes woken at once: readers and counted steps that come
  in together may enter in any order among themselves.

A snapshot: everything moves while it is taken; each part is read once, in the order above.
"""

from __future__ import annotations

import os
import stat
import sys
import time

from ..contention.lockdir import NOFOLLOW, RESOURCE_NAME, resource_dir_name
from ..messages import BOLD, CYAN, DIM, RESET, YELLOW

TYPE_CHECKING = False  # not typing's: this tool's whole run is meant to take less than 100 ms (issue 18)
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence
    from typing import Any, Final

    from ..contention.remote import View as RemoteView
    from ..records import LockRequest

    # (mode, slots, weight): slots None where the view cannot know N, weight (K of the N) None where it
    # cannot know K; ("exclusive", 1, 1) and ("shared", 1, 1) otherwise
    Modes = tuple[tuple[str, int | None, int | None], ...]
    RequestsOf = Callable[[Sequence[str], dict[str, str] | None], list[LockRequest]]

LOCKS_VERSION: Final = 1
# How long the view waits for the builds' coordinators to answer, all together: a stopped or hung one must
# not stop `fi-run locks` from answering "why is my build stuck?".
COORDINATOR_BOUND: Final = 1.0

# The lock directory's names, as locks.py and coordinator.py spell them (tests/test_locks_view.py keeps them
# equal): imported from there they would cost this tool filelock's import.
COORDINATORS: Final = "coordinators"
WAITERS: Final = "waiters"
GATE: Final = "gate.lock"
HOLDER_SUFFIX: Final = ".holder"
_HOLDER_SIZE: Final = 512  # a holder record's size (locks.holder_record)
_KINDS: Final = ("gate", "slot", "drain")

COORDINATOR_KEYS: Final = ("pid", "socket", "state", "detail")
RESOURCE_KEYS: Final = ("resource", "directory", "problem", "holders", "waiters")
HOLDER_KEYS: Final = ("pid", "command", "modes", "seconds", "build", "files", "how", "state")
WAITER_KEYS: Final = ("position", "pid", "command", "modes", "seconds", "build", "kind", "state")
MODE_KEYS: Final = ("mode", "slots", "weight")
# A redis:// resource (issue 21), as its server keeps it (remote.View and remote.Entry: a test keeps them
# equal).
REMOTE_KEYS: Final = ("resource", "recovering", "holders", "waiters")
REMOTE_ENTRY_KEYS: Final = (
    "build", "command", "fence", "host", "lease_left", "mode", "pid", "seats", "seconds", "state", "weight",
)  # fmt: skip
# A memory budget's resource (--mem, issue 19) and its seats, as memory.py names them (a test keeps them
# equal): imported from there they would cost this tool dataclasses' import.
MEMORY_SCHEME: Final = "memory://"
MEMORY_SEATS: Final = 128


def _braces(keys: Sequence[str]) -> str:
    return "{" + ", ".join(keys) + "}"


# The --json document's keys: --help lists them; tests/test_docs.py keeps docs/reference.md in step.
JSON_KEYS: Final = {
    "locks_version": f"{LOCKS_VERSION}; incremented when a key changes meaning or goes away (new keys may "
    "be added)",
    "lock_dir": "the lock directory looked at (absolute)",
    "exists": "false when it does not exist yet: nothing is locked",
    "coordinators": f"[{_braces(COORDINATOR_KEYS)}]: the builds' coordinators registered there; state: "
    "answered, gone (its pid is dead: ignored) or no answer (within 1 s: ignored)",
    "resources": f"[{_braces(RESOURCE_KEYS)}], by resource: resource its real path, or memory://SCOPE for "
    "the memory budget --mem steps share (null: a directory without a resource file), problem null or why "
    f"it could not be read; holders [{_braces(HOLDER_KEYS)}]; waiters [{_braces(WAITER_KEYS)}] in the order "
    f"they will be served; modes [{_braces(MODE_KEYS)}] or null (not known), slots a semaphore's N and "
    "weight the K of them the step takes at once (1 but for --semaphore R=N:K and --mem; null: not known); "
    "seconds held or waited (null: not known); build the pid "
    "of the coordinator whose build the step is in (null: none); how kernel, descriptor, record or "
    "coordinator; kind gate, slot, drain or build; state holds, waits or stopped",
    "remote": f"[{_braces(REMOTE_KEYS)}], one per --redis resource, from its Redis server: resource its "
    "canonical redis:// name, recovering the seconds a restarted server still gives its holders to come "
    f"back (0: none); holders and waiters (in the order they will be served) [{_braces(REMOTE_ENTRY_KEYS)}]: "
    "host the machine, pid and command the step, build its coordinator's pid (null: none), fence the "
    "grant's fencing number (a waiter's: its ticket), mode exclusive, shared or semaphore, seats N and "
    "weight K, seconds held or waited, lease_left seconds before the server lets go of it unrenewed",
}


class Holder:
    """A process that holds a resource: a step (of a build, or a plain fi_run), or one with its lock open."""

    __slots__ = ("build", "command", "files", "how", "modes", "pid", "seconds", "state")

    def __init__(
        self,
        pid: int,
        command: str,
        modes: Modes | None,
        seconds: float | None,
        *,
        build: int | None = None,
        files: list[str] | None = None,
        how: str = "kernel",
        state: str = "holds",
    ) -> None:
        self.pid = pid
        self.command = command
        self.modes = modes
        self.seconds = seconds
        self.build = build  # the coordinator whose build the step is in
        self.files = files or []  # the lock files it holds at the OS level
        self.how = how  # kernel, descriptor, record or coordinator
        self.state = state  # holds, stopped


class Waiter:
    """A step that waits for a resource, and its place in the order they will be served."""

    __slots__ = ("build", "command", "kind", "modes", "pid", "position", "seconds", "state")

    def __init__(
        self,
        pid: int,
        command: str,
        modes: Modes | None,
        seconds: float | None,
        kind: str,
        *,
        build: int | None = None,
        state: str = "waits",
    ) -> None:
        self.pid = pid
        self.command = command
        self.modes = modes
        self.seconds = seconds
        self.kind = kind  # gate, slot, drain; build: queued inside its build's coordinator
        self.build = build
        self.state = state  # waits, stopped
        self.position: int | None = None  # 1: next to be served; None: a build's stopped step, passed over


class Resource:
    __slots__ = ("directory", "holders", "problem", "resource", "waiters")

    def __init__(self, resource: str | None, directory: str) -> None:
        self.resource = resource  # the real path; None: an older directory without a resource file
        self.directory = directory
        self.holders: list[Holder] = []
        self.waiters: list[Waiter] = []
        self.problem: str | None = None

    @property
    def name(self) -> str:
        return self.resource if self.resource is not None else self.directory


class BuildStep:
    """One line of a coordinator's LIST answer: a step of its build that holds or waits."""

    __slots__ = ("command", "lock_dir", "pid", "resource", "seconds", "since", "state", "what")

    def __init__(
        self,
        lock_dir: str,
        resource: str,
        state: str,
        pid: int,
        command: str,
        what: str,
        seconds: float,
        since: float,
    ) -> None:
        self.lock_dir = lock_dir
        self.resource = resource
        self.state = state  # holds, waits, stopped
        self.pid = pid
        self.command = command
        self.what = what
        self.seconds = seconds
        self.since = since  # since when it waits (or holds), in time.monotonic() seconds


class Coordinator:
    """A build's coordinator registered in the lock directory, and what it answered."""

    __slots__ = ("detail", "pid", "socket", "state", "steps")

    def __init__(self, pid: int, socket: str) -> None:
        self.pid = pid
        self.socket = socket
        self.state = "no answer"  # answered, gone, no answer
        self.detail = ""
        self.steps: list[BuildStep] = []


class View:
    __slots__ = ("coordinators", "exists", "lock_dir", "resources")

    def __init__(self, lock_dir: str, *, exists: bool, coordinators: list[Coordinator] | None = None) -> None:
        self.lock_dir = lock_dir
        self.exists = exists
        self.coordinators = coordinators or []
        self.resources: list[Resource] = []


# --- reading small things


def _read_small(path: str, limit: int = 65536) -> bytes | None:
    """A small file's bytes, never through a symlink; None if it cannot be read."""
    try:
        fd = os.open(path, os.O_RDONLY | NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    try:
        return os.read(fd, limit)
    except OSError:
        return None
    finally:
        os.close(fd)


def _resource_path(directory: str, name: str) -> str | None:
    """The real path the directory's ``resource`` file names, if it is the one the directory's name hashes."""
    data = _read_small(os.path.join(directory, RESOURCE_NAME))
    if not data:
        return None
    text = os.fsdecode(data.rstrip(b"\n"))
    return text if resource_dir_name(text) == name else None


def _record(lock_path: str) -> tuple[int, str, float] | None:
    """(pid, command, when written) of a lock file's holder record (locks.holder_record), or None."""
    path = lock_path + HOLDER_SUFFIX
    data = _read_small(path, _HOLDER_SIZE)
    if data is None:
        return None
    pid_text, _, command = data.decode("utf-8", "replace").partition("\n")
    try:
        pid = int(pid_text)
        written = os.lstat(path).st_mtime
    except (ValueError, OSError):
        return None
    return pid, command.strip(), written


def _argv(pid: int) -> list[str]:
    """Process ``pid``'s command line (Linux /proc); [] where it cannot be read."""
    data = _read_small(f"/proc/{pid}/cmdline", 1 << 20)
    if not data:
        return []
    return [os.fsdecode(word) for word in data.rstrip(b"\0").split(b"\0")]


def _command(argv: Sequence[str]) -> str:
    """A fi_run's command line as its holder record has it: what follows its ``--``; anything else whole."""
    if "--" in argv:
        return " ".join(argv[argv.index("--") + 1 :])
    return " ".join(argv)


def _stopped(pid: int) -> bool:
    """Stopped (SIGSTOP, a debugger)? Linux's /proc; elsewhere never known, so False."""
    data = _read_small(f"/proc/{pid}/stat", 4096)
    try:
        return data is not None and data.rpartition(b")")[2].split()[0] in (b"T", b"t")
    except IndexError:
        return False


def _environ(pid: int) -> dict[str, str]:
    """Process ``pid``'s environment (Linux /proc); {} where it cannot be read."""
    data = _read_small(f"/proc/{pid}/environ", 1 << 20) or b""
    pairs = (os.fsdecode(item).partition("=") for item in data.split(b"\0") if item)
    return {name: value for name, _, value in pairs}


def _asked(
    argv: Sequence[str], pid: int, canonical: str | None, requests_of: RequestsOf | None
) -> Modes | None:
    """What a fi_run process asked of ``canonical``, from its command line (read by ``requests_of``,
    cli.lock_requests, passed down by the tool) and its start directory (Linux); None for a process that is
    not fi_run, or a resource it did not name there (a response file). Of a memory budget, its --mem share:
    cli.lock_requests works it out from its --mem and --mem-limit (or its FI_RUN_MEM_LIMIT), and from the
    budget this process sees (the same one unless the step runs in another memory cgroup)."""
    if canonical is None or not argv or requests_of is None:
        return None
    memory = canonical.startswith(MEMORY_SCHEME)
    requests = requests_of(argv, _environ(pid) if memory else None)
    if not requests:
        return None
    try:
        start = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return None
    from ..contention.lockdir import merge_requests

    for resource, modes in merge_requests(requests, start, windows=False):
        if resource == canonical:
            return tuple((mode, seats, weight) for mode, seats, weight in modes)
    return None


def _modes_of(what: str, canonical: str) -> Modes | None:
    """The modes a coordinator's description names (lockdir.describe_modes): "a semaphore slot (of 2) and a
    shared lock on '/x'", "3 semaphore slots (of 8) on '/x'", "3 of the 128 seats of the memory budget
    'memory://machine'"; None for anything else."""
    if canonical.startswith(MEMORY_SCHEME):
        weight, _, seats = what.removesuffix(f" seats of the memory budget {canonical!r}").partition(
            " of the "
        )
        return (("semaphore", int(seats), int(weight)),) if weight.isdigit() and seats.isdigit() else None
    text = what.removesuffix(f" on {canonical!r}")
    if text == what:
        return None
    modes: list[tuple[str, int | None, int | None]] = []
    for part in text.split(" and "):
        weight, several, seats = part.partition(" semaphore slots (of ")
        if not several:
            weight, seats = "1", part.removeprefix("a semaphore slot (of ")
        if part == "an exclusive lock":
            modes.append(("exclusive", 1, 1))
        elif part == "a shared lock":
            modes.append(("shared", 1, 1))
        elif seats != part and seats.endswith(")") and seats[:-1].isdigit() and weight.isdigit():
            modes.append(("semaphore", int(seats[:-1]), int(weight)))
        else:
            return None
    return tuple(modes)


def _is_resource_dir(name: str) -> bool:
    """``<base name>-<20 hex digits>`` (lockdir.resource_dir_name): not the coordinators, not a marker."""
    return len(name) > 21 and name[-21] == "-" and all(c in "0123456789abcdef" for c in name[-20:])


# --- the builds' coordinators


def _registered(lock_dir: str) -> list[Coordinator]:
    from ..processes import alive

    directory = os.path.join(lock_dir, COORDINATORS)
    try:
        names = sorted(os.listdir(directory), key=lambda n: (len(n), n))
    except OSError:
        return []
    found = []
    for name in names:
        if not name.isdigit():
            continue
        data = _read_small(os.path.join(directory, name), 4096)
        coordinator = Coordinator(int(name), os.fsdecode(data) if data else "")
        if not alive(coordinator.pid):
            coordinator.state = "gone"
            coordinator.detail = f"pid {coordinator.pid} is not running: a stale registration, ignored"
        found.append(coordinator)
    return found


def ask(coordinators: Iterable[Coordinator], bound: float = COORDINATOR_BOUND) -> None:
    """Ask each coordinator that may be alive for its build's line (LIST), all at once, for at most ``bound``
    seconds in all; fill in its state (answered, or left at no answer), detail and steps."""
    asking = [c for c in coordinators if c.state == "no answer"]
    if not asking:
        return
    if sys.platform == "win32":  # pragma: no cover - no coordinator runs on Windows (tools/jobserver.py)
        for coordinator in asking:
            coordinator.detail = "no coordinator runs on Windows: ignored"
        return
    import selectors
    import socket

    from ..contention.wire import Reader, encode

    selector = selectors.DefaultSelector()
    socks: list[socket.socket] = []
    try:
        for coordinator in asking:
            if not coordinator.socket:
                coordinator.detail = "its registration names no socket"
                continue
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            socks.append(sock)
            sock.setblocking(False)
            try:
                sock.connect(coordinator.socket)
                sock.send(encode(["LIST"]))
            except OSError as exc:  # refused, gone, a full backlog (EAGAIN): it cannot answer now
                coordinator.detail = f"its socket {coordinator.socket!r}: {exc.strerror or exc}"
                continue
            selector.register(sock, selectors.EVENT_READ, (coordinator, Reader(), sock))
        deadline = time.monotonic() + bound
        while selector.get_map() and (left := deadline - time.monotonic()) > 0:
            for key, _mask in selector.select(left):
                coordinator, reader, sock = key.data
                try:
                    data = sock.recv(65536)
                    messages = reader.feed(data) if data else None
                except (OSError, ValueError) as exc:
                    messages, coordinator.detail = None, f"its answer: {exc}"
                if messages is None:
                    coordinator.detail = coordinator.detail or "it closed the connection before it answered"
                    selector.unregister(key.fileobj)
                    continue
                for message in messages:
                    if message[0] == "END":
                        coordinator.state = "answered"
                        selector.unregister(key.fileobj)
                        break
                    step = _build_step(message, time.monotonic())
                    if step is not None:
                        coordinator.steps.append(step)
    finally:
        selector.close()
        for sock in socks:
            sock.close()
    for coordinator in asking:
        if coordinator.state != "answered":
            coordinator.steps = []
            coordinator.detail = (coordinator.detail or f"it did not answer within {bound:g} s") + ": ignored"


def _build_step(message: list[str], now: float) -> BuildStep | None:
    """A STATE message: lock dir, resource, holds|waits|stopped, pid, command, what, seconds since, and since
    when in time.monotonic() seconds (a coordinator from before that field: ``now`` less the seconds)."""
    if message[0] != "STATE" or len(message) < 8:
        return None
    try:
        pid, seconds = int(message[4]), float(message[7])
        since = float(message[8]) if len(message) > 8 else now - seconds
    except ValueError:
        return None
    lock_dir, resource, state, _pid, command, what = message[1:7]
    if state not in ("holds", "waits", "stopped"):
        return None
    return BuildStep(lock_dir, resource, state, pid, command, what, seconds, since)


# --- who holds a lock file


class _Kernel:
    """Who holds which lock file: read once per view."""

    def __init__(self) -> None:
        self.linux = sys.platform.startswith("linux")
        self.table: dict[tuple[int, int, int], list[tuple[int, str]]] = {}
        if self.linux:
            from ..contention.holders import proc_locks

            self.table = proc_locks()

    def holders(self, path: str) -> tuple[list[int], str]:
        """(the pids holding ``path`` now, how that is known)."""
        from ..processes import alive

        if sys.platform == "win32":  # pragma: no cover - Windows only
            from ..contention.holders import _windows_held

            if not _windows_held(path):
                return [], ""
            record = _record(path)
            return ([record[0]] if record and alive(record[0]) else [0]), "kernel"
        if not self.linux:  # pragma: no cover - macOS, the BSDs: the kernel names no flock holder
            record = _record(path)
            return ([record[0]] if record and alive(record[0]) else []), "record"
        try:
            st = os.stat(path)
        except OSError:
            return [], ""
        takers = [
            pid for pid, _kind in self.table.get((os.major(st.st_dev), os.minor(st.st_dev), st.st_ino), [])
        ]
        pids = [pid for pid in takers if pid > 0 and alive(pid)]
        if pids or not takers:
            return pids, "kernel"
        # Held, by a taker that is gone: the lock lives on in a descriptor someone inherited or was given.
        from ..contention.holders import open_by, parent_pid

        openers = set(open_by(path))
        return sorted(pid for pid in openers if parent_pid(pid) not in openers), "descriptor"


# --- the view


def look(lock_dir: str, *, bound: float = COORDINATOR_BOUND, requests_of: RequestsOf | None = None) -> View:
    """Everything the lock directory and its builds' coordinators say now. ``requests_of`` reads the locks a
    fi_run command line asks for (cli.lock_requests; without it, what a process asked for is told from the
    lock files it holds). Raises OSError if the directory exists but cannot be read."""
    try:
        names = os.listdir(lock_dir)
    except FileNotFoundError:
        return View(lock_dir, exists=False)
    coordinators = _registered(lock_dir)
    ask(coordinators, bound)
    view = View(lock_dir, exists=True, coordinators=coordinators)
    here = os.path.realpath(lock_dir)
    builds: dict[int, list[BuildStep]] = {}  # coordinator pid -> its steps in this lock directory
    real: dict[str, str] = {}
    for coordinator in coordinators:
        for step in coordinator.steps:
            if step.lock_dir not in real:
                real[step.lock_dir] = os.path.realpath(step.lock_dir)
            if real[step.lock_dir] == here:
                builds.setdefault(coordinator.pid, []).append(step)
    looker = _Looker(_Kernel(), {c.pid for c in coordinators if c.state != "gone"}, builds, requests_of)
    seen: set[str] = set()
    for name in sorted(names):
        path = os.path.join(lock_dir, name)
        try:
            is_dir = stat.S_ISDIR(os.lstat(path).st_mode)
        except OSError:
            continue
        if is_dir and _is_resource_dir(name):
            seen.add(name)
            view.resources.append(looker.resource(path, name, _resource_path(path, name)))
    # A resource a build queues for whose directory is not there (yet): its steps wait all the same.
    for steps in builds.values():
        for step in steps:
            name = resource_dir_name(step.resource)
            if name not in seen:
                seen.add(name)
                view.resources.append(looker.resource(os.path.join(lock_dir, name), name, step.resource))
    view.resources.sort(key=lambda r: (r.name, r.directory))
    return view


class _Looker:
    """Looks at one resource directory after another, with what the whole view shares."""

    def __init__(
        self,
        kernel: _Kernel,
        coordinators: set[int],
        builds: dict[int, list[BuildStep]],
        requests_of: RequestsOf | None,
    ) -> None:
        self.requests_of = requests_of
        self.kernel = kernel
        self.coordinators = coordinators  # pids of registered coordinators that may be alive
        self.builds = builds
        self._argv: dict[int, list[str]] = {}

    def argv(self, pid: int) -> list[str]:
        if pid not in self._argv:
            self._argv[pid] = _argv(pid)
        return self._argv[pid]

    def resource(self, directory: str, name: str, canonical: str | None) -> Resource:
        resource = Resource(canonical, name)
        try:
            files = sorted(os.listdir(directory))
        except FileNotFoundError:
            files = []
        except OSError as exc:
            resource.problem = f"cannot read {directory!r}: {exc.strerror or exc}"
            files = []

        def ours(step: BuildStep) -> bool:
            return step.resource == canonical or (
                canonical is None and resource_dir_name(step.resource) == name
            )

        steps = {pid: [s for s in found if ours(s)] for pid, found in self.builds.items()}
        steps = {pid: found for pid, found in steps.items() if found}
        if canonical is None and steps:
            resource.resource = next(iter(steps.values()))[0].resource
        line = _line(os.path.join(directory, WAITERS))
        held: dict[int, list[str]] = {}  # pid -> the lock files it holds
        how: dict[int, str] = {}
        for lock_file in (f for f in files if f.endswith(".lock")):
            pids, known = self.kernel.holders(os.path.join(directory, lock_file))
            for pid in pids:
                held.setdefault(pid, []).append(lock_file)
                how.setdefault(pid, known)
        # A step still in the line is a waiter, whatever it holds: the exclusive waiter draining the slots
        # holds the gate, and a counted waiter trying for K slots holds the gate and some slots for a moment
        # before it gives them back (locks.Acquirer: K at once or none). A coordinator and a build's steps
        # are placed by what the coordinator says.
        waiting = {
            pid
            for _ns, pid, kind in line
            if kind == "drain" or (pid not in self.coordinators and pid not in steps)
        }
        resource.holders = self._holders(directory, canonical, held, how, waiting, steps)
        resource.waiters = self._waiters(canonical, line, held, steps, files)
        return resource

    def _holders(
        self,
        directory: str,
        canonical: str | None,
        held: dict[int, list[str]],
        how: dict[int, str],
        waiting: set[int],
        steps: dict[int, list[BuildStep]],
    ) -> list[Holder]:
        now = time.time()
        holders: list[Holder] = []
        for pid, lock_files in held.items():
            if pid in waiting:
                continue  # in the line: a waiter, whatever it holds for now
            if pid in steps and any(s.state == "holds" for s in steps[pid]):
                continue  # its build's steps stand in its place (below)
            command, seconds = "", None
            for lock_file in lock_files:
                record = _record(os.path.join(directory, lock_file))
                if record is not None and (record[0] == pid or how[pid] == "descriptor"):
                    command, seconds = record[1], max(now - record[2], 0.0)
                    break
            coordinator = pid in self.coordinators
            if not command:
                argv = self.argv(pid)
                command = " ".join(argv) if coordinator else _command(argv)
            modes = None if coordinator else _asked(self.argv(pid), pid, canonical, self.requests_of)
            memory = canonical is not None and canonical.startswith(MEMORY_SCHEME)
            holders.append(
                Holder(
                    pid,
                    command,
                    modes or _file_modes(lock_files, memory),
                    seconds,
                    build=pid if coordinator else None,
                    files=list(lock_files),
                    how=how[pid],
                    state="stopped" if _stopped(pid) else "holds",
                )
            )
        for build, found in steps.items():
            for step in found:
                if step.state != "holds":
                    continue
                holders = [h for h in holders if h.pid != step.pid]  # its record, where nothing better said
                holders.append(
                    Holder(
                        step.pid,
                        step.command,
                        _modes_of(step.what, step.resource),
                        step.seconds,
                        build=build,
                        files=list(held.get(build, [])),
                        how="coordinator",
                        state="stopped" if _stopped(step.pid) else "holds",
                    )
                )
        return holders

    def _waiters(
        self,
        canonical: str | None,
        line: list[tuple[int, int, str]],
        held: dict[int, list[str]],
        steps: dict[int, list[BuildStep]],
        files: Sequence[str],
    ) -> list[Waiter]:
        """The waiters, in the order they will be served: the line's, and each build's steps where its
        coordinator will serve them (_Play; the module's docstring says how)."""
        now = time.monotonic_ns()
        memory = canonical is not None and canonical.startswith(MEMORY_SCHEME)
        play = _Play(files)
        for ns, pid, kind in line:
            waited = max(now - ns, 0) / 1e9
            if pid in steps and any(s.state == "waits" for s in steps[pid]):
                if pid not in play.builds:  # its coordinator's claim for its build's first waiting step
                    play.builds[pid] = _BuildPart(pid, steps[pid], held.get(pid, []), kind)
                    play.line.append(_Turn(ns, build=pid, kind=kind))
                continue
            if pid in self.coordinators:  # no step of its build says it waits here: the coordinator itself
                waiter = Waiter(pid, " ".join(self.argv(pid)), None, waited, kind, build=pid)
                play.line.append(_Turn(ns, waiter))
                continue
            asked = _asked(self.argv(pid), pid, canonical, self.requests_of)
            if asked is None and kind in ("drain", "slot"):
                seats = MEMORY_SEATS if memory else None
                asked = (("exclusive", 1, 1),) if kind == "drain" else (("semaphore", seats, None),)
            state = "stopped" if _stopped(pid) else "waits"
            play.line.append(
                _Turn(ns, Waiter(pid, _command(self.argv(pid)), asked, waited, kind, state=state))
            )
        # A build not in the line: one that holds the resource goes on from where it is, first (holders in
        # the kernel's order); one that holds nothing of it queues at the back.
        front: list[_Turn] = []
        for pid in sorted(steps, key=lambda p: p not in held):
            if pid in play.builds or not any(s.state == "waits" for s in steps[pid]):
                continue
            part = play.builds[pid] = _BuildPart(pid, steps[pid], held.get(pid, []), None)
            if part.holds():
                front.append(_Turn(None, build=pid, kind="build", claim=False))
            else:  # its claim will be dated when its first waiting step began to wait (coordinator._pump)
                play.place(_Turn(_ns(part.queue[0].since) if part.queue else None, build=pid, kind="build"))
        play.line[:0] = front
        ordered = play.run()
        for position, waiter in enumerate(ordered, 1):
            waiter.position = position
        for pid, found in steps.items():  # passed over while stopped: listed last, without a place
            ordered += [_build_waiter(s, pid, "build") for s in found if s.state == "stopped"]
        return ordered


def _line(waiters: str) -> list[tuple[int, int, str]]:
    """The live entries of a waiters directory as (ns, pid, kind): the exclusive holder draining the slots
    first, then the line in arrival order. Stale entries (a dead pid, a closed port) are left out."""
    from ..contention.doorbell import parse_entry, still_waiting

    try:
        names = os.listdir(waiters)
    except OSError:
        return []
    line = []
    for name in names:
        parsed = parse_entry(name)
        if parsed is None or parsed[3] not in _KINDS:
            continue
        ns, pid, port, kind = parsed
        if still_waiting(pid, port):
            line.append((ns, pid, kind))
    line.sort(key=lambda entry: (entry[2] != "drain", entry[0]))
    return line


# --- how the line will be served: the lock directory's line and the builds' coordinators, played forward


class _Shape:
    """What one step takes of the resource, as the coordinator weighs it (coordinator._Want)."""

    __slots__ = ("counted", "exclusive", "shared", "since", "step", "weight")

    def __init__(self, modes: Modes | None, since: float = 0.0, step: BuildStep | None = None) -> None:
        # Not known (a description this view cannot read): taken for the most it could be, exclusive.
        self.exclusive = modes is None or modes[0][0] == "exclusive"
        self.shared = modes is not None and any(mode == "shared" for mode, _, _ in modes)
        counted = [(n, k) for mode, n, k in modes or () if mode == "semaphore"]
        self.counted = (counted[0][0] or 1) if counted else 0  # N; 0: not counted
        self.weight = (counted[0][1] or 1) if counted else 0  # K of the N, at once (issue 19)
        self.since = since
        self.step = step


class _Files:
    """Which slot files the resource directory will have: an exclusive claim drains every one there is, and
    the build keeps those its next step can use (coordinator._claimed, _tidy)."""

    def __init__(self, names: Sequence[str]) -> None:
        self.shared = any(n.startswith("shared-") and n.endswith(".lock") for n in names)
        self.sem = sum(1 for n in names if n.startswith("sem-") and n.endswith(".lock"))

    def note(self, modes: Modes | None) -> None:
        """Someone is served ``modes``: a slot it claims is a file from then on."""
        for mode, _n, k in modes or ():
            if mode == "shared":
                self.shared = True
            elif mode == "semaphore":
                self.sem = max(self.sem, k or 1)


class _BuildPart:
    """One build's part in one resource's line, as its coordinator plays it (coordinator._pump): the OS-level
    claims it holds (the gate, a shared slot, counted slots), its steps inside, and its own line."""

    def __init__(self, pid: int, found: list[BuildStep], files: Sequence[str], entry: str | None) -> None:
        self.pid = pid
        self.queue = [_Shape(_modes_of(s.what, s.resource), s.since, s) for s in found if s.state == "waits"]
        self.holders = [_Shape(_modes_of(s.what, s.resource)) for s in found if s.state == "holds"]
        # Its claims, from the lock files its coordinator holds. One in the line holds no gate of its own,
        # and one waiting to drain (it has the gate, for an exclusive claim) let go of all the rest first.
        draining = entry == "drain"
        self.gate = entry is None and GATE in files
        self.shared = not draining and any(f.startswith("shared-") for f in files)
        in_use = sum(h.weight for h in self.holders if h.counted)
        self.spare = 0 if draining else max(sum(1 for f in files if f.startswith("sem-")) - in_use, 0)

    def holds(self) -> bool:
        return bool(self.gate or self.shared or self.spare or self.holders)

    def _fits(self, want: _Shape) -> bool:
        if want.exclusive:
            return not self.holders
        if any(h.exclusive for h in self.holders):
            return False
        if want.counted:
            return sum(h.weight for h in self.holders if h.counted) + want.weight <= want.counted
        return True

    def _tidy(self, head: _Shape) -> None:
        """What the coordinator lets go of once nothing inside and not its next step needs it."""
        if self.gate and not self.holders and not head.exclusive:
            self.gate = False
        if self.shared and not head.shared and not any(h.shared for h in self.holders):
            self.shared = False
        if self.spare and not head.counted:
            self.spare = 0

    def _make_room(self, want: _Shape) -> None:
        """The steps inside leave, first in first out, until ``want`` fits: their counted slots are spare."""
        self._tidy(want)
        while self.holders and not self._fits(want):
            left = self.holders.pop(0)
            self.spare += left.weight if left.counted else 0
            self._tidy(want)

    def won(self, want: _Shape, files: _Files) -> None:
        """Its claim for ``want`` is won (it asked for what the build lacked): it holds what that takes."""
        self._make_room(want)
        if want.exclusive:  # the gate, and every slot file there is, drained
            self.gate, self.shared, self.spare = True, files.shared, files.sem
            return
        self.gate = False
        if want.counted:
            self.spare = max(self.spare, want.weight)
            files.sem = max(files.sem, self.spare + sum(h.weight for h in self.holders if h.counted))
        if want.shared:
            self.shared = files.shared = True

    def goes_on(self, want: _Shape, first_outside: int | None) -> bool:
        """Is ``want`` served under the claims the build holds (True: it is granted now), or does the build
        queue again at the back of the line for it (False)? As coordinator._pump: it goes on only while
        nobody outside who began to wait before ``want`` is in line (``first_outside``: the earliest of them,
        monotonic ns), and only with a claim of the kind it needs."""
        self._make_room(want)
        outsider = first_outside is not None and first_outside / 1e9 < want.since
        if want.exclusive:
            if self.gate and not outsider:
                return True
            self.gate = self.shared = False  # its own slots would keep its claim from draining them
            self.spare = 0
            return False
        self.gate = False
        enough = True
        if want.counted:
            if self.spare and outsider:
                self.spare = 0
            enough = self.spare >= want.weight
        if want.shared:
            if self.shared and outsider:  # its readers inside finish; then it lets the slot go
                self.holders = [h for h in self.holders if not h.shared]
                self.shared = False
            enough = enough and self.shared
        return enough

    def grant(self, want: _Shape) -> None:
        self.holders.append(want)
        if want.counted:
            self.spare = max(self.spare - want.weight, 0)


class _Turn:
    """A place in the resource's line: a waiter outside the builds, or a build's claim (``build``)."""

    __slots__ = ("build", "claim", "kind", "ns", "waiter")

    def __init__(
        self,
        ns: int | None,
        waiter: Waiter | None = None,
        *,
        build: int | None = None,
        kind: str = "",
        claim: bool = True,
    ) -> None:
        self.ns = ns  # its entry's monotonic ns; None: not in the line yet (a build that will queue)
        self.waiter = waiter
        self.build = build
        self.kind = kind
        self.claim = claim  # a build's: a claim won here (False: a build going on with what it holds)

    def writer(self) -> bool:
        """A waiter outside the builds who takes the gate and drains the slots: exclusive (or not known)."""
        if self.waiter is None:
            return False
        modes = self.waiter.modes
        return modes is None or any(mode == "exclusive" for mode, _n, _k in modes)


class _Play:
    """The line played forward: each turn in order; a build's claim serves its first waiting step, and then
    the build goes on with its next ones while it may (_BuildPart.goes_on), else queues at the back."""

    def __init__(self, files: Sequence[str]) -> None:
        self.files = _Files(files)
        self.line: list[_Turn] = []
        self.builds: dict[int, _BuildPart] = {}

    def place(self, turn: _Turn, start: int = 0) -> None:
        """Put ``turn`` in the line from ``start`` on, by its entry's date (one without a date goes last)."""
        at = len(self.line) if turn.ns is None else start
        while at < len(self.line):
            ns = self.line[at].ns
            if ns is None or (turn.ns is not None and ns > turn.ns):
                break
            at += 1
        self.line.insert(at, turn)

    def run(self) -> list[Waiter]:
        served: list[Waiter] = []
        at = 0
        while at < len(self.line):
            turn = self.line[at]
            at += 1
            if turn.waiter is not None:
                served.append(turn.waiter)
                self.files.note(turn.waiter.modes)
                continue
            assert turn.build is not None
            part = self.builds[turn.build]
            kind = turn.kind
            if turn.claim and part.queue:  # its head goes at the build's place, whoever else waits
                head = part.queue.pop(0)
                part.won(head, self.files)
                part.grant(head)
                served.append(_build_waiter(head, part.pid, kind))
                kind = "build"
            while part.queue:
                head = part.queue[0]
                first = min(
                    (t.ns for t in self.line[at:] if t.ns is not None and t.build != part.pid), default=None
                )
                had_gate = part.gate
                if not part.goes_on(head, first):
                    # It queues again, its claim dated when ``head`` began to wait (coordinator._pump): behind
                    # those who came before that step, ahead of those who came after it. But a build without
                    # the gate makes that claim only once its steps inside are done, and meanwhile the gate
                    # is free: the next writer outside takes it and drains (the readers before it go in).
                    start = at
                    if not had_gate:
                        writer = next((i for i in range(at, len(self.line)) if self.line[i].writer()), None)
                        start = at if writer is None else writer + 1
                    self.place(_Turn(_ns(head.since), build=part.pid, kind="build"), start)
                    break
                part.queue.pop(0)
                part.grant(head)
                served.append(_build_waiter(head, part.pid, kind))
        return served


def _ns(since: float) -> int | None:
    """A step's ``since`` (time.monotonic() seconds; 0.0: not known) as an entry's date."""
    return round(since * 1e9) if since > 0 else None


def _build_waiter(step: BuildStep | _Shape, build: int, kind: str) -> Waiter:
    if isinstance(step, _Shape):
        assert step.step is not None
        step = step.step
    state = "stopped" if step.state == "stopped" else "waits"
    return Waiter(
        step.pid,
        step.command,
        _modes_of(step.what, step.resource),
        step.seconds,
        kind,
        build=build,
        state=state,
    )


def _file_modes(lock_files: Sequence[str], memory: bool = False) -> Modes | None:
    """What holding these lock files means: the gate for good is an exclusive lock; a slot, its kind (as
    many counted slots as it holds: its weight)."""
    if GATE in lock_files:
        return (("exclusive", 1, 1),)
    modes: list[tuple[str, int | None, int | None]] = []
    counted = sum(1 for f in lock_files if f.startswith("sem-"))
    if counted:
        modes.append(("semaphore", MEMORY_SEATS if memory else None, counted))
    if any(f.startswith("shared-") for f in lock_files):
        modes.append(("shared", 1, 1))
    return tuple(modes) or None


# --- JSON


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _modes_json(modes: Modes | None) -> list[dict[str, Any]] | None:
    if modes is None:
        return None
    return [{"mode": mode, "slots": slots, "weight": weight} for mode, slots, weight in modes]


def to_json(view: View, remote: Sequence[RemoteView] = ()) -> dict[str, Any]:
    """The --json document (keys: JSON_KEYS); ``remote``: what the servers of the --redis resources say."""
    return {
        "locks_version": LOCKS_VERSION,
        "lock_dir": view.lock_dir,
        "exists": view.exists,
        "coordinators": [
            {"pid": c.pid, "socket": c.socket, "state": c.state, "detail": c.detail}
            for c in view.coordinators
        ],
        "resources": [
            {
                "resource": r.resource,
                "directory": r.directory,
                "problem": r.problem,
                "holders": [
                    {
                        "pid": h.pid,
                        "command": h.command,
                        "modes": _modes_json(h.modes),
                        "seconds": _r(h.seconds),
                        "build": h.build,
                        "files": h.files,
                        "how": h.how,
                        "state": h.state,
                    }
                    for h in r.holders
                ],
                "waiters": [
                    {
                        "position": w.position,
                        "pid": w.pid,
                        "command": w.command,
                        "modes": _modes_json(w.modes),
                        "seconds": _r(w.seconds),
                        "build": w.build,
                        "kind": w.kind,
                        "state": w.state,
                    }
                    for w in r.waiters
                ],
            }
            for r in view.resources
        ],
        "remote": [v.as_json() for v in remote],
    }


# --- the terminal view


def _what(modes: Modes | None, memory: bool = False) -> str:
    """ "exclusive", "shared", "semaphore (of 4)", "semaphore (3 of 8)": K of N, if more than one at once;
    of a memory budget, "memory (3 of 128 seats)"."""
    if modes is None:
        return "?"
    words = []
    for mode, slots, weight in modes:
        if mode != "semaphore":
            words.append(mode)
        elif memory:
            words.append(f"memory ({weight or '?'} of {slots or '?'} seats)")
        elif slots is None:
            words.append("semaphore" if weight in (None, 1) else f"semaphore ({weight} slots)")
        else:
            words.append(f"semaphore ({'' if weight in (None, 1) else f'{weight} '}of {slots})")
    return " + ".join(words)


_WHERE: Final = {"gate": "at the gate", "slot": "for a slot", "drain": "draining (has the gate)"}


def _seconds(value: float | None) -> str:
    return "?" if value is None else f"{value:.1f} s"


def _cut(line: str, width: int) -> str:
    return line if len(line) <= width else line[: max(width - 3, 1)] + "..."


def _table(rows: list[list[str]], width: int) -> list[str]:
    """Aligned columns, the last one (the command) left as it is, each line cut to ``width``."""
    if not rows:
        return []
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = []
    for row in rows:
        cells = [
            cell.rjust(widths[i]) if i in (0, 4) else cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])
        ]
        lines.append(_cut(("  " + "  ".join([*cells, row[-1]])).rstrip(), width))
    return lines


def render(view: View, colour: bool, width: int = 120) -> str:
    def style(code: str, text: str) -> str:
        return f"{code}{text}{RESET}" if colour and text else text

    title = style(BOLD, "fi_run locks")
    if not view.exists:
        return f"{title}  {view.lock_dir}: does not exist yet, so nothing is locked\n"
    busy = [r for r in view.resources if r.holders or r.waiters or r.problem]
    idle = len(view.resources) - len(busy)
    out = [
        f"{title}  {view.lock_dir}: "
        + (f"{len(busy)} held or waited for" if busy else "nothing held, nobody waiting")
        + (f", {idle} idle" if idle else "")
    ]
    for c in view.coordinators:
        text = f"build coordinator pid {c.pid}: " + (c.state if c.state == "answered" else c.detail)
        out.append(style(DIM, text) if c.state == "answered" else style(YELLOW, text))
    for r in busy:
        out += ["", style(CYAN, _cut(r.name, width))]
        if r.resource is None:
            out.append(style(DIM, "  (a directory without a resource file: made by an older fi_run)"))
        memory = r.name.startswith(MEMORY_SCHEME)
        if memory:
            note = (
                f"  (the memory budget --mem steps share, {MEMORY_SEATS} seats: each takes its peak's share)"
            )
            out.append(style(DIM, _cut(note, width)))
        if r.problem:
            out.append(style(YELLOW, _cut(f"  {r.problem}", width)))
        rows: list[list[str]] = []
        stopped: set[int] = set()
        for h in r.holders:
            where = {"descriptor": "inherited descriptor", "record": "recorded, not verified"}.get(h.how, "")
            if h.build is not None:
                where = f"build {h.build}" + (f", {where}" if where else "")
            if h.state == "stopped":
                where += ", STOPPED" if where else "STOPPED"
                stopped.add(len(rows))
            rows.append(["", f"pid {h.pid}", _what(h.modes, memory), where, _seconds(h.seconds), h.command])
        for w in r.waiters:
            where = _WHERE.get(w.kind, "queued")
            if w.build is not None:
                where = f"build {w.build}, {where}"
            if w.state == "stopped":
                where += ", STOPPED" + (" (passed over)" if w.position is None else "")
                stopped.add(len(rows))
            number = f"{w.position}." if w.position is not None else "-"
            rows.append(
                [number, f"pid {w.pid}", _what(w.modes, memory), where, _seconds(w.seconds), w.command]
            )
        lines = [style(YELLOW, line) if i in stopped else line for i, line in enumerate(_table(rows, width))]
        if r.holders:
            out += [style(DIM, "  held by"), *lines[: len(r.holders)]]
        if r.waiters:
            out += [style(DIM, "  waiting, in the order they will be served"), *lines[len(r.holders) :]]
    return "\n".join(out) + "\n"


def render_remote(views: Sequence[RemoteView], colour: bool, width: int = 120) -> str:
    """The --redis resources, as their servers keep them: holders and waiters, each with its machine."""

    def style(code: str, text: str) -> str:
        return f"{code}{text}{RESET}" if colour and text else text

    out: list[str] = []
    for v in views:
        out += ["", style(CYAN, _cut(v.resource, width))]
        note = "  (on its Redis server: every machine's steps"
        if v.recovering > 0:
            note += f"; restarted: its holders have {v.recovering:.1f} s to come back"
        out.append(style(DIM, _cut(note + ")", width)))
        if not (v.holders or v.waiters):
            out.append("  nothing held, nobody waiting")
            continue
        rows: list[list[str]] = []
        for position, e in enumerate([*v.holders, *v.waiters], 1 - len(v.holders)):
            what = e.mode if e.mode != "semaphore" else f"semaphore ({e.weight} of {e.seats})"
            where = f"on {e.host or '?'}" + (f", build {e.build}" if e.build else "")
            where += f", fence {e.fence}" if e.state == "holds" else ""
            number = f"{position}." if e.state == "waits" else ""
            pid = f"pid {e.pid}" if e.pid is not None else "pid ?"
            rows.append([number, pid, what, where, _seconds(e.seconds), e.command])
        lines = _table(rows, width)
        if v.holders:
            out += [style(DIM, "  held by"), *lines[: len(v.holders)]]
        if v.waiters:
            out += [style(DIM, "  waiting, in the order they will be served"), *lines[len(v.holders) :]]
    return "\n".join(out) + "\n" if out else ""
