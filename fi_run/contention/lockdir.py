"""The lock directory: where lock files live, one name per resource, and the rules that make it safe to share.

locks.py is the locking protocol; this module decides *where* its files are and refuses places where they
could hurt someone:

- Every file fi_run opens in a lock directory is opened with O_NOFOLLOW (or checked with lstat first): a
  symlink planted there (``gate.lock.holder -> /victim/file``) is refused, never written through.
- A resource directory must be a real directory owned by the user or by root, or, in a lock directory shared
  by several users (one others may write to), a sticky one: in a sticky directory nobody but a file's owner
  can remove or rename it, so nobody can swap a lock file for a symlink under its holder.
- In a shared lock directory, resource directories and lock files are made writable by the same users as
  the lock directory itself, whatever each user's umask, so the second user can lock what the first created.
- Errors that are about the place and not about fi_run (EACCES, ENOSPC, EDQUOT, ELOOP...) become one line
  naming the path and exit 2, not an internal error.

See docs/faults.md for what this guarantees and what it does not.
"""

from __future__ import annotations

import os
import stat
import sys

from ..errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Final

    from ..records import LockRequest, StepSpec

    # What a step takes of one resource: (mode, seats, weight) for each mode (see merge_requests).
    Modes = tuple[tuple[str, int, int], ...]

PROBE_MARKER: Final = ".locks-work"
NOFOLLOW: Final = getattr(os, "O_NOFOLLOW", 0)


def is_remote(resource: str) -> bool:
    """A resource on a Redis server, shared between machines (``redis://...``, contention/remote.py), not a
    path. rediss:// (TLS) is recognised only to be refused with a clear line."""
    return resource[:9].lower().startswith(("redis://", "rediss://"))


def resource_identity(canonical: str) -> str:
    """The resource whoever names it: a redis:// resource's canonical name without the URL's user (two users
    of one server share its resources). The global order sorts by this."""
    if not canonical.startswith("redis://"):
        return canonical
    rest = canonical[len("redis://") :]
    at, slash = rest.find("@"), rest.find("/")
    return "redis://" + rest[at + 1 :] if 0 <= at < slash else canonical


def canonical_resource(resource: str, start_dir: str, *, windows: bool) -> str:
    """One name per resource, whatever the spelling: relative, absolute, through a symlink, with '..'.

    realpath resolves symlinks in the part of the path that exists, so a resource that does not exist yet
    (a venv about to be created) still maps to the same name as it will once it exists. Windows paths are
    case-insensitive: normcase folds them. A redis:// resource is named ``redis://[user@]host:port/db/NAME``
    (redis_url.py, imported only for one).
    """
    if is_remote(resource):
        from .redis_url import canonical_url

        return canonical_url(resource)
    if resource.startswith("memory://"):  # a memory budget (memory.MEMORY_SCHEME), named by its scope already
        return resource
    path = os.path.realpath(os.path.join(start_dir, resource))
    if windows:
        path = os.path.normcase(path)
    return path


def merge_requests(
    requests: Sequence[LockRequest], start_dir: str, *, windows: bool
) -> list[tuple[str, Modes]]:
    """(canonical resource, its modes) for every resource asked for: de-duplicated and in the one global
    order every fi_run process takes locks in (sorted canonical paths), so {A, B} and {B, A} cannot deadlock.
    redis:// resources are in the same order (by resource_identity: the same on every machine), so a step's
    local and remote resources cannot deadlock with another's either (issue 21).

    One entry per resource, whatever was asked of it: exclusive covers shared and counted; two counts keep
    the smaller; a counted and a shared request are claimed together, in one pass through the resource's gate
    (taken one after the other they could deadlock with an exclusive request that queued between them:
    issue 22). Modes are (mode, seats, weight) triples: ("exclusive", 1, 1), or ("semaphore", N, K) and/or
    ("shared", 1, 1). Two counted requests keep the smaller N and the larger K; a K over N is N: the step
    takes every seat and runs alone (issue 19: a step larger than the whole budget is never refused).
    """
    by_resource: dict[str, dict[str, tuple[int, int]]] = {}
    names: dict[str, str] = {}  # identity -> canonical name (they differ only for a redis:// URL's user)
    for request in requests:
        canonical = canonical_resource(request.resource, start_dir, windows=windows)
        identity = resource_identity(canonical)
        if names.setdefault(identity, canonical) != canonical:
            raise UsageError(f"{names[identity]!r} and {canonical!r} are one resource named with two users")
        modes = by_resource.setdefault(identity, {})
        seats, weight = modes.get(request.mode, (request.slots, request.weight))
        modes[request.mode] = (min(seats, request.slots), max(weight, request.weight))
    merged: list[tuple[str, Modes]] = []
    for identity in sorted(by_resource):
        modes = by_resource[identity]
        canonical = names[identity]
        if "exclusive" in modes:
            merged.append((canonical, (("exclusive", 1, 1),)))
        else:  # a fixed order within one resource, too
            kept = [(m, *modes[m]) for m in ("semaphore", "shared") if m in modes]
            merged.append((canonical, tuple((m, n, min(k, n)) for m, n, k in kept)))
    return merged


def describe_modes(canonical: str, modes: Modes) -> str:
    """'an exclusive lock on R', 'a semaphore slot (of 2) and a shared lock on R', '3 semaphore slots (of 8)
    on R': for messages."""
    if canonical.startswith("memory://"):  # --mem: seats of the memory budget (memory.memory_claim)
        weight, seats = modes[0][2], modes[0][1]
        return f"{weight} of the {seats} seats of the memory budget {canonical!r}"
    names = {"exclusive": "an exclusive lock", "shared": "a shared lock"}
    parts = [
        names.get(
            mode,
            f"a semaphore slot (of {seats})" if weight == 1 else f"{weight} semaphore slots (of {seats})",
        )
        for mode, seats, weight in modes
    ]
    return f"{' and '.join(parts)} on {canonical!r}"


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


def check_private_dir(path: str) -> None:
    """The default directory sits in world-writable /tmp: refuse one another user made or could change."""
    if sys.platform == "win32":  # pragma: no cover - the Windows default is under the user's own profile
        return
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise UsageError(f"lock directory {path!r} is not a directory (or is a symlink); set --lock-dir")
    if st.st_uid != os.getuid():
        raise UsageError(f"lock directory {path!r} belongs to uid {st.st_uid}, not to you; set --lock-dir")
    if st.st_mode & 0o022:
        raise UsageError(f"lock directory {path!r} is writable by others; fix its mode or set --lock-dir")


def place_error(what: str, path: str, exc: OSError) -> UsageError:
    """An OSError about a place in the lock directory, as one line naming it (exit 2).

    Permissions, a full disk or quota, a planted symlink (ELOOP): the user can fix each of these, and none
    is a bug in fi_run, so none is an internal error.
    """
    import errno

    reason = exc.strerror or str(exc)
    if exc.errno == errno.ELOOP:
        reason = "it is a symlink, which fi_run refuses in a lock directory"
    elif exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        reason += " (no space, inodes or quota left there)"
    return UsageError(f"cannot {what} {path!r}: {reason}; fix it or set --lock-dir")


def _marker_present(marker: str) -> bool:
    try:
        st = os.lstat(marker)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise place_error("use lock directory marker", marker, exc) from None
    if not stat.S_ISREG(st.st_mode):  # a symlink (dangling or not) would make fi_run create a file elsewhere
        raise UsageError(f"{marker!r} is not a regular file (a symlink?); remove it or set --lock-dir")
    return True


def _probe(lock_dir: str) -> None:
    """Refuse a lock directory whose filesystem accepts locks without enforcing them.

    Some network and FUSE filesystems answer flock() with success and lock nothing: fi_run would then run
    everything at once and look like it works. Two locks on one file from one process must exclude each
    other; that is checked once per directory and remembered in a marker file.
    """
    marker = os.path.join(lock_dir, PROBE_MARKER)
    if _marker_present(marker):
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
    try:
        # O_EXCL and O_NOFOLLOW: never through a symlink planted since the lstat above.
        fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW, 0o644)
    except FileExistsError:
        _marker_present(marker)  # a concurrent first step wrote it; still refuse a symlink
        return
    except OSError as exc:
        raise place_error("write the lock directory marker", marker, exc) from None
    try:
        os.write(fd, b"flock excludes a second open file description here\n")
    finally:
        os.close(fd)


class LockDir:
    """A prepared lock directory: its path, and whether several users share it (others may write to it)."""

    __slots__ = ("dir_mode", "file_mode", "path", "shared")

    def __init__(self, path: str, mode: int) -> None:
        self.path = path
        # Shared: group or others may write here, so fi_run makes what it creates writable by them too.
        self.shared = sys.platform != "win32" and bool(mode & 0o022)
        # Resource directories: the lock directory's permissions, plus the sticky bit when shared.
        self.dir_mode = (mode & 0o777) | 0o700 | (stat.S_ISVTX if self.shared else 0)
        # Lock files: readable by whoever may read the directory, writable by whoever may write to it.
        self.file_mode = 0o600 | (mode & 0o044) | (mode & 0o022)


def prepare_lock_dir(spec: StepSpec) -> LockDir:
    windows = sys.platform == "win32"
    lock_dir = spec.lock_dir or default_lock_dir(windows=windows, environ=os.environ)
    try:
        if spec.lock_dir is None and not windows:
            try:
                os.mkdir(lock_dir, 0o700)
            except FileExistsError:
                pass
            check_private_dir(lock_dir)
        else:
            os.makedirs(lock_dir, exist_ok=True)
        mode = os.stat(lock_dir).st_mode
    except OSError as exc:
        raise UsageError(f"cannot create lock directory {lock_dir!r}: {exc.strerror or exc}") from None
    _probe(lock_dir)
    return LockDir(lock_dir, mode)


def _check_resource_dir(path: str, lock_dir: LockDir) -> None:
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise UsageError(f"{path!r} in the lock directory is not a directory (a symlink?); remove it")
    if sys.platform == "win32":  # pragma: no cover - no owners to compare; the directory is the user's own
        return
    if st.st_uid in (os.getuid(), 0):
        return
    if lock_dir.shared and st.st_mode & stat.S_ISVTX:
        return  # another user of a shared directory made it; sticky, so nobody can swap our files in it
    raise UsageError(
        f"lock directory {path!r} belongs to uid {st.st_uid} and is not sticky: its owner could replace the "
        "lock files in it; remove it or set --lock-dir"
    )


def _make_dir(path: str, lock_dir: LockDir) -> bool:
    """Make (or check) a directory in the lock directory; True if this call made it."""
    try:
        os.mkdir(path, lock_dir.dir_mode)
    except FileExistsError:
        made = False
    else:
        made = True
        if lock_dir.shared:
            os.chmod(path, lock_dir.dir_mode)  # mkdir's mode passed through the umask
    _check_resource_dir(path, lock_dir)
    return made


# In a resource directory, the resource's real path: its name says only the base name and a hash, and
# `fi-run locks` shows the path. Written once, by whoever makes the directory.
RESOURCE_NAME: Final = "resource"


def prepare_resource_dir(directory: str, waiters: str, lock_dir: LockDir, canonical: str = "") -> None:
    """Create (or check) a resource directory and its waiters directory: real, safe directories. A new
    resource directory gets the resource's path (``canonical``) written into it."""
    try:
        if _make_dir(directory, lock_dir) and canonical:
            fd = os.open(
                os.path.join(directory, RESOURCE_NAME),
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW,
                lock_dir.file_mode,
            )
            try:
                os.write(fd, os.fsencode(canonical) + b"\n")
            finally:
                os.close(fd)
        _make_dir(waiters, lock_dir)
    except OSError as exc:
        raise place_error("create lock directory", directory, exc) from None


def ensure_lock_file(path: str, lock_dir: LockDir) -> None:
    """Create a lock file before filelock opens it, in a shared directory: writable by the directory's other
    users whatever the umask, and never a symlink someone planted (lstat after an O_EXCL create failed)."""
    if sys.platform == "win32":  # pragma: no cover - a lock directory is never shared there (LockDir.shared)
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW, lock_dir.file_mode)
    except FileExistsError:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise place_error("use lock file", path, exc) from None
        if not stat.S_ISREG(st.st_mode):
            raise UsageError(f"lock file {path!r} is not a regular file (a symlink?); remove it") from None
        return
    except OSError as exc:
        raise place_error("create lock file", path, exc) from None
    try:
        os.fchmod(fd, lock_dir.file_mode)
    finally:
        os.close(fd)
