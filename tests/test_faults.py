"""fi_run under faults (issue 12): SIGKILL of fi_run itself, closed streams, doomed stamps, a full or
read-only TMPDIR, torn --log records, numbers that could only fail after the spawn, small messages.

Every test runs real processes; each one failed on the code before the fix it covers (see docs/faults.md).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import pytest
from fi_run_testing import HANG_TIMEOUT, base_environ, fi_run_argv, py, run_fi_run, wait_until

if sys.platform == "win32":
    pytest.skip("POSIX faults; Windows has its own (issue 13)", allow_module_level=True)

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


def _events(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").split() if path.exists() else []


# --- 1. SIGKILL of fi_run while its command runs under --lock


def test_sigkill_of_fi_run_keeps_the_lock_until_its_orphaned_command_ends(tmp_path: Path) -> None:
    """The command inherits the lock's descriptor: the next holder waits for the orphan, as with flock(1)."""
    events = tmp_path / "events"
    locks = tmp_path / "locks"
    first = py(
        """
        import sys, time
        with open(sys.argv[1], "a") as f: f.write("A-start\\n")
        time.sleep(2)
        with open(sys.argv[1], "a") as f: f.write("A-end\\n")
        """,
        str(events),
    )
    holder = subprocess.Popen(
        [*fi_run_argv("module"), "--lock-dir", str(locks), "--lock", "R", "--", *first],
        cwd=tmp_path,
        env=base_environ(),
        stdin=subprocess.DEVNULL,
    )
    try:
        assert wait_until(lambda: "A-start" in _events(events), HANG_TIMEOUT)
        holder.kill()  # SIGKILL: fi_run cannot release anything itself
        holder.wait(HANG_TIMEOUT)
        second = py('import sys\nwith open(sys.argv[1], "a") as f: f.write("B-start\\n")', str(events))
        ran = run_fi_run("module", ["--lock-dir", str(locks), "--lock", "R", "--", *second], cwd=tmp_path)
        assert ran.status == 0, ran.err
        # Before the fix B-start came right after A-start: two holders inside one exclusive lock.
        assert _events(events) == ["A-start", "A-end", "B-start"]
    finally:
        if holder.poll() is None:
            holder.kill()
        wait_until(lambda: "A-end" in _events(events), HANG_TIMEOUT)


def test_a_normal_release_frees_the_lock_even_while_a_daemon_keeps_the_inherited_descriptor(
    tmp_path: Path,
) -> None:
    """The trade-off's good half: a daemon the command leaves behind does not keep the lock when fi_run ends
    normally, because fi_run unlocks the open file description itself."""
    locks = tmp_path / "locks"
    alive = tmp_path / "daemon-alive"
    daemon = py(
        """
        import os, subprocess, sys, time
        code = "import pathlib, sys, time; pathlib.Path(sys.argv[1]).write_text('x'); time.sleep(4)"
        subprocess.Popen([sys.executable, "-c", code, sys.argv[1]], start_new_session=True, close_fds=False)
        """,
        str(alive),
    )
    ran = run_fi_run("module", ["--lock-dir", str(locks), "--lock", "R", "--", *daemon], cwd=tmp_path)
    assert ran.status == 0, ran.err
    assert wait_until(alive.exists, HANG_TIMEOUT)
    ran = run_fi_run(
        "module", ["--lock-dir", str(locks), "--lock", "R", "--lock-timeout", "1", "--", "true"], cwd=tmp_path
    )
    assert ran.status == 0, ran.err  # 75 (lock timeout) if the daemon's descriptor kept the lock


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--timeout", "1e10"], {}, "--timeout expects at most"),
        ([], {"FI_RUN_TIMEOUT": "1e10"}, "FI_RUN_TIMEOUT expects at most"),
        (["--lock-timeout", "1e300"], {}, "--lock-timeout expects at most"),
        ([], {"FI_RUN_TIMEOUT": "1_0"}, "FI_RUN_TIMEOUT expects seconds"),
        (["--retries", "1_0"], {}, "--retries expects a whole number"),
        (["--semaphore", "R=1_0"], {}, "--semaphore expects a whole number"),
    ],
)
def test_numbers_are_checked_before_anything_is_spawned(
    tmp_path: Path, args: list[str], env: dict[str, str], message: str
) -> None:
    marker = tmp_path / "ran"
    command = py("import sys; open(sys.argv[1], 'w').close()", str(marker))
    ran = run_fi_run("module", [*args, "--lock-dir", str(tmp_path / "l"), "--", *command], env=env)
    assert ran.status == 2
    assert ran.err.startswith(f"fi_run: {message}"), ran.err
    assert "Traceback" not in ran.err
    assert not marker.exists()  # before the fix 1e10 ran the command, then exited 70 leaving it orphaned


def test_the_largest_timeout_accepted_still_works(tmp_path: Path) -> None:
    ran = run_fi_run("module", ["--timeout", "1e8", "--", sys.executable, "-c", "pass"])
    assert ran.status == 0, ran.err


def _kill_after_start(proc: subprocess.Popen[bytes], path: Path) -> None:
    assert wait_until(path.exists, HANG_TIMEOUT)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(HANG_TIMEOUT)


def test_sigkill_during_a_wait_leaves_the_holder_unharmed(tmp_path: Path) -> None:
    """A waiter killed with SIGKILL leaves a stale doorbell entry; the holder's release still works and the
    next waiter still gets in."""
    locks = tmp_path / "locks"
    started = tmp_path / "started"
    holder = subprocess.Popen(
        [
            *fi_run_argv("module"),
            "--lock-dir",
            str(locks),
            "--lock",
            "R",
            "--",
            *py("import pathlib, sys, time; pathlib.Path(sys.argv[1]).touch(); time.sleep(2)", str(started)),
        ],
        env=base_environ(),
        cwd=tmp_path,
    )
    waiter = subprocess.Popen(
        [*fi_run_argv("module"), "--lock-dir", str(locks), "--lock", "R", "--", "true"],
        env=base_environ(),
        cwd=tmp_path,
    )
    try:
        _kill_after_start(waiter, started)
        time.sleep(0.2)
        ran = run_fi_run("module", ["--lock-dir", str(locks), "--lock", "R", "--", "true"], cwd=tmp_path)
        assert ran.status == 0, ran.err
        assert holder.wait(HANG_TIMEOUT) == 0
    finally:
        for proc in (holder, waiter):
            if proc.poll() is None:
                proc.kill()
                proc.wait()


# --- 6. closed standard streams (fi_run ... >&-)


def _with_closed(redirections: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess[bytes]:
    """fi_run started with some standard descriptors closed, by sh (``>&-``, ``2>&-``, ``<&-``)."""
    return subprocess.run(
        ["sh", "-c", f'exec "$@" {redirections}', "sh", *fi_run_argv("script"), *args],
        cwd=cwd, env=base_environ(), capture_output=True, timeout=HANG_TIMEOUT, check=False,
    )  # fmt: skip


PROBE_FDS = """
import os, sys
closed = []
for fd in (0, 1, 2):
    try:
        os.fstat(fd)
    except OSError:
        closed.append(str(fd))
open(sys.argv[1], "w").write(",".join(closed))
sys.exit(int(sys.argv[2]))
"""


@pytest.mark.parametrize("redirections", [">&-", "2>&-", ">&- 2>&-", "<&- >&- 2>&-"])
@pytest.mark.parametrize("lock", [False, True])
@pytest.mark.parametrize("status", [0, 3])
def test_closed_streams_pass_through_closed_and_the_commands_status_stands(
    tmp_path: Path, redirections: str, lock: bool, status: int
) -> None:
    seen, stamp = tmp_path / "seen", tmp_path / "out.stamp"
    locks = ["--lock-dir", str(tmp_path / "l"), "--lock", "R"] if lock else []
    done = _with_closed(
        redirections, [*locks, "--stamp", str(stamp), "--", *py(PROBE_FDS, str(seen), str(status))], tmp_path
    )
    assert done.returncode == status, done.stderr  # before the fix: 1, with a traceback
    assert b"Traceback" not in done.stderr
    assert stamp.exists() == (status == 0)
    expected = sorted({"<&-": "0", ">&-": "1", "2>&-": "2"}[r] for r in redirections.split())
    assert seen.read_text().split(",") == expected  # closed for the command, as without fi_run


@pytest.mark.parametrize("redirections", [">&-", "2>&-", ">&- 2>&-"])
def test_command_not_found_is_127_with_closed_streams(tmp_path: Path, redirections: str) -> None:
    done = _with_closed(redirections, ["--", "no-such-command-fi-run-test"], tmp_path)
    assert done.returncode == 127
    assert b"Traceback" not in done.stderr


# --- 7. doomed work: a stamp that could never be written fails before the command runs


def _marker_command(marker: Path) -> list[str]:
    return py("import sys; open(sys.argv[1], 'w').close()", str(marker))


def test_a_stamp_name_too_long_for_its_temporary_file_fails_before_the_command(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    stamp = tmp_path / ("s" * 250)  # a legal name; its temporary name beside it is not
    ran = run_fi_run("module", ["--stamp", str(stamp), "--", *_marker_command(marker)])
    assert ran.status == 2, ran.err  # before the fix: the command ran, then 74
    assert ran.err.startswith("fi_run: --stamp "), ran.err
    assert "File name too long" in ran.err
    assert not marker.exists()


@pytest.fixture
def unwritable_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory that exists, where no file can be created but removing a missing one is ENOENT (so the
    old stamp's removal succeeds): mode 0555 for a user; for root, a tmpfs with all its inodes used."""
    directory = tmp_path / "full"
    directory.mkdir()
    if os.geteuid() != 0:
        directory.chmod(0o555)
        yield directory
        directory.chmod(0o755)
        return
    mounted = ["mount", "-t", "tmpfs", "-o", "size=64k,nr_inodes=16", "tmpfs", str(directory)]
    if subprocess.run(mounted, check=False, capture_output=True).returncode != 0:
        pytest.skip("root, but cannot mount a tmpfs here")
    try:
        for i in range(100):
            try:
                (directory / f"filler-{i}").touch()
            except OSError:
                break
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)


def test_a_stamp_directory_that_cannot_be_written_fails_before_the_command(
    tmp_path: Path, unwritable_dir: Path
) -> None:
    marker = tmp_path / "ran"
    ran = run_fi_run("module", ["--stamp", str(unwritable_dir / "x.stamp"), "--", *_marker_command(marker)])
    assert ran.status == 2, ran.err  # before the fix: the command ran, then 74
    assert "could not be written after the command" in ran.err
    assert not marker.exists()


def test_a_temporary_stamp_file_left_by_a_killed_run_is_cleared_by_the_next_run(tmp_path: Path) -> None:
    stamp = tmp_path / "x.stamp"
    leftover = tmp_path / ".x.stamp.fi_run.tmp"  # what a SIGKILL between create and rename leaves
    leftover.write_text("")
    ran = run_fi_run("module", ["--stamp", str(stamp), "--", sys.executable, "-c", "pass"])
    assert ran.status == 0, ran.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.stamp"]


def test_sigkill_at_any_point_of_a_stamped_step_leaves_no_temporary_file_after_the_next_run(
    tmp_path: Path,
) -> None:
    stamp = tmp_path / "out" / "x.stamp"
    for delay in (0.0, 0.05, 0.1, 0.15, 0.2, 0.3):
        proc = subprocess.Popen(
            [*fi_run_argv("module"), "--stamp", str(stamp), "--", "true"],
            env=base_environ(),
            stderr=subprocess.DEVNULL,
        )
        time.sleep(delay)
        proc.kill()
        proc.wait(HANG_TIMEOUT)
    ran = run_fi_run("module", ["--stamp", str(stamp), "--", "true"])
    assert ran.status == 0, ran.err
    assert sorted(p.name for p in stamp.parent.iterdir()) == ["x.stamp"]


# --- 11. small things


@pytest.mark.parametrize("spelling", [["--stamp", "@out.stamp"], ["--stamp=@out.stamp"]])
def test_an_option_value_starting_with_at_is_a_value_not_a_response_file(
    tmp_path: Path, spelling: list[str]
) -> None:
    ran = run_fi_run("module", [*spelling, "--", "true"], cwd=tmp_path)
    assert ran.status == 0, ran.err  # before the fix: "cannot read response file 'out.stamp'"
    assert (tmp_path / "@out.stamp").is_file()


def test_a_response_file_ending_in_an_option_gives_it_the_next_word_as_its_value(tmp_path: Path) -> None:
    (tmp_path / "args.rsp").write_text("--quiet-on-success --stamp\n")
    ran = run_fi_run("module", ["@args.rsp", "@out.stamp", "--", "true"], cwd=tmp_path)
    assert ran.status == 0, ran.err
    assert (tmp_path / "@out.stamp").is_file()


# --- 5. a full or read-only $TMPDIR must not change the step's result


def _mount_tmpfs(directory: Path, options: str) -> None:
    directory.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(directory)], capture_output=True, check=False
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (root needed): {done.stderr.decode().strip()}")


@pytest.fixture(params=["full", "read-only"])
def bad_tmpdir(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "tmpdir"
    _mount_tmpfs(directory, "size=256k" if request.param == "full" else "ro,size=64k")
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)


BIG_OUTPUT = """
import sys
line = "x" * 99 + "\\n"
for i in range(10_000):  # about 1 MB on stdout, 4 times what the full TMPDIR has room for
    sys.stdout.write(line)
sys.stdout.write("last line\\n")
sys.stderr.write("done on stderr\\n")
"""


@pytest.mark.parametrize("quiet", [False, True])
def test_a_full_or_read_only_tmpdir_does_not_change_the_result(
    tmp_path: Path, bad_tmpdir: Path, quiet: bool
) -> None:
    stamp = tmp_path / "x.stamp"
    args = ["--quiet-on-success"] if quiet else []
    ran = run_fi_run(
        "module", [*args, "--stamp", str(stamp), "--", *py(BIG_OUTPUT)], env={"TMPDIR": str(bad_tmpdir)}
    )
    # before the fix: full, exit 1 with the output cut; read-only, exit 70
    assert ran.status == 0, ran.err[-500:]
    assert ran.out.endswith("last line\n")
    assert len(ran.out) == 10_000 * 100 + len("last line\n")
    assert stamp.exists()
    warnings = [line for line in ran.err.splitlines() if line.startswith("fi_run:")]
    assert len(warnings) == 1, ran.err
    assert "cannot hold the command's output" in warnings[0]
    assert "done on stderr" in ran.err


def test_a_failure_is_not_retried_when_its_output_cannot_be_held(tmp_path: Path, bad_tmpdir: Path) -> None:
    count = tmp_path / "count"
    failing = py(
        """
        import sys
        with open(sys.argv[1], "a") as f: f.write("x")
        print("Text file busy")
        sys.exit(1)
        """,
        str(count),
    )
    ran = run_fi_run(
        "module", ["--retry-on", "Text file busy", "--", *failing], env={"TMPDIR": str(bad_tmpdir)}
    )
    assert ran.status == 1
    assert count.read_text() == "x"  # one attempt: its output was never examined
    assert "a failure is not retried" in ran.err


# --- 4. --log records are whole or absent


def _report(log: Path) -> str:
    ran = run_fi_run("module", ["report", str(log)])
    assert ran.status == 0, ran.err
    assert "Traceback" not in ran.err
    return ran.out


def test_a_record_after_a_torn_line_starts_on_a_fresh_line(tmp_path: Path) -> None:
    log = tmp_path / "steps.log"
    assert run_fi_run("module", ["--log", str(log), "--", "true"]).status == 0
    whole = log.read_bytes()
    log.write_bytes(whole + whole[: len(whole) // 2])  # a writer cut short on a full disk
    assert run_fi_run("module", ["--log", str(log), "--", "true"]).status == 0
    lines = log.read_bytes().split(b"\n")
    assert lines[-1] == b""
    assert lines[-2].startswith(b"{")  # before the fix it was glued to the half line before it
    assert lines[-3] == whole[: len(whole) // 2]
    report = _report(log)
    assert "2 steps" in report, report
    assert "skipped 1 unreadable line" in report, report


def _is_record(line: bytes) -> bool:
    import json

    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def test_a_log_on_a_full_tmpfs_loses_only_the_torn_record(tmp_path: Path) -> None:
    mount = tmp_path / "small"
    _mount_tmpfs(mount, "size=16k")
    try:
        log = mount / "steps.log"
        assert run_fi_run("module", ["--log", str(log), "--", "true"]).status == 0
        filler = os.open(mount / "filler", os.O_WRONLY | os.O_CREAT)
        try:  # the rest of the disk, to the last block
            while os.write(filler, b"\0" * 512):
                pass
        except OSError:
            pass
        finally:
            os.close(filler)
        warned = 0
        for _ in range(40):  # fills the log's last page: a short write, then nothing fits
            ran = run_fi_run("module", ["--log", str(log), "--", "true"])
            assert ran.status == 0  # a log that cannot be written never fails the step
            warned += "cannot write the log" in ran.err
        assert warned
        (mount / "filler").unlink()
        for _ in range(2):
            assert run_fi_run("module", ["--log", str(log), "--", "true"]).status == 0
        lines = log.read_bytes().split(b"\n")
        assert lines[-1] == b""
        whole = [line for line in lines[:-1] if _is_record(line)]
        torn = [line for line in lines[:-1] if not _is_record(line)]
        assert len(torn) <= 1  # at most the one short write; every later record whole
        assert _is_record(lines[-2])
        assert _is_record(lines[-3])
        report = _report(log)
        assert f"{len(whole)} steps" in report, report
        if torn:
            assert "skipped 1 unreadable line" in report, report
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_report_skips_a_record_with_an_impossible_date(tmp_path: Path) -> None:
    log = tmp_path / "steps.log"
    assert run_fi_run("module", ["--log", str(log), "--", "true"]).status == 0
    record = log.read_text()
    log.write_text(record + record.replace('"start":', '"start":1e300,"was":', 1))
    report = _report(log)  # before the fix: exit 70 (an OverflowError formatting the date)
    assert "1 step" in report, report
    assert "skipped 1 unreadable line" in report, report


# --- 3. the lock directory removed while steps hold and wait


def test_the_lock_directory_removed_under_a_holder_and_a_waiter_never_admits_two_holders(
    tmp_path: Path,
) -> None:
    import shutil

    events, locks = tmp_path / "events", tmp_path / "locks"
    step = """
        import sys, time
        with open(sys.argv[1], "a") as f: f.write(sys.argv[2] + "-start\\n")
        time.sleep(float(sys.argv[3]))
        with open(sys.argv[1], "a") as f: f.write(sys.argv[2] + "-end\\n")
        """

    def start(tag: str, seconds: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [*fi_run_argv("module"), "--lock-dir", str(locks), "--lock", "R", "--",
             *py(step, str(events), tag, seconds)],
            cwd=tmp_path, env=base_environ(), stderr=subprocess.PIPE,
        )  # fmt: skip

    holder = start("A", "2")
    try:
        assert wait_until(lambda: "A-start" in _events(events), HANG_TIMEOUT)
        waiter = start("B", "0")
        time.sleep(0.5)  # B is waiting now
        shutil.rmtree(locks)  # what rm -rf or a tmp cleaner does
        assert waiter.wait(HANG_TIMEOUT) == 0
        assert holder.wait(HANG_TIMEOUT) == 0
        # before the fix: A-start, B-start, B-end, A-end (B entered 0.1 s after the removal)
        assert _events(events) == ["A-start", "A-end", "B-start", "B-end"]
        assert b"was removed while pid" in (waiter.stderr.read() if waiter.stderr else b"")
        assert b"was removed while this step held it" in (holder.stderr.read() if holder.stderr else b"")
    finally:
        for proc in (holder,):
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_a_script_whose_interpreter_is_missing_is_127_bad_interpreter_as_in_bash(tmp_path: Path) -> None:
    script = tmp_path / "tool"
    script.write_text("#!/no/such/interpreter -x\necho hi\n")
    script.chmod(0o755)
    ran = run_fi_run("module", ["--", str(script)])
    assert ran.status == 127  # before the fix: 126
    assert ran.err.startswith("fi_run: cannot execute "), ran.err
    assert "bad interpreter '/no/such/interpreter'" in ran.err


def test_the_timeout_message_says_what_was_stopped_and_what_was_not(tmp_path: Path) -> None:
    ran = run_fi_run("module", ["--timeout", "0.5", "--", "sleep", "30"])
    assert ran.status == 124
    assert "stopped 'sleep' and its process group" in ran.err  # no claim about everything it started
    assert "setsid" in ran.err


# --- 8. fairness: first come, first served per resource, from the --log


def _arrivals_and_acquisitions(log: Path) -> list[tuple[float, float, str]]:
    """(arrival, acquisition, tag) of every logged step, from its lock entry; sorted by arrival."""
    import json

    rows = []
    for line in log.read_text().splitlines():
        record = json.loads(line)
        (lock,) = record["locks"]
        arrival = record["start"] + lock["wait_start"]
        rows.append((arrival, arrival + lock["wait"], record["argv"][-1]))
    return sorted(rows)


def test_a_writer_that_arrived_first_is_not_overtaken_by_later_readers(tmp_path: Path) -> None:
    """W arrives (and queues) before the readers; it is stopped (SIGSTOP) while the holder lets go, which is
    how a waiter slow to wake looks. Before the fix the readers' polls took the free gate ahead of it; now
    they queue behind it and the log shows acquisition in arrival order."""
    locks, log, release = tmp_path / "locks", tmp_path / "steps.log", tmp_path / "release"

    def waiting() -> int:
        return len(list((_resource_dir_of(locks) / "waiters").glob("*")))

    def holding() -> bool:
        return (_resource_dir_of(locks) / "gate.lock.holder").exists()

    base = [*fi_run_argv("module"), "--lock-dir", str(locks), "--log", str(log)]
    hold = py("import os, sys, time\nwhile not os.path.exists(sys.argv[1]): time.sleep(0.01)", str(release))
    quick = py("import sys", "tag")

    def start(mode: str, tag: str, command: list[str]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [*base, mode, "R", "--", *command[:-1], tag], cwd=tmp_path, env=base_environ(),
            stderr=subprocess.PIPE,
        )  # fmt: skip

    procs = [start("--lock", "holder", [*hold, "holder"])]
    try:
        assert wait_until(holding, HANG_TIMEOUT)
        writer = start("--lock", "writer", quick)
        procs.append(writer)
        assert wait_until(lambda: waiting() == 1, HANG_TIMEOUT)
        for i in range(3):
            procs.append(start("--shared-lock", f"reader{i}", quick))
            expected = i + 2
            assert wait_until(lambda: waiting() == expected, HANG_TIMEOUT)  # noqa: B023 - used at once
        os.kill(writer.pid, signal.SIGSTOP)
        release.touch()
        time.sleep(0.6)  # six of the readers' polls
        os.kill(writer.pid, signal.SIGCONT)
        for proc in procs:
            assert proc.wait(HANG_TIMEOUT) == 0
        order = [
            tag for _arrival, _acquired, tag in sorted(_arrivals_and_acquisitions(log), key=lambda r: r[1])
        ]
        assert [tag for _a, _q, tag in _arrivals_and_acquisitions(log)] == [
            "holder",
            "writer",
            "reader0",
            "reader1",
            "reader2",
        ]
        assert order[:2] == ["holder", "writer"], order  # before the fix: the readers went ahead
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)
                proc.kill()
                proc.wait()


def _resource_dir_of(locks: Path) -> Path:
    found = [p for p in locks.glob("R-*") if p.is_dir()] if locks.is_dir() else []
    return found[0] if found else locks / "missing"


def test_taking_a_lock_freshens_a_lock_file_a_tmp_cleaner_would_find_old(tmp_path: Path) -> None:
    locks = tmp_path / "locks"
    assert run_fi_run("module", ["--lock-dir", str(locks), "--lock", "R", "--", "true"]).status == 0
    gate = _resource_dir_of(locks) / "gate.lock"
    month_ago = time.time() - 30 * 24 * 3600
    os.utime(gate, (month_ago, month_ago))
    assert run_fi_run("module", ["--lock-dir", str(locks), "--shared-lock", "R", "--", "true"]).status == 0
    # before the fix the times stayed a month old: systemd-tmpfiles (10 days) would remove a file in use
    assert time.time() - gate.stat().st_mtime < 3600


def test_a_stale_waiter_entry_whose_pid_is_alive_again_does_not_hold_up_the_line(tmp_path: Path) -> None:
    """A waiter killed with SIGKILL leaves its doorbell entry; its pid may since belong to another process
    (here: this test). Its port is no longer bound, so it is not a waiter and the line moves."""
    import socket

    locks = tmp_path / "locks"
    assert run_fi_run("module", ["--lock-dir", str(locks), "--lock", "R", "--", "true"]).status == 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    stale = _resource_dir_of(locks) / "waiters" / f"{1:020d}-{os.getpid()}-{port}.gate"
    stale.touch()
    ran = run_fi_run("module", ["--lock-dir", str(locks), "--lock-timeout", "3", "--lock", "R", "--", "true"])
    assert ran.status == 0, ran.err  # 75 if the stale entry were taken for the head of the line
