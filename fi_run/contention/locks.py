"""Per-resource locks: exclusive (--lock), shared (--shared-lock) and counted (--semaphore).

Every lock is a filelock.FileLock (flock(2) on POSIX, LockFileEx on Windows): the kernel drops it when its
holder dies, SIGKILL included, so a crashed step never blocks the build. How the three modes are built from
that one exclusive primitive, per resource directory ``<lock dir>/<name>-<hash>/``:

- ``gate.lock``: an exclusive holder keeps it for its whole run. Shared and counted holders take it only for
  the moment it takes to claim a slot, so no new slot can be claimed while an exclusive holder waits or runs.
- ``shared-<i>.lock``: each shared holder holds one slot, claimed as the lowest free index.
- ``sem-<i>.lock`` for i < N: each counted holder holds one of these N slots.
- An exclusive holder, once it has the gate, also takes every slot file that exists (slots are created only
  under the gate, so that set cannot grow behind its back): it waits until the last shared or counted holder
  has left, and new ones queue at the gate. Writers are not starved by a stream of readers.

Why not filelock's ReadWriteLock: it is built on SQLite (import sqlite3 on every step), waits in SQLite's busy
handler (sleeps of up to 100 ms, so slow hand-off), and cannot express --semaphore; the slot scheme needs only
FileLock, and the same wake-up (doorbell.py) serves all three modes.

The lock files are fi_run's own, in fi_run's own directory: never ``<venv>/.lock`` or any file a wrapped tool
locks itself (holding uv's ``<venv>/.lock`` from outside is what made uv fail with os error 33, uv#2767), and
nothing is written into the user's tree. Several locks are taken in one global order (sorted canonical paths),
so steps asking for {A, B} and {B, A} cannot deadlock.
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from typing import Final

from ..errors import LockTimeoutError, UsageError
from ..processes import alive, zombie
from . import doorbell  # noqa: F401 - the same, and with the collector off (cli._collect_from_now_on)
from .lockdir import (
    NOFOLLOW,
    LockDir,
    describe_modes,
    ensure_lock_file,
    merge_requests,
    place_error,
    prepare_lock_dir,
    prepare_resource_dir,
    resource_dir_name,
)

# The oldest filelock fi_run runs with, and why: 3.20.3 has both symlink fixes (CVE-2025-68146,
# CVE-2026-22701); 3.30.0 has preserve_lock_file, without which a Windows release deletes the lock file
# and the next waiter finds a new one (issue 22). pyproject.toml says the same (a test keeps them equal).
FILELOCK_MINIMUM: Final = (3, 30, 0)

try:  # here, not in a function: loaded before any wait, so logged waits are only waits
    import filelock
except ImportError:  # a vendored fi_run (GN's script) on a Python without it: what to do, not exit 70
    raise UsageError(
        f"--lock, --shared-lock and --semaphore need the filelock package (>= "
        f"{'.'.join(map(str, FILELOCK_MINIMUM))}), which {sys.executable} cannot import: install it there "
        "(pip install filelock) or vendor it beside fi_run"
    ) from None


def _version(text: str) -> tuple[int, ...]:
    numbers = []
    for part in text.split("."):
        if not part.isdigit():
            break
        numbers.append(int(part))
    return tuple(numbers)


if _version(getattr(filelock, "__version__", "0")) < FILELOCK_MINIMUM:
    raise UsageError(
        f"fi_run's locks need filelock >= {'.'.join(map(str, FILELOCK_MINIMUM))}, but {sys.executable} "
        f"has {getattr(filelock, '__version__', 'an unknown version')} ({filelock.__file__}): upgrade it"
    )

TYPE_CHECKING = False  # saves nothing: only a locked step imports this, and filelock imports typing
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from filelock import BaseFileLock

    from ..messages import Reporter
    from ..records import JSON, LockRequest, StepRecord, StepSpec
    from .doorbell import Waiter
    from .lockdir import Modes

# A step that has waited this long says once what it waits for, when a person can see it.
WAIT_NOTICE_SECONDS: Final = 2.0
MAX_SHARED_SLOTS: Final = 4096
_GATE: Final = "gate.lock"
_HOLDER_SIZE: Final = 512  # bytes of "pid\ncommand", padded: every holder rewrites the whole record
_WAITERS: Final = "waiters"


class Plan:
    """What one step takes of one resource, taken as one: the exclusive lock, or one slot of each kind the
    step asked for (a counted slot and a shared one, for ``--semaphore R=N --shared-lock R``)."""

    __slots__ = ("canonical", "directory", "modes")

    def __init__(self, canonical: str, directory: str, modes: Modes) -> None:
        self.canonical = canonical
        self.directory = directory
        # (mode, seats, weight): ("exclusive", 1, 1); or ("semaphore", N, K) and/or ("shared", 1, 1)
        self.modes = modes

    @property
    def exclusive(self) -> bool:
        return self.modes[0][0] == "exclusive"

    def describe(self) -> str:
        return describe_modes(self.canonical, self.modes)


def plan_locks(
    requests: Sequence[LockRequest], lock_dir: str, start_dir: str, *, windows: bool
) -> list[Plan]:
    """Canonical, de-duplicated and globally ordered: the order every fi_run process takes locks in.

    One plan per resource, whatever was asked of it: exclusive covers shared and counted; two counts keep
    the smaller; a counted and a shared request are claimed together, in one pass through the resource's
    gate (taken one after the other they could deadlock with an exclusive request that queued between
    them: issue 22).
    """
    return [
        Plan(canonical, os.path.join(lock_dir, resource_dir_name(canonical)), modes)
        for canonical, modes in merge_requests(requests, start_dir, windows=windows)
    ]


def _read_holder(lock_path: str) -> tuple[int, str] | None:
    """(pid, command) of whoever last took the lock, if that process still runs."""
    try:
        fd = os.open(lock_path + ".holder", os.O_RDONLY | NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
        try:
            text = os.read(fd, _HOLDER_SIZE).decode("utf-8", "replace")
        finally:
            os.close(fd)
        pid_text, _, command = text.partition("\n")
        pid = int(pid_text)
    except (OSError, ValueError):
        return None
    return (pid, command) if alive(pid) else None


def _identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


# Tmp cleaners remove files by age (systemd-tmpfiles: 10 days in /tmp, by the newest of atime, mtime and
# ctime; macOS's periodic: 3 days by atime). Locking a file changes none of its times, so a lock file in daily
# use would look abandoned: fi_run sets its times to now when it takes it and they are older than this.
_FRESHEN_AFTER: Final = 24 * 3600.0


def _held_identity(lock: BaseFileLock, *, freshen: bool = False) -> tuple[int, int] | None:
    fd = getattr(getattr(lock, "_context", None), "lock_file_fd", None)
    if not isinstance(fd, int):
        return None
    st = os.fstat(fd)
    if (
        freshen
        and os.utime in os.supports_fd
        and time.time() - max(st.st_atime, st.st_mtime) > _FRESHEN_AFTER
    ):
        try:
            os.utime(fd)
        except OSError:
            pass  # another user's file in a shared directory: its owner's runs freshen it
    return (st.st_dev, st.st_ino)


def holder_of(lock_path: str) -> str:
    """'pid N: command' of whoever last took the lock, if that process still runs; else ''."""
    found = _read_holder(lock_path)
    if found is None:
        return ""
    pid, command = found
    command = command.strip()
    return f"pid {pid}: {command}" if command else f"pid {pid}"


class Acquirer:
    """Takes the planned locks one by one, waiting with the doorbell, within one deadline."""

    def __init__(
        self,
        spec: StepSpec,
        reporter: Reporter,
        lock_dir: LockDir,
        *,
        on_wait: Callable[[str], None] | None = None,
        thread_local: bool = True,
        holder: tuple[int, str] | None = None,
        deadline: float | None = None,
        arrived: float | None = None,
    ) -> None:
        self.spec = spec
        # When the wait began (time.monotonic()), if earlier than now: the coordinator's, for the step it
        # queues for, so that its entry takes that step's place in the line (doorbell.Waiter).
        self.arrived = arrived
        # False: the locks are released by another thread than the one that took them (the coordinator).
        self.thread_local = thread_local
        self.lock_dir = lock_dir
        self._ensured: set[str] = set()  # lock files checked (shared directories only)
        self.reporter = reporter
        self.on_wait = on_wait  # told the resource when a lock is not free at once (lending, jobserver.py)
        # (lock, resource directory, is the gate), in acquisition order
        self.held: list[tuple[BaseFileLock, str, bool]] = []
        self._locks: dict[str, BaseFileLock] = {}
        # lock path -> (its file's identity, the holder's pid) when this process first found it taken:
        # to tell, once it gets the lock, whether the file it queued on was removed under a live holder.
        self._busy: dict[str, tuple[tuple[int, int] | None, int | None]] = {}
        if deadline is None and spec.lock_timeout is not None:
            deadline = time.monotonic() + spec.lock_timeout
        self.deadline = deadline  # monotonic
        self.started = time.monotonic()
        self.noticed = False
        self.notice_wanted = reporter.verbosity >= 2 or _stderr_is_tty()
        pid, command = holder if holder is not None else (os.getpid(), " ".join(spec.command))
        self.holder_text = holder_record(pid, command)

    def _write_holder(self, lock_path: str) -> None:
        write_holder(lock_path, self.holder_text, self.lock_dir.file_mode)

    def _try(self, path: str, directory: str, *, holder: bool = True) -> bool:
        from filelock import Timeout

        lock = self._locks.get(path)
        if lock is None:  # one object per file: constructing a FileLock costs about a third of a try
            if self.lock_dir.shared and path not in self._ensured:
                ensure_lock_file(path, self.lock_dir)
                self._ensured.add(path)
            lock = self._locks[path] = _file_lock(path, thread_local=self.thread_local)
        try:
            try:
                lock.acquire(blocking=False)
            except FileNotFoundError:  # the lock directory was removed (rm -rf, a tmp cleaner): make it again
                self._remake(directory)
                lock.acquire(blocking=False)
        except Timeout:
            if path not in self._busy:
                holder_found = _read_holder(path)
                self._busy[path] = (_identity(path), holder_found[0] if holder_found else None)
            return False
        except OSError as exc:  # permissions, a full disk, a planted symlink: the place, not fi_run
            raise place_error("lock", path, exc) from None
        held = _held_identity(lock, freshen=True)
        if held is not None and _identity(path) != held:
            # Removed between filelock's open and its flock: a lock on a file nobody else can find.
            lock.release()
            return False
        self.held.append((lock, directory, path.endswith(_GATE)))
        _pass_to_command(lock)
        seen = self._busy.pop(path, None)
        if seen is not None and seen[0] != held and sys.platform != "win32":  # see _file_lock
            self._outlive(path, seen[1])
        if holder:
            self._write_holder(path)
        return True

    def _remake(self, directory: str) -> None:
        """Make the lock directory and the resource directory again, checked as the first time."""
        self.lock_dir = prepare_lock_dir(self.spec)
        prepare_resource_dir(directory, os.path.join(directory, _WAITERS), self.lock_dir)

    def _outlive(self, path: str, pid: int | None) -> None:
        """The file this step queued on was removed while ``pid`` held it, and this step now holds a new
        one: nobody else can see the old holder any more, so wait here, holding the new lock (which keeps
        later arrivals out too), until it has finished. Never two holders."""
        if pid is None or not alive(pid):
            return
        self.reporter.warning(
            f"lock file {path!r} was removed while pid {pid} held it (rm -rf? a tmp cleaner?); "
            f"waiting for pid {pid} to finish"
        )
        while alive(pid) and not zombie(pid):
            if self.deadline is not None and time.monotonic() >= self.deadline:
                raise LockTimeoutError(
                    f"gave up after {self.spec.lock_timeout:g} s waiting for pid {pid}, which held {path!r} "
                    "when it was removed"
                )
            time.sleep(0.05)

    def _wait(
        self,
        attempt: Callable[[], str | None],
        plan: Plan,
        blocked_on: Callable[[], str],
        *,
        fifo: bool = True,
    ) -> None:
        """Call ``attempt`` until it succeeds (returns None), sleeping on the resource's doorbell between
        tries as the kind of waiter it names (see doorbell.py)."""
        from .doorbell import Waiter, first_in_line

        waiters = os.path.join(plan.directory, _WAITERS)
        # First come, first served: with others already in line (for the gate, or for a counted slot), a
        # newcomer queues behind them instead of slipping in during a hand-off (a reader past a waiting
        # writer, a writer past a waiting counted step: issue 22), and each tries only when no live waiter
        # ahead of it is still in line.
        # Not on Windows yet: there a killed waiter's entry cannot be told from a live one (_alive), and it
        # would hold up the line for good (issue 13).
        fifo = fifo and sys.platform != "win32"
        queued = fifo and first_in_line(waiters)
        if not queued:
            kind = attempt()
            if kind is None:
                return
        else:
            kind = "gate"
        if self.on_wait is not None:
            self.on_wait(plan.canonical)  # not free at once: lend the job slot while waiting (lending.py)
        since_ns = None if self.arrived is None else int(self.arrived * 1e9)
        with Waiter(waiters, kind, since_ns) as waiter:
            # Registered before the next try: a release between the failed try and the registration
            # would otherwise ring nobody.
            while True:
                if not (fifo and kind in ("gate", "slot") and waiter.ahead()):
                    kind = attempt()
                    if kind is None:
                        return
                    waiter.set_kind(kind)
                self._pause(waiter, plan, blocked_on)

    def _take(self, path: str, plan: Plan, kind: str) -> None:
        # Only the gate has a line; draining the slots is waiting for holders already inside.
        attempt = lambda: None if self._try(path, plan.directory) else kind  # noqa: E731
        self._wait(attempt, plan, lambda: path, fifo=kind == "gate")

    def _pause(self, waiter: Waiter, plan: Plan, blocked_on: Callable[[], str]) -> None:
        now = time.monotonic()
        what = plan.describe()
        if self.deadline is not None and now >= self.deadline:
            holder = holder_of(blocked_on())
            on_whom = f" (held by {holder})" if holder else ""
            raise LockTimeoutError(f"gave up after {self.spec.lock_timeout:g} s waiting for {what}{on_whom}")
        if not self.noticed and self.notice_wanted and now - self.started >= WAIT_NOTICE_SECONDS:
            self.noticed = True
            holder = holder_of(blocked_on())
            self.reporter.info(f"waiting for {what}" + (f", held by {holder}" if holder else ""))
        waiter.wait(WAIT_NOTICE_SECONDS if self.deadline is None else self.deadline - now)

    def acquire(self, plan: Plan) -> None:
        prepare_resource_dir(
            plan.directory, os.path.join(plan.directory, _WAITERS), self.lock_dir, plan.canonical
        )
        gate = os.path.join(plan.directory, _GATE)
        if plan.exclusive:
            self._take(gate, plan, "gate")
            for name in sorted(os.listdir(plan.directory)):
                if name.endswith(".lock") and name != _GATE:
                    self._take(os.path.join(plan.directory, name), plan, "drain")
            return
        # (slot file prefix, how many slots there are, how many to claim) for each kind the step claims
        claims = [
            ("sem", seats, weight) if mode == "semaphore" else ("shared", MAX_SHARED_SLOTS, 1)
            for mode, seats, weight in plan.modes
        ]
        blocked = [gate]
        waiters = os.path.join(plan.directory, _WAITERS)

        def claim_slots() -> str | None:
            """Take the gate, claim one slot of each kind or none at all, and let go of the gate."""
            if not self._try(gate, plan.directory, holder=False):
                blocked[0] = gate
                return "gate"
            gate_lock = self.held.pop()  # the gate is released below, whatever happens: not in self.held
            claimed_from = len(self.held)
            try:
                for prefix, count, wanted in claims:
                    got = 0  # a weighted step takes K of the N slots at once, or none (issue 19)
                    for index in range(count):
                        slot = os.path.join(plan.directory, f"{prefix}-{index}.lock")
                        if self._try(slot, plan.directory):
                            got += 1
                            if got == wanted:
                                break
                        else:
                            blocked[0] = slot
                    else:  # not enough slots of this kind free: give back those claimed in this pass
                        while len(self.held) > claimed_from:
                            self.held.pop()[0].release()
                        gate_lock[0].release()
                        from .doorbell import ring

                        ring(waiters, "gate")  # another claimer may find what it needs
                        return "slot"
            except BaseException:
                gate_lock[0].release()
                raise
            gate_lock[0].release()
            return None

        try:
            self._wait(claim_slots, plan, lambda: blocked[0])
        finally:
            # The gate is free again: the next in line may use it. Rung only now, once this step's own entry
            # has left the line, or the next waiter would find it still ahead and sleep a poll's length.
            from .doorbell import ring

            ring(waiters, "gate")

    def release_all(self, on_release: Callable[[], None]) -> None:
        """Call ``on_release``, release every lock, then wake the waiters that can go next."""
        on_release()
        held, self.held = self.held, []
        release(held, self.reporter)


def release(held: list[tuple[BaseFileLock, str, bool]], reporter: Reporter) -> None:
    """Release ``held`` (what an Acquirer took, in order), last first; then wake the waiters that can go
    next, once per resource directory."""
    released: dict[str, set[bool]] = {}  # resource directory -> {released its gate?, ...}
    while held:
        lock, directory, is_gate = held.pop()
        identity = _held_identity(lock)
        if identity is not None and sys.platform != "win32" and _identity(lock.lock_file) != identity:
            reporter.warning(
                f"lock file {lock.lock_file!r} was removed while this step held it (rm -rf? a tmp "
                "cleaner?): a step that started after that may have run beside it"
            )
        lock.release()
        released.setdefault(directory, set()).add(is_gate)
    if not released:
        return
    from .doorbell import ring

    for directory, kinds in released.items():
        waiters = os.path.join(directory, _WAITERS)
        if False in kinds:  # a slot: the exclusive waiter draining the slots, and one counted waiter
            ring(waiters, "drain", everyone=True)
            ring(waiters, "slot")
        if True in kinds:  # the gate: the next in line
            ring(waiters, "gate")
    # Step aside for the waiter just woken. Without this the scheduler lets this process finish its
    # time slice first (writing the stamp, Python's exit): 1 to 4 ms of hand-off on a 2-core machine,
    # against 0.1 ms with it (benchmarks/handoff.py).
    if hasattr(os, "sched_yield"):
        os.sched_yield()


def holder_record(pid: int, command: str) -> bytes:
    """The fixed-size record a holder writes beside the lock file it holds: "pid\ncommand", padded."""
    text = f"{pid}\n{command}".encode("utf-8", "replace")[: _HOLDER_SIZE - 1]
    return text.ljust(_HOLDER_SIZE - 1) + b"\n"


def write_holder(lock_path: str, record: bytes, mode: int) -> None:
    """Say who holds ``lock_path`` (for messages only: a failure is ignored).

    This sits between taking the lock and starting the command, so it is kept to one write of a fixed-size
    record: no O_TRUNC (on ext4 truncating a file that has data frees its blocks in the journal, 0.3 ms alone
    and several under load) and no text file object.
    """
    try:
        # O_NOFOLLOW: a symlink planted in a shared lock directory must not be written through.
        fd = os.open(lock_path + ".holder", os.O_RDWR | os.O_CREAT | NOFOLLOW, mode)
    except OSError:
        return
    try:
        os.write(fd, record)  # at offset 0: the descriptor is new
    except OSError:
        pass
    finally:
        os.close(fd)


def _file_lock(path: str, *, thread_local: bool = True) -> BaseFileLock:
    """filelock's lock on ``path``, keeping the file when it is released.

    On Windows filelock deletes a lock file when it releases it unless told to keep it
    (``preserve_lock_file``, filelock >= 3.30.0), so every hand-off made a new file. A waiter that had noted
    the old file's identity then took the new one for "removed while pid N held it", warned, and waited,
    holding the lock, for the previous holder's process to end: up to 60 s under fi-run jobserver, where a
    holder repays its job slot after the release (issue 22; NTFS file IDs, unlike ext4's inodes under Wine,
    are not reused at once). Kept, the file keeps its identity. The removed-file checks themselves are
    POSIX only: Windows cannot delete a file that is open, so a held lock file cannot vanish there.
    POSIX keeps the default, which keeps the file and also allows filelock's soft-lock fallback.
    """
    from filelock import FileLock

    if sys.platform == "win32":
        return FileLock(path, thread_local=thread_local, preserve_lock_file=True)
    return FileLock(path, thread_local=thread_local)


def _pass_to_command(lock: BaseFileLock) -> None:
    """Let the command inherit the held lock's descriptor, so that the lock outlives a SIGKILLed fi_run.

    flock(2) locks belong to the open file description, not to the process: while any process still has a
    descriptor for it, the lock stays. fi_run releases it explicitly (LOCK_UN releases it for every
    descriptor sharing it), so normally nothing changes; but if fi_run itself is killed with SIGKILL, the
    command (and whatever it started that kept the descriptor) still holds the lock until it exits, as with
    flock(1). The next holder waits for the orphan instead of running beside it. Windows is another matter
    (a job object kills the command with fi_run there). See docs/faults.md.
    """
    if sys.platform == "win32":
        return
    fd = getattr(getattr(lock, "_context", None), "lock_file_fd", None)
    if isinstance(fd, int):
        os.set_inheritable(fd, True)


def _stderr_is_tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


@contextmanager
def held_locks(
    spec: StepSpec,
    reporter: Reporter,
    record: StepRecord,
    on_wait: Callable[[str], None] | None = None,
    *,
    deadline: float | None = None,
    requests: Sequence[LockRequest] | None = None,
) -> Iterator[None]:
    """Hold every lock the step asked for, in the global order; release them all on every exit path.

    ``on_wait(resource)`` is called each time a lock is not free at once, before the wait starts.
    ``deadline`` (monotonic): when --lock-timeout's wait ends, if it did not start now. ``requests``: what to
    take, if not ``spec.locks`` (execute adds --mem's share of the memory budget)."""
    lock_dir = prepare_lock_dir(spec)
    wanted = spec.locks if requests is None else requests
    plans = plan_locks(wanted, lock_dir.path, spec.start_dir, windows=sys.platform == "win32")
    acquirer = Acquirer(spec, reporter, lock_dir, on_wait=on_wait, deadline=deadline)
    acquired: list[tuple[dict[str, JSON], float]] = []  # (log entry, when it was held)
    try:
        for plan in plans:
            wait_start = record.offset()
            try:
                acquirer.acquire(plan)
            except BaseException:  # a lock timeout or an interrupt: the wait still goes into the log
                for mode, seats, weight in plan.modes:
                    record.add_lock(plan.canonical, mode, seats, wait_start, weight)
                raise
            held_since = record.offset()
            for mode, seats, weight in plan.modes:  # one log entry per mode asked for, as before
                acquired.append(
                    (record.add_lock(plan.canonical, mode, seats, wait_start, weight), held_since)
                )
        waited = time.monotonic() - acquirer.started
        reporter.debug(f"locks held after {waited:.3f} s: " + ", ".join(p.describe() for p in plans))
        yield
    finally:

        def log_held() -> None:  # just before the release: the next holder's wait ends after it
            released = record.offset()
            for entry, held_since in acquired:
                entry["held"] = round(released - held_since, 6)

        acquirer.release_all(log_held)
