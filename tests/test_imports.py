"""Import cost is a feature: a step imports only what that step needs (fi_run runs once per build step)."""

from __future__ import annotations

import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pathlib import Path

# Each of these costs milliseconds to tens of milliseconds per build step (benchmarks/README.md).
NEVER_ON_THE_PLAIN_PATH = (
    "filelock",
    "colorama",
    "argparse",
    "subprocess",
    "re",
    "typing",
    "dataclasses",
    "json",
)


def imported_modules(args: list[str], cwd: Path) -> set[str]:
    """Every module `python -X importtime -m fi_run ARGS` imports (importtime lists each one on stderr)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "fi_run", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    names = set()
    for line in done.stderr.splitlines():
        fields = line.removeprefix("import time:").split("|")
        if len(fields) == 3 and fields[0].strip().isdigit():
            names.add(fields[2].strip())
    assert "fi_run.cli" in names, "importtime listed nothing: the check would pass vacuously"
    return names


def test_a_plain_step_imports_no_lock_library_parser_or_subprocess(tmp_path: Path) -> None:
    names = imported_modules(
        ["--stamp", str(tmp_path / "s"), "--env", "K=V", "--", sys.executable, "-c", ""], tmp_path
    )
    never = set(NEVER_ON_THE_PLAIN_PATH)
    if sys.platform == "win32":
        # Windows has no posix_spawn: run_windows.py starts every command with subprocess (and ctypes for the
        # job object around it).
        never.discard("subprocess")
    assert not names & never, sorted(names & never)
    assert (tmp_path / "s").exists()
    # Each module of fi_run's own costs about 50 us: a step without --log or locks needs none of these. Nor
    # memory.py: only a failed attempt asks whether the OOM killer struck (issue 19).
    unneeded = {
        name for name in names if name.startswith(("fi_run.observe", "fi_run.contention", "fi_run.memory"))
    }
    assert not unneeded, sorted(unneeded)
    assert "fi_run.step.outputs" not in names  # a step without --output pays nothing for the check
    # Nor the resource module (0.2 ms): only a logged step or a failed attempt reads the peak RSS.
    assert "resource" not in names


@pytest.mark.skipif(sys.platform == "win32", reason="colorama is imported on Windows, for colour only")
def test_a_locked_step_imports_filelock_but_not_colorama_on_posix(tmp_path: Path) -> None:
    names = imported_modules(
        ["--lock-dir", str(tmp_path / "locks"), "--lock", str(tmp_path), "--", "true"], tmp_path
    )
    assert "filelock" in names
    assert "colorama" not in names
    assert "argparse" not in names
    assert not {"fi_run.contention.remote", "fi_run.contention.resp"} & names  # only for redis:// (issue 21)


def test_a_step_with_only_a_redis_resource_imports_no_lock_library_or_re(tmp_path: Path) -> None:
    """A redis:// resource (issue 21) costs its client (contention/resp.py, on _socket), not filelock's 48 ms
    nor re's (a str host would have gone through the idna codec). Nothing need listen on the port: the
    imports happen before the connection fails (exit 69)."""
    done = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "-m",
            "fi_run",
            "--lock",
            "redis://127.0.0.1:1/seats",
            "--",
            sys.executable,  # a command every platform has (fi_run looks it up before it locks)
            "-c",
            "pass",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 69, done.stderr
    names = {
        fields[2].strip()
        for line in done.stderr.splitlines()
        if len(fields := line.removeprefix("import time:").split("|")) == 3 and fields[0].strip().isdigit()
    }
    assert {"fi_run.contention.remote", "fi_run.contention.resp"} <= names
    assert not names & {"filelock", "re", "socket", "threading", "typing", "subprocess", "hashlib"}, sorted(
        names & {"filelock", "re", "socket", "threading", "typing", "subprocess", "hashlib"}
    )


def test_help_is_the_only_path_that_imports_argparse(tmp_path: Path) -> None:
    assert "argparse" in imported_modules(["--help"], tmp_path)


# --- the cyclic garbage collector: off while fi_run starts, back on (with start-up frozen) before it waits

_COLLECTOR_PROBE = """
import gc, sys
from fi_run import cli
paused = sys.argv[1] == "paused"
if paused:
    gc.disable()  # as entrypoint() does
status = cli.main(sys.argv[2:], collector_paused=paused)
print(status, gc.isenabled(), gc.get_freeze_count() > 0)
"""


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["--", sys.executable, "-c", ""], id="plain step"),
        pytest.param(
            ["--lock-dir", "locks", "--lock", "r", "--", sys.executable, "-c", ""], id="locked step"
        ),
        pytest.param(["classify", "-"], id="tool"),
    ],
)
def test_a_paused_collector_is_back_on_before_the_step_or_tool_runs(tmp_path: Path, args: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _COLLECTOR_PROBE, "paused", *args],
        cwd=tmp_path,
        input="",
        capture_output=True,
        text=True,
        check=False,
    )
    status, enabled, frozen = done.stdout.splitlines()[-1].split()  # a tool may print before it
    assert (enabled, frozen) == ("True", "True"), done.stderr
    assert status in ("0", "1"), done.stderr  # classify of empty input: 1, "not retried"


def test_main_in_another_program_leaves_its_collector_alone(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _COLLECTOR_PROBE, "as-is", "--", sys.executable, "-c", ""],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.stdout.split() == ["0", "True", "False"], done.stderr
