"""The stamp: removed before the step runs, written atomically only after it succeeded.

Ninja decides a step is done by its outputs' mtimes. A stamp left over from an earlier success would let a
failed or interrupted rerun look done, so the old one goes before the command starts. The new one is
written after the command exits, so its mtime is newer than anything the command read.
"""

from __future__ import annotations

import os

from ..errors import StampError, UsageError


def prepare(path: str) -> None:
    """Remove a stale stamp and make sure its directory exists, before anything runs.

    Doing the directory now means a stamp that could never be written fails the step before the command
    spends minutes running (exit 2), instead of after it (exit 74).
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


def write(path: str) -> None:
    """Write an empty stamp atomically: a temporary file beside it, then os.replace.

    The temporary file sits in the stamp's own directory so that os.replace never crosses a filesystem
    (Chromium's action_helpers.atomic_output does the same). It is removed on every failure path.
    """
    directory, name = os.path.split(path)
    tmp = os.path.join(directory, f".{name}.fi_run-{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o666)
        os.close(fd)
        os.replace(tmp, path)
    except BaseException as exc:  # an interrupt included: never leave the temporary file behind
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise StampError(f"cannot write --stamp {path!r}: {exc.strerror or exc}") from None
        raise
