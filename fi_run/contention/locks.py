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

from ..errors import LockTimeoutError, UsageError

TYPE_CHECKING = False  # saves nothing: only a locked step imports this, and filelock imports typing
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from typing import Final

    from filelock import BaseFileLock

    from ..messages import Reporter
    from ..observe.schema import JSON
    from ..observe.steplog import StepRecord
    from ..step.spec import LockRequest, StepSpec
    from .doorbell import Waiter

# A step that has waited this long says once what it waits for, when a person can see it.
WAIT_NOTICE_SECONDS: Final = 2.0
MAX_SHARED_SLOTS: Final = 4096
_GATE: Final = "gate.lock"
_HOLDER_SIZE: Final = 512  # bytes of "pid\ncommand", padded: every holder rewrites the whole record
_WAITERS: Final = "waiters"
_PROBE_MARKER: Final = ".locks-work"


def canonical_resource(resource: str, start_dir: str, *, windows: bool) -> str:
    """One name per resource, whatever the spelling: relative, absolute, through a symlink, with '..'.

    realpath resolves symlinks in the part of the path that exists, so a resource that does not exist yet
    (a venv about to be created) still maps to the same name as it will once it exists. Windows paths are
    case-insensitive: normcase folds them.
    """
    path = os.path.realpath(os.path.join(start_dir, resource))
    if windows:
        path = os.path.normcase(path)
    return path


def resource_dir_name(canonical: str) -> str:
    """A directory name for the resource: readable (its base name) and unique (a hash of the whole path)."""
    import hashlib

    digest = hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()[:20]
    base = os.path.basename(canonical.rstrip("/\\")) or "root"
    readable = "".join(c if c.isalnum() or c in "._-" else "_" for c in base)[:40]
    return f"{readable}-{digest}"


def default_lock_dir(*, windows: bool, environ: dict[str, str] | os._Environ[str]) -> str:
    """Where lock files live unless --lock-dir / FI_RUN_LOCK_DIR says otherwise.

    POSIX: /tmp/fi_run-locks-<uid>, not $TMPDIR or $XDG_RUNTIME_DIR: every build of one user must find the
    same directory, and those variables differ between a terminal, ssh, CI agents and macOS sessions.
    Windows: %LOCALAPPDATA%\\fi_run\\locks, which is per user and stable.
    """
    if windows or sys.platform == "win32":
        base = environ.get("LOCALAPPDATA") or environ.get("TEMP") or environ.get("TMP") or "."
        return os.path.join(base, "fi_run", "locks")
    return f"/tmp/fi_run-locks-{os.getuid()}"  # noqa: S108 - checked for owner and mode below


def _check_private_dir(path: str) -> None:
    """The default directory sits in world-writable /tmp: refuse one another user made or could change."""
    import stat

    if sys.platform == "win32":  # pragma: no cover - the Windows default is under the user's own profile
        return
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise UsageError(f"lock directory {path!r} is not a directory (or is a symlink); set --lock-dir")
    if st.st_uid != os.getuid():
        raise UsageError(f"lock directory {path!r} belongs to uid {st.st_uid}, not to you; set --lock-dir")
    if st.st_mode & 0o022:
        raise UsageError(f"lock directory {path!r} is writable by others; fix its mode or set --lock-dir")


def _probe(lock_dir: str) -> None:
    """Refuse a lock directory whose filesystem accepts locks without enforcing them.

    Some network and FUSE filesystems answer flock() with success and lock nothing: fi_run would then run
    everything at once and look like it works. Two locks on one file from one process must exclude each
    other; that is checked once per directory and remembered in a marker file.
    """
    marker = os.path.join(lock_dir, _PROBE_MARKER)
    if os.path.exists(marker):
        return
    from filelock import FileLock, Timeout

    probe = os.path.join(lock_dir, f".probe-{os.getpid()}.lock")  # private: concurrent first steps race
    first, second = FileLock(probe), FileLock(probe)
    try:
        first.acquire(blocking=False)
        try:
            second.acquire(blocking=False)
        except Timeout:
            pass
        else:
            second.release()
            raise UsageError(
                f"file locks do not work in lock directory {lock_dir!r} "
                "(a second lock on one file succeeded); put --lock-dir on a local filesystem"
            )
        finally:
            first.release()
    except (OSError, NotImplementedError) as exc:  # filelock's Timeout is an OSError too
        raise UsageError(f"cannot use file locks in lock directory {lock_dir!r}: {exc}") from None
    try:
        os.unlink(probe)
    except OSError:
        pass
    with open(marker, "w", encoding="utf-8") as f:
        f.write("flock excludes a second open file description here\n")


def prepare_lock_dir(spec: StepSpec) -> str:
    windows = os.name == "nt"
    lock_dir = spec.lock_dir or default_lock_dir(windows=windows, environ=os.environ)
    try:
        if spec.lock_dir is None and not windows:
            try:
                os.mkdir(lock_dir, 0o700)
            except FileExistsError:
                pass
            _check_private_dir(lock_dir)
        else:
            os.makedirs(lock_dir, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create lock directory {lock_dir!r}: {exc.strerror or exc}") from None
    _probe(lock_dir)
    return lock_dir


class _Plan:
    __slots__ = ("canonical", "directory", "mode", "slots")

    def __init__(self, canonical: str, directory: str, mode: str, slots: int) -> None:
        self.canonical = canonical
        self.directory = directory
        self.mode = mode
        self.slots = slots


def plan_locks(
    requests: Sequence[LockRequest], lock_dir: str, start_dir: str, *, windows: bool
) -> list[_Plan]:
    """Canonical, de-duplicated and globally ordered: the order every fi_run process takes locks in.

    The same resource asked for twice: exclusive covers shared and counted; two counts keep the smaller.
    """
    by_resource: dict[str, dict[str, int]] = {}
    for request in requests:
        modes = by_resource.setdefault(canonical_resource(request.resource, start_dir, windows=windows), {})
        modes[request.mode] = min(modes.get(request.mode, request.slots), request.slots)
    plans = []
    for canonical in sorted(by_resource):
        modes = by_resource[canonical]
        directory = os.path.join(lock_dir, resource_dir_name(canonical))
        if "exclusive" in modes:
            plans.append(_Plan(canonical, directory, "exclusive", 1))
            continue
        for mode in ("semaphore", "shared"):  # a fixed order within one resource, too
            if mode in modes:
                plans.append(_Plan(canonical, directory, mode, modes[mode]))
    return plans


def _holder_of(lock_path: str) -> str:
    """'pid N: command' of whoever last took the lock, if that process still runs; else ''."""
    try:
        with open(lock_path + ".holder", encoding="utf-8", errors="replace") as f:
            pid_text, _, command = f.read().partition("\n")
        pid = int(pid_text)
    except (OSError, ValueError):
        return ""
    if os.name != "nt":
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return ""
        except OSError:
            pass
    command = command.strip()
    return f"pid {pid}: {command}" if command else f"pid {pid}"


class _Acquirer:
    """Takes the planned locks one by one, waiting with the doorbell, within one deadline."""

    def __init__(
        self, spec: StepSpec, reporter: Reporter, on_wait: Callable[[str], None] | None = None
    ) -> None:
        self.spec = spec
        self.reporter = reporter
        self.on_wait = on_wait  # told the resource when a lock is not free at once (lending, jobserver.py)
        # (lock, resource directory, is the gate), in acquisition order
        self.held: list[tuple[BaseFileLock, str, bool]] = []
        self._locks: dict[str, BaseFileLock] = {}
        self.deadline = None if spec.lock_timeout is None else time.monotonic() + spec.lock_timeout
        self.started = time.monotonic()
        self.noticed = False
        self.notice_wanted = reporter.verbosity >= 2 or _stderr_is_tty()
        text = f"{os.getpid()}\n{' '.join(spec.command)}".encode("utf-8", "replace")[: _HOLDER_SIZE - 1]
        self.holder_text = text.ljust(_HOLDER_SIZE - 1) + b"\n"

    def _write_holder(self, lock_path: str) -> None:
        # This sits between taking the lock and starting the command, so it is kept to one write of a
        # fixed-size record: no O_TRUNC (on ext4 truncating a file that has data frees its blocks in the
        # journal, 0.3 ms alone and several under load) and no text file object.
        try:
            fd = os.open(lock_path + ".holder", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            return  # only ever used for messages
        try:
            os.write(fd, self.holder_text)  # at offset 0: the descriptor is new
        except OSError:
            pass
        finally:
            os.close(fd)

    def _try(self, path: str, directory: str, *, holder: bool = True) -> bool:
        from filelock import FileLock, Timeout

        lock = self._locks.get(path)
        if lock is None:  # one object per file: constructing a FileLock costs about a third of a try
            lock = self._locks[path] = FileLock(path)
        try:
            lock.acquire(blocking=False)
        except Timeout:
            return False
        self.held.append((lock, directory, path.endswith(_GATE)))
        if holder:
            self._write_holder(path)
        return True

    def _wait(self, attempt: Callable[[], str | None], plan: _Plan, blocked_on: Callable[[], str]) -> None:
        """Call ``attempt`` until it succeeds (returns None), sleeping on the resource's doorbell between
        tries as the kind of waiter it names (see doorbell.py)."""
        kind = attempt()
        if kind is None:
            return
        if self.on_wait is not None:
            self.on_wait(plan.canonical)
        from .doorbell import Waiter

        with Waiter(os.path.join(plan.directory, _WAITERS), kind) as waiter:
            # Registered before the next try: a release between the failed try and the registration
            # would otherwise ring nobody.
            while (kind := attempt()) is not None:
                waiter.set_kind(kind)
                self._pause(waiter, plan, blocked_on)

    def _take(self, path: str, plan: _Plan, kind: str) -> None:
        self._wait(lambda: None if self._try(path, plan.directory) else kind, plan, lambda: path)

    def _pause(self, waiter: Waiter, plan: _Plan, blocked_on: Callable[[], str]) -> None:
        now = time.monotonic()
        what = (
            f"{'an exclusive' if plan.mode == 'exclusive' else 'a ' + plan.mode} lock on {plan.canonical!r}"
        )
        if self.deadline is not None and now >= self.deadline:
            holder = _holder_of(blocked_on())
            on_whom = f" (held by {holder})" if holder else ""
            raise LockTimeoutError(f"gave up after {self.spec.lock_timeout:g} s waiting for {what}{on_whom}")
        if not self.noticed and self.notice_wanted and now - self.started >= WAIT_NOTICE_SECONDS:
            self.noticed = True
            holder = _holder_of(blocked_on())
            self.reporter.info(f"waiting for {what}" + (f", held by {holder}" if holder else ""))
        waiter.wait(WAIT_NOTICE_SECONDS if self.deadline is None else self.deadline - now)

    def acquire(self, plan: _Plan) -> None:
        try:
            os.makedirs(plan.directory, exist_ok=True)
        except OSError as exc:
            raise UsageError(
                f"cannot create lock directory {plan.directory!r}: {exc.strerror or exc}"
            ) from None
        gate = os.path.join(plan.directory, _GATE)
        if plan.mode == "exclusive":
            self._take(gate, plan, "gate")
            for name in sorted(os.listdir(plan.directory)):
                if name.endswith(".lock") and name != _GATE:
                    self._take(os.path.join(plan.directory, name), plan, "drain")
            return
        prefix = "shared" if plan.mode == "shared" else "sem"
        count = MAX_SHARED_SLOTS if plan.mode == "shared" else plan.slots
        blocked = [gate]

        def claim_slot() -> str | None:
            if not self._try(gate, plan.directory, holder=False):
                blocked[0] = gate
                return "gate"
            try:
                for index in range(count):
                    slot = os.path.join(plan.directory, f"{prefix}-{index}.lock")
                    if self._try(slot, plan.directory):
                        return None
                    blocked[0] = slot
                return "slot"
            finally:
                # Let go of the gate at once (it sits below the slot just claimed, if any, in self.held)
                # and let the next claimer in.
                gate_index = next(
                    i for i, (_l, _d, is_gate) in enumerate(self.held) if is_gate and _d == plan.directory
                )
                lock = self.held.pop(gate_index)[0]
                lock.release()
                from .doorbell import ring

                ring(os.path.join(plan.directory, _WAITERS), "gate")

        self._wait(claim_slot, plan, lambda: blocked[0])

    def release_all(self, on_release: Callable[[], None]) -> None:
        """Call ``on_release``, release every lock, then wake the waiters that can go next."""
        on_release()
        released: dict[str, set[bool]] = {}  # resource directory -> {released its gate?, ...}
        while self.held:
            lock, directory, is_gate = self.held.pop()
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


def _stderr_is_tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


@contextmanager
def held_locks(
    spec: StepSpec, reporter: Reporter, record: StepRecord, on_wait: Callable[[str], None] | None = None
) -> Iterator[None]:
    """Hold every lock the step asked for, in the global order; release them all on every exit path.

    ``on_wait(resource)`` is called each time a lock is not free at once, before the wait starts."""
    import filelock  # noqa: F401 - imported before any wait starts, so that logged waits are only waits

    from . import doorbell  # noqa: F401

    lock_dir = prepare_lock_dir(spec)
    plans = plan_locks(spec.locks, lock_dir, spec.start_dir, windows=os.name == "nt")
    acquirer = _Acquirer(spec, reporter, on_wait)
    acquired: list[tuple[dict[str, JSON], float]] = []  # (log entry, when it was held)
    try:
        for plan in plans:
            wait_start = record.offset()
            try:
                acquirer.acquire(plan)
            except BaseException:  # a lock timeout or an interrupt: the wait still goes into the log
                record.add_lock(plan.canonical, plan.mode, plan.slots, wait_start)
                raise
            acquired.append(
                (record.add_lock(plan.canonical, plan.mode, plan.slots, wait_start), record.offset())
            )
        waited = time.monotonic() - acquirer.started
        reporter.debug(
            f"locks held after {waited:.3f} s: " + ", ".join(f"{p.mode} {p.canonical}" for p in plans)
        )
        yield
    finally:

        def log_held() -> None:  # just before the release: the next holder's wait ends after it
            released = record.offset()
            for entry, held_since in acquired:
                entry["held"] = round(released - held_since, 6)

        acquirer.release_all(log_held)
