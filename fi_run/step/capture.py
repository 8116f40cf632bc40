"""The command's standard streams: fi_run's own closed ones at start, and holding the command's output.

The output is held for --quiet-on-success, and so that a failed attempt can be examined.

The child writes straight into an unlinked temporary file (no pipe, no reader thread, no size limit in
memory). Under ninja stdout and stderr are one pipe; then both of the child's descriptors point at ONE
temporary file through one open file description, so the shared offset keeps lines in the order the
child wrote them. When stdout and stderr go to different places (`fi_run ... > out.txt`), each gets its
own file and is replayed to its own descriptor, so nothing lands where it did not belong.

A descriptor that is a terminal is not captured, unless --quiet-on-success asks for it (as chronic does):
the command's output stays live and keeps its colours (a person watching, or ninja's console pool). Only
captured output can be examined for contention.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # not typing's: saves importing typing (~6 ms) per unlocked step (docs/performance.md)
if TYPE_CHECKING:
    from typing import Final

# How much of a failed attempt's output is read for the contention recognizer: the end of it, where tools
# print the error that stopped them. The recognizer looks at its last 64 K characters (TAIL_CHARS in
# contention/recognizer.py), at most 4 UTF-8 bytes each: reading more would only cost decoding time.
EXAMINE_BYTES: Final = 256 * 1024
_CHUNK: Final = 1024 * 1024
# Less free space than this where the output would be held, and it is not held at all: a command whose
# output fills the disk would see ENOSPC on its own writes and fail, where without fi_run it succeeds.
MIN_FREE_BYTES: Final = 64 * 1024 * 1024


# Standard descriptors that were closed when fi_run started (``fi_run ... >&-``). A closed descriptor 0, 1
# or 2 is dangerous in the process that finds it closed: the next file it opens gets that number (a lock
# file, the capture file), and the command would then write its output into it. So fi_run parks os.devnull
# on each closed one for itself, remembers which they were here, and the runner (run_posix) closes them
# again in the command (a posix_spawn close action): the command sees exactly what it would see without
# fi_run, and its own exit status passes through.
CLOSED: set[int] = set()


def reserve_closed() -> None:
    """Park os.devnull on every closed standard descriptor (lowest first, so each lands on its own number)."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd, inheritable=False)
                os.close(null)
            else:
                os.set_inheritable(fd, False)
            CLOSED.add(fd)


class Unavailable(Exception):
    """No temporary file can hold the output (a full or read-only $TMPDIR): the reason, for the warning."""


def _open_temporary() -> int:
    """An unnamed temporary file for the output; raises Unavailable when none can be had."""
    directory = os.environ.get("TMPDIR") or os.environ.get("TEMP") or os.environ.get("TMP")
    if not directory or not os.path.isdir(directory):
        # Windows sets TEMP for every user; without it, the user's own profile (SystemRoot\Temp is not
        # writable by ordinary users).
        directory = "/tmp" if sys.platform != "win32" else os.path.expandvars(r"%LOCALAPPDATA%\Temp")  # noqa: S108
    if hasattr(os, "statvfs"):
        try:
            fs = os.statvfs(directory)
        except OSError as exc:
            raise Unavailable(f"{directory}: {exc.strerror or exc}") from None
        if fs.f_bavail * fs.f_frsize < MIN_FREE_BYTES:
            raise Unavailable(f"{directory} has {fs.f_bavail * fs.f_frsize // 1024} KiB free")
    try:
        return _create_in(directory)
    except OSError as exc:
        raise Unavailable(f"{directory}: {exc.strerror or exc}") from None


def _create_in(directory: str) -> int:
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_NOINHERIT", 0)
    tmpfile = getattr(os, "O_TMPFILE", 0)
    if tmpfile:
        try:  # Linux: a file with no name at all, nothing to clean up even after SIGKILL
            return os.open(directory, os.O_RDWR | tmpfile, 0o600)
        except OSError:
            pass  # try/except, not contextlib.suppress: saves contextlib (~2 ms) on an unlocked step
    for _ in range(100):
        path = os.path.join(directory, f"fi_run-{os.getpid()}-{os.urandom(6).hex()}.out")
        try:
            # Windows removes an O_TEMPORARY file when its last handle closes; POSIX unlinks it at once.
            fd = os.open(path, flags | getattr(os, "O_TEMPORARY", 0), 0o600)
        except FileExistsError:
            continue
        if sys.platform != "win32":
            os.unlink(path)
        return fd
    raise FileExistsError(f"no free temporary file name in {directory}")


def same_file(a: os.stat_result, b: os.stat_result, *, windows: bool) -> bool | None:
    """Do two descriptors' stat results show one file? None: they cannot tell.

    On Windows fstat gives a file identity (volume serial, file index) only for disk files; every pipe,
    console and NUL has st_dev = st_ino = 0, so two distinct pipes would look like one.
    """
    if windows and a.st_ino == 0 and b.st_ino == 0:
        return None
    return (a.st_dev, a.st_ino, a.st_mode) == (b.st_dev, b.st_ino, b.st_mode)


def _same_windows_object(fd_a: int, fd_b: int) -> bool:  # pragma: no cover - Windows only
    """Are two descriptors one pipe (or console)? ninja gives both std handles the SAME handle value."""
    if sys.platform != "win32":
        return False
    import msvcrt

    handle_a, handle_b = msvcrt.get_osfhandle(fd_a), msvcrt.get_osfhandle(fd_b)
    if handle_a == handle_b:
        return True
    # Two handles, maybe to one pipe (cmd's `2>&1` duplicates the handle): ask the kernel (Windows 10).
    import ctypes

    try:
        compare = ctypes.WinDLL("kernelbase").CompareObjectHandles
    except (OSError, AttributeError):
        return False  # distinct then: each stream's output is kept and replayed, only their order may change
    return bool(compare(ctypes.c_void_p(handle_a), ctypes.c_void_p(handle_b)))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class Capture:
    """Where one step's stdout (1) and stderr (2) go while it runs, and replaying it afterwards."""

    def __init__(self, wanted: bool, *, terminals: bool = False) -> None:
        # target descriptor (1 or 2) -> temporary file descriptor holding what the child wrote there
        self.files: dict[int, int] = {}
        # Why the output could not be held, if it could not: the step then streams it, without retries.
        self.unavailable: str | None = None
        if not wanted:
            return
        stats: dict[int, os.stat_result] = {}
        for fd in (1, 2):
            if fd in CLOSED:  # closed when fi_run started: the command gets it closed too (CLOSED)
                continue
            try:
                if os.isatty(fd) and not terminals:
                    continue
                stats[fd] = os.fstat(fd)
            except OSError:  # closed: the child inherits it closed, as it would without fi_run
                continue
        try:
            same = None
            if 1 in stats and 2 in stats:
                same = same_file(stats[1], stats[2], windows=sys.platform == "win32")
                if same is None:
                    same = _same_windows_object(1, 2)
            if same:
                shared = _open_temporary()
                self.files = {1: shared, 2: shared}
            else:
                for fd in stats:
                    self.files[fd] = _open_temporary()
        except Unavailable as exc:
            self.close()
            self.unavailable = str(exc)

    @property
    def active(self) -> bool:
        return bool(self.files)

    def child_fd(self, target: int) -> int | None:
        """The descriptor the child should get as ``target``, or None to inherit fi_run's own."""
        return self.files.get(target)

    def _distinct(self) -> list[tuple[int, int]]:
        seen: set[int] = set()
        pairs = []
        for target, fd in sorted(self.files.items()):
            if fd not in seen:
                seen.add(fd)
                pairs.append((target, fd))
        return pairs

    def text(self) -> str:
        """The end of what the attempt wrote (all captured streams), for the contention signatures."""
        parts = []
        for _target, fd in self._distinct():
            size = os.fstat(fd).st_size
            start = max(0, size - EXAMINE_BYTES)
            parts.append(os.pread(fd, size - start, start) if hasattr(os, "pread") else self._read(fd, start))
        return b"\n".join(parts).decode("utf-8", errors="replace")

    @staticmethod
    def _read(fd: int, start: int) -> bytes:  # pragma: no cover - Windows has no pread
        os.lseek(fd, start, os.SEEK_SET)
        chunks = []
        while chunk := os.read(fd, _CHUNK):
            chunks.append(chunk)
        return b"".join(chunks)

    def replay(self) -> None:
        """Copy what was captured to where it would have gone."""
        for target, fd in self._distinct():
            os.lseek(fd, 0, os.SEEK_SET)
            try:
                while chunk := os.read(fd, _CHUNK):
                    _write_all(target, chunk)
            except OSError:
                pass  # our own stdout/stderr is gone (ninja killed?): nothing left to show it to

    def reset(self) -> None:
        """Forget one attempt's output before the next attempt."""
        for _target, fd in self._distinct():
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)

    def close(self) -> None:
        for _target, fd in self._distinct():
            try:
                os.close(fd)
            except OSError:
                pass
        self.files = {}
