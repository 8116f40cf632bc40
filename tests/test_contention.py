"""Retry on contention signatures (issue 3): the contention simulator, real git, retry rules, backoff.

The simulator (tests/contention_sim.py) fails with uv#2767's exact message whenever another instance is
inside its resource, like a tool that does not wait for its own lock. Under ninja it fails unwrapped,
succeeds with fi_run's default retry, and with --lock never even attempts while another is inside.
Figures (failures, retries, wall time) are printed for `pytest -s`, never asserted.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest
from fi_run_testing import (
    CONTENTION_SIM,
    HANG_TIMEOUT,
    UV_2767_MESSAGE,
    analyse,
    fi_run_argv,
    git_binary,
    git_environ,
    read_log,
    redirected_output,
    run,
    run_fi_run,
    run_ninja,
    write_edges,
)

from fi_run.contention import backoff
from fi_run.contention.catalogue import BUILTIN
from fi_run.messages import Reporter
from fi_run.records import StepRecord, StepSpec
from fi_run.step.attempts import run_attempts
from fi_run.step.capture import Capture
from fi_run.step.interrupts import Interrupts

assert sys.platform != "win32"  # POSIX only: conftest.POSIX_ONLY keeps it from being collected on Windows

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    Argv = list[str | os.PathLike[str]]

SIM_STEPS = 40

# Shell: print uv#2767's message on stderr (printf, not echo: dash's echo would expand its "\v").
SAY_UV = f"printf '%s\\n' '{UV_2767_MESSAGE}' >&2"

# One fi_run retry line, as the user sees it: family, the matched line in quotes, retry k/N, the pause.
RETRY_LINE = re.compile(
    r'^fi_run: lock contention \((?P<family>[\w-]+): "(?P<line>.*)"\), retry (\d+)/(\d+) in [\d.]+ s$'
)


def retry_lines(text: str) -> list[re.Match[str]]:
    return [m for line in text.splitlines() if (m := RETRY_LINE.match(line))]


# --- the simulator on its own


def test_simulator_fails_with_the_uv_2767_message_while_another_instance_is_inside(tmp_path: Path) -> None:
    (tmp_path / ".sim.lock").write_text("someone else\n")
    busy = run([sys.executable, CONTENTION_SIM, tmp_path, "0"], cwd=tmp_path)
    assert busy.status == 2
    assert busy.err == UV_2767_MESSAGE + "\n"
    assert len((tmp_path / "failures").read_text().splitlines()) == 1
    assert not (tmp_path / "sim.log").exists()

    (tmp_path / ".sim.lock").unlink()
    free = run([sys.executable, CONTENTION_SIM, tmp_path, "0.01"], cwd=tmp_path)
    assert free.status == 0, free.err
    assert free.err == ""
    assert not (tmp_path / ".sim.lock").exists(), "the simulator left its lock file behind"
    result = analyse(read_log(tmp_path / "sim.log"))
    assert len(result.entered) == 1
    assert result.unfinished == []


def _sim_build(
    tmp_path: Path, name: str, wrapper: Sequence[str | os.PathLike[str]] | None
) -> tuple[Path, Path]:
    """A build of SIM_STEPS simulator steps on one fresh resource; ``wrapper`` None runs them bare."""
    resource = tmp_path / f"{name}-venv"
    resource.mkdir()
    build = tmp_path / f"{name}-build"
    edges: list[tuple[str, Argv]] = []
    for i in range(SIM_STEPS):
        stamp = f"stamps/{i}"
        sim: Argv = [sys.executable, CONTENTION_SIM, resource, "0.05"]
        edges.append((stamp, sim if wrapper is None else [*wrapper, "--stamp", stamp, "--", *sim]))
    write_edges(build, edges)
    return build, resource


def _failures(resource: Path) -> list[str]:
    path = resource / "failures"
    return path.read_text().splitlines() if path.exists() else []


def test_unwrapped_simulator_steps_fail_under_ninja_j16(tmp_path: Path) -> None:
    """Many steps start together and each stays inside 50 ms: some must find another inside. A race,
    so a build that got lucky is repeated (from a fresh resource) up to 3 times."""
    seen = []
    for attempt in range(3):
        build, resource = _sim_build(tmp_path, f"bare{attempt}", None)
        done = run_ninja(build, "-j16", "-k", "0")
        failed = done.stdout.count("FAILED: ")
        seen.append((done.returncode, failed, len(_failures(resource))))
        if done.returncode != 0:
            break
    print(f"\nunwrapped simulator, {SIM_STEPS} steps at -j16: (ninja status, failed steps, failures) {seen}")
    status, failed, failures = seen[-1]
    assert status != 0, f"no simulator step ever collided in 3 builds: {seen}"
    assert failed >= 1
    assert failures == failed
    assert UV_2767_MESSAGE in done.stdout


def test_default_retry_lets_every_simulator_step_succeed(tmp_path: Path) -> None:
    build, resource = _sim_build(tmp_path, "retry", fi_run_argv())
    done = run_ninja(build, "-j16")
    assert done.returncode == 0, done.stdout[-4000:]
    assert len(list((build / "stamps").iterdir())) == SIM_STEPS
    retries = retry_lines(done.stdout)
    print(
        f"\nsimulator with default retry, {SIM_STEPS} steps at -j16: "
        f"{len(_failures(resource))} failed attempts, "
        f"{len(retries)} retry lines, highest retry {max((int(m[3]) for m in retries), default=0)}"
    )
    assert retries, "no step ever collided, so retry was not exercised"
    assert len(retries) == len(_failures(resource)), "one retry line per failed attempt"
    for match in retries:
        assert match["family"] == "windows-lock-violation"
        assert match["line"] == UV_2767_MESSAGE
    # The failed attempts' output is dropped: the message shows up only inside fi_run's retry lines.
    shown = [line for line in done.stdout.splitlines() if "Could not try lock" in line]
    assert len(shown) == len(retries)
    result = analyse(read_log(resource / "sim.log"))
    assert len(result.entered) == SIM_STEPS
    assert result.unfinished == []


def test_lock_means_no_simulator_attempt_ever_fails(tmp_path: Path) -> None:
    # _sim_build's resource for the name "lock" is tmp_path / "lock-venv"
    wrapper: Argv = [*fi_run_argv(), "--lock-dir", tmp_path / "locks", "--lock", tmp_path / "lock-venv"]
    build, resource = _sim_build(tmp_path, "lock", wrapper)
    done = run_ninja(build, "-j16")
    assert done.returncode == 0, done.stdout[-4000:]
    print(f"\nsimulator with --lock, {SIM_STEPS} steps at -j16")
    assert _failures(resource) == []
    assert "lock contention" not in done.stdout
    assert "Could not try lock" not in done.stdout
    result = analyse(read_log(resource / "sim.log"), exclusive_kinds={"sim"})
    assert result.violations == []
    assert len(result.entered) == SIM_STEPS
    assert len(list((build / "stamps").iterdir())) == SIM_STEPS


# --- what is retried, how often, and what the user sees


def counted(tmp_path: Path, body: str) -> tuple[list[str], Path]:
    """A command that appends to a counter file, sets $n to its attempt number, then runs ``body``."""
    counter = tmp_path / "attempts"
    script = tmp_path / "attempt.sh"
    script.write_text(f'echo x >> "$1"\nn=$(wc -l < "$1"); n=$((n))\n{body}\n', encoding="utf-8")
    return ["sh", str(script), str(counter)], counter


def attempts(counter: Path) -> int:
    return len(counter.read_text().splitlines()) if counter.exists() else 0


def test_a_failure_without_a_contention_signature_runs_once_and_passes_its_status_through(
    tmp_path: Path,
) -> None:
    command, counter = counted(tmp_path, 'echo "error: no such file: foo.c" >&2; exit 5')
    done = run_fi_run("module", ["--", *command], cwd=tmp_path)
    assert done.status == 5
    assert attempts(counter) == 1
    assert done.err == "error: no such file: foo.c\n"


def test_retries_0_disables_retry_even_on_a_contention_signature(tmp_path: Path) -> None:
    command, counter = counted(tmp_path, f"{SAY_UV}; exit 2")
    done = run_fi_run("module", ["--retries", "0", "--", *command], cwd=tmp_path)
    assert done.status == 2
    assert attempts(counter) == 1
    assert done.err == UV_2767_MESSAGE + "\n"
    env_done = run_fi_run("module", ["--", *command], cwd=tmp_path, env={"FI_RUN_RETRIES": "0"})
    assert env_done.status == 2
    assert attempts(counter) == 2  # one more attempt: the environment default disables retry too


def test_retry_on_adds_a_signature_and_the_step_succeeds_on_its_second_attempt(tmp_path: Path) -> None:
    body = 'if [ "$n" -eq 1 ]; then echo "tool: my custom busy, try later" >&2; exit 1; fi; echo built'
    command, counter = counted(tmp_path, body)
    done = run_fi_run("module", ["--retry-on", "custom busy", "--", *command], cwd=tmp_path)
    assert done.status == 0, done.err
    assert attempts(counter) == 2
    assert done.out == "built\n"
    [line] = done.err.splitlines()
    match = RETRY_LINE.match(line)
    assert match is not None, line
    assert match["family"] == "user"
    assert match["line"] == "tool: my custom busy, try later"
    assert match.group(3, 4) == ("1", "10")


def test_without_retry_on_the_custom_message_is_not_contention(tmp_path: Path) -> None:
    command, counter = counted(tmp_path, 'echo "tool: my custom busy, try later" >&2; exit 1')
    done = run_fi_run("module", ["--", *command], cwd=tmp_path)
    assert done.status == 1
    assert attempts(counter) == 1


def test_only_the_final_attempts_output_is_shown_with_one_line_per_retry(tmp_path: Path) -> None:
    body = (
        'echo "attempt $n stdout"; echo "attempt $n stderr" >&2\n'
        f'if [ "$n" -lt 3 ]; then {SAY_UV}; exit 2; fi'
    )
    command, counter = counted(tmp_path, body)
    done = run_fi_run("module", ["--", *command], cwd=tmp_path)
    assert done.status == 0
    assert attempts(counter) == 3
    assert done.out == "attempt 3 stdout\n"
    lines = done.err.splitlines()
    assert len(lines) == 3, done.err
    assert [m.group(3, 4) for m in map(RETRY_LINE.match, lines[:2]) if m] == [("1", "10"), ("2", "10")]
    assert lines[2] == "attempt 3 stderr"


def test_retries_are_capped_and_the_last_attempts_status_passes_through(tmp_path: Path) -> None:
    body = f'echo "attempt $n" >&2; {SAY_UV}; exit $((10 + n))'
    command, counter = counted(tmp_path, body)
    done = run_fi_run("module", ["--retries", "2", "--", *command], cwd=tmp_path)
    assert attempts(counter) == 3
    assert done.status == 13
    lines = done.err.splitlines()
    assert [m.group(3, 4) for m in map(RETRY_LINE.match, lines) if m] == [("1", "2"), ("2", "2")]
    assert lines[2:] == ["attempt 3", UV_2767_MESSAGE]  # the final failure is shown as it was


def test_a_wait_line_in_a_failures_output_does_not_cause_a_retry(tmp_path: Path) -> None:
    body = (
        'echo "    Blocking waiting for file lock on package cache" >&2\n'
        'echo "error: could not compile `foo`" >&2; exit 101'
    )
    command, counter = counted(tmp_path, body)
    done = run_fi_run("module", ["--", *command], cwd=tmp_path)
    assert done.status == 101
    assert attempts(counter) == 1
    assert "lock contention" not in done.err


def test_a_successful_command_printing_a_contention_line_is_not_retried(tmp_path: Path) -> None:
    command, counter = counted(tmp_path, f"{SAY_UV}; exit 0")
    done = run_fi_run("module", ["--", *command], cwd=tmp_path)
    assert done.status == 0
    assert attempts(counter) == 1
    assert done.err == UV_2767_MESSAGE + "\n"


def test_list_signatures_prints_every_builtin_family(tmp_path: Path) -> None:
    done = run_fi_run("module", ["--list-signatures"], cwd=tmp_path)
    assert done.status == 0
    assert done.err == ""
    listed = {line.split(":")[0].split(" (")[0] for line in done.out.splitlines() if not line.startswith(" ")}
    assert {sig.family for sig in BUILTIN} <= listed
    for sig in BUILTIN:
        assert sig.example in done.out


# --- backoff


def test_backoff_delay_doubles_from_the_first_delay() -> None:
    middle = 0.5  # a jitter factor of exactly 1
    assert [backoff.delay(retry, middle) for retry in range(1, 6)] == [
        backoff.FIRST_DELAY * 2**k for k in range(5)
    ]


def test_backoff_delay_is_capped_at_max_delay() -> None:
    assert backoff.delay(40, 0.5) == backoff.MAX_DELAY
    assert backoff.delay(1000, 0.5) == backoff.MAX_DELAY  # no overflow for a large retry number
    assert backoff.delay(40, 0.999999) <= backoff.MAX_DELAY * backoff.JITTER_HIGH


def test_backoff_jitter_stays_within_three_quarters_and_five_quarters() -> None:
    assert (backoff.JITTER_LOW, backoff.JITTER_HIGH) == (0.75, 1.25)
    for retry in (1, 3, 7, 40):
        base = backoff.delay(retry, 0.5)
        assert backoff.delay(retry, 0.0) == pytest.approx(base * 0.75)
        for rand in (0.0, 0.1, 0.5, 0.9, 0.999999):
            assert base * 0.75 <= backoff.delay(retry, rand) < base * 1.25


def test_unit_random_is_uniform_enough_in_the_unit_interval() -> None:
    samples = [backoff.unit_random() for _ in range(2000)]
    assert all(0.0 <= s < 1.0 for s in samples)
    assert len(set(samples)) == len(samples)
    assert 0.4 < sum(samples) / len(samples) < 0.6
    assert min(samples) < 0.05
    assert max(samples) > 0.95


def _run_attempts_recording_sleeps(
    tmp_path: Path, retries: int, body: str
) -> tuple[int, int, int, list[float], str, str]:
    """run_attempts on a real shell command with the sleep recorded instead of slept: (status, attempts
    as run_attempts reports them, attempts by the command's own count, sleeps, fi_run's lines, output)."""
    command, counter = counted(tmp_path, body)
    spec = StepSpec(command=tuple(command), start_dir=str(tmp_path), retries=retries)
    sleeps: list[float] = []
    lines = io.StringIO()
    sh = shutil.which("sh")
    assert sh is not None
    record = StepRecord()
    with redirected_output() as shown, Interrupts() as interrupts:
        capture = Capture(wanted=True)
        try:
            result = run_attempts(
                spec,
                sh,
                dict(os.environ),
                Reporter(stream=lines),
                interrupts,
                record,
                capture,
                sleep=sleeps.append,
            )
            capture.replay()  # what execute() shows: the final attempt's output only
        finally:
            capture.close()
        output = shown()
    # The --log record lists every attempt that ran, each with the family that caused a retry.
    assert len(record.attempts) == result.attempts
    assert all(entry["family"] is not None for entry in record.attempts[:-1])
    return result.status, result.attempts, attempts(counter), sleeps, lines.getvalue(), output


def test_run_attempts_backs_off_exponentially_with_jitter_up_to_the_retry_cap(tmp_path: Path) -> None:
    status, reported, count, sleeps, lines, output = _run_attempts_recording_sleeps(
        tmp_path, 6, f"{SAY_UV}; exit 2"
    )
    assert status == 2
    assert reported == count == 7
    assert len(sleeps) == 6
    for retry, pause in enumerate(sleeps, 1):
        base = backoff.FIRST_DELAY * 2 ** (retry - 1)
        assert base * 0.75 <= pause <= base * 1.25, (retry, pause)
    announced = [float(m) for m in re.findall(r"retry \d+/6 in ([\d.]+) s", lines)]
    assert announced == [round(p, 1) for p in sleeps]
    assert output == UV_2767_MESSAGE + "\n"  # the last attempt's output, once


def test_run_attempts_stops_before_the_total_wait_passes_its_cap(tmp_path: Path) -> None:
    status, _reported, count, sleeps, _lines, _output = _run_attempts_recording_sleeps(
        tmp_path, 100, f"{SAY_UV}; exit 2"
    )
    assert status == 2
    total = sum(sleeps)
    print(f"\n{count} attempts, {total:.1f} s of backoff before the total cap stopped them")
    assert total <= backoff.MAX_TOTAL_WAIT
    assert total + backoff.MAX_DELAY * backoff.JITTER_HIGH > backoff.MAX_TOTAL_WAIT  # stopped by the cap
    assert count == len(sleeps) + 1 < 101
    assert max(sleeps) <= backoff.MAX_DELAY * backoff.JITTER_HIGH


# --- real git: 40 `git add` at once on one index


GIT_FILES = 40


def _git_build(tmp_path: Path, name: str, wrapped: bool) -> tuple[Path, Path]:
    git = git_binary()
    repo = tmp_path / f"{name}-repo"
    subprocess.run([git, "init", "-q", repo], check=True, env=git_environ(tmp_path), timeout=HANG_TIMEOUT)
    for i in range(GIT_FILES):
        (repo / f"file{i}").write_text(f"{i}\n")
    build = tmp_path / f"{name}-build"
    edges: list[tuple[str, Argv]] = []
    for i in range(GIT_FILES):
        stamp = f"stamps/{i}"
        add: Argv = [git, "-C", repo, "add", f"file{i}"]
        edges.append((stamp, [*fi_run_argv(), "--stamp", stamp, "--", *add] if wrapped else add))
    write_edges(build, edges)
    return build, repo


def _ls_files(tmp_path: Path, repo: Path) -> list[str]:
    listed = subprocess.run(
        [git_binary(), "-C", repo, "ls-files"],
        check=True,
        capture_output=True,
        text=True,
        env=git_environ(tmp_path),
        timeout=HANG_TIMEOUT,
    )
    return sorted(listed.stdout.split())


def test_unwrapped_git_add_steps_fail_on_the_index_lock_under_ninja_j16(tmp_path: Path) -> None:
    seen = []
    for attempt in range(5):
        build, repo = _git_build(tmp_path, f"bare{attempt}", wrapped=False)
        done = run_ninja(build, "-j16", "-k", "0", env=git_environ(tmp_path))
        seen.append((done.returncode, done.stdout.count("FAILED: "), len(_ls_files(tmp_path, repo))))
        if done.returncode != 0:
            break
    print(f"\nunwrapped git add x{GIT_FILES} at -j16: (ninja status, failed steps, files in index) {seen}")
    assert done.returncode != 0, f"git never collided on its index in 5 builds: {seen}"
    assert "index.lock': File exists" in done.stdout
    assert seen[-1][2] < GIT_FILES  # the failed adds are missing from the index


def test_default_retry_lets_40_concurrent_git_adds_all_succeed(tmp_path: Path) -> None:
    build, repo = _git_build(tmp_path, "retry", wrapped=True)
    done = run_ninja(build, "-j16", env=git_environ(tmp_path))
    assert done.returncode == 0, done.stdout[-4000:]
    retries = retry_lines(done.stdout)
    print(f"\ngit add x{GIT_FILES} with default retry at -j16: {len(retries)} retries")
    assert {m["family"] for m in retries} <= {"git-index-lock"}
    assert _ls_files(tmp_path, repo) == sorted(f"file{i}" for i in range(GIT_FILES))
    assert len(list((build / "stamps").iterdir())) == GIT_FILES
    assert not (repo / ".git" / "index.lock").exists()


def test_run_attempts_reports_the_attempts_actually_run_when_the_total_wait_cap_stops_it(
    tmp_path: Path,
) -> None:
    """run_attempts' Outcome.attempts must count the attempts that ran. When the total-wait cap (or the
    --timeout deadline) ends the loop, run_attempts has already counted the retry it then does not make."""
    _status, reported, count, sleeps, _lines, _output = _run_attempts_recording_sleeps(
        tmp_path, 100, f"{SAY_UV}; exit 2"
    )
    assert count == len(sleeps) + 1
    assert reported == count
