"""The stamp: removed before the step runs, written atomically only after it succeeded.

Ninja decides a step is done by its outputs' mtimes. A stamp left over from an earlier success would let a
failed or interrupted rerun look done, so the old one goes before the command starts. The new one is
written after the command exits, so its mtime is newer than anything the command read.
"""

from __future__ import annotations

import os

from ..errors import StampError, UsageError

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def temporary_name(path: str) -> str:
    """The temporary file beside the stamp: one fixed name per stamp, not one per process.

    A fixed name means a temporary file left by a fi_run killed between its create and its rename (SIGKILL)
    is reused and removed by the next run of the step, instead of piling up. Ninja never runs one edge twice
    at once, so two writers of one stamp do not happen in a build; if they do, see write().
    """
    directory, name = os.path.split(path)
    return os.path.join(directory, f".{name}.fi_run.tmp")


def prepare(path: str) -> None:
    """Remove a stale stamp and make sure the stamp can be written, before anything runs.

    The directory is created now, and the temporary file the stamp will be written through is created and
    removed now (which also clears one a killed run left behind): a stamp that could never be written (a
    name too long for its temporary file, a directory that exists but cannot be written) fails the step
    before the command spends minutes running (exit 2), instead of after it (exit 74) on every build.
    """
    parent = os.path.dirname(path) or "."
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create the directory of --stamp {path!r}: {exc.strerror or exc}") from None
    if os.path.isdir(path):
        raise UsageError(f"--stamp {path!r} is a directory")
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass  # try/except, not contextlib.suppress: saves contextlib (~2 ms) on an unlocked step
    except OSError as exc:
        raise UsageError(f"cannot remove the old stamp {path!r}: {exc.strerror or exc}") from None
    tmp = temporary_name(path)
    try:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _NOFOLLOW, 0o666))
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass  # another run of the same step removed it first: the check still passed
    except OSError as exc:
        raise UsageError(
            f"--stamp {path!r} could not be written after the command: cannot create {tmp!r} beside it "
            f"({exc.strerror or exc})"
        ) from None


def remove(path: str) -> None:
    """Take back a stamp this run wrote: the step was interrupted just as it finished (issue 22)."""
    try:
        os.unlink(path)
    except OSError:
        pass


def write(path: str) -> None:
    """Write an empty stamp atomically: a temporary file beside it, then os.replace.

    The temporary file sits in the stamp's own directory so that os.replace never crosses a filesystem
    (Chromium's action_helpers.atomic_output does the same). It is removed on every failure path.
    """
    tmp = temporary_name(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _NOFOLLOW, 0o666)
        os.close(fd)
        try:
            os.replace(tmp, path)
        except FileNotFoundError:
            # Another writer of the same stamp renamed the shared temporary file first: its stamp is as
            # new as ours would have been.
            if not os.path.isfile(path):
                raise
    except BaseException as exc:  # an interrupt included: never leave the temporary file behind
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise StampError(f"cannot write --stamp {path!r}: {exc.strerror or exc}") from None
        raise
