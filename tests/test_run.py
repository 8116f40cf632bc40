"""Running a real command: exit statuses, the stamp, the environment, output handling, timeouts, outputs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import pytest
from fi_run_testing import (
    HANG_TIMEOUT,
    Procs,
    Ran,
    Runner,
    Terminal,
    base_environ,
    fi_run_argv,
    finish,
    only_fi_run_line,
    process_gone,
    py,
    run_on_terminal,
    wait_until,
)

from fi_run.errors import EXIT_OUTPUT, EXIT_TIMEOUT

assert sys.platform != "win32"  # POSIX only: conftest.POSIX_ONLY keeps it from being collected on Windows

if TYPE_CHECKING:
    from pathlib import Path

DUMP_ENV = "import json, os, sys; json.dump(dict(os.environ), open(sys.argv[1], 'w'))"
STALE = "stale"


def dump_env(
    fi_run: Runner, tmp_path: Path, options: list[str], env: dict[str, str | None] | None = None
) -> dict[str, str]:
    """Run a child that dumps its environment as JSON; return the environment it saw."""
    dump = tmp_path / "env.json"
    ran = fi_run([*options, "--", *py(DUMP_ENV, str(dump))], env=env, cwd=tmp_path)
    assert ran == Ran(0, "", ""), ran
    seen: dict[str, str] = json.loads(dump.read_text())
    return seen


def listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


# --- exit status


@pytest.mark.parametrize("status", [0, 1, 3, 255])
def test_exit_status_passes_through_exactly(fi_run: Runner, status: int) -> None:
    ran = fi_run(["--", *py(f"import sys; sys.exit({status})")])
    assert ran == Ran(status, "", "")


@pytest.mark.parametrize(
    ("signum", "status"), [(signal.SIGKILL, 137), (signal.SIGTERM, 143), (signal.SIGABRT, 134)]
)
def test_command_killed_by_signal_n_exits_128_plus_n(
    fi_run: Runner, tmp_path: Path, signum: signal.Signals, status: int
) -> None:
    stamp = tmp_path / "stamp"
    ran = fi_run(["--stamp", str(stamp), "--", *py(f"import os; os.kill(os.getpid(), {int(signum)})")])
    assert ran.status == status == 128 + signum
    assert ran.out == ""
    assert not stamp.exists()


def test_command_gets_the_default_sigpipe_disposition(fi_run: Runner) -> None:
    # Python ignores SIGPIPE; a command that inherited that would not die when its reader goes away.
    # A shell started with SIGPIPE ignored cannot even be killed by it, so 141 proves the default.
    ran = fi_run(["--", "sh", "-c", "kill -PIPE $$; exit 7"])
    assert ran == Ran(128 + signal.SIGPIPE, "", "")


def test_command_reads_fi_runs_stdin(tmp_path: Path) -> None:
    proc = subprocess.run(
        [*fi_run_argv("module"), "--", *py("import sys; sys.stdout.write(sys.stdin.read().upper())")],
        input=b"line one\nline two\n",
        capture_output=True,
        env=base_environ(),
        timeout=HANG_TIMEOUT,
        check=False,
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, b"LINE ONE\nLINE TWO\n", b"")


def test_verbose_names_the_command_in_fi_run_lines(fi_run_module: Runner) -> None:
    ran = fi_run_module(["--verbose", "--", *py("print('out')")])
    assert ran.status == 0
    assert ran.out == "out\n"
    lines = ran.err.splitlines()
    assert lines
    assert all(line.startswith("fi_run: ") for line in lines), lines
    assert any(sys.executable in line for line in lines)


# --- the stamp


def test_stamp_is_written_on_success_with_its_parent_directories(fi_run: Runner, tmp_path: Path) -> None:
    stamp = tmp_path / "gen" / "deep" / "step.stamp"
    ran = fi_run(["--stamp", str(stamp), "--", *py("pass")])
    assert ran == Ran(0, "", "")
    assert stamp.is_file()
    assert listing(stamp.parent) == ["step.stamp"]  # written atomically: no temporary file left behind


def test_stale_stamp_is_removed_and_a_failing_command_writes_none(fi_run: Runner, tmp_path: Path) -> None:
    stamp = tmp_path / "out" / "step.stamp"
    stamp.parent.mkdir()
    stamp.write_text(STALE)
    ran = fi_run(["--stamp", str(stamp), "--", *py("import sys; sys.exit(1)")])
    assert ran == Ran(1, "", "")
    assert listing(stamp.parent) == []


def test_stale_stamp_is_gone_before_the_command_starts(fi_run_module: Runner, tmp_path: Path) -> None:
    stamp = tmp_path / "step.stamp"
    stamp.write_text(STALE)
    seen = tmp_path / "seen"
    code = "import os, sys; open(sys.argv[2], 'w').write(str(os.path.exists(sys.argv[1])))"
    ran = fi_run_module(["--stamp", str(stamp), "--", *py(code, str(stamp), str(seen))])
    assert ran == Ran(0, "", "")
    assert seen.read_text() == "False"
    assert stamp.read_text() == ""  # a new, empty stamp replaced the stale one


def test_stamp_relative_path_is_taken_from_the_start_directory_not_cwd(
    fi_run_module: Runner, tmp_path: Path
) -> None:
    (tmp_path / "sub").mkdir()
    ran = fi_run_module(["--cwd", "sub", "--stamp", "s/step.stamp", "--", *py("pass")], cwd=tmp_path)
    assert ran == Ran(0, "", "")
    assert (tmp_path / "s" / "step.stamp").is_file()
    assert listing(tmp_path / "sub") == []


def test_stamp_is_newer_than_an_input_the_command_wrote(fi_run_module: Runner, tmp_path: Path) -> None:
    stamp = tmp_path / "out" / "step.stamp"
    touched = tmp_path / "input.txt"
    ran = fi_run_module(
        ["--stamp", str(stamp), "--", *py("import sys; open(sys.argv[1], 'a').write('x')", str(touched))]
    )
    assert ran == Ran(0, "", "")
    assert stamp.stat().st_mtime_ns >= touched.stat().st_mtime_ns


def test_stamp_is_newer_than_an_input_the_command_read(fi_run_module: Runner, tmp_path: Path) -> None:
    stamp = tmp_path / "step.stamp"
    source = tmp_path / "input.txt"
    source.write_text("data")
    ran = fi_run_module(
        ["--stamp", str(stamp), "--", *py("import sys; open(sys.argv[1]).read()", str(source))]
    )
    assert ran == Ran(0, "", "")
    assert stamp.stat().st_mtime_ns >= source.stat().st_mtime_ns


# --- the environment


def test_env_and_unset_as_seen_by_the_child(fi_run: Runner, tmp_path: Path) -> None:
    env = dump_env(
        fi_run,
        tmp_path,
        ["--env", "FI_TEST_SET=value with spaces", "--env", "FI_TEST_EMPTY=", "--unset", "FI_TEST_GONE"],
        env={"FI_TEST_GONE": "inherited", "FI_TEST_KEPT": "inherited"},
    )
    assert env["FI_TEST_SET"] == "value with spaces"
    assert env["FI_TEST_EMPTY"] == ""
    assert "FI_TEST_GONE" not in env
    assert env["FI_TEST_KEPT"] == "inherited"


def test_environment_operations_apply_in_command_line_order(fi_run_module: Runner, tmp_path: Path) -> None:
    env = dump_env(
        fi_run_module,
        tmp_path,
        ["--env", "A=1", "--unset", "A", "--env", "B=1", "--env", "B=2", "--unset", "C", "--env", "C=back"],
        env={"C": "inherited"},
    )
    assert "A" not in env
    assert env["B"] == "2"
    assert env["C"] == "back"


def test_prepend_path_when_the_variable_is_unset(fi_run: Runner, tmp_path: Path) -> None:
    env = dump_env(fi_run, tmp_path, ["--prepend-path", "FI_TEST_LIST=tools"], env={"FI_TEST_LIST": None})
    assert env["FI_TEST_LIST"] == str(tmp_path / "tools")  # relative DIR made absolute, nothing appended


def test_prepend_path_when_the_variable_is_set(fi_run_module: Runner, tmp_path: Path) -> None:
    old = os.pathsep.join(["/a", "/b"])
    env = dump_env(
        fi_run_module,
        tmp_path,
        ["--prepend-path", "FI_TEST_LIST=/second", "--prepend-path", "FI_TEST_LIST=first"],
        env={"FI_TEST_LIST": old},
    )
    assert env["FI_TEST_LIST"].split(os.pathsep) == [str(tmp_path / "first"), "/second", "/a", "/b"]


def make_fake_venv(root: Path) -> Path:
    """A directory with bin/python: a script that records how it was run and in which environment."""
    bindir = root / "bin"
    bindir.mkdir(parents=True)
    fake = bindir / "python"
    fake.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        "json.dump({'argv': sys.argv, 'env': dict(os.environ)}, open(os.environ['FI_TEST_DUMP'], 'w'))\n"
    )
    fake.chmod(0o755)
    return root


def test_venv_sets_virtual_env_path_and_removes_pythonhome(fi_run: Runner, tmp_path: Path) -> None:
    venv = make_fake_venv(tmp_path / "venv")
    dump = tmp_path / "dump.json"
    # PYTHONHOME is set by an earlier --env (not in fi_run's own environment, which it would break); --venv
    # must remove it, or the fake python (a real Python underneath) would not even start.
    ran = fi_run(
        [
            "--env",
            f"FI_TEST_DUMP={dump}",
            "--env",
            "PYTHONHOME=/nonexistent",
            "--venv",
            "venv",
            "--",
            "python",
            "x",
        ],
        cwd=tmp_path,
    )
    assert ran == Ran(0, "", ""), ran
    seen = json.loads(dump.read_text())
    assert seen["argv"] == [str(venv / "bin" / "python"), "x"]  # `python` is the venv's
    assert seen["env"]["VIRTUAL_ENV"] == str(venv)
    assert seen["env"]["PATH"].split(os.pathsep)[0] == str(venv / "bin")
    assert seen["env"]["PATH"].split(os.pathsep)[1:] == os.environ["PATH"].split(os.pathsep)
    assert "PYTHONHOME" not in seen["env"]


def test_env_after_venv_can_set_pythonhome_again(fi_run_module: Runner, tmp_path: Path) -> None:
    # Operations apply in order: a later --env wins over what --venv removed. `env` (not Python) prints it.
    make_fake_venv(tmp_path / "venv")
    ran = fi_run_module(["--venv", "venv", "--env", "PYTHONHOME=/x", "--", "env"], cwd=tmp_path)
    assert ran.status == 0
    assert ran.err == ""
    lines = ran.out.splitlines()
    assert "PYTHONHOME=/x" in lines
    assert f"VIRTUAL_ENV={tmp_path / 'venv'}" in lines


def test_venv_with_a_real_virtual_environment(fi_run_module: Runner, tmp_path: Path) -> None:
    venv = tmp_path / "real venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    out = tmp_path / "prefix.json"
    code = "import json, sys; json.dump([sys.prefix, sys.executable], open(sys.argv[1], 'w'))"
    ran = fi_run_module(["--venv", "real venv", "--", "python", "-c", code, str(out)], cwd=tmp_path)
    assert ran == Ran(0, "", "")
    prefix, executable = json.loads(out.read_text())
    assert os.path.samefile(prefix, venv)
    assert executable == str(venv / "bin" / "python")


# --- --cwd


def test_cwd_runs_the_command_there(fi_run: Runner, tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    out = tmp_path / "cwd.txt"
    ran = fi_run(
        ["--cwd", "sub", "--", *py("import os, sys; open(sys.argv[1], 'w').write(os.getcwd())", str(out))],
        cwd=tmp_path,
    )
    assert ran == Ran(0, "", "")
    assert out.read_text() == str(tmp_path / "sub")


def test_command_with_a_directory_part_is_found_relative_to_cwd(
    fi_run_module: Runner, tmp_path: Path
) -> None:
    sub = tmp_path / "sub"
    sub.mkdir()
    tool = sub / "tool"
    tool.write_text(f"#!{sys.executable}\nimport os\nopen('ran-here', 'w').write(os.getcwd())\n")
    tool.chmod(0o755)
    ran = fi_run_module(["--cwd", "sub", "--", "./tool"], cwd=tmp_path)
    assert ran == Ran(0, "", "")
    assert (sub / "ran-here").read_text() == str(sub)


# --- output

INTERLEAVED = """
import sys
for stream, text in ((sys.stdout, 'o1'), (sys.stderr, 'e1'), (sys.stdout, 'o2'), (sys.stderr, 'e2')):
    stream.write(text + '\\n')
    stream.flush()
sys.exit(int(sys.argv[1]))
"""


def test_quiet_on_success_prints_nothing_when_the_command_succeeds(fi_run: Runner, tmp_path: Path) -> None:
    stamp = tmp_path / "stamp"
    ran = fi_run(["--quiet-on-success", "--stamp", str(stamp), "--", *py(INTERLEAVED, "0")])
    assert ran == Ran(0, "", "")
    assert stamp.is_file()


def test_quiet_on_success_prints_everything_when_the_command_fails(fi_run: Runner) -> None:
    ran = fi_run(["--quiet-on-success", "--", *py(INTERLEAVED, "4")])
    assert ran == Ran(4, "o1\no2\n", "e1\ne2\n")


def test_quiet_on_success_is_quiet_on_a_terminal_too(tmp_path: Path) -> None:
    # As chronic: a person running a step at a terminal asked for silence unless it fails.
    ok, shown = run_on_terminal(
        [*fi_run_argv("module"), "--quiet-on-success", "--", *py(INTERLEAVED, "0")], tmp_path
    )
    assert (ok, shown) == (0, "")


def test_quiet_on_success_shows_a_failure_on_a_terminal(tmp_path: Path) -> None:
    status, shown = run_on_terminal(
        [*fi_run_argv("module"), "--quiet-on-success", "--", *py(INTERLEAVED, "3")], tmp_path
    )
    assert (status, shown) == (3, "o1\ne1\no2\ne2\n")


@pytest.mark.parametrize("options", [["--quiet-on-success"], []], ids=["quiet-on-success", "default"])
def test_one_pipe_for_stdout_and_stderr_keeps_the_order_of_lines(fi_run: Runner, options: list[str]) -> None:
    ran = fi_run([*options, "--", *py(INTERLEAVED, "1")], merge_stderr=True)
    assert ran == Ran(1, "o1\ne1\no2\ne2\n", "")


@pytest.mark.parametrize("options", [["--quiet-on-success"], []], ids=["quiet-on-success", "default"])
def test_separate_pipes_each_get_only_their_own_lines(fi_run_module: Runner, options: list[str]) -> None:
    failed = fi_run_module([*options, "--", *py(INTERLEAVED, "1")])
    assert failed == Ran(1, "o1\no2\n", "e1\ne2\n")
    if not options:
        succeeded = fi_run_module(["--", *py(INTERLEAVED, "0")])
        assert succeeded == Ran(0, "o1\no2\n", "e1\ne2\n")


def test_quiet_on_success_from_the_environment(fi_run_module: Runner) -> None:
    ran = fi_run_module(["--", *py(INTERLEAVED, "0")], env={"FI_RUN_QUIET_ON_SUCCESS": "1"})
    assert ran == Ran(0, "", "")


def test_large_output_passes_through_intact(fi_run: Runner) -> None:
    code = """
    import sys
    for i in range(5 * 1024 * 1024 // 64):
        sys.stdout.write(f'{i:063d}\\n')
    sys.stderr.write('done\\n')
    """
    ran = fi_run(["--", *py(code)])
    assert ran.status == 0
    assert ran.err == "done\n"
    assert len(ran.out) == 5 * 1024 * 1024
    assert ran.out == "".join(f"{i:063d}\n" for i in range(5 * 1024 * 1024 // 64))


def test_large_output_of_a_failing_command_passes_through_intact(fi_run_module: Runner) -> None:
    code = """
    import sys
    sys.stdout.write('x' * (5 * 1024 * 1024))
    sys.exit(2)
    """
    ran = fi_run_module(["--", *py(code)])
    assert ran == Ran(2, "x" * (5 * 1024 * 1024), "")


# --- arguments

ARGS = [
    "with space",
    "  leading and trailing  ",
    "'single' \"double\"",
    "semi;colon && echo injected",
    "$(touch pwned) `touch pwned2` $HOME",
    "*",
    "*.py ?",
    "line1\nline2",
    "tab\there",
    "",
    "é",
    "日本",
    "🦀 emoji",
    "back\\slash",
    "-- --stamp @file.rsp",
    "not utf-8: \udcff\udcfe",
]


def test_arguments_reach_the_child_byte_for_byte(fi_run: Runner, tmp_path: Path) -> None:
    out = tmp_path / "argv.json"
    code = (
        "import json, os, sys; "
        "json.dump([os.fsencode(a).hex() for a in sys.argv[2:]], open(sys.argv[1], 'w'))"
    )
    ran = fi_run(["--", *py(code, str(out), *ARGS)], cwd=tmp_path)
    assert ran == Ran(0, "", "")
    assert [bytes.fromhex(h) for h in json.loads(out.read_text())] == [os.fsencode(a) for a in ARGS]
    assert listing(tmp_path) == ["argv.json"]  # nothing was run by a shell


# --- timeout

SPAWN_GRANDCHILD = """
import os, subprocess, sys, time
pidfile, ignore_term = sys.argv[1], sys.argv[2] == '1'
ready = pidfile + '.ready'
grandchild = subprocess.Popen([sys.executable, '-c', '''
import signal, sys, time
if sys.argv[2] == '1':
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
open(sys.argv[1], 'w').close()
time.sleep(120)
''', ready, sys.argv[2]])
while not os.path.exists(ready):
    time.sleep(0.01)
with open(pidfile + '.tmp', 'w') as f:
    f.write(str(grandchild.pid))
os.replace(pidfile + '.tmp', pidfile)
time.sleep(120)
"""


@pytest.mark.parametrize(
    "ignore_term", [False, True], ids=["grandchild-default", "grandchild-ignores-sigterm"]
)
def test_timeout_stops_the_command_and_its_grandchildren(
    fi_run_module: Runner, tmp_path: Path, ignore_term: bool
) -> None:
    stamp = tmp_path / "out" / "stamp"
    stamp.parent.mkdir()
    stamp.write_text(STALE)
    pidfile = tmp_path / "grandchild.pid"
    ran = fi_run_module(
        [
            "--timeout",
            "3",
            "--stamp",
            str(stamp),
            "--",
            *py(SPAWN_GRANDCHILD, str(pidfile), str(int(ignore_term))),
        ]
    )
    assert ran.status == EXIT_TIMEOUT, ran
    assert ran.out == ""
    assert "timed out" in only_fi_run_line(ran.err)
    assert pidfile.exists(), "the grandchild was not started before the timeout"
    pid = int(pidfile.read_text())
    wait_until(lambda: process_gone(pid), f"grandchild {pid} to be gone after the timeout")
    assert listing(stamp.parent) == []


def test_timeout_stops_grandchildren_also_when_run_in_a_terminal(tmp_path: Path) -> None:
    # A person at a terminal, or ninja's console pool: fi_run is the terminal's foreground job and keeps
    # the command in its own process group. --timeout must still stop everything the command started.
    pidfile = tmp_path / "grandchild.pid"
    stamp = tmp_path / "stamp"
    terminal = Terminal(
        [
            *fi_run_argv("module"),
            "--timeout",
            "3",
            "--stamp",
            str(stamp),
            "--",
            *py(SPAWN_GRANDCHILD, str(pidfile), "0"),
        ],
        tmp_path,
    )
    pid = None
    try:
        status, output = terminal.wait()
        assert status == EXIT_TIMEOUT, output
        assert "timed out" in only_fi_run_line(output)
        assert pidfile.exists(), "the grandchild was not started before the timeout"
        pid = int(pidfile.read_text())
        wait_until(lambda: process_gone(pid), f"grandchild {pid} to be gone after the timeout")
        assert not stamp.exists()
    finally:
        if pid is not None and not process_gone(pid):
            os.kill(pid, signal.SIGKILL)
        terminal.close()


def test_timeout_shows_what_the_command_printed_before_it_was_stopped(fi_run_module: Runner) -> None:
    code = "import time; print('partial', flush=True); time.sleep(60)"
    ran = fi_run_module(["--timeout", "2", "--quiet-on-success", "--", *py(code)], merge_stderr=True)
    assert ran.status == EXIT_TIMEOUT
    lines = ran.out.splitlines()
    assert lines[0] == "partial"
    assert lines[1].startswith("fi_run: timed out after 2 s")
    assert len(lines) == 2


def test_timeout_not_reached_leaves_the_command_alone(fi_run: Runner, tmp_path: Path) -> None:
    stamp = tmp_path / "stamp"
    ran = fi_run(["--timeout", "60", "--stamp", str(stamp), "--", *py("print('finished')")])
    assert ran == Ran(0, "finished\n", "")
    assert stamp.is_file()


# --- --output


def test_output_missing_fails_with_65_and_no_stamp(fi_run: Runner, tmp_path: Path) -> None:
    stamp = tmp_path / "out" / "stamp"
    stamp.parent.mkdir()
    stamp.write_text(STALE)
    ran = fi_run(["--output", "gen/x.h", "--stamp", str(stamp), "--", *py("pass")], cwd=tmp_path)
    assert ran.status == EXIT_OUTPUT
    assert "gen/x.h" in only_fi_run_line(ran.err)
    assert listing(stamp.parent) == []


def test_output_not_written_by_this_run_fails_with_65(fi_run_module: Runner, tmp_path: Path) -> None:
    stamp = tmp_path / "stamp"
    output = tmp_path / "x.h"
    output.write_text("old")
    os.utime(output, (1_000_000_000, 1_000_000_000))  # 2001
    ran = fi_run_module(["--output", "x.h", "--stamp", str(stamp), "--", *py("pass")], cwd=tmp_path)
    assert ran.status == EXIT_OUTPUT
    assert "x.h" in only_fi_run_line(ran.err)
    assert not stamp.exists()


def test_output_written_by_this_run_succeeds_with_stamp(fi_run_module: Runner, tmp_path: Path) -> None:
    stamp = tmp_path / "stamp"
    output = tmp_path / "x.h"
    output.write_text("old")
    os.utime(output, (1_000_000_000, 1_000_000_000))
    code = "import sys; open(sys.argv[1], 'w').write('new')"
    ran = fi_run_module(
        [
            "--output",
            "x.h",
            "--output",
            "y.h",
            "--stamp",
            str(stamp),
            "--",
            *py(code + "; open('y.h', 'w')", "x.h"),
        ],
        cwd=tmp_path,
    )
    assert ran == Ran(0, "", "")
    assert output.read_text() == "new"
    assert stamp.is_file()


def test_output_dated_in_the_future_and_not_written_fails_with_65(fi_run: Runner, tmp_path: Path) -> None:
    """Issue 22: `touch -d '+1 hour' gen.h; fi-run --stamp s --output gen.h -- true` exited 0 with a stamp.
    A future mtime (clock skew, NFS, an archive's dates) no longer passes for "written by this run"."""
    stamp = tmp_path / "stamp"
    stamp.write_text(STALE)
    output = tmp_path / "gen.h"
    output.write_text("old")
    hour_ahead = time.time() + 3600
    os.utime(output, (hour_ahead, hour_ahead))
    ran = fi_run(["--stamp", str(stamp), "--output", "gen.h", "--", "true"], cwd=tmp_path)
    assert (ran.status, ran.out) == (EXIT_OUTPUT, "")
    line = only_fi_run_line(ran.err)
    assert line.startswith(f"fi_run: --output {str(output)!r} was not written by this run (unchanged since ")
    assert "s after that start)" in line
    assert not stamp.exists()


def test_output_dated_in_the_future_and_rewritten_succeeds(fi_run_module: Runner, tmp_path: Path) -> None:
    stamp = tmp_path / "stamp"
    output = tmp_path / "gen.h"
    output.write_text("old")
    hour_ahead = time.time() + 3600
    os.utime(output, (hour_ahead, hour_ahead))
    ran = fi_run_module(
        ["--stamp", str(stamp), "--output", "gen.h", "--", *py("open('gen.h', 'w').write('new')")],
        cwd=tmp_path,
    )
    assert ran == Ran(0, "", "")
    assert stamp.is_file()


# How a command may write its output and keep an old mtime on purpose (cp -p, tar, rsync -a): what counts is
# that the file changed since the step started, not its date.
KEEPS_AN_OLD_MTIME = {
    "created": "open('gen.h', 'w').write('new'); os.utime('gen.h', (OLD, OLD))",
    "replaced-by-rename": (
        "open('tmp', 'w').write('new'); os.utime('tmp', (OLD, OLD)); os.replace('tmp', 'gen.h')"
    ),
    "rewritten-in-place": "open('gen.h', 'w').write('old'); os.utime('gen.h', (OLD, OLD))",
}


@pytest.mark.parametrize("how", sorted(KEEPS_AN_OLD_MTIME))
def test_output_written_with_an_old_mtime_succeeds(fi_run_module: Runner, tmp_path: Path, how: str) -> None:
    stamp = tmp_path / "stamp"
    output = tmp_path / "gen.h"
    if how != "created":
        output.write_text("old")
        os.utime(output, (1_000_000_000, 1_000_000_000))  # 2001, as the command will date it again
    code = "import os; OLD = 1_000_000_000; " + KEEPS_AN_OLD_MTIME[how]
    ran = fi_run_module(["--stamp", str(stamp), "--output", "gen.h", "--", *py(code)], cwd=tmp_path)
    assert ran == Ran(0, "", "")
    assert output.stat().st_mtime == 1_000_000_000
    assert stamp.is_file()


def test_output_written_by_another_step_while_this_one_waited_for_its_lock_counts(
    fi_run_module: Runner, tmp_path: Path, procs: Procs
) -> None:
    """ "This run" starts when fi_run starts, lock wait included: the lock holder creates the output (with an
    old mtime) after the waiter started, and the waiter's --output accepts it."""
    locks = tmp_path / "locks"
    holder_code = f"""
        import glob, os, sys, time
        open('held', 'w').close()
        deadline = time.monotonic() + {HANG_TIMEOUT}
        while not glob.glob({str(locks / "*" / "waiters" / "*")!r}):
            if time.monotonic() > deadline:
                sys.exit('no waiter')
            time.sleep(0.01)
        open('gen.h', 'w').write('made by the holder')
        os.utime('gen.h', (time.time() - 60, time.time() - 60))
    """
    holder = procs.start_fi_run(
        ["--lock-dir", str(locks), "--lock", "venv", "--", *py(holder_code)], cwd=tmp_path
    )
    wait_until((tmp_path / "held").exists, "the holder to hold its lock")
    stamp = tmp_path / "stamp"
    ran = fi_run_module(
        [
            "--lock-dir",
            str(locks),
            "--lock",
            "venv",
            "--stamp",
            str(stamp),
            "--output",
            "gen.h",
            "--",
            "true",
        ],
        cwd=tmp_path,
    )
    assert finish(holder) == 0
    assert ran == Ran(0, "", "")
    assert stamp.is_file()


def test_output_unchanged_but_dated_within_the_timestamp_step_is_given_the_benefit_of_the_doubt(
    fi_run_module: Runner, tmp_path: Path
) -> None:
    """A file written just before the step, and not by it, cannot be told from one the command rewrote within
    the same timestamp step (FAT: 2 s) with the same size: accepted, as before issue 22."""
    stamp = tmp_path / "stamp"
    (tmp_path / "gen.h").write_text("just now")
    ran = fi_run_module(["--stamp", str(stamp), "--output", "gen.h", "--", "true"], cwd=tmp_path)
    assert ran == Ran(0, "", "")
    assert stamp.is_file()


def test_what_counts_as_written_by_this_run() -> None:
    """outputs.not_written on the cases no filesystem here can make: 1 s and 2 s timestamps."""
    from fi_run.step.outputs import GRANULARITY_SECONDS, not_written

    start = 1_700_000_000.0

    def file(
        ino: int = 7, size: int = 10, mtime: float = start - 100, ctime: float = start - 100
    ) -> tuple[int, int, int, int, int]:
        return (1, ino, size, int(mtime * 1e9), int(ctime * 1e9))

    assert not_written(None, file(), start) is None  # created (whatever its date)
    assert not_written(file(), file(ino=8), start) is None  # replaced by rename
    assert not_written(file(), file(size=11), start) is None  # rewritten, same coarse mtime
    assert not_written(file(), file(mtime=start + 1), start) is None
    assert not_written(file(), file(ctime=start + 0.5), start) is None  # `cp -p` onto it: only ctime moves
    assert not_written(file(), file(), start) == "unchanged since the step started"
    assert not_written(file(mtime=start + 3600), file(mtime=start + 3600), start) == (
        "unchanged since the step started, and dated 3600 s after that start"
    )
    # FAT: a rewrite 1.9 s after an earlier write of the same size may keep every field; so may a file
    # whose 2 s mtime was rounded up past the start.
    for offset in (-GRANULARITY_SECONDS, -1.9, 0.0, 1.9, GRANULARITY_SECONDS):
        same = file(mtime=start + offset, ctime=start + offset)
        assert not_written(same, same, start) is None, offset
    for offset in (-GRANULARITY_SECONDS - 0.5, GRANULARITY_SECONDS + 0.5):
        same = file(mtime=start + offset, ctime=start + offset)
        assert not_written(same, same, start) is not None, offset


def test_output_check_does_not_hide_the_command_failure(fi_run_module: Runner, tmp_path: Path) -> None:
    ran = fi_run_module(["--output", "never.h", "--", *py("import sys; sys.exit(5)")], cwd=tmp_path)
    assert ran == Ran(5, "", "")


# --- signals sent to the process by itself, outside a timeout: covered in test_signals.py


def test_sigterm_from_within_the_command_does_not_affect_fi_run(
    fi_run_module: Runner, tmp_path: Path
) -> None:
    # The command signals only itself: fi_run reports the death (143), no "interrupted" line of its own.
    ran = fi_run_module(["--", *py("import os, signal; os.kill(os.getpid(), signal.SIGTERM)")])
    assert ran == Ran(143, "", "")
