"""Ctrl-C while a step is still waiting for its lock: it stops at once, runs nothing, holds nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest
from fi_run_testing import Procs, fi_run_argv, finish, start_holder, wait_until, write_scripts

assert sys.platform != "win32"  # POSIX only: conftest.POSIX_ONLY keeps it from being collected on Windows

if TYPE_CHECKING:
    from pathlib import Path


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_waiting_for_a_lock_ends_the_step_with_nothing_run_and_nothing_held(
    tmp_path: Path, procs: Procs, signum: int
) -> None:
    scripts = write_scripts(tmp_path / "scripts")
    lock_dir, resource, stamp = tmp_path / "locks", tmp_path / "venv", tmp_path / "waiter.stamp"
    resource.mkdir()
    holder = start_holder(
        procs, scripts, ["--lock-dir", lock_dir, "--lock", resource], log=tmp_path / "log", tag="h",
        control=tmp_path / "ctl", cwd=tmp_path,
    )  # fmt: skip
    stamp.write_text("stale")
    stderr = tmp_path / "waiter.err"
    with stderr.open("wb") as err:
        waiter = procs.start_fi_run(
            ["--lock-dir", lock_dir, "--lock", resource, "--stamp", stamp, "--", "touch", tmp_path / "ran"],
            cwd=tmp_path,
            stderr=err,
        )
        # It is waiting once its doorbell entry exists.
        waiters = next(lock_dir.glob("venv-*")) / "waiters"
        wait_until(lambda: waiters.is_dir() and any(waiters.iterdir()), "the waiter to register")
        os.killpg(waiter.pid, signum)  # to its process group, as ninja does
        assert finish(waiter) == 128 + signum
    assert not (tmp_path / "ran").exists()
    assert not stamp.exists()
    lines = stderr.read_text().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("fi_run: interrupted by ")
    assert not any(waiters.iterdir()), "the waiter's doorbell entry was left behind"
    holder.release()
    assert finish(holder.proc) == 0
    # The interrupted waiter held nothing: the lock is free at once.
    done = subprocess.run(
        [*fi_run_argv(), "--lock-dir", lock_dir, "--lock-timeout", "2", "--lock", resource, "--", "true"],
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0
