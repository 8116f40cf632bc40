"""--log / FI_RUN_LOG: one JSON line per fi_run invocation, appended by many processes at once.

The line is a step's record (records.StepRecord) made a schema.Step; this module writes it, and only
a logged step imports it.

Each line is built in memory and written with ONE write(2) to a descriptor opened with O_APPEND. On a local
filesystem the kernel moves the end-of-file and writes the data under the inode's lock, so concurrent lines
never interleave and none is lost, however long, with no lock of fi_run's own to slow the build (Linux:
ext4/xfs/btrfs/tmpfs take i_rwsem for the whole write). Windows' O_APPEND is not atomic: see winappend.py.
Over NFS O_APPEND is emulated by the client and this guarantee does not hold: keep the log local.

Environment *values* are never written, only the names fi_run changed: they hold tokens.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # not typing's: saves importing typing (~6 ms) on an unlocked, logged step
if TYPE_CHECKING:
    from ..messages import Reporter
    from ..records import JSON, StepRecord, StepSpec
    from .schema import Step


def as_step(record: StepRecord, spec: StepSpec, status: int, error: str | None) -> Step:
    """The record of a step that ended with ``status`` (and fi_run's ``error``), as a log line's schema."""
    from .schema import SCHEMA_VERSION, Attempt, Loan, Lock, Step

    duration = record.offset()
    names = sorted({op.name if op.kind != "venv" else "VIRTUAL_ENV" for op in spec.env_ops})
    return Step(
        v=SCHEMA_VERSION,
        pid=os.getpid(),
        start=round(record.started_wall, 6),
        end=round(record.started_wall + duration, 6),
        duration=round(duration, 6),
        argv=spec.command,
        cwd=spec.start_dir,
        command_cwd=spec.cwd,
        status=status,
        error=error,
        attempts=tuple(Attempt(**entry) for entry in record.attempts),  # type: ignore[arg-type]
        locks=tuple(Lock(**entry) for entry in record.locks),  # type: ignore[arg-type]
        stamp=spec.stamp,
        env_names=tuple(names),
        lent=tuple(Loan(**entry) for entry in record.loans),  # type: ignore[arg-type]
        peak_rss=record.peak_rss,
    )


def encode(value: JSON) -> str:
    """Compact JSON for the values a record holds, without importing json (which imports re)."""
    import math
    from _json import encode_basestring_ascii as quote

    def one(value: JSON) -> str:
        if value is None:
            return "null"
        if value is True:
            return "true"
        if value is False:
            return "false"
        if isinstance(value, str):
            return str(quote(value))
        if isinstance(value, int):
            return str(value)
        if isinstance(value, float):
            return repr(value) if math.isfinite(value) else "null"
        if isinstance(value, list):
            return "[" + ",".join(one(item) for item in value) + "]"
        return "{" + ",".join(f"{quote(key)}:{one(item)}" for key, item in value.items()) + "}"

    return one(value)


def _last_byte(fd: int, size: int) -> bytes:
    if not hasattr(os, "pread"):  # pragma: no cover - Windows: no pread; a seek would move the append point
        return b"\n"
    try:
        last: bytes = os.pread(fd, 1, size - 1)
    except OSError:
        return b"\n"  # unreadable: assume whole, as before
    return last


def append(path: str, step: Step, reporter: Reporter) -> None:
    """Append ``step`` as one line. A log that cannot be written warns once and never fails the step."""
    from .schema import as_json

    data = (encode(as_json(step)) + "\n").encode("ascii")
    try:
        parent = os.path.dirname(path)
        if parent and not os.path.isdir(parent):
            try:
                os.makedirs(parent)
            except FileExistsError:  # a file where a directory should be, somewhere on the way
                raise NotADirectoryError(f"{parent!r} is not a directory") from None
        if sys.platform == "win32":  # the UCRT's O_APPEND is seek-then-write: see winappend.py
            from .winappend import append_bytes

            written = append_bytes(path, data)
        else:
            # Read-write (appends are unchanged): the last byte is read to see whether the last line is whole.
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o666)
            try:
                # A writer cut short on a full disk leaves half a line; start on a fresh one, or this record
                # would be glued to it and lost with it (the reader skips and counts the half line alone).
                # Each record is one write() of one line, so whole records never interleave.
                # A long record being written by another process also shows a last byte that is not a newline
                # (the size grows page by page): if the size moved, that writer is alive and took care of its
                # own line. Rarely this still adds an empty line, which readers skip (logfile.parse_line).
                size = os.fstat(fd).st_size
                if size and _last_byte(fd, size) != b"\n" and os.fstat(fd).st_size == size:
                    data = b"\n" + data
                written = os.write(fd, data)
            finally:
                os.close(fd)
        if written != len(data):  # a full disk part-way: say so rather than leave a silent half line
            raise OSError(f"short write ({written} of {len(data)} bytes)")
    except OSError as exc:
        reporter.warning(f"cannot write the log {path!r} (--log, FI_RUN_LOG): {exc}; the step goes on")
