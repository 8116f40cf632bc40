"""Interrupts with real signals: as ninja sends them, to fi_run's whole process group, or to fi_run alone.

fi_run is started in a session (and process group) of its own, as ninja starts every command. The child
writes a "ready" file once its handlers are installed; only then is the signal sent, so nothing here
depends on how fast the machine is.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest
from fi_run_testing import (
    HANG_TIMEOUT,
    Terminal,
    base_environ,
    fi_run_argv,
    fi_run_ninja_command,
    ninja_binary,
    process_gone,
    py,
    python_ninja_command,
    wait_until,
    write_ninja,
)

if TYPE_CHECKING:
    from pathlib import Path

assert sys.platform != "win32"  # POSIX only: conftest.POSIX_ONLY keeps it from being collected on Windows


# Records each signal it gets, is still busy for a moment (fi_run must wait for it), then exits 0.
HANDLER_CHILD = """
import os, signal, sys, time
got, ready, finished = sys.argv[1:4]
def handler(signum, frame):
    with open(got, 'a') as f:
        f.write(f'got {signal.Signals(signum).name}\\n')
    time.sleep(0.3)
    open(finished, 'w').close()
    sys.exit(0)
for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(signum, handler)
with open(ready, 'w') as f:
    f.write(str(os.getpid()))
while True:
    time.sleep(60)
"""

# Handles nothing: default dispositions (not even Python's KeyboardInterrupt), so it dies of what it gets.
SLEEPER_CHILD = """
import os, signal, sys, time
signal.signal(signal.SIGINT, signal.SIG_DFL)
with open(sys.argv[1], 'w') as f:
    f.write(str(os.getpid()))
time.sleep(120)
"""

SUBPROCESS_WAYS = ["module", "script"]


class Started:
    def __init__(self, proc: subprocess.Popen[bytes], tmp_path: Path) -> None:
        self.proc = proc
        self.got = tmp_path / "got"
        self.ready = tmp_path / "ready"
        self.finished = tmp_path / "finished"
        self.stamp = tmp_path / "out" / "step.stamp"

    def wait_ready(self) -> int:
        """Wait until the child has its handlers in place; return its pid."""
        try:
            wait_until(lambda: self.ready.exists() and self.ready.read_text() != "", "the child to get ready")
        except AssertionError:
            self.proc.kill()
            out, err = self.proc.communicate()
            pytest.fail(f"the child never got ready: {out!r} {err!r}")
        return int(self.ready.read_text())

    def finish(self) -> tuple[int, str, str]:
        try:
            out, err = self.proc.communicate(timeout=HANG_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            raise
        return self.proc.returncode, out.decode(), err.decode()


def start(way: str, tmp_path: Path, child: list[str]) -> Started:
    stamp = tmp_path / "out" / "step.stamp"
    stamp.parent.mkdir()
    stamp.write_text("stale")
    proc = subprocess.Popen(
        [*fi_run_argv(way), "--stamp", str(stamp), "--", *child],
        env=base_environ(),
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group, as ninja gives every command
    )
    return Started(proc, tmp_path)


def start_handler_child(way: str, tmp_path: Path) -> Started:
    names = [str(tmp_path / n) for n in ("got", "ready", "finished")]
    return start(way, tmp_path, py(HANDLER_CHILD, *names))


def assert_interrupted(status: int, err: str, started: Started, name: str, signum: int) -> None:
    assert status == 128 + signum
    last = err.splitlines()[-1]
    assert last.startswith("fi_run: ")
    assert f"interrupted by {name}" in last
    assert "Traceback" not in err
    assert sorted(p.name for p in started.stamp.parent.iterdir()) == []  # no stamp, no temporary file


@pytest.mark.parametrize("way", SUBPROCESS_WAYS)
@pytest.mark.parametrize(
    ("signum", "name"), [(signal.SIGINT, "SIGINT"), (signal.SIGTERM, "SIGTERM"), (signal.SIGHUP, "SIGHUP")]
)
def test_signal_to_the_process_group_reaches_the_child_once_and_no_stamp_is_written(
    way: str, tmp_path: Path, signum: int, name: str
) -> None:
    started = start_handler_child(way, tmp_path)
    started.wait_ready()

    os.killpg(started.proc.pid, signum)  # as ninja does on Ctrl-C

    status, out, err = started.finish()
    assert started.got.read_text() == f"got {name}\n"  # the child saw it, exactly once
    assert started.finished.exists()  # fi_run waited for the child to finish handling it
    assert out == ""
    assert err.count("\n") == 1
    assert_interrupted(status, err, started, name, signum)


@pytest.mark.parametrize("way", SUBPROCESS_WAYS)
def test_sigint_to_fi_run_alone_is_forwarded_to_the_child(way: str, tmp_path: Path) -> None:
    started = start_handler_child(way, tmp_path)
    started.wait_ready()

    os.kill(started.proc.pid, signal.SIGINT)  # fi_run's pid only, not its group

    status, out, err = started.finish()
    assert started.got.read_text() == "got SIGINT\n"
    assert started.finished.exists()
    assert out == ""
    assert_interrupted(status, err, started, "SIGINT", signal.SIGINT)


def test_sigterm_to_fi_run_alone_is_forwarded_to_the_child(tmp_path: Path) -> None:
    started = start_handler_child("module", tmp_path)
    started.wait_ready()

    os.kill(started.proc.pid, signal.SIGTERM)

    status, _out, err = started.finish()
    assert started.got.read_text() == "got SIGTERM\n"
    assert_interrupted(status, err, started, "SIGTERM", signal.SIGTERM)


@pytest.mark.parametrize(
    ("way", "signame"), [("module", "SIGINT"), ("script", "SIGINT"), ("module", "SIGTERM")]
)
def test_a_signal_ends_a_child_that_handles_nothing_and_fi_run_exits_128_plus_it(
    way: str, signame: str, tmp_path: Path
) -> None:
    signum = getattr(signal, signame)
    started = start(way, tmp_path, py(SLEEPER_CHILD, str(tmp_path / "ready")))
    child = started.wait_ready()

    os.killpg(started.proc.pid, signum)

    status, out, err = started.finish()
    assert out == ""
    assert err.count("\n") == 1
    assert_interrupted(status, err, started, signame, signum)
    wait_until(lambda: process_gone(child), f"child {child} to be gone")


def test_ninja_interrupted_by_user_interrupts_the_step_without_a_stamp(tmp_path: Path) -> None:
    (tmp_path / "child.py").write_text(HANDLER_CHILD)
    write_ninja(
        tmp_path,
        f"""\
rule step
  command = {fi_run_ninja_command()} --stamp $out -- {python_ninja_command()} child.py got ready finished
  description = STEP $out

build gen/step.stamp: step child.py
""",
    )
    ninja = subprocess.Popen(
        [ninja_binary()],
        cwd=tmp_path,
        env=base_environ({"TERM": "dumb"}),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # the terminal's foreground group: ninja alone, its commands have their own
    )
    ready = tmp_path / "ready"
    try:
        wait_until(lambda: ready.exists() and ready.read_text() != "", "the step to get ready")
    except AssertionError:
        ninja.kill()
        pytest.fail(f"the step never got ready: {ninja.communicate()[0]!r}")

    os.killpg(ninja.pid, signal.SIGINT)  # Ctrl-C in the terminal

    out, _ = ninja.communicate(timeout=HANG_TIMEOUT)
    text = out.decode()
    assert ninja.returncode != 0
    assert "interrupted by user" in text
    assert (tmp_path / "got").read_text() == "got SIGINT\n"
    assert (tmp_path / "finished").exists()
    assert not (tmp_path / "gen" / "step.stamp").exists()
    assert sorted(p.name for p in (tmp_path / "gen").iterdir()) == []


def test_ctrl_c_in_a_terminal_reaches_the_child_once(tmp_path: Path) -> None:
    # fi_run as the terminal's foreground job (a person, or ninja's console pool): the terminal itself
    # sends SIGINT to fi_run and the command together; fi_run must not deliver it a second time.
    stamp = tmp_path / "out" / "step.stamp"
    names = [str(tmp_path / n) for n in ("got", "ready", "finished")]
    terminal = Terminal(
        [*fi_run_argv("module"), "--stamp", str(stamp), "--", *py(HANDLER_CHILD, *names)], tmp_path
    )
    try:
        ready = tmp_path / "ready"
        wait_until(lambda: ready.exists() and ready.read_text() != "", "the step to get ready")
        terminal.ctrl_c()
        status, output = terminal.wait()
    finally:
        terminal.close()
    assert status == 130
    assert (tmp_path / "got").read_text() == "got SIGINT\n"
    assert (tmp_path / "finished").exists()
    assert output.splitlines()[-1] == "fi_run: interrupted by SIGINT; no stamp written"
    assert not stamp.exists()


# --- signals outside the command's run (issue 22): before it starts, and after it has ended


def _blocked_on_a_fifo(pid: int) -> bool:
    """Is process ``pid`` waiting in open() for the other end of a fifo (Linux's wchan)?"""
    try:
        with open(f"/proc/{pid}/wchan") as f:
            return f.read().strip() == "wait_for_partner"
    except OSError:
        return False


@pytest.mark.skipif(not os.path.exists("/proc/self/wchan"), reason="needs Linux's /proc/PID/wchan")
def test_a_signal_while_fi_run_starts_ends_the_step_with_one_line_and_no_stamp(tmp_path: Path) -> None:
    """fi_run is still reading its response file (a fifo nobody writes) when SIGTERM comes: 143, one line,
    the stale stamp is gone and the command never ran. Before issue 22 it died of the signal, silently."""
    rsp = tmp_path / "args.rsp"
    os.mkfifo(rsp)
    stamp = tmp_path / "x.stamp"
    stamp.write_text("")
    ran = tmp_path / "ran"
    proc = subprocess.Popen(
        [*fi_run_argv(), "--stamp", str(stamp), f"@{rsp}", "--", *py(f"open({str(ran)!r}, 'w')")],
        cwd=tmp_path,
        env=base_environ(),
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_until(lambda: _blocked_on_a_fifo(proc.pid), HANG_TIMEOUT)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=HANG_TIMEOUT)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert err == "fi_run: interrupted by SIGTERM; no stamp written\n"
    assert not stamp.exists()
    assert not ran.exists()


@pytest.mark.skipif(not os.path.exists("/proc/self/wchan"), reason="needs Linux's /proc/PID/wchan")
def test_a_signal_after_the_command_ended_still_ends_the_step_the_one_way(tmp_path: Path) -> None:
    """The command has succeeded and exited; fi_run has not written the stamp yet (its temporary file is a
    fifo the command left, so the write waits) when SIGTERM comes. Before issue 22 the handlers were gone
    by then: death by signal, no message, no log record. Now: 143, one line, no stamp, a record saying so."""
    from fi_run.step.stamp import temporary_name

    stamp = tmp_path / "out" / "x.stamp"
    log = tmp_path / "fi_run.log"
    pid_file = tmp_path / "command.pid"
    tmp = temporary_name(str(stamp))
    command = py(f"import os; os.mkfifo({tmp!r}); open({str(pid_file)!r}, 'w').write(str(os.getpid()))")
    proc = subprocess.Popen(
        [*fi_run_argv(), "--stamp", str(stamp), "--log", str(log), "--", *command],
        cwd=tmp_path,
        env=base_environ(),
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_until(lambda: pid_file.exists() and pid_file.read_text() != "", HANG_TIMEOUT)
        assert wait_until(lambda: process_gone(int(pid_file.read_text())), HANG_TIMEOUT)
        assert wait_until(lambda: _blocked_on_a_fifo(proc.pid), HANG_TIMEOUT)
        proc.send_signal(signal.SIGTERM)
        # Let the stamp's open go on (it would otherwise wait for a reader for ever), and drain it.
        fd = os.open(tmp, os.O_RDONLY | os.O_NONBLOCK)
        try:
            _, err = proc.communicate(timeout=HANG_TIMEOUT)
        finally:
            os.close(fd)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert err == "fi_run: interrupted by SIGTERM; no stamp written\n"
    assert not stamp.exists()
    assert not os.path.exists(tmp)
    (record,) = [json.loads(line) for line in log.read_text().splitlines()]
    assert (record["status"], record["error"]) == (143, "interrupted by SIGTERM; no stamp written")
    assert [attempt["status"] for attempt in record["attempts"]] == [0]
