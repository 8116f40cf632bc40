"""Contention simulator: a tool that fails the way uv failed in uv#2767 when another instance is inside.

    python contention_sim.py RESOURCE_DIR HOLD_SECONDS

It claims RESOURCE_DIR/.sim.lock atomically (O_CREAT | O_EXCL, the way git claims index.lock). If another
instance holds it, it prints uv#2767's exact message to stderr, appends a line to RESOURCE_DIR/failures
and exits 2, without waiting: a tool that does not wait for its own lock. Otherwise it is inside the
resource for HOLD_SECONDS, recording ``enter``/``exit`` lines in RESOURCE_DIR/sim.log (one O_APPEND write
each, the format tests/fi_run_testing.py's overlap checker reads), then removes .sim.lock and exits 0.
"""

from __future__ import annotations

import os
import sys
import time

MESSAGE = (
    r"error: Could not try lock bin\venv\.lock: The process cannot access the file because another "
    r"process has locked a portion of the file. (os error 33)"
)


def _append(path: str, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        sys.stderr.write("usage: contention_sim.py RESOURCE_DIR HOLD_SECONDS\n")
        return 64
    resource, hold = argv[1], float(argv[2])
    tag = f"sim.{os.getpid()}-{time.time_ns()}"
    lock = os.path.join(resource, ".sim.lock")
    try:
        fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        _append(os.path.join(resource, "failures"), f"{tag} found {lock} held\n")
        sys.stderr.write(MESSAGE + "\n")
        sys.stderr.flush()
        return 2
    try:
        os.write(fd, f"{os.getpid()}\n".encode())
        _append(os.path.join(resource, "sim.log"), f"enter {tag} {time.time_ns()}\n")
        time.sleep(hold)
        _append(os.path.join(resource, "sim.log"), f"exit {tag} {time.time_ns()}\n")
    finally:
        os.close(fd)
        os.unlink(lock)
    sys.stdout.write(f"{tag} done\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
