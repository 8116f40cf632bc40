"""fi_run's Windows behaviour (issue 13), run on Windows itself by CI's Windows stage (Windows CPython under
Wine, .ci/windows/) and, where the rule is a pure function or holds on POSIX too, on Linux as well.

Each of the six bugs the Wine stage found has a test here that failed before its fix:
1. an exit code above 2**31 (0xC000013A) made os._exit raise OverflowError;
2. every pipe has the same file identity on Windows, so capture merged distinct stdout and stderr pipes;
3. --list-signatures failed (exit 70) on a cp1252 stdout;
4. a dead waiter was never detected on Windows (liveness was always true);
5. --timeout waited forever when taskkill failed (now: a job object around the tree);
6. --log appends from concurrent processes lost lines on Windows (O_APPEND is seek-then-write there).
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import pytest
from fi_run_testing import HANG_TIMEOUT, base_environ, ninja_binary, process_gone, py, wait_until

from fi_run.cli import os_exit_code
from fi_run.helptext import encodable
from fi_run.processes import alive
from fi_run.step.capture import same_file

if TYPE_CHECKING:
    from pathlib import Path

windows_only = pytest.mark.skipif(sys.platform != "win32", reason="Windows behaviour: run by the Wine stage")

FI_RUN = [sys.executable, "-m", "fi_run"]
STATUS_CONTROL_C_EXIT = 0xC000013A


def _stat(ino: int, dev: int = 0, mode: int = 0o010600) -> os.stat_result:
    return os.stat_result((mode, ino, dev, 1, 0, 0, 0, 0, 0, 0))


# --- 1. exit codes above 2**31


def test_an_unsigned_windows_exit_code_becomes_the_same_32_bits_for_os_exit() -> None:
    code = os_exit_code(STATUS_CONTROL_C_EXIT, windows=True)
    assert -(2**31) <= code < 0
    assert code & 0xFFFFFFFF == STATUS_CONTROL_C_EXIT
    assert os_exit_code(0xFFFFFFFF, windows=True) == -1
    for status in (0, 1, 124, 255, 0x7FFFFFFF):
        assert os_exit_code(status, windows=True) == status
        assert os_exit_code(status, windows=False) == status


@windows_only
def test_a_command_ending_with_status_control_c_exit_passes_it_through(tmp_path: Path) -> None:
    done = subprocess.run(
        [*FI_RUN, "--", *py("import ctypes; ctypes.windll.kernel32.ExitProcess(0xC000013A)")],
        cwd=tmp_path,
        env=base_environ(),
        capture_output=True,
        timeout=HANG_TIMEOUT,
        check=False,
    )
    assert "Traceback" not in done.stderr.decode(errors="replace"), done.stderr
    assert done.returncode == STATUS_CONTROL_C_EXIT, hex(done.returncode)


# --- 2. capture: distinct pipes stay distinct; one pipe keeps the order of what was written


def test_objects_without_a_file_identity_are_undecided_on_windows_only() -> None:
    pipe = _stat(ino=0)
    assert same_file(pipe, pipe, windows=True) is None
    assert same_file(pipe, pipe, windows=False) is True
    assert same_file(_stat(ino=7, dev=3), _stat(ino=7, dev=3), windows=True) is True
    assert same_file(_stat(ino=7, dev=3), _stat(ino=8, dev=3), windows=True) is False


FAILING_WRITER = """
import sys
for n in (1, 2):
    print(f"to-out-{n}", flush=True)
    print(f"to-err-{n}", file=sys.stderr, flush=True)
sys.exit(3)
"""


def test_distinct_stdout_and_stderr_pipes_are_replayed_each_to_its_own(tmp_path: Path) -> None:
    # Retries are on by default, so the output is captured; the failure is not contention and is replayed.
    done = subprocess.run(
        [*FI_RUN, "--", *py(FAILING_WRITER)],
        cwd=tmp_path,
        env=base_environ(),
        capture_output=True,
        timeout=HANG_TIMEOUT,
        check=False,
    )
    assert done.returncode == 3
    assert done.stdout.split() == [b"to-out-1", b"to-out-2"], done.stdout
    assert done.stderr.split() == [b"to-err-1", b"to-err-2"], done.stderr


def test_two_handles_to_one_pipe_keep_the_order_it_was_written_in(tmp_path: Path) -> None:
    # As cmd's `2>&1`: stdout and stderr are two descriptors (two handles on Windows) for ONE pipe.
    read_end, write_end = os.pipe()
    second = os.dup(write_end)
    try:
        proc = subprocess.Popen(
            [*FI_RUN, "--", *py(FAILING_WRITER)],
            cwd=tmp_path,
            env=base_environ(),
            stdout=write_end,
            stderr=second,
        )
    finally:
        os.close(write_end)
        os.close(second)
    with os.fdopen(read_end, "rb") as pipe:
        output = pipe.read()
    assert proc.wait(timeout=HANG_TIMEOUT) == 3
    assert output.split() == [b"to-out-1", b"to-err-1", b"to-out-2", b"to-err-2"], output


# --- 3. --list-signatures on a narrow stdout


def test_text_a_codec_cannot_hold_is_escaped() -> None:
    text = "ロック error: 파일 — ok"
    got = encodable(text, "cp1252")
    got.encode("cp1252")  # would raise if anything unencodable were left
    assert got.startswith("\\u30ed")
    assert got.endswith(" \u2014 ok")  # the dash is in cp1252: kept
    assert encodable(text, "utf-8") == text
    assert encodable(text, None) == text


def test_list_signatures_works_on_a_cp1252_stdout(tmp_path: Path) -> None:
    done = subprocess.run(
        [*FI_RUN, "--list-signatures"],
        cwd=tmp_path,
        env=base_environ({"PYTHONIOENCODING": "cp1252", "PYTHONUTF8": "0"}),
        capture_output=True,
        timeout=HANG_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert b"windows-lock-violation" in done.stdout
    assert b"\\u" in done.stdout  # the CJK examples, escaped


# --- 4. liveness of a waiter or holder


def test_a_process_that_exited_is_not_alive_and_a_running_one_is() -> None:
    child = subprocess.Popen(py("import time; time.sleep(60)"))
    try:
        assert alive(child.pid)
    finally:
        child.kill()
        child.wait(timeout=HANG_TIMEOUT)
    assert wait_until(lambda: not alive(child.pid), "the killed child to be reported dead")
    assert alive(os.getpid())


# --- 5. the process tree: --timeout with a failing taskkill, and a killed fi_run

# The command starts an intermediate process that starts a grandchild and exits at once: the grandchild's
# parent is gone, so nothing that walks parent ids (taskkill /T) can find it.
TREE = """
import os, subprocess, sys, time
inter = ("import subprocess, sys; "
         "g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], "
         "stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); print(g.pid)")
grandchild = subprocess.run([sys.executable, "-c", inter], capture_output=True, text=True).stdout.strip()
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(f"{os.getpid()} {grandchild}")
os.replace(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(60)
"""


def _tree_pids(pidfile: Path) -> list[int]:
    wait_until(pidfile.exists, "the command to start its grandchild")
    return [int(p) for p in pidfile.read_text().split()]


def _gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not process_gone(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _clean_up(pids: list[int]) -> list[int]:
    """Kill whatever of ``pids`` is still running (ours: started by the test); return those pids."""
    survivors = [pid for pid in pids if not _gone_within(pid, 5.0)]
    for pid in survivors:
        try:
            os.kill(pid, 9)  # on Windows: TerminateProcess
        except OSError:
            pass
    return survivors


@windows_only
def test_timeout_stops_the_whole_tree_even_when_taskkill_fails(tmp_path: Path) -> None:
    # CreateProcess looks in the current directory before the system's: this taskkill.exe is a program that
    # fails (ninja without a build.ninja), so only the job object can stop the tree.
    shutil.copyfile(ninja_binary(), tmp_path / "taskkill.exe")
    pidfile = tmp_path / "pids"
    try:
        done = subprocess.run(
            [*FI_RUN, "--timeout", "3", "--", *py(TREE, str(pidfile))],
            cwd=tmp_path,
            env=base_environ(),
            capture_output=True,
            timeout=60,
            check=False,
        )
    finally:
        pids = _tree_pids(pidfile)
        survivors = _clean_up(pids)
    assert done.returncode == 124, done.stderr
    assert survivors == [], f"left running after --timeout: {survivors} of {pids}"


@windows_only
def test_nothing_of_the_tree_outlives_a_killed_fi_run(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    proc = subprocess.Popen([*FI_RUN, "--", *py(TREE, str(pidfile))], cwd=tmp_path, env=base_environ())
    try:
        pids = _tree_pids(pidfile)
    finally:
        proc.kill()  # TerminateProcess: fi_run cleans nothing up itself
        proc.wait(timeout=HANG_TIMEOUT)
    survivors = _clean_up(pids)
    assert survivors == [], f"outlived fi_run: {survivors} of {pids}"


@windows_only
def test_a_step_that_ends_normally_leaves_what_it_started_on_purpose_running(tmp_path: Path) -> None:
    # A daemon a compiler starts (mspdbsrv.exe) must outlive the step that started it, as without fi_run.
    pidfile = tmp_path / "pids"
    daemon = (
        "import subprocess, sys; g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'],"
        " stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL);"
        f" open({str(pidfile)!r}, 'w').write(str(g.pid))"
    )
    done = subprocess.run(
        [*FI_RUN, "--", *py(daemon)], cwd=tmp_path, env=base_environ(), timeout=HANG_TIMEOUT, check=False
    )
    assert done.returncode == 0
    pid = int(pidfile.read_text())
    time.sleep(0.5)  # a kill-on-close would have ended it by now
    still_running = not process_gone(pid)
    _clean_up([pid])
    assert still_running, "the step's daemon died with the step"


INTERRUPTED_RUN = """
import os, signal, sys, threading
from fi_run.step.interrupts import Interrupts
from fi_run.step.run_windows import run_once

# Wine cannot deliver CTRL_BREAK_EVENT (GenerateConsoleCtrlEvent fails there): raise SIGBREAK in fi_run's own
# process instead, as the console would, while the command runs.
threading.Timer(1.0, signal.raise_signal, (signal.SIGBREAK,)).start()
with Interrupts() as interrupts:
    argv = (sys.executable, "-c", sys.argv[1], sys.argv[2])
    outcome = run_once(
        sys.executable,
        argv,
        env=dict(os.environ),
        cwd=None,
        stdout=None,
        stderr=None,
        timeout=None,
        interrupts=interrupts,
    )
print(interrupts.signum, outcome.status)
"""

TREE_THEN_EXIT = TREE.replace("time.sleep(60)\n", "time.sleep(3)\n").rstrip() + "\n"


@windows_only
def test_after_an_interrupt_what_the_command_left_running_is_stopped(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    code = TREE_THEN_EXIT
    assert code.endswith("time.sleep(3)\n")
    done = subprocess.run(
        [sys.executable, "-c", INTERRUPTED_RUN, code, str(pidfile)],
        cwd=tmp_path,
        env=base_environ(),
        capture_output=True,
        text=True,
        timeout=HANG_TIMEOUT,
        check=False,
    )
    pids = _tree_pids(pidfile)
    survivors = _clean_up(pids[1:])  # the grandchild: its parent ended on its own
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[0] == "21", done.stdout  # SIGBREAK was noted
    assert survivors == [], f"left running after the interrupt: {survivors}"


# --- 6. --log from many processes at once

APPENDER = """
import sys
from fi_run.observe.schema import SCHEMA_VERSION, Step
from fi_run.observe.steplog import append

class Reporter:
    def warning(self, message):
        print(message, file=sys.stderr)

for i in range(int(sys.argv[3])):
    argv = ("worker", sys.argv[2], str(i), "x" * 200)
    times = {"start": 0.0, "end": 0.0, "duration": 0.0}
    step = Step(v=SCHEMA_VERSION, argv=argv, status=0, attempts=(), locks=(), **times)
    append(sys.argv[1], step, Reporter())
"""


def test_concurrent_log_appends_lose_no_record_and_tear_none(tmp_path: Path) -> None:
    log = tmp_path / "steps.jsonl"
    workers, each = 4, 300
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", APPENDER, str(log), str(w), str(each)],
            env=base_environ(),
            stderr=subprocess.PIPE,
        )
        for w in range(workers)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=HANG_TIMEOUT)
        assert proc.returncode == 0, err
        assert not err, err
    lines = log.read_bytes().split(b"\n")
    assert lines[-1] == b""
    lines = [line for line in lines[:-1] if line]  # on POSIX a rare empty line is allowed (steplog.append)
    records = set()
    for line in lines:
        argv = json.loads(line)["argv"]  # a torn line does not parse
        records.add((argv[1], argv[2]))
    assert len(lines) == workers * each, f"{workers * each - len(lines)} records lost"
    assert len(records) == workers * each, "a record written twice"


# --- locks across processes (LockFileEx on Windows), as the lock tests check them on POSIX

INTERVAL = """
import os, sys, time
start = time.perf_counter_ns()  # QueryPerformanceCounter / CLOCK_MONOTONIC: one clock for all processes
time.sleep(0.3)
end = time.perf_counter_ns()
with open(os.path.join(sys.argv[1], f"{os.getpid()}.iv"), "w") as f:
    f.write(f"{start} {end}")
"""


def test_exclusive_holders_of_one_resource_never_overlap(tmp_path: Path) -> None:
    (tmp_path / "iv").mkdir()
    lock = ["--lock-dir", str(tmp_path / "locks"), "--lock", str(tmp_path / "resource")]
    procs = [
        subprocess.Popen([*FI_RUN, *lock, "--", *py(INTERVAL, str(tmp_path / "iv"))], env=base_environ())
        for _ in range(4)
    ]
    assert [proc.wait(timeout=HANG_TIMEOUT) for proc in procs] == [0] * 4
    intervals = sorted(tuple(map(int, p.read_text().split())) for p in (tmp_path / "iv").iterdir())
    assert len(intervals) == 4
    overlaps = [(a, b) for a, b in itertools.pairwise(intervals) if b[0] < a[1]]
    assert overlaps == []


WRITE_PID_AND_SLEEP = """
import os, sys, time
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(str(os.getpid()))
os.replace(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(60)
"""


def test_a_killed_holder_frees_the_lock(tmp_path: Path) -> None:
    lock = ["--lock-dir", str(tmp_path / "locks"), "--lock", str(tmp_path / "resource")]
    marker = tmp_path / "holding"
    holder = subprocess.Popen(
        [
            *FI_RUN,
            *lock,
            "--",
            *py(WRITE_PID_AND_SLEEP, str(marker)),
        ],
        env=base_environ(),
    )
    try:
        wait_until(marker.exists, "the holder's command to start")
        waiter = subprocess.run(
            [*FI_RUN, *lock, "--lock-timeout", "1", "--", *py("pass")],
            env=base_environ(),
            timeout=HANG_TIMEOUT,
            check=False,
        )
        assert waiter.returncode == 75  # held
    finally:
        holder.kill()  # SIGKILL / TerminateProcess: the holder releases nothing itself
        holder.wait(timeout=HANG_TIMEOUT)
        if sys.platform != "win32":
            # On POSIX the command inherits the locks (docs/faults.md): the holder is dead once it is too.
            # On Windows the job object ended the command with fi_run.
            _clean_up([int(marker.read_text())])
    after = subprocess.run(
        [*FI_RUN, *lock, "--lock-timeout", "60", "--", *py("pass")],
        env=base_environ(),
        timeout=HANG_TIMEOUT,
        check=False,
    )
    survivors = _clean_up([int(marker.read_text())])
    assert after.returncode == 0
    assert survivors == []  # on Windows: the command died with fi_run (its job)


# --- the --retry-on child (issue 11's bounded user regexes): Windows has no RLIMIT_CPU, so a job object


if sys.platform == "win32":

    def _descendants(pid: int) -> list[int]:
        """Every process below ``pid`` (a venv's python.exe is a launcher: fi_run is its child), by a Toolhelp
        snapshot of parent ids."""
        import ctypes
        from ctypes import wintypes

        class Entry(ctypes.Structure):
            _fields_ = (
                ("dwSize", wintypes.DWORD),
                ("cntUsage", wintypes.DWORD),
                ("th32ProcessID", wintypes.DWORD),
                ("th32DefaultHeapID", ctypes.c_void_p),
                ("th32ModuleID", wintypes.DWORD),
                ("cntThreads", wintypes.DWORD),
                ("th32ParentProcessID", wintypes.DWORD),
                ("pcPriClassBase", ctypes.c_long),
                ("dwFlags", wintypes.DWORD),
                ("szExeFile", ctypes.c_wchar * 260),
            )

        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
        kernel32.CreateToolhelp32Snapshot.restype = wintypes.HANDLE
        snapshot = kernel32.CreateToolhelp32Snapshot(0x2, 0)  # TH32CS_SNAPPROCESS
        parents: dict[int, int] = {}
        entry = Entry()
        entry.dwSize = ctypes.sizeof(entry)
        more = kernel32.Process32FirstW(snapshot, ctypes.byref(entry))
        while more:
            parents[entry.th32ProcessID] = entry.th32ParentProcessID
            more = kernel32.Process32NextW(snapshot, ctypes.byref(entry))
        kernel32.CloseHandle(snapshot)
        found: list[int] = []
        frontier = [pid]
        while frontier:
            below = [child for child, parent in parents.items() if parent in frontier and child not in found]
            found.extend(below)
            frontier = below
        return found

else:

    def _descendants(pid: int) -> list[int]:
        raise AssertionError("a Toolhelp snapshot exists on Windows only")


@windows_only
def test_a_retry_on_regex_child_does_not_outlive_a_killed_fi_run(tmp_path: Path) -> None:
    """A catastrophic --retry-on regex runs in a child Python (recognizer.user_matches). On POSIX it limits
    its own CPU time; on Windows it sits in a kill-on-close job object, so killing fi_run ends it too."""
    output = tmp_path / "output.txt"
    output.write_text("a" * 40 + "!\n")  # ^(a+)+$ backtracks for 2**40 steps on this line
    proc = subprocess.Popen(
        [*FI_RUN, "classify", "--retry-on", "^(a+)+$", str(output)],
        env=base_environ(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    below: list[int] = []

    def regex_child_started() -> bool:
        below[:] = _descendants(proc.pid)
        return len(below) >= 2  # the launcher's fi_run and fi_run's regex child

    try:
        wait_until(regex_child_started, "fi_run classify to start its regex child")
        # The child shows up while it is still suspended, before fi_run has moved it into the job (a kill in
        # that instant would leave it outside: docs/windows.md). fi_run moves it within milliseconds and
        # stops it after 2 s itself: kill fi_run in between. Under Wine neither IsProcessInJob nor the
        # process times tell the two states apart, so this waits a fixed 0.5 s.
        time.sleep(0.5)
    finally:
        proc.kill()
        proc.wait(timeout=HANG_TIMEOUT)
    survivors = _clean_up(below)
    assert survivors == [], f"outlived fi_run: {survivors} of {below}"


# --- a hand-off on Windows keeps the lock file (issue 22)

# Holds the exclusive lock on argv[2] (lock directory argv[1]) in-process, as a step would, and keeps a hard
# link to the gate file so that its identity stays taken if the file is deleted (as NTFS file IDs are; Wine on
# ext4 reuses a freed inode at once, which hid the bug). Releases when DIR/release exists, then lives on: a
# holder under fi-run jobserver can stay alive up to a minute after its release, repaying its job slot.
HOLD_THEN_LIVE_ON = """
import os, sys, time
from fi_run.contention.locks import held_locks
from fi_run.messages import Reporter
from fi_run.records import LockRequest, StepRecord, StepSpec
lock_dir, resource, control = sys.argv[1:4]
spec = StepSpec(command=("holder",), start_dir=os.getcwd(), locks=(LockRequest(resource, "exclusive"),),
                lock_dir=lock_dir)
with held_locks(spec, Reporter(), StepRecord()):
    (gate,) = [os.path.join(d, "gate.lock") for d, _, files in os.walk(lock_dir) if "gate.lock" in files]
    os.link(gate, gate + ".keep")
    open(os.path.join(control, "ready"), "w").close()
    while not os.path.exists(os.path.join(control, "release")):
        time.sleep(0.02)
open(os.path.join(control, "released"), "w").close()
time.sleep(600)
"""


def test_a_waiter_goes_on_at_the_release_while_the_last_holder_lives_on(tmp_path: Path) -> None:
    """Issue 22: filelock deleted gate.lock on every Windows release, the next holder made a new one, and a
    waiter that had noted the old file took that for "removed while pid N held it": it warned and waited,
    holding the lock, until the previous holder's process ended. Now the file is kept (preserve_lock_file):
    the waiter runs as soon as the lock is free, says nothing, and the old holder is still alive."""
    lock_dir, resource, control = tmp_path / "locks", tmp_path / "resource", tmp_path / "ctl"
    control.mkdir()
    holder = subprocess.Popen(
        [*py(HOLD_THEN_LIVE_ON, str(lock_dir), str(resource), str(control))], env=base_environ()
    )
    try:
        wait_until((control / "ready").exists, "the holder to hold the lock")
        waiter = subprocess.Popen(
            [
                *FI_RUN,
                "--lock-dir",
                str(lock_dir),
                "--lock",
                str(resource),
                "--lock-timeout",
                "30",
                "--",
                *py("pass"),
            ],
            env=base_environ(),
            stderr=subprocess.PIPE,
            text=True,
        )
        # The waiter has found the lock taken once it stands in the resource's waiters directory (the only
        # one there: the holder took the lock at once). Not by pid: a venv's python.exe is a launcher.
        wait_until(lambda: any(lock_dir.glob("*/waiters/*")), "the waiter to wait")
        (control / "release").touch()
        _, err = waiter.communicate(timeout=HANG_TIMEOUT)
        assert (waiter.returncode, err) == (0, "")
        assert (control / "released").exists()
        assert holder.poll() is None, "the waiter went on while the previous holder still lived"
    finally:
        holder.kill()
        holder.wait(timeout=HANG_TIMEOUT)


# --- fi-run jobserver on Windows: a named semaphore, and no lock coordinator (issue 18)

JOBSERVER_CHILD = """
import glob, json, os, subprocess, sys, time
lock_dir, resource, work = sys.argv[1:4]
print(os.environ.get("FI_RUN_COORDINATOR", "no coordinator"), os.environ["MAKEFLAGS"].split()[-1])
fi_run = [sys.executable, "-m", "fi_run", "--lock-dir", lock_dir, "--lock", resource]
hold = ("import os, sys, time\\nopen(sys.argv[1], 'w').close()\\n"
        "while not os.path.exists(sys.argv[2]): time.sleep(0.02)")
held, release = os.path.join(work, "held"), os.path.join(work, "release")
holder = subprocess.Popen([*fi_run, "--", sys.executable, "-c", hold, held, release])
while not os.path.exists(held):
    time.sleep(0.02)
log = os.path.join(work, "step.log")
step = subprocess.Popen([*fi_run, "-v", "--log", log, "--", sys.executable, "-c", "pass"])
while not glob.glob(os.path.join(lock_dir, "*", "waiters", "*")):  # the step waits (and has lent its slot)
    time.sleep(0.02)
open(release, "w").close()
status = holder.wait() or step.wait()
(record,) = [json.loads(line) for line in open(log)]
print(len(record["lent"]))
sys.exit(status)
"""


@windows_only
def test_a_windows_jobserver_runs_no_coordinator_and_its_steps_lend_through_the_semaphore(
    tmp_path: Path,
) -> None:
    """The coordinator needs AF_UNIX descriptor passing: on Windows the jobserver runs none and marks none. A
    locked step under it takes its lock through the lock directory, and while it waits it lends its job slot
    through the named semaphore (ReleaseSemaphore, then WaitForSingleObject to take it back); every token
    comes back."""
    child = py(JOBSERVER_CHILD, str(tmp_path / "locks"), str(tmp_path / "resource"), str(tmp_path))
    done = subprocess.run(
        [*FI_RUN, "jobserver", "-j", "2", "--", *child],
        env=base_environ(),
        capture_output=True,
        text=True,
        timeout=HANG_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    first, lent = done.stdout.splitlines()
    assert first.startswith(
        "no coordinator --jobserver-auth=fi_run_jobserver_"
    )  # a semaphore, no coordinator
    assert lent == "1"  # the waiting step lent its slot once
    assert "locks held after" in done.stderr
    assert "coordinator" not in done.stderr
    assert "jobserver:" not in done.stderr  # every token came back
