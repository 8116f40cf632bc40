"""--log / FI_RUN_LOG (issue 5): one JSON line per fi_run invocation, appended by many processes at once.

The centre piece is a real ninja build at -j16 with contention: the simulator of the contention issue
(tests/contention_sim.py) under fi_run's default retry on one resource, under --lock on another, readers
under --shared-lock, a counted licence (--semaphore), one failing and one missing command, all with
FI_RUN_LOG in ninja's environment. ``contended_build`` runs it once per test session; test_report.py and
test_trace.py read the same log. Figures are printed for `pytest -s`, never asserted on.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import pytest
from fi_run_testing import (
    FAILING,
    HANG_TIMEOUT,
    IMPORT_STEPS,
    INSTALL_STEPS,
    LICENCE_STEPS,
    RETRY_STEPS,
    SECRET,
    TOTAL_STEPS,
    UV_2767_MESSAGE,
    Build,
    Procs,
    base_environ,
    only_fi_run_line,
    run_fi_run,
    start_holder,
    write_scripts,
)

assert sys.platform != "win32"  # POSIX only: conftest.POSIX_ONLY keeps it from being collected on Windows

if TYPE_CHECKING:
    from pathlib import Path

    Argv = list[str | os.PathLike[str]]

RECORD_KEYS = {
    "v",
    "pid",
    "start",
    "end",
    "duration",
    "argv",
    "cwd",
    "command_cwd",
    "status",
    "error",
    "attempts",
    "locks",
    "stamp",
    "env_names",
    "lent",
    "peak_rss",
}
ATTEMPT_KEYS = {"start", "duration", "status", "family", "line"}
LOCK_KEYS = {"resource", "mode", "slots", "wait_start", "wait", "held", "weight"}


def by_stamp(build: Build) -> dict[str, dict[str, Any]]:
    records = build.records()
    return {os.path.relpath(r["stamp"], build.directory): r for r in records}


# --- the contended build


def test_the_contended_build_ran_every_step(build: Build) -> None:
    failed = [line for line in build.out.splitlines() if line.startswith("FAILED: ")]
    # Only the two failing steps failed. Ninja 1.13 exits with a failed command's status: 1 or 127 here.
    assert build.status in (1, 127), build.out[-6000:]
    assert len(failed) == len(FAILING), build.out[-6000:]
    for stamp in build.stamps:
        assert (build.directory / stamp).exists() == (stamp not in FAILING), (stamp, build.out[-6000:])


def test_every_step_has_exactly_one_line_and_every_line_parses(build: Build) -> None:
    text = build.text()
    assert text.endswith("\n")
    lines = text.splitlines()
    assert len(lines) == TOTAL_STEPS
    records = [json.loads(line) for line in lines]
    stamps = [os.path.relpath(r["stamp"], build.directory) for r in records]
    assert sorted(stamps) == sorted(build.stamps)
    assert len({r["pid"] for r in records}) == TOTAL_STEPS


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def test_every_record_has_the_documented_fields_and_types(build: Build) -> None:
    for record in build.records():
        assert set(record) == RECORD_KEYS, record
        assert record["v"] == 1
        assert isinstance(record["pid"], int)
        assert all(_is_number(record[k]) for k in ("start", "end", "duration"))
        assert record["start"] <= record["end"]
        assert record["end"] - record["start"] == pytest.approx(record["duration"], abs=1e-5)
        assert isinstance(record["argv"], list)
        assert all(isinstance(a, str) for a in record["argv"])
        assert record["cwd"] == os.fspath(build.directory)
        assert record["command_cwd"] is None
        assert isinstance(record["status"], int)
        assert record["env_names"] == ["BUILD_TOKEN"]
        if record["attempts"]:  # the command ran: its peak resident set, in bytes (a Python: MiBs)
            assert isinstance(record["peak_rss"], int)
            assert record["peak_rss"] > 1 << 20
        else:
            assert record["peak_rss"] is None
        previous_end = 0.0
        for attempt in record["attempts"]:
            assert set(attempt) == ATTEMPT_KEYS
            assert attempt["start"] >= previous_end - 1e-6, "attempts are sequential"
            previous_end = attempt["start"] + attempt["duration"]
        assert previous_end <= record["duration"] + 1e-5
        previous_end = 0.0
        for lock in record["locks"]:
            assert set(lock) == LOCK_KEYS
            assert lock["wait_start"] >= previous_end - 1e-6, "locks are taken one after another"
            previous_end = lock["wait_start"] + lock["wait"]
            assert lock["wait"] >= 0
            assert lock["held"] >= 0
        if record["attempts"] and record["locks"]:
            assert previous_end <= record["attempts"][0]["start"] + 1e-6, "the command runs after the locks"


def test_env_values_never_reach_the_log(build: Build) -> None:
    assert SECRET not in build.text()
    assert all(r["env_names"] == ["BUILD_TOKEN"] for r in build.records())


def test_retries_are_logged_with_family_and_matched_line(build: Build) -> None:
    steps = by_stamp(build)
    retried = 0
    for i in range(RETRY_STEPS):
        record = steps[f"retry/{i}"]
        assert record["status"] == 0
        assert record["locks"] == []
        *failed, last = record["attempts"]
        assert last["status"] == 0
        assert last["family"] is None
        for attempt in failed:
            assert attempt["status"] == 2
            assert attempt["family"] == "windows-lock-violation"
            assert attempt["line"] == UV_2767_MESSAGE
        retried += len(failed)
    failures = (build.venv_a / "failures").read_text().splitlines()
    print(f"\n{retried} retries logged, {len(failures)} simulator failures")
    assert retried == len(failures), "one logged retry per failed simulator attempt"
    assert retried >= 1, "no simulator step collided, so retries were not exercised"


def test_lock_waits_are_logged_per_resource_and_mode(build: Build) -> None:
    steps = by_stamp(build)
    venv_b = os.path.realpath(build.venv_b)
    install_waits = []
    for i in range(INSTALL_STEPS):
        record = steps[f"install/{i}"]
        assert record["status"] == 0
        assert len(record["attempts"]) == 1, "under --lock the simulator never collides"
        (lock,) = record["locks"]
        assert (lock["resource"], lock["mode"], lock["slots"]) == (venv_b, "exclusive", 1)
        assert lock["held"] >= record["attempts"][0]["duration"] >= 0.05
        install_waits.append(lock["wait"])
    for i in range(IMPORT_STEPS):
        (lock,) = steps[f"import/{i}"]["locks"]
        assert (lock["resource"], lock["mode"], lock["slots"]) == (venv_b, "shared", 1)
    licence = os.path.realpath(build.licence)
    for i in range(LICENCE_STEPS):
        (lock,) = steps[f"licence/{i}"]["locks"]
        assert (lock["resource"], lock["mode"], lock["slots"]) == (licence, "semaphore", 2)
        assert lock["held"] >= 0.1
    print(f"\nexclusive waits on venv-b: max {max(install_waits):.3f} s, total {sum(install_waits):.3f} s")
    # Twelve steps that each hold venv-b for at least 50 ms, started together by ninja: some must wait.
    assert max(install_waits) >= 0.02


def test_failing_steps_are_logged_with_their_status(build: Build) -> None:
    steps = by_stamp(build)
    false = steps["fail/false"]
    assert (false["status"], false["error"], len(false["attempts"])) == (1, None, 1)
    missing = steps["fail/missing"]
    assert missing["status"] == 127
    assert "no-such-tool-for-fi-run" in missing["error"]
    assert missing["attempts"] == []


# --- many writers at once


def test_64_concurrent_writers_with_long_lines_neither_interleave_nor_lose_a_line(tmp_path: Path) -> None:
    """64 fi_run processes, each with 20 to 80 KB of arguments (far beyond PIPE_BUF's 4 KB and a pipe's
    64 KB), all finishing at the same moment (their command waits for a 'go' file), append to one log."""
    log = tmp_path / "log"
    go = tmp_path / "go"
    wait_for_go = f'while [ ! -e "{go}" ]; do sleep 0.01; done'
    expected: dict[int, list[str]] = {}
    with Procs() as procs:
        started = []
        for i in range(64):
            # Distinct text per process, so that a torn or interleaved line could not parse as another.
            filler = [f"{i:02d}-" + chr(ord("a") + i % 26) * 1000 + f"-{k}" for k in range(20 + (i % 4) * 20)]
            argv = ["sh", "-c", wait_for_go, "sh", *filler]
            expected[i] = argv
            started.append(
                procs.start_fi_run(
                    ["--log", log, "--env", f"SECRET={SECRET}", "--", *argv],
                    cwd=tmp_path,
                    stderr=subprocess.PIPE,
                )
            )
        assert not log.exists()
        go.touch()
        for proc in started:
            _, err = proc.communicate(timeout=HANG_TIMEOUT)
            assert proc.returncode == 0, err
            assert err == b""
    data = log.read_bytes()
    lines = data.split(b"\n")
    assert lines[-1] == b"", "the log ends with a whole line"
    # An empty line may appear where a writer saw another's long record half-way (issue 12: a record after a
    # torn line starts on a fresh one); readers skip empty lines. Nothing else but whole records.
    records = [json.loads(line) for line in lines[:-1] if line]
    assert len(records) == 64
    assert min(len(line) for line in lines[:-1] if line) > 20_000
    assert sorted(map(tuple, (r["argv"] for r in records))) == sorted(map(tuple, expected.values()))
    assert SECRET.encode() not in data


# --- a log that cannot be written


@pytest.mark.parametrize(
    "where",
    ["file/log.jsonl", "file/sub/log.jsonl", "/proc/version", "/proc/no-such-dir/log.jsonl"],
    ids=["under-a-file", "deeper-under-a-file", "proc-file", "proc-dir"],
)
def test_an_unwritable_log_warns_once_and_the_step_still_succeeds(tmp_path: Path, where: str) -> None:
    (tmp_path / "file").write_text("a regular file, not a directory\n")
    done = run_fi_run(
        "module",
        ["--stamp", "out/s.stamp", "--", "sh", "-c", "echo built"],
        cwd=tmp_path,
        env={"FI_RUN_LOG": where},
    )
    assert done.status == 0
    assert done.out == "built\n"
    assert (tmp_path / "out" / "s.stamp").is_file()
    line = only_fi_run_line(done.err)
    assert "--log" in line or "FI_RUN_LOG" in line
    assert os.path.basename(where) in line


def test_an_unwritable_log_with_quiet_prints_nothing_and_succeeds(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    done = run_fi_run("module", ["--quiet", "--log", "file/log", "--", "true"], cwd=tmp_path)
    assert (done.status, done.err) == (0, "")


# --- fi_run's own failures are logged too


def _only_record(log: Path) -> dict[str, Any]:
    (line,) = log.read_text().splitlines()
    record: dict[str, Any] = json.loads(line)
    return record


def test_a_missing_command_is_logged_with_127_and_the_error(tmp_path: Path) -> None:
    done = run_fi_run("module", ["--log", "log", "--", "no-such-tool-for-fi-run"], cwd=tmp_path)
    assert done.status == 127
    record = _only_record(tmp_path / "log")
    assert record["status"] == 127
    assert record["error"] == only_fi_run_line(done.err).removeprefix("fi_run: ")
    assert record["attempts"] == []


def test_a_stamp_directory_that_cannot_be_created_is_logged_with_2_and_the_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    done = run_fi_run("module", ["--log", "log", "--stamp", "file/x/s.stamp", "--", "true"], cwd=tmp_path)
    assert done.status == 2
    record = _only_record(tmp_path / "log")
    assert record["status"] == 2
    assert record["error"] == only_fi_run_line(done.err).removeprefix("fi_run: ")
    assert record["stamp"] == os.fspath(tmp_path / "file" / "x" / "s.stamp")


def test_a_lock_timeout_is_logged_with_75_and_the_error(tmp_path: Path) -> None:
    scripts = write_scripts(tmp_path / "scripts")
    resource = tmp_path / "venv"
    lock_args: Argv = ["--lock-dir", tmp_path / "locks", "--lock", resource]
    with Procs() as procs:
        holder = start_holder(
            procs,
            scripts,
            lock_args,
            log=tmp_path / "sim.log",
            tag="w.1",
            control=tmp_path / "ctl",
            cwd=tmp_path,
        )
        try:
            done = run_fi_run(
                "module", [*lock_args, "--lock-timeout", "0.3", "--log", "log", "--", "true"], cwd=tmp_path
            )
        finally:
            holder.release()
        assert holder.proc.wait(timeout=HANG_TIMEOUT) == 0
    assert done.status == 75
    record = _only_record(tmp_path / "log")
    assert record["status"] == 75
    assert record["error"] == only_fi_run_line(done.err).removeprefix("fi_run: ")
    assert record["duration"] >= 0.3
    assert record["attempts"] == []


def test_the_log_option_wins_over_fi_run_log_and_relative_paths_are_from_the_start_directory(
    tmp_path: Path,
) -> None:
    (tmp_path / "sub").mkdir()
    done = run_fi_run(
        "module",
        ["--log", "logs/flag.log", "--cwd", "sub", "--", "true"],
        cwd=tmp_path,
        env={"FI_RUN_LOG": os.fspath(tmp_path / "env.log")},
    )
    assert done.status == 0, done.err
    assert not (tmp_path / "env.log").exists()
    record = _only_record(tmp_path / "logs" / "flag.log")
    assert record["cwd"] == os.fspath(tmp_path)
    assert record["command_cwd"] == os.fspath(tmp_path / "sub")


def test_outer_environment_values_never_reach_the_log(tmp_path: Path) -> None:
    done = run_fi_run(
        "module",
        ["--env", f"A={SECRET}", "--prepend-path", f"PATH={tmp_path}", "--unset", "HOME", "--", "true"],
        cwd=tmp_path,
        env={"FI_RUN_LOG": "log", "API_TOKEN": "s3cr3t-token"},
    )
    assert done.status == 0, done.err
    text = (tmp_path / "log").read_text()
    assert SECRET not in text
    assert "s3cr3t-token" not in text
    assert json.loads(text)["env_names"] == ["A", "HOME", "PATH"]


def test_a_logged_step_imports_none_of_the_log_reading_tools(tmp_path: Path) -> None:
    """report/trace/logfile (and json) are for `fi_run report`, never paid for by a build step."""
    code = (
        "import sys\n"
        "from fi_run.cli import main\n"
        "status = main(['--log', 'log', '--stamp', 's', '--', 'true'])\n"
        "print(status, sorted(m for m in sys.modules if m in "
        "('json', 'argparse', 'fi_run.tools.report', 'fi_run.tools.trace', 'fi_run.observe.logfile')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=base_environ(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.stdout == "0 []\n", done.stderr
    assert len((tmp_path / "log").read_text().splitlines()) == 1
