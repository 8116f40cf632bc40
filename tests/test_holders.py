"""Holder checks (issue 20): after a failure that reads like contention, fi_run looks at the machine.

Every state here is set up for real: real processes hold real locks (flock, lockf) on real files, keep them
open, or write their pid in them; real steps print the lines; fi_run decides. Nothing is mocked. Linux has
/proc, where the kernel lists who holds a lock and who has a file open; the Windows-only checks (sharing
violations on opening a file) are in small functions not run here.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import pytest
from fi_run_testing import HANG_TIMEOUT, process_gone, py, run_fi_run, wait_until

from fi_run.contention.holders import _fcntl_holder, lock_file_state, os_held_file, remote_host
from fi_run.contention.recognizer import Verdict, classify, pid_alive
from fi_run.tools.classify import describe

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

LINUX = sys.platform.startswith("linux")
needs_proc = pytest.mark.skipif(not LINUX, reason="who holds a lock or an open file: Linux /proc only")
needs_fcntl = pytest.mark.skipif(sys.platform == "win32", reason="POSIX record locks")

# What the holder does with the file, once it has it, before it tells the test it is ready.
_HOLD = {
    "flock": "import fcntl; fcntl.flock(f, fcntl.LOCK_EX)",
    "lockf": "import fcntl; fcntl.lockf(f, fcntl.LOCK_EX)",
    "open": "pass",
}


class Holder:
    """A real process that holds ``path`` (flock, lockf or merely open) until it is killed."""

    def __init__(self, path: Path, how: str, ready: Path) -> None:
        code = f"""
            import time
            f = open({str(path)!r}, "a+")
            {_HOLD[how]}
            open({str(ready)!r}, "w").close()
            time.sleep(120)
        """
        self.process = subprocess.Popen(py(code))
        assert wait_until(ready.exists, HANG_TIMEOUT), "the holder never took the file"

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


if TYPE_CHECKING:
    HoldFn = Callable[[Path, str], Holder]


@pytest.fixture
def hold(tmp_path: Path) -> Iterator[HoldFn]:
    holders: list[Holder] = []

    def start(path: Path, how: str) -> Holder:
        holder = Holder(path, how, tmp_path / f"ready-{len(holders)}")
        holders.append(holder)
        return holder

    yield start
    for holder in holders:
        holder.stop()


def _line(path: Path) -> str:
    """A message that names a lock file and no pid (the shape of git's, vcpkg's, conda's)."""
    return f"error: could not lock {path}: it is locked by another process"


def _checked(text: str, *, started: float | None = None, cwd: str | None = None) -> Verdict:
    return classify(text, windows=False, check_holders=True, started=started, cwd=cwd)


# --- a lock file ------------------------------------------------------------------------------------


@needs_proc
@pytest.mark.parametrize(("how", "kind"), [("flock", "flock"), ("lockf", "POSIX lock"), ("open", "open")])
def test_a_lock_file_a_live_process_holds_is_contention_and_names_it(
    tmp_path: Path, hold: HoldFn, how: str, kind: str
) -> None:
    lock = tmp_path / "state.lock"
    holder = hold(lock, how)
    verdict = _checked(_line(lock))
    assert verdict.retry
    assert verdict.holder == holder.pid
    assert verdict.file_check == f"present, held by pid {holder.pid} ({kind})"
    assert verdict.blocker == f"process {holder.pid}"


@needs_fcntl
def test_f_getlk_names_the_holder_of_a_posix_lock(tmp_path: Path, hold: HoldFn) -> None:
    """The portable check (macOS and the BSDs have no /proc/locks), run here against a real lockf holder."""
    lock = tmp_path / "db.lock"
    holder = hold(lock, "lockf")
    assert _fcntl_holder(str(lock)) == holder.pid
    free = tmp_path / "free.lock"
    free.touch()
    assert _fcntl_holder(str(free)) is None


def test_a_lock_file_that_is_gone_means_its_holder_finished(tmp_path: Path) -> None:
    lock = tmp_path / "state.lock"
    verdict = _checked(_line(lock))
    assert verdict.retry
    assert verdict.file_check == "absent now: its holder has finished"


@needs_proc
def test_a_lock_file_nobody_holds_older_than_the_step_is_stale(tmp_path: Path) -> None:
    lock = tmp_path / "index.lock"
    lock.write_text("left by a killed run\n")
    old = time.time() - 3600
    os.utime(lock, (old, old))
    verdict = _checked(_line(lock), started=time.time() - 5)
    assert not verdict.retry
    assert verdict.kind == "stale"
    assert verdict.stale_file == str(lock)
    assert f"remove {lock}" in verdict.reason


def test_a_pin_file_is_not_a_lock_file_to_look_at(tmp_path: Path) -> None:
    """package-lock.json, Cargo.lock: old, present and held by nobody, yet never stale locks to remove."""
    pinned = tmp_path / "package-lock.json"
    pinned.write_text("{}")
    old = time.time() - 3600
    os.utime(pinned, (old, old))
    line = f"npm ERR! EBUSY: resource busy or locked, open '{pinned}'"
    verdict = classify(line, windows=True, check_holders=True, started=time.time())
    assert verdict.retry
    assert verdict.held_file == ""
    assert verdict.stale_file == ""


@needs_proc
def test_a_lock_file_its_tool_never_removes_is_free_when_nobody_holds_it(tmp_path: Path) -> None:
    """rpm keeps .rpm.lock and locks it with fcntl: present, old and unheld, its holder has finished."""
    lock = tmp_path / "rpm" / ".rpm.lock"
    lock.parent.mkdir()
    lock.write_text("")
    old = time.time() - 3600
    os.utime(lock, (old, old))
    verdict = _checked(_line(lock), started=time.time())
    assert verdict.retry
    assert verdict.file_check == "present, nobody holds it now: its holder finished"


@needs_proc
def test_a_lock_file_written_since_the_step_started_is_contention(tmp_path: Path) -> None:
    """A holder that keeps no lock on its lock file (git's index.lock between writes) made it just now."""
    lock = tmp_path / "index.lock"
    started = time.time() - 60
    lock.write_text("")
    verdict = _checked(_line(lock), started=started)
    assert verdict.retry
    assert verdict.file_check.startswith("present, held by nobody, written since the step started")


@needs_proc
def test_a_relative_lock_path_is_looked_up_in_the_commands_directory(tmp_path: Path, hold: HoldFn) -> None:
    lock = tmp_path / ".git" / "index.lock"
    lock.parent.mkdir()
    holder = hold(lock, "flock")
    verdict = _checked("fatal: Unable to create '.git/index.lock': File exists.", cwd=str(tmp_path))
    assert verdict.holder == holder.pid
    assert verdict.held_file == str(lock)


@needs_proc
def test_a_pid_file_naming_a_live_process_is_held_by_it(tmp_path: Path) -> None:
    lock = tmp_path / "yum.pid"
    child = subprocess.Popen(py("import time; time.sleep(60)"))
    try:
        lock.write_text(f"{child.pid}\n")
        state = lock_file_state(str(lock), alive=pid_alive)
        assert state.holders == (child.pid,)
        assert state.how == "its recorded pid"
        verdict = _checked(_line(lock), started=time.time() - 5)
        assert verdict.retry
        assert verdict.holder == child.pid
    finally:
        child.kill()
        child.wait()


@needs_proc
def test_a_recorded_pid_that_started_after_the_file_was_written_is_a_reused_pid(tmp_path: Path) -> None:
    """rpm-software-management/dnf#2273: a killed dnf leaves its pid; later that number is someone else's."""
    lock = tmp_path / "rpmdb_lock.pid"
    child = subprocess.Popen(py("import time; time.sleep(60)"))
    try:
        lock.write_text(f"{child.pid}\n")
        old = time.time() - 3600
        os.utime(lock, (old, old))  # written an hour before this process existed
        verdict = _checked(f"error: {lock} is locked by another process (pid {child.pid})")
        assert not verdict.retry
        assert verdict.kind == "stale"
        assert "reused pid" in verdict.holder_check
    finally:
        child.kill()
        child.wait()


# --- a pid --------------------------------------------------------------------------------------------


def test_a_pid_on_another_host_is_not_judged_here() -> None:
    gone = subprocess.Popen(py("pass"))
    gone.wait()
    assert process_gone(gone.pid)
    line = f"error: the repository lock is held by pid {gone.pid} on buildhost-7: try again later"
    assert remote_host(line) == "buildhost-7"
    verdict = classify(line, windows=False, check_holders=True)
    assert verdict.retry  # a dead pid here says nothing about a process on buildhost-7
    assert verdict.holder_check == "on host buildhost-7, not this machine: not checked"


@pytest.mark.parametrize(
    ("line", "host"),
    [
        ("lock held by pid 77@ci-runner-3", "ci-runner-3"),
        ("locked by PID 38 on buildbox by root (UID 0, GID 0)", "buildbox"),
        ("the lock is held by pid 12 on line 5 of the lock table", ""),
        ("It is held by process 1797 (apt-get)", ""),
    ],
)
def test_the_host_a_holder_pid_is_on(line: str, host: str) -> None:
    assert remote_host(line) == host
    assert remote_host(f"the lock is held by pid 12 on {socket.gethostname()}") == ""


def test_the_steps_own_command_as_the_holder_is_self_held(tmp_path: Path) -> None:
    counter = tmp_path / "runs"
    code = f"""
        import os, sys
        open({str(counter)!r}, "a").write("x")
        print(f"error: the build lock is held by another process (pid {{os.getpid()}})")
        sys.exit(1)
    """
    command = py(code)
    if sys.platform == "win32":
        # A venv's python.exe on Windows is a launcher that runs the script in a child process, whose pid is
        # then a process the command started (not checked there: docs/retries.md). The base interpreter
        # runs it in the command's own process.
        command[0] = getattr(sys, "_base_executable", sys.executable)
    done = run_fi_run("module", ["--retries", "5", "--", *command], cwd=tmp_path)
    assert done.status == 1
    assert counter.read_text() == "x"
    assert "is the step's own command: the step blocks itself" in done.err


@pytest.mark.skipif(sys.platform == "win32", reason="process groups")
def test_a_process_the_command_started_as_the_holder_is_self_held(tmp_path: Path) -> None:
    counter = tmp_path / "runs"
    pidfile = tmp_path / "daemon.pid"
    code = f"""
        import subprocess, sys, time
        open({str(counter)!r}, "a").write("x")
        daemon = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        open({str(pidfile)!r}, "w").write(str(daemon.pid))
        print(f"error: the cache lock is held by another process (pid {{daemon.pid}})")
        sys.exit(1)
    """
    try:
        done = run_fi_run("module", ["--retries", "5", "--", *py(code)], cwd=tmp_path)
    finally:
        if pidfile.exists():
            daemon = int(pidfile.read_text())
            if not process_gone(daemon):
                os.kill(daemon, 9)
    assert done.status == 1
    assert counter.read_text() == "x"
    assert "a process the step's command started" in done.err


# --- files Windows itself holds ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "name"),
    [
        (
            "PermissionError: [WinError 32] The process cannot access the file: 'C:\\\\pagefile.sys'",
            "pagefile.sys",
        ),
        (
            "error: open C:\\hiberfil.sys: The process cannot access the file because it is being used",
            "hiberfil.sys",
        ),
        ("Error: The process cannot access the file 'C:\\Windows\\System32\\config\\SAM' because", "SAM"),
        ("cannot copy 'C:\\Users\\me\\NTUSER.DAT': being used by another process", "NTUSER.DAT"),
        ("CreateFile(...32) : L:\\System Volume Information\\$MRCBT", "System Volume Information"),
    ],
)
def test_files_windows_holds_are_named(line: str, name: str) -> None:
    assert os_held_file(line) == name


@pytest.mark.parametrize(
    "line",
    [
        "error: cannot open 'C:\\b\\out\\pagefile.system.dll' for writing",
        "copy C:\\src\\system\\config.json: being used by another process",
        "The process cannot access the file 'C:\\w\\software.lock' because it is being used",
    ],
)
def test_ordinary_files_are_not_taken_for_windows_own(line: str) -> None:
    assert os_held_file(line) == ""


def test_a_step_that_hits_a_file_windows_holds_is_not_retried(tmp_path: Path) -> None:
    counter = tmp_path / "runs"
    line = (
        "error: failed to copy `C:\\\\pagefile.sys`: The process cannot access the file because it is being "
        "used by another process. (os error 32)"
    )
    code = f"""
        import sys
        open({str(counter)!r}, "a").write("x")
        print({line!r})
        sys.exit(1)
    """
    done = run_fi_run("module", ["--retries", "5", "--", *py(code)], cwd=tmp_path)
    assert done.status == 1
    assert counter.read_text() == "x"
    verdict = classify(line.replace("\\\\", "\\"), windows=True)
    assert verdict.kind == "never"
    assert "pagefile.sys" in describe(verdict)


# --- a real step, and the verdict `fi_run classify` prints ---------------------------------------------


@needs_proc
def test_a_step_blocked_by_a_stale_lock_file_runs_once_and_names_the_file(tmp_path: Path) -> None:
    lock = tmp_path / "repo" / ".git" / "index.lock"
    lock.parent.mkdir(parents=True)
    lock.write_text("")
    old = time.time() - 3600
    os.utime(lock, (old, old))
    counter = tmp_path / "runs"
    code = f"""
        import sys
        open({str(counter)!r}, "a").write("x")
        print("fatal: Unable to create '{lock.as_posix()}': File exists.")
        sys.exit(128)
    """
    done = run_fi_run("module", ["--retries", "5", "--", *py(code)], cwd=tmp_path)
    assert done.status == 128
    assert counter.read_text() == "x"
    assert f"not retried: {lock} is present, nobody holds it and it is older than the step" in done.err


@needs_proc
def test_the_same_lock_file_holder_blocking_three_attempts_stops_the_retries(
    tmp_path: Path, hold: HoldFn
) -> None:
    lock = tmp_path / "cache.lock"
    holder = hold(lock, "flock")
    counter = tmp_path / "runs"
    code = f"""
        import sys
        open({str(counter)!r}, "a").write("x")
        print("error: could not lock {lock.as_posix()}: Resource temporarily unavailable")
        sys.exit(1)
    """
    done = run_fi_run("module", ["--retries", "10", "--", *py(code)], cwd=tmp_path)
    assert done.status == 1
    assert counter.read_text() == "xxx"
    assert f"not retried: process {holder.pid} has held the lock through 3 attempts" in done.err


@needs_proc
def test_classify_check_holders_prints_each_check(tmp_path: Path, hold: HoldFn) -> None:
    lock = tmp_path / "state.lock"
    holder = hold(lock, "flock")
    done = subprocess.run(
        [sys.executable, "-m", "fi_run", "classify", "--check-holders", "-"],
        input=_line(lock) + "\n",
        capture_output=True,
        text=True,
        timeout=HANG_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done
    assert f"holder: pid {holder.pid}, alive, another process" in done.stdout
    assert f"file: {lock}, present, held by pid {holder.pid} (flock)" in done.stdout
    unchecked = subprocess.run(
        [sys.executable, "-m", "fi_run", "classify", "-"],
        input=_line(lock) + "\n",
        capture_output=True,
        text=True,
        timeout=HANG_TIMEOUT,
        check=False,
    )
    assert f"file: {lock}, not checked (the output is not live)" in unchecked.stdout
