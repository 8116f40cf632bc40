"""The doorbell wakes the right lock waiter: the oldest of the kind that can use what was released."""

from __future__ import annotations

import os
import select
import subprocess
import sys
from typing import TYPE_CHECKING

from fi_run.contention.doorbell import Waiter

if TYPE_CHECKING:
    from pathlib import Path


def _rung(waiter: Waiter) -> bool:
    """Was a datagram delivered to this waiter? (Reads its socket without sleeping.)"""
    sock = waiter._sock
    assert sock is not None, "no loopback socket: the doorbell would only poll"
    ready, _, _ = select.select([sock], [], [], 0.5)
    if not ready:
        return False
    sock.recv(16)
    return True


def ring_from_another_process(waiters: str, kind: str, *, everyone: bool = False) -> None:
    """ring() skips the caller's own entries, so the waiters must belong to other processes: ring from one."""
    code = f"from fi_run.contention.doorbell import ring; ring({waiters!r}, {kind!r}, everyone={everyone})"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_release_wakes_only_the_oldest_waiter_of_its_kind(tmp_path: Path) -> None:
    waiters = str(tmp_path / "waiters")
    with (
        Waiter(waiters, "gate") as first,
        Waiter(waiters, "gate") as second,
        Waiter(waiters, "drain") as drain,
    ):
        ring_from_another_process(waiters, "gate")
        assert _rung(first)
        assert not _rung(second)
        assert not _rung(drain)
        ring_from_another_process(waiters, "drain", everyone=True)
        assert _rung(drain)
        assert not _rung(first)
        assert not _rung(second)


def test_a_waiter_that_changes_kind_keeps_its_place_in_line(tmp_path: Path) -> None:
    waiters = str(tmp_path / "waiters")
    with Waiter(waiters, "gate") as older, Waiter(waiters, "drain") as younger:
        older.set_kind("drain")
        names = sorted(os.listdir(waiters))
        assert [name.rpartition(".")[2] for name in names] == ["drain", "drain"]
        assert names[0].startswith(older._prefix)
        ring_from_another_process(waiters, "drain")
        assert _rung(older)
        assert not _rung(younger)
    assert os.listdir(waiters) == []  # entries are removed when a waiter is done


def test_the_entry_of_a_dead_waiter_is_skipped_and_removed(tmp_path: Path) -> None:
    waiters = tmp_path / "waiters"
    waiters.mkdir()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    stale = waiters / f"{0:020d}-{int(dead.stdout)}-9.gate"  # older than anyone, and its process is gone
    stale.touch()
    with Waiter(str(waiters), "gate") as live:
        ring_from_another_process(str(waiters), "gate")
        assert _rung(live)
    assert not stale.exists()


def test_a_waiter_wakes_by_itself_after_the_safety_poll(tmp_path: Path) -> None:
    """A holder killed with SIGKILL rings nobody; the waiter still returns to try the lock again."""
    with Waiter(str(tmp_path / "waiters"), "gate") as waiter:
        waiter.wait(0.05)  # returns (no ring needed); a hang here would time the test out
        assert not _rung(waiter)
