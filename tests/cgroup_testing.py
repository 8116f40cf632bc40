"""Real memory cgroups for the tests of issue 19: a limit the kernel enforces with real OOM kills.

Root only, Linux only. A cgroup v1 is made below this process's own memory cgroup (v1 lets a cgroup with
processes have children), a cgroup v2 at the top of the hierarchy (v2 gives a child the memory controller
only below a cgroup without processes of its own, which the top is exempt from). Each is named
``fi_run-test-...``; a process enters it through ``wrap`` (a shell writes its own pid into cgroup.procs, then
execs the command), so that everything the command starts is in it too. ``remove`` kills what is left in it
and removes it; the fixture ``memory_cgroups`` (conftest.py) does that for every cgroup a test made,
whatever happened.
Where a cgroup cannot be made, the test is skipped with the reason.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from fi_run import memory

if TYPE_CHECKING:
    from collections.abc import Sequence

MIB = 1 << 20


def _write(path: Path, text: str) -> None:
    with open(path, "w") as f:  # one write(2): cgroup files take a value per write
        f.write(text)


class Cgroup:
    """One memory cgroup of a test's own."""

    def __init__(self, directory: Path, version: int) -> None:
        self.directory = directory
        self.version = version

    def limit(self, size: int) -> None:
        """Limit its memory to ``size`` bytes, and its swap to none (else the kernel swaps instead of
        killing, on machines with swap)."""
        if self.version == 1:
            _write(self.directory / "memory.limit_in_bytes", str(size))
            if (self.directory / "memory.memsw.limit_in_bytes").exists():
                _write(self.directory / "memory.memsw.limit_in_bytes", str(size))
        else:
            _write(self.directory / "memory.max", str(size))
            if (self.directory / "memory.swap.max").exists():
                _write(self.directory / "memory.swap.max", "0")

    def wrap(self, argv: Sequence[str | os.PathLike[str]]) -> list[str]:
        """``argv`` run inside this cgroup (with everything it starts)."""
        enter = 'echo $$ > "$0/cgroup.procs" && exec "$@"'
        return ["/bin/sh", "-c", enter, str(self.directory), *(os.fspath(a) for a in argv)]

    @property
    def oom_file(self) -> Path:
        return self.directory / ("memory.oom_control" if self.version == 1 else "memory.events")

    def oom_kills(self) -> int:
        count = memory.oom_kill_count(self.oom_file.read_bytes())
        assert count is not None, self.oom_file.read_text()
        return count

    def pids(self) -> list[int]:
        try:
            return [int(line) for line in (self.directory / "cgroup.procs").read_text().split()]
        except FileNotFoundError:
            return []

    def remove(self) -> None:
        """Kill what is still in it, and remove it (a cgroup goes once its last process is gone)."""
        for _ in range(500):
            for pid in self.pids():
                try:
                    os.kill(pid, getattr(signal, "SIGKILL", 9))  # (getattr: Windows has no SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                self.directory.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:  # EBUSY: a killed process is not reaped yet
                time.sleep(0.01)
        raise AssertionError(f"could not remove the test cgroup {self.directory}: {self.pids()} still in it")


def _parent() -> tuple[Path, int]:
    """Where a test's cgroups go, and their version; pytest.skip with the reason if nowhere."""
    if sys.platform != "linux":
        pytest.skip("memory cgroups are Linux's")
    if os.geteuid() != 0:
        pytest.skip("making a memory cgroup needs root")
    found = memory.memory_cgroup()
    if found is None:
        pytest.skip("no memory cgroup hierarchy is mounted (cgroup v1 memory or v2 with memory)")
    if found.version == 1:
        return Path(found.directory), 1
    top = Path(found.top)
    if "memory" not in (top / "cgroup.subtree_control").read_text().split():
        pytest.skip(f"cgroup v2: {top} does not give its children the memory controller")
    return top, 2


class Cgroups:
    """The cgroups one test made."""

    def __init__(self) -> None:
        self.made: list[Cgroup] = []

    def make(self, limit: int | None = None) -> Cgroup:
        parent, version = _parent()
        directory = parent / f"fi_run-test-{uuid.uuid4().hex[:12]}"
        try:
            directory.mkdir()
        except OSError as exc:
            pytest.skip(f"cannot make a memory cgroup in {parent}: {exc}")
        made = Cgroup(directory, version)
        self.made.append(made)
        if limit is not None:
            made.limit(limit)
        return made

    def remove_all(self) -> None:
        for made in reversed(self.made):
            made.remove()


# A child that allocates and touches SIZE MiB (each page written: an untouched allocation costs nothing),
# then holds it for SECONDS: `python -c ALLOCATE SIZE [SECONDS]`.
ALLOCATE = """
import sys, time
data = bytearray(int(sys.argv[1]) << 20)
for i in range(0, len(data), 4096):
    data[i] = 1
time.sleep(float(sys.argv[2]) if len(sys.argv) > 2 else 0)
"""
