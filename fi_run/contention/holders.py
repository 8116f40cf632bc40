"""Holder checks: what the machine says now about the holder a contention message names (issue 20).

Text cannot tell a lock held by a busy neighbour from one held by this step itself, by a process that died,
or by the operating system; the machine can. These checks run only after a failed attempt whose output the
recognizer called contention, only while that output is live (a step's own attempt, or `fi_run classify
--check-holders`), and they only read: no lock is taken, no file is removed.

- **A pid** the message names: fi_run itself, an ancestor, the step's command or a process that command
  started: self-held. Gone: stale. Alive and foreign: contention. A pid on another host is not looked at.
  On Linux, a live pid written in the lock file by a process that started after the file was written is a
  reused pid (dnf's rpmdb_lock.pid, rpm-software-management/dnf#2273): the real holder is gone.
- **A lock file** the message names: absent now, its holder finished (retry). Present and held (an
  flock/POSIX/OFD lock in /proc/locks or F_GETLK, a process with it open, a live pid written in it; on
  Windows a sharing or lock violation on reading it): contention, and who holds it. Present, held by nobody
  and older than the step: stale (no retry; the verdict names the file).
- **A file Windows itself always holds** (page, swap and hibernation files, DumpStack.log, registry hives,
  System Volume Information): never contention, whatever the wording (rdiff-backup/rdiff-backup#400,
  orlikoski/CyLR#50, FastCopyLab/FastCopy#315).

Limits (docs/retries.md): pids are this machine's and this pid namespace's; a holder in another container
or on another host of a network file system is invisible, and so are flock locks taken on another NFS
client. On macOS and the BSDs only POSIX record locks are seen (F_GETLK), not flock().
"""

from __future__ import annotations

import os
import re
import sys

TYPE_CHECKING = False  # not typing's: `fi-run locks` imports this module, and pays for what it imports
if TYPE_CHECKING:
    from collections.abc import Callable, Collection
    from dataclasses import dataclass
    from typing import Final
else:
    from .._record import dataclass  # not dataclasses': saves ~6 ms (inspect)

__all__ = [
    "LockFile",
    "is_permanent_lock_file",
    "is_pin_file",
    "lock_file_state",
    "open_by",
    "os_held_file",
    "own_process",
    "parent_pid",
    "pidfile_pid",
    "proc_locks",
    "process_started",
    "remote_host",
]

# Files Windows opens at boot and keeps open without sharing until shutdown: no retry ever frees them.
# Registry hives live in System32\config (RegBack holds copies that a running Windows may hold too:
# orlikoski/CyLR#50) and in each profile (NTUSER.DAT, UsrClass.dat), each with its .LOG1/.LOG2 journals.
_OS_HELD: Final = re.compile(
    r"(?i)(?:^|[\\/'\"`\s:(])(?P<name>pagefile\.sys|swapfile\.sys|hiberfil\.sys|dumpstack\.log(?:\.tmp)?"
    r"|ntuser\.dat(?:\.log\d?)?|usrclass\.dat(?:\.log\d?)?)(?=$|[\\/'\"`\s:),.;])"
    r"|\\system32\\config\\(?:regback\\)?(?P<hive>sam|security|software|system|default|components|drivers"
    r"|bbi|elam)(?:\.log\d?)?(?=$|['\"`\s:),;])"
    r"|(?P<svi>\\system volume information\\)"
)
# Dependency pin files that package managers call "lock files": records of versions, never held by anyone.
# A message that names one (npm's EBUSY on package-lock.json) names no lock file to look at.
_PIN_FILES: Final = frozenset(
    {
        "cargo.lock",
        "yarn.lock",
        "poetry.lock",
        "gemfile.lock",
        "composer.lock",
        "flake.lock",
        "pdm.lock",
        "uv.lock",
        "pipfile.lock",
        "mix.lock",
        "pubspec.lock",
        "podfile.lock",
        "package-lock.json",
        "npm-shrinkwrap.json",
        "pnpm-lock.yaml",
        "bun.lock",
        "bun.lockb",
        "deno.lock",
        "packages.lock.json",
        "project.lock.json",
        "conda-lock.yml",
        "gradle.lockfile",
        ".terraform.lock.hcl",
        "go.sum",
    }
)
# Lock files their tools lock with fcntl and never remove: present and held by nobody means free now (the
# holder finished), not stale. apt says so itself: "Be aware that removing the lock file is not a solution
# and may break your system" (pop-os/pop#2292); rpm keeps .rpm.lock (rpm-software-management/dnf5#2186).
_PERMANENT_LOCK_FILES: Final = re.compile(
    r"/var/lib/dpkg/lock(?:-frontend)?$|/var/lib/apt/lists/lock$|/var/cache/apt/archives/lock$|/\.rpm\.lock$"
)
# "by PID 1234 on buildhost" (restic-style remote lockers), "pid 1234@host", "(pid 1234 on host)".
_REMOTE_HOST: Final = re.compile(
    r"(?i)\bpid[ =:#]*\d{1,10}\)?(?: on(?: host)? | ?@ ?)([A-Za-z0-9][\w.-]{0,252})"
)
_NOT_HOSTS: Final = frozenset({"localhost", "this", "the", "line", "port", "cpu", "core", "thread", "device"})
_PIDFILE: Final = re.compile(rb"\A\s*(\d{1,10})\s*(?:\n|\Z)|\bpid\s*[=:]\s*(\d{1,10})\b", re.IGNORECASE)
_PROC_SCAN_LIMIT: Final = 20_000  # processes looked at for an open descriptor on the lock file (Linux)


def os_held_file(text: str) -> str:
    """The file Windows itself always holds that ``text`` names ("pagefile.sys", "SAM"...), or ""."""
    if "." not in text and "\\" not in text:
        return ""
    found = _OS_HELD.search(text)
    if found is None:
        return ""
    if found.group("svi"):
        return "System Volume Information"
    return found.group("name") or found.group("hive") or ""


def is_pin_file(path: str) -> bool:
    """Whether ``path`` is a dependency pin file (Cargo.lock, package-lock.json...), not a lock."""
    return path.replace("\\", "/").rsplit("/", 1)[-1].lower() in _PIN_FILES


def is_permanent_lock_file(path: str) -> bool:
    """Whether ``path`` is a lock file its tool never removes (dpkg's, apt's, rpm's): free when unheld."""
    return _PERMANENT_LOCK_FILES.search(path.replace("\\", "/")) is not None


def remote_host(message: str) -> str:
    """The host a message places its holder pid on, when that is not this machine ("" otherwise)."""
    found = _REMOTE_HOST.search(message)
    if found is None:
        return ""
    host = found.group(1).rstrip(".").lower()
    import socket

    here = {socket.gethostname().lower()}
    here |= {name.split(".", 1)[0] for name in here}
    if host in here or host.split(".", 1)[0] in here or host in _NOT_HOSTS:
        return ""
    return found.group(1).rstrip(".")


def parent_pid(pid: int) -> int | None:
    """The parent of process ``pid`` (Linux /proc), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return int(stat.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def own_process(pid: int, ancestors: Collection[int], commands: Collection[tuple[int, int | None]]) -> str:
    """Why ``pid`` is this step's own process ("" when it is not): fi_run or one of its ancestors, one of the
    step's commands, or a process a command started (its process group, or its parent chain on Linux)."""
    if pid in ancestors:
        return "fi_run itself or one of its ancestors"
    if any(pid == command for command, _ in commands):
        return "the step's own command"
    groups = {group for _, group in commands if group is not None}
    if groups and hasattr(os, "getpgid"):
        try:
            if os.getpgid(pid) in groups:
                return "a process the step's command started (its process group)"
        except OSError:
            pass
    started = {command for command, _ in commands}
    parent = pid
    for _ in range(64):  # Linux: a child still running under the command (before it was reparented)
        parent = parent_pid(parent) or 0
        if parent <= 1:
            break
        if parent in started:
            return "a process the step's command started"
    return ""


def process_started(pid: int) -> float | None:
    """When process ``pid`` started (Unix time), where the platform says (Linux /proc), else None."""
    if sys.platform == "win32":  # pragma: no cover - Windows only
        return None
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            ticks = int(stat.read().rsplit(b")", 1)[1].split()[19])
        with open("/proc/stat", "rb") as system:
            boot = next(int(line.split()[1]) for line in system if line.startswith(b"btime "))
        return float(boot + ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def pidfile_pid(path: str) -> int | None:
    """The pid a lock file records (its whole content a number, or "pid=N"/"PID: N"), if any."""
    try:
        with open(path, "rb") as file:
            head = file.read(256)
    except OSError:
        return None
    found = _PIDFILE.search(head)
    if found is None:
        return None
    pid = int(found.group(1) or found.group(2))
    return pid if 0 < pid < 2**31 else None


@dataclass(frozen=True)
class LockFile:
    """What a lock file looks like now."""

    path: str
    exists: bool
    mtime: float | None = None
    holders: tuple[int, ...] = ()  # processes that hold it (a lock on it, an open descriptor, its pid)
    held_by_unknown: bool = False  # held, by a process fi_run cannot name (Windows, an OFD lock)
    how: str = ""  # how it is held: "flock", "POSIX lock", "open", "its recorded pid", "sharing violation"
    recorded_pid: int | None = None  # the pid written in it, if any
    recorded_pid_reused: bool = False  # that pid is alive but started after the file was last written

    @property
    def held(self) -> bool:
        return bool(self.holders) or self.held_by_unknown


def proc_locks() -> dict[tuple[int, int, int], list[tuple[int, str]]]:
    """Linux: every lock /proc/locks lists, read once: (major, minor, inode) -> [(pid, kind)], where kind is
    "flock", "POSIX lock" or "OFD lock" and an OFD lock's pid is -1. Waiters ("->" lines) are not holders.
    Empty where there is no /proc/locks. (`fi-run locks` looks at many lock files at once.)"""
    table: dict[tuple[int, int, int], list[tuple[int, str]]] = {}
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as locks:
            for line in locks:
                parts = line.split()
                if len(parts) < 6 or parts[1] == "->":
                    continue
                try:
                    major, minor, inode = parts[5].split(":")
                    key = (int(major, 16), int(minor, 16), int(inode))
                    pid = int(parts[4])
                except ValueError:
                    continue
                kind = {"FLOCK": "flock", "POSIX": "POSIX lock", "OFDLCK": "OFD lock"}.get(parts[1], parts[1])
                table.setdefault(key, []).append((pid, kind))
    except OSError:
        pass
    return table


def _proc_locks(dev: int, ino: int) -> tuple[list[int], str, bool]:
    """Linux: the pids /proc/locks says hold a lock on (dev, ino), the lock kind, and whether a holder has
    no pid (an OFD lock shows -1)."""
    if sys.platform == "win32":  # pragma: no cover - Windows only
        return [], "", False
    pids: list[int] = []
    kind = ""
    unknown = False
    for pid, found in proc_locks().get((os.major(dev), os.minor(dev), ino), []):
        kind = found
        if pid > 0:
            pids.append(pid)
        else:
            unknown = True
    return pids, kind, unknown


def _fcntl_holder(path: str) -> int | None:
    """POSIX: the pid F_GETLK reports for a write lock over the whole file (None: no POSIX lock on it)."""
    if sys.platform == "win32":  # pragma: no cover - Windows only
        return None
    import fcntl
    import struct

    if sys.platform.startswith("linux"):
        layout = "hhqqi"  # l_type, l_whence, l_start, l_len, l_pid (native alignment)
    elif sys.platform == "darwin" or "bsd" in sys.platform:  # pragma: no cover - not run here
        layout = "qqihh"  # l_start, l_len, l_pid, l_type, l_whence
    else:  # pragma: no cover - other platforms: not known
        return None
    size = struct.calcsize(layout) + 8  # room for l_sysid and trailing padding
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    try:
        if layout == "hhqqi":
            request = struct.pack(layout, fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
        else:  # pragma: no cover - not run here
            request = struct.pack(layout, 0, 0, 0, fcntl.F_WRLCK, os.SEEK_SET)
        answer = fcntl.fcntl(fd, fcntl.F_GETLK, request.ljust(size, b"\0"))
    except OSError:
        return None
    finally:
        os.close(fd)
    fields = struct.unpack(layout, answer[: struct.calcsize(layout)])
    kind, pid = (fields[0], fields[4]) if layout == "hhqqi" else (fields[3], fields[2])
    if kind == fcntl.F_UNLCK:
        return None
    return pid if pid > 0 else -1


def open_by(path: str, limit: int = _PROC_SCAN_LIMIT) -> list[int]:
    """Linux: the processes (of those this user may inspect) with a descriptor open on ``path``."""
    try:
        target = os.path.realpath(path)
        entries = os.scandir("/proc")
    except OSError:
        return []
    pids: list[int] = []
    me = os.getpid()
    with entries:
        for count, entry in enumerate(entries):
            if count >= limit:
                break
            if not entry.name.isdigit() or int(entry.name) == me:
                continue
            try:
                fds = os.scandir(f"/proc/{entry.name}/fd")
            except OSError:
                continue  # another user's process, or gone
            with fds:
                for fd in fds:
                    try:
                        link = os.readlink(fd.path)
                    except OSError:
                        continue
                    if link == target:
                        pids.append(int(entry.name))
                        break
    return pids


def _windows_held(path: str) -> str:  # pragma: no cover - Windows only
    """Windows: "sharing violation" if another process has the file open without sharing, "lock violation"
    if it holds a byte-range lock on its first byte, else ""."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        return "sharing violation" if getattr(exc, "winerror", None) == 32 else ""
    try:
        os.read(fd, 1)
    except OSError as exc:
        return "lock violation" if getattr(exc, "winerror", None) == 33 else ""
    finally:
        os.close(fd)
    return ""


def lock_file_state(path: str, *, alive: Callable[[int], bool]) -> LockFile:
    """Whether the lock file at ``path`` exists and who, if anyone, holds it now."""
    try:
        info = os.stat(path)
    except OSError:
        return LockFile(path, exists=False)
    import stat as _stat

    if not _stat.S_ISREG(info.st_mode):
        return LockFile(path, exists=True, mtime=info.st_mtime)
    holders: list[int] = []
    how = ""
    unknown = False
    if sys.platform.startswith("linux"):
        pids, how, unknown = _proc_locks(info.st_dev, info.st_ino)
        holders.extend(pids)
    if not holders and not unknown and sys.platform != "win32":
        pid = _fcntl_holder(path)
        if pid is not None:
            how = "POSIX lock"
            if pid > 0:
                holders.append(pid)
            else:
                unknown = True
    if sys.platform == "win32":  # pragma: no cover - Windows only
        how = _windows_held(path)
        unknown = bool(how)
    recorded = pidfile_pid(path)
    reused = False
    if recorded is not None and recorded not in holders and alive(recorded):
        started = process_started(recorded)
        if started is not None and started > info.st_mtime + 1.0:
            reused = True  # it started after the file was written: not the process that wrote it
        else:
            holders.append(recorded)
            how = how or "its recorded pid"
    if not holders and not unknown and sys.platform.startswith("linux"):
        holders.extend(open_by(path))
        if holders:
            how = "open"
    return LockFile(
        path,
        exists=True,
        mtime=info.st_mtime,
        holders=tuple(dict.fromkeys(holders)),
        held_by_unknown=unknown and not holders,
        how=how,
        recorded_pid=recorded,
        recorded_pid_reused=reused,
    )
