"""The machine's memory as the kernel counts it (issue 19): sizes, the budget, what is free now, OOM kills.

A bottom-layer module (docs/README.md): it imports nothing of fi_run's but ``errors`` and ``_record``, and no
``typing`` or ``re`` at run time, so that what needs it (the memory wait of an OOM retry, ``fi-run jobserver
--keep-free-memory``, a memory budget for steps) pays only for itself. Every function that reads the kernel
takes the roots of /proc and /sys (``proc``, ``sys_root``), so that tests can hand it real files of their
own; the defaults are the machine's. Linux only: elsewhere the files are not there and each reading is None
("not known"), which callers take as "no limit known" and "no OOM kill recorded".

Where the numbers come from:

- **The memory cgroup** of this process: its line in /proc/self/cgroup (v1: the hierarchy whose controllers
  include ``memory``; v2: ``0::``), found under the mount point /proc/self/mountinfo gives for that
  hierarchy (a container's mount may start below the real root). Its limit and those of its ancestors count:
  the tightest one binds. v1: ``memory.limit_in_bytes`` (unlimited is 2^63 - 4096); v2: ``memory.max``
  (``max``). A limit of 2^62 or more is no limit.
- **In use** in a limited cgroup: the kubelet's "working set", usage minus the inactive file cache (which
  the kernel reclaims before it OOM-kills anything). v1: ``memory.usage_in_bytes`` and ``memory.stat``'s
  ``total_inactive_file``; v2: ``memory.current`` and ``memory.stat``'s ``inactive_file``.
- **Available now**: the least of /proc/meminfo's ``MemAvailable`` and, for each limited cgroup from this
  process's own up, its limit minus its working set.
- **The budget**: the tightest limit (or ``MemTotal``) minus a reserve, ``reserve_for``.
- **OOM kills**: the cgroup's ``oom_kill`` count (v1 ``memory.oom_control``, v2 ``memory.events``; the kernel
  counts a kill in the victim's cgroup, whatever the OOM's cause) and the machine's (/proc/vmstat's
  ``oom_kill``, Linux >= 4.13). ``oom_kills_since`` compares a mark taken before a command ran with now.
"""

from __future__ import annotations

import os
import sys

from .errors import UsageError

TYPE_CHECKING = False  # not typing's: saves importing typing (~6 ms) where a step needs this module
if TYPE_CHECKING:
    from collections.abc import Callable
    from dataclasses import dataclass
    from typing import Final

    # What run_posix reads before it starts a command (raw, unparsed: the cheap part): the memory cgroup's
    # OOM counter file (None: none found), its content, and /proc/vmstat's content (None: unreadable).
    OomMark = tuple[str | None, bytes | None, bytes | None]
else:
    from ._record import dataclass  # not dataclasses': saves ~10 ms (inspect, re)

KIB: Final = 1024
MIB: Final = 1024 * KIB
GIB: Final = 1024 * MIB
TIB: Final = 1024 * GIB
_UNITS: Final = {"": 1, "K": KIB, "M": MIB, "G": GIB, "T": TIB}
# A size over this is a typo, not memory (1 EiB).
MAX_SIZE: Final = 1 << 60
# A cgroup limit this large is "no limit": v1 shows unlimited as PAGE_COUNTER_MAX pages, 2^63 - 4096.
UNLIMITED: Final = 1 << 62

# The reserve kept out of the budget: 10 % of the memory, as earlyoom (whose default is to act when less than
# 10 % is available: earlyoom(1), -m), at least 256 MiB for what runs beside the steps (ninja, fi_run, the
# shell, the page cache of the files being compiled), at most 2 GiB (on a large machine 10 % would be memory
# no step may use), and never more than half of the memory, so that a small cgroup still has a budget.
RESERVE_FRACTION: Final = 0.10
RESERVE_MIN: Final = 256 * MIB
RESERVE_MAX: Final = 2 * GIB

# How often a wait for memory looks again (an OOM retry's; fi-run jobserver --keep-free-memory's).
POLL_SECONDS: Final = 0.1

SIZE_HELP: Final = "a size: bytes, or a number with K, M, G or T (512M, 1.5G, 700MiB; powers of 1024)"


# --- sizes


def parse_size(where: str, text: str) -> int:
    """``text`` as a number of bytes: ``1.5G``, ``512M``, ``700MiB``, ``2g``, ``1048576``. Raises UsageError.

    K, M, G and T are powers of 1024, with or without ``B`` or ``iB`` and in any case (memory is counted in
    binary units, as ``docker run --memory`` does); a plain number is bytes (``B`` may follow). Fractions
    round down to a whole byte. ``where`` names the option for the message. The signature is an option
    converter's (cli.Option.convert)."""
    body = text.strip().upper()
    binary = body.endswith("IB")  # "MiB": needs its unit letter
    body = body[:-2] if binary else body.removesuffix("B")
    unit = body[-1] if body and body[-1] in "KMGT" else ""
    digits = body[:-1] if unit else body
    size = -1
    if (unit or not binary) and digits and digits.replace(".", "", 1).isdigit() and digits.isascii():
        size = int(float(digits) * _UNITS[unit])
    if size < 0:
        raise UsageError(f"{where} expects {SIZE_HELP}, got {text!r}")
    if size > MAX_SIZE:
        raise UsageError(f"{where} expects at most 1 EiB, got {text!r}")
    return size


def format_size(size: int) -> str:
    """A size for a person: ``1.5 GiB``, ``700 MiB``, ``12 KiB``, ``100 B`` (three significant digits)."""
    for unit, scale in (("TiB", TIB), ("GiB", GIB), ("MiB", MIB), ("KiB", KIB)):
        if abs(size) >= scale:
            value = size / scale
            text = f"{value:.3g}" if value < 1000 else f"{value:.0f}"
            return f"{text} {unit}"
    return f"{size} B"


def size_value(size: int) -> str:
    """A short value that ``parse_size`` reads back as at least ``size``: ``713M``, ``1.6G`` (rounded up).

    Below 1 GiB whole MiB, from 1 GiB tenths of a GiB: what a person would write in an option."""
    if size <= 0:
        return "0"
    if size < GIB:
        return f"{-(-size // MIB)}M"
    tenths = -(-size * 10 // GIB)
    return f"{tenths // 10}G" if tenths % 10 == 0 else f"{tenths // 10}.{tenths % 10}G"


def reserve_for(total: int) -> int:
    """The part of ``total`` bytes the budget keeps back (see RESERVE_FRACTION)."""
    reserve = min(max(int(total * RESERVE_FRACTION), RESERVE_MIN), RESERVE_MAX)
    return min(reserve, total // 2)


# --- reading the kernel's files


def _read(path: str) -> bytes | None:
    """A small kernel file's bytes (one read: /proc and cgroup files are generated whole), None if absent."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:
        return os.read(fd, 1 << 16)
    except OSError:
        return None
    finally:
        os.close(fd)


def _number(data: bytes | None) -> int | None:
    """A file holding one number (or v2's ``max``, returned as None)."""
    if data is None:
        return None
    text = data.strip()
    return int(text) if text.isdigit() else None


def field(data: bytes | None, name: bytes) -> int | None:
    """The number after ``name`` on its own line of a ``key value`` file (memory.stat, memory.events,
    memory.oom_control, /proc/vmstat); /proc/meminfo's ``Name: N kB`` lines are read in bytes."""
    if data is None:
        return None
    if data.startswith(name):
        start = 0
    else:
        at = data.find(b"\n" + name)
        if at < 0:
            return None
        start = at + 1
    end = data.find(b"\n", start)
    words = data[start + len(name) : end if end >= 0 else len(data)].split()
    if not words or not words[0].isdigit():
        return None
    value = int(words[0])
    return value * KIB if words[1:2] == [b"kB"] else value


def oom_kill_count(data: bytes | None) -> int | None:
    """The ``oom_kill N`` line of memory.oom_control (v1), memory.events (v2) or /proc/vmstat."""
    return field(data, b"oom_kill ")


def _unescape(text: str) -> str:
    """mountinfo's octal escapes (``\\040`` for a space, ``\\134`` for a backslash)."""
    if "\\" not in text:
        return text
    out = []
    i = 0
    while i < len(text):
        if text[i] == "\\" and text[i + 1 : i + 4].isdigit():
            out.append(chr(int(text[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _under_sys(sys_root: str, mount_point: str) -> str | None:
    """A mount point below /sys, moved under ``sys_root`` (a test's own tree); None if it cannot be."""
    if mount_point == "/sys" or mount_point.startswith("/sys/"):
        return sys_root + mount_point[4:]
    return mount_point if sys_root == "/sys" else None


@dataclass(frozen=True)
class Cgroup:
    """The memory cgroup of this process and where its files are."""

    version: int  # 1 or 2
    path: str  # as /proc/self/cgroup names it ("/" for the root)
    directory: str  # its directory in the cgroup filesystem
    top: str  # the mount point of that filesystem: the last directory walked up to

    def directories(self) -> list[str]:
        """Its own directory and each parent's, up to the mount point: where limits may be."""
        found = [self.directory]
        here = self.directory
        while here != self.top and len(here) > len(self.top):
            here = os.path.dirname(here)
            found.append(here)
        return found

    @property
    def limit_file(self) -> str:
        return "memory.limit_in_bytes" if self.version == 1 else "memory.max"

    @property
    def usage_file(self) -> str:
        return "memory.usage_in_bytes" if self.version == 1 else "memory.current"

    @property
    def inactive_file_key(self) -> bytes:
        return b"total_inactive_file " if self.version == 1 else b"inactive_file "

    @property
    def oom_file(self) -> str:
        return "memory.oom_control" if self.version == 1 else "memory.events"


def _cgroup_lines(data: bytes) -> tuple[str | None, str | None]:
    """/proc/self/cgroup -> (the v1 memory hierarchy's path, the v2 path); None where there is none."""
    v1 = v2 = None
    for line in data.decode("utf-8", "replace").splitlines():
        number, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if "memory" in controllers.split(","):
            v1 = path
        elif number == "0" and not controllers:
            v2 = path
    return v1, v2


def _mounts(proc: str, sys_root: str) -> list[tuple[str, str, str, str]]:
    """The cgroup mounts in /proc/self/mountinfo: (fstype, super options, root, mount point under sys_root)"""
    data = _read(f"{proc}/self/mountinfo")
    found = []
    for line in (data or b"").decode("utf-8", "replace").splitlines():
        head, sep, tail = line.partition(" - ")
        fields, rest = head.split(), tail.split()
        if not sep or len(fields) < 5 or len(rest) < 3 or rest[0] not in ("cgroup", "cgroup2"):
            continue
        mount_point = _under_sys(sys_root, _unescape(fields[4]))
        if mount_point is not None:
            found.append((rest[0], rest[2], _unescape(fields[3]), mount_point))
    return found


def _directory(path: str, root: str, mount_point: str) -> str:
    """The cgroup ``path`` in a mount of the hierarchy's ``root``: inside it, or its top when the mount
    shows only a part of the hierarchy that does not contain the path (a container without a cgroup
    namespace sees its own cgroup at the top)."""
    if root == "/":
        relative = path
    elif path == root or path.startswith(root + "/"):
        relative = path[len(root) :]
    else:
        relative = ""
    candidate = mount_point + relative.rstrip("/")
    return candidate if os.path.isdir(candidate) else mount_point


def memory_cgroup(proc: str = "/proc", sys_root: str = "/sys") -> Cgroup | None:
    """The memory cgroup this process is in, v1 or v2 (a v1 memory hierarchy wins: on a hybrid machine the
    v2 one has no memory controller); None if it cannot be found (not Linux, no cgroup filesystem)."""
    data = _read(f"{proc}/self/cgroup")
    if data is None:
        return None
    v1, v2 = _cgroup_lines(data)
    mounts = _mounts(proc, sys_root)
    standard = (  # where systemd and docker mount them, for a /proc without mountinfo
        ("cgroup", "memory", "/", f"{sys_root}/fs/cgroup/memory"),
        ("cgroup2", "", "/", f"{sys_root}/fs/cgroup"),
        ("cgroup2", "", "/", f"{sys_root}/fs/cgroup/unified"),
    )
    for fstype, options, root, mount_point in mounts or standard:
        memory = "memory" in options.split(",")
        if fstype == "cgroup" and v1 is not None and memory and os.path.isdir(mount_point):
            return Cgroup(1, v1, _directory(v1, root, mount_point), mount_point)
    for fstype, _options, root, mount_point in mounts or standard:
        if fstype == "cgroup2" and v2 is not None:
            controllers = _read(f"{mount_point}/cgroup.controllers") or b""
            if b"memory" in controllers.split():
                return Cgroup(2, v2, _directory(v2, root, mount_point), mount_point)
    return None


@dataclass(frozen=True)
class Limit:
    """A memory limit and where it was read."""

    size: int  # bytes
    source: str  # "cgroup v2 memory.max of /build.slice" or "MemTotal of /proc/meminfo"
    scope: str = "machine"  # who shares it: the cgroup (its path) or the machine


def memory_limits(proc: str = "/proc", sys_root: str = "/sys") -> list[Limit]:
    """Every limit that applies to this process: each limited memory cgroup from its own up, then MemTotal."""
    limits = []
    cgroup = memory_cgroup(proc, sys_root)
    if cgroup is not None:
        for directory in cgroup.directories():
            size = _number(_read(f"{directory}/{cgroup.limit_file}"))
            if size is not None and size < UNLIMITED:
                name = directory[len(cgroup.top) :] or "/"
                limits.append(Limit(size, f"cgroup v{cgroup.version} {cgroup.limit_file} of {name}", name))
    total = field(_read(f"{proc}/meminfo"), b"MemTotal:")
    if total is not None:
        limits.append(Limit(total, f"MemTotal of {proc}/meminfo"))
    elif proc == "/proc" and sys.platform != "win32":  # macOS, the BSDs: the physical memory, from sysconf
        try:
            limits.append(Limit(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "sysconf"))
        except (OSError, ValueError):
            pass
    return limits


def memory_limit(proc: str = "/proc", sys_root: str = "/sys") -> Limit | None:
    """The tightest limit on this process's memory: its cgroups' (v1, v2) or the machine's MemTotal."""
    limits = memory_limits(proc, sys_root)
    return min(limits, key=lambda limit: limit.size) if limits else None


@dataclass(frozen=True)
class Budget:
    """The memory a build's steps may share: the tightest limit minus the reserve."""

    limit: Limit
    reserve: int

    @property
    def size(self) -> int:
        return max(self.limit.size - self.reserve, 0)

    def describe(self) -> str:
        return (
            f"{format_size(self.size)} ({self.limit.source}, {format_size(self.limit.size)}, "
            f"less a reserve of {format_size(self.reserve)})"
        )


def memory_budget(proc: str = "/proc", sys_root: str = "/sys") -> Budget | None:
    """The machine's memory budget for build steps, None where no limit can be read (not Linux)."""
    limit = memory_limit(proc, sys_root)
    return None if limit is None else Budget(limit, reserve_for(limit.size))


class MemoryProbe:
    """Available memory, read again and again cheaply: the files are found once (fi-run jobserver polls)."""

    def __init__(self, proc: str = "/proc", sys_root: str = "/sys") -> None:
        self.meminfo = f"{proc}/meminfo"
        self.limited: list[tuple[str, int]] = []  # (directory, limit) of each limited cgroup, own first
        self.cgroup = memory_cgroup(proc, sys_root)
        if self.cgroup is not None:
            for directory in self.cgroup.directories():
                size = _number(_read(f"{directory}/{self.cgroup.limit_file}"))
                if size is not None and size < UNLIMITED:
                    self.limited.append((directory, size))

    def available(self) -> int | None:
        """Bytes that can be allocated now without reclaiming more than the inactive file cache: the least
        of MemAvailable and each limited cgroup's limit minus its working set. None if nothing is known."""
        found = field(_read(self.meminfo), b"MemAvailable:")
        cgroup = self.cgroup
        for directory, limit in self.limited:
            assert cgroup is not None
            usage = _number(_read(f"{directory}/{cgroup.usage_file}"))
            if usage is None:
                continue
            inactive = field(_read(f"{directory}/memory.stat"), cgroup.inactive_file_key) or 0
            free = max(limit - max(usage - inactive, 0), 0)
            found = free if found is None else min(found, free)
        return found


def available_memory(proc: str = "/proc", sys_root: str = "/sys") -> int | None:
    """Memory available now, cgroup-aware (MemoryProbe.available); None where it cannot be read."""
    return MemoryProbe(proc, sys_root).available()


def children_peak_rss() -> int | None:
    """Bytes: the largest resident set of any process this one has waited for so far (getrusage's
    RUSAGE_CHILDREN ru_maxrss, which counts their own waited-for children too: a driver's cc1plus), so
    after an attempt the largest peak of the attempts so far. None on Windows, which measures none.

    Only a logged step or a failed attempt asks (step/attempts.py): importing resource costs about 0.2 ms.
    In a program that calls fi_run's cli.main after starting children of its own, theirs count too."""
    if sys.platform == "win32":  # pragma: no cover - Windows only
        return None
    else:  # noqa: RET505 - mypy skips a platform's branch only in an if/else
        import resource

        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        # KiB on Linux (getrusage(2)), bytes on macOS.
        return (peak if sys.platform == "darwin" else peak * 1024) if peak > 0 else None


# The longest wait for memory before an OOM retry, whatever the killed attempt's length; the shortest.
MEMORY_WAIT_MAX: Final = 60.0
MEMORY_WAIT_MIN: Final = 1.0


def memory_wait_bound(attempt_seconds: float) -> float:
    """How long an OOM retry waits at most for memory: about as long as the killed attempt ran, so that
    steps like it that were running then can end and free theirs; within [1, 60] s."""
    return min(max(attempt_seconds, MEMORY_WAIT_MIN), MEMORY_WAIT_MAX)


def wait_for_memory(
    needed: int,
    seconds: float,
    sleep: Callable[[float], None],
    available: Callable[[], int | None],
    poll: float = POLL_SECONDS,
) -> float:
    """Sleep in ``poll`` slices until ``available()`` reports at least ``needed`` bytes, or until
    ``seconds`` of slices have passed; the seconds slept. Counts slices rather than reading a clock, so a
    test's sleep that records instead of sleeping ends it too. Memory that cannot be read ends it at once."""
    slept = 0.0
    for _ in range(max(int(seconds / poll), 0)):
        now = available()
        if now is None or now >= needed:
            break
        sleep(poll)
        slept += poll
    return slept


# --- OOM kills


@dataclass(frozen=True)
class OomCounts:
    """The kernel's OOM-kill counts at one moment."""

    cgroup_file: str | None  # the memory cgroup's counter file (memory.oom_control, memory.events)
    cgroup: int | None  # its oom_kill count (None: no memory cgroup found, or the root)
    system: int | None  # /proc/vmstat's oom_kill (None: unreadable, or a kernel before 4.13)


def oom_counts(proc: str = "/proc", sys_root: str = "/sys") -> OomCounts:
    """The OOM kills the kernel has counted so far in this process's memory cgroup and on the machine."""
    cgroup = memory_cgroup(proc, sys_root)
    path = None if cgroup is None else f"{cgroup.directory}/{cgroup.oom_file}"
    counted = None if path is None else oom_kill_count(_read(path))
    return OomCounts(path if counted is not None else None, counted, oom_kill_count(_read(f"{proc}/vmstat")))


def counts_of(mark: OomMark) -> OomCounts:
    """A mark (what run_posix read before a command started) as counts."""
    path, cgroup, vmstat = mark
    counted = oom_kill_count(cgroup)
    return OomCounts(path if counted is not None else None, counted, oom_kill_count(vmstat))


def counts_now(before: OomCounts, proc: str = "/proc") -> OomCounts:
    """The same counters as ``before``, read again now."""
    path = before.cgroup_file
    counted = None if path is None else oom_kill_count(_read(path))
    return OomCounts(path, counted, oom_kill_count(_read(f"{proc}/vmstat")))


def oom_kills_between(before: OomCounts, after: OomCounts) -> tuple[int, str] | None:
    """How many OOM kills the kernel recorded between two readings, and where: ``(n, "in the memory cgroup
    /sys/fs/cgroup/...")`` or ``(n, "on this machine (/proc/vmstat)")``; ``(0, ...)`` for none; None when
    neither counter could be read both times.

    The cgroup's counter decides when there is one: the kernel counts a kill in the victim's cgroup whatever
    made it (the cgroup's limit or the whole machine running out), so a kill in another build's or
    container's cgroup is not this one's. Without one (the root cgroup, not found), the machine's counter."""
    path = before.cgroup_file
    if (
        path is not None
        and after.cgroup_file == path
        and before.cgroup is not None
        and after.cgroup is not None
    ):
        return after.cgroup - before.cgroup, f"in the memory cgroup {os.path.dirname(path)}"
    if before.system is not None and after.system is not None:
        return after.system - before.system, "on this machine (/proc/vmstat)"
    return None


def oom_kills_since(mark: OomMark | None, proc: str = "/proc") -> tuple[int, str] | None:
    """OOM kills since ``mark`` was read (oom_kills_between); None when not known (no mark: not Linux)."""
    if mark is None:
        return None
    before = counts_of(mark)
    return oom_kills_between(before, counts_now(before, proc))


def oom_mark(proc: str = "/proc", sys_root: str = "/sys") -> OomMark:
    """A mark as run_posix takes one, from the cgroup found the thorough way (mountinfo)."""
    cgroup = memory_cgroup(proc, sys_root)
    path = None if cgroup is None else f"{cgroup.directory}/{cgroup.oom_file}"
    return (path, None if path is None else _read(path), _read(f"{proc}/vmstat"))


# The kernel's own log, where it names each process the OOM killer killed ("Killed process PID (NAME)"):
# readable by root, or by anyone where kernel.dmesg_restrict is 0; absent in many containers.
KMSG: Final = "/dev/kmsg"
# A log record's time is the kernel's clock (local_clock, microseconds since boot), which keeps within a few
# milliseconds of CLOCK_MONOTONIC: a window starting this much earlier cannot miss an attempt's kills.
_KMSG_SLACK: Final = 1.0


def oom_victims(since: float, path: str = KMSG) -> list[int] | None:
    """The pids the OOM killer killed from ``since`` (time.monotonic() seconds) on, oldest first, from the
    kernel's log; None where it cannot be read.

    The cgroup's OOM-kill count says that something of the build was OOM-killed while an attempt ran, not
    what: a step whose command a person killed with SIGKILL at that moment was retried (benchmarks/
    false_oom.py). The log names the victims (issue 19: never retry a person's SIGKILL). Records are lines
    ``PRIORITY,SEQUENCE,MICROSECONDS,FLAGS;MESSAGE``; /dev/kmsg gives one per read, from the oldest it
    still holds (EPIPE: one was overwritten meanwhile, read on), and a plain file of such lines works too.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    floor = int((since - _KMSG_SLACK) * 1_000_000)
    victims: list[int] = []
    rest = b""  # a plain file's line cut by a read
    try:
        while True:
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:  # /dev/kmsg: no newer record
                break
            except BrokenPipeError:
                continue
            except OSError:
                return None
            if not data:
                break
            lines = (rest + data).split(b"\n")
            rest = lines.pop()
            for line in lines:
                header, separator, message = line.partition(b";")
                fields = header.split(b",")
                if not separator or len(fields) < 3 or not fields[2].isdigit() or int(fields[2]) < floor:
                    continue
                at = message.find(b"Killed process ")
                if at >= 0:
                    digits = message[at + len(b"Killed process ") :].split(b" ", 1)[0]
                    if digits.isdigit():
                        victims.append(int(digits))
    finally:
        os.close(fd)
    return victims


# --mem as a resource (issue 19): the budget is cut into this many seats, and a step takes as many as its
# declared peak needs, rounded up, all at once (a weighted --semaphore on the budget). 128: a step is never
# given more than 1/128 of the budget beyond what it declared, and claiming seats through the lock files
# stays cheap (at most 128 slot files to try). Every step sharing a budget must see the same budget: the
# same cgroup, and the same --mem-limit (FI_RUN_MEM_LIMIT in the build's environment does that).
MEMORY_SEATS: Final = 128
# A resource that is a memory budget, not a path (lockdir.canonical_resource): memory://SCOPE.
MEMORY_SCHEME: Final = "memory://"


class MemoryClaim:
    """What a --mem step takes of its budget: the resource, the seats and how many, and a warning if any."""

    __slots__ = ("budget", "resource", "seat", "seats", "warning", "weight")

    def __init__(self, resource: str, budget: int, weight: int, warning: str | None) -> None:
        self.resource = resource
        self.budget = budget
        self.seats = MEMORY_SEATS
        self.seat = -(-budget // MEMORY_SEATS)  # bytes a seat stands for
        self.weight = weight
        self.warning = warning


def memory_claim(size: int, limit: int | None, proc: str = "/proc", sys_root: str = "/sys") -> MemoryClaim:
    """The seats of the memory budget a step that peaks at ``size`` bytes takes. ``limit``: --mem-limit
    (bytes; None or 0: this machine's budget, memory_budget). A step larger than the whole budget takes every
    seat: it runs alone, with a warning, and is never refused. Raises UsageError where no budget is known."""
    found = memory_limit(proc, sys_root)
    scope = found.scope if found is not None else "machine"
    if limit:
        budget, said = limit, f"{format_size(limit)} (--mem-limit)"
    else:
        if found is None:
            raise UsageError(
                "--mem: this machine's memory cannot be read; give the budget with --mem-limit SIZE"
            )
        whole = Budget(found, reserve_for(found.size))
        budget, said = whole.size, whole.describe()
    if budget <= 0:
        raise UsageError(
            f"--mem: the memory budget is {said}: nothing to share; give one with --mem-limit SIZE"
        )
    seat = -(-budget // MEMORY_SEATS)
    weight = max(1, -(-size // seat))
    warning = None
    if weight > MEMORY_SEATS:
        weight = MEMORY_SEATS
        warning = f"--mem {format_size(size)} is more than the memory budget, {said}: the step runs alone"
    return MemoryClaim(f"{MEMORY_SCHEME}{scope}", budget, weight, warning)
