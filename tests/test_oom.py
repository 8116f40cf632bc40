"""OOM-aware retries (issue 19): the killed-process lines, the kernel's count, and what is never retried.

The lines are tests/data/contention/oom.tsv (real lines, each with its public source) and the look-alikes of
negative.tsv (kind other-signal: a process that crashed with another signal). The retries are run for real:
a memory cgroup with a small limit (root only, cgroup_testing.py; skipped with the reason elsewhere) in
which the kernel OOM-kills the command, or a process it runs. What is never retried is run for real too: a
SIGKILL from a person, from --timeout and after an interrupt, each also with an OOM kill in the step's
cgroup during the attempt, so that only the rule keeps it from being retried.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from cgroup_testing import ALLOCATE, MIB
from fi_run_testing import HANG_TIMEOUT, base_environ, fi_run_argv, kill_session, py, run, wait_until

from fi_run.contention.catalogue import KILLED_CHILD_LINES, OOM_FAMILY
from fi_run.contention.recognizer import classify, killed_line, oom_verdict

if TYPE_CHECKING:
    from cgroup_testing import Cgroup, Cgroups

if sys.platform == "win32":
    pytest.skip("the OOM killer, SIGKILL and memory cgroups are Linux's", allow_module_level=True)

DATA = Path(__file__).resolve().parent / "data" / "contention"
COLUMNS = ("family", "tool", "os", "line", "source", "notes")


def rows(name: str) -> list[dict[str, str]]:
    lines = (DATA / name).read_text(encoding="utf-8").split("\n")
    header = lines[0].split("\t")
    found = [dict(zip(header, line.split("\t"), strict=True)) for line in lines[1:] if line]
    assert found, name
    return found


OOM_ROWS = rows("oom.tsv")


# --- the lines


def test_the_oom_corpus_has_its_columns_and_a_public_source_for_every_line() -> None:
    assert tuple((DATA / "oom.tsv").read_text(encoding="utf-8").split("\n")[0].split("\t")) == COLUMNS
    for row in OOM_ROWS:
        assert row["family"] == OOM_FAMILY
        assert row["os"] in ("linux", "macos", "windows", "any")
        assert row["source"].startswith("https://github.com/")
        assert row["line"].strip()
    others = {r["line"].strip() for name in ("positive.tsv", "negative.tsv", "waits.tsv") for r in rows(name)}
    assert not {row["line"].strip() for row in OOM_ROWS} & others, "a line is in two corpus files"


@pytest.mark.parametrize(
    "row", OOM_ROWS, ids=[f"{r['tool'].split()[0]}-{i}" for i, r in enumerate(OOM_ROWS, 2)]
)
def test_each_real_killed_process_line_is_recognized_and_is_not_contention(row: dict[str, str]) -> None:
    assert killed_line(row["line"]) == row["line"].rstrip()
    # In the middle of a compiler's other output, too.
    output = f"[12/340] CXX obj/a.o\nIn file included from a.cc:1:\n{row['line']}\ncompilation terminated.\n"
    assert killed_line(output) == row["line"].rstrip()
    assert not classify(output, windows=False).retry
    assert not classify(output, windows=True).retry


@pytest.mark.parametrize("name", ["negative.tsv", "positive.tsv", "waits.tsv"])
def test_no_other_corpus_line_reads_as_a_killed_process(name: str) -> None:
    """The look-alikes of kind other-signal (a linker or compiler that crashed) above all."""
    found = [r["line"] for r in rows(name) if killed_line(r["line"]) is not None]
    assert found == []
    if name == "negative.tsv":
        assert sum(1 for r in rows(name) if r.get("kind") == "other-signal") >= 5


@pytest.mark.parametrize("sig", KILLED_CHILD_LINES, ids=[s.example[:30] for s in KILLED_CHILD_LINES])
def test_each_killed_process_signature_matches_its_own_example_and_names_its_source(sig: object) -> None:
    from fi_run.contention.catalogue import Signature

    assert isinstance(sig, Signature)
    assert sig.family == OOM_FAMILY
    assert re.search(sig.pattern, sig.example)
    assert sig.source.startswith("https://")
    assert killed_line(sig.example) == sig.example.rstrip()
    assert any(sig.example.strip() == row["line"].strip() for row in OOM_ROWS), (
        "examples come from the corpus"
    )


def test_the_oom_family_is_listed_with_the_signatures() -> None:
    listing = subprocess.run(
        [sys.executable, "-m", "fi_run", "--list-signatures"], capture_output=True, text=True, check=True
    ).stdout
    assert sum(1 for line in listing.splitlines() if line.startswith("oom ")) == len(KILLED_CHILD_LINES)


# --- the verdict: something was killed, and the kernel says whether it was the OOM killer

KILLED_LINE = "g++: fatal error: Killed signal terminated program cc1plus"


def test_a_sigkill_with_an_oom_kill_counted_is_retried_as_oom() -> None:
    verdict = oom_verdict("", status=137, kills=(1, "in the memory cgroup /sys/fs/cgroup/memory/ci"))
    assert verdict is not None
    assert (verdict.retry, verdict.kind, verdict.family) == (True, "oom", "oom")
    assert verdict.line == "exit status 137 (SIGKILL)"
    assert verdict.oom_kills == "1 OOM kill in the memory cgroup /sys/fs/cgroup/memory/ci while it ran"


def test_a_killed_child_line_counts_whatever_the_exit_status() -> None:
    verdict = oom_verdict(
        f"noise\n{KILLED_LINE}\ncompilation terminated.\n", status=1, kills=(2, "on this machine")
    )
    assert verdict is not None
    assert verdict.retry
    assert verdict.line == KILLED_LINE
    assert verdict.oom_kills == "2 OOM kills on this machine while it ran"


@pytest.mark.parametrize("kills", [(0, "in the memory cgroup /x"), None], ids=["no OOM kill", "not known"])
def test_a_sigkill_the_kernel_did_not_count_is_final(kills: tuple[int, str] | None) -> None:
    for text in ("", KILLED_LINE, "database is locked"):  # whatever the output says
        verdict = oom_verdict(text, status=137, kills=kills)
        assert verdict is not None
        assert (verdict.retry, verdict.kind) == (False, "killed")
        assert "OOM" in verdict.reason


@pytest.mark.parametrize("kills", [(0, "in the memory cgroup /x"), None], ids=["no OOM kill", "not known"])
def test_a_killed_process_in_the_output_alone_leaves_the_verdict_to_contention(
    kills: tuple[int, str] | None,
) -> None:
    """A test suite may kill children of its own and say so; without an OOM kill that is no verdict."""
    assert oom_verdict(f"{KILLED_LINE}\nerror: 2 tests failed", status=1, kills=kills) is None
    contended = "bash: line 4:  812 Killed   ./helper\ndatabase is locked"
    assert oom_verdict(contended, status=1, kills=kills) is None
    assert classify(contended, windows=False).retry  # and the contention verdict still retries it


# Real compile errors that quote a killed-process line, as the tools printed them on this project's machine
# (gcc 12.2, rustc 1.95, CPython 3.11; benchmarks/false_oom.py runs them for real beside OOM kills): each
# was retried as an OOM kill before killed_line learnt to tell a quotation from a report.
QUOTED_KILLED_LINES = {
    "gcc #error": (
        "a.c:1:2: error: #error g++: fatal error: Killed signal terminated program cc1plus\n"
        "    1 | #error g++: fatal error: Killed signal terminated program cc1plus\n"
        "      |  ^~~~~\n"
    ),
    "gcc #error, collect2": (
        "b.c:1:2: error: #error collect2: fatal error: ld terminated with signal 9 [Killed]\n"
        "    1 | #error collect2: fatal error: ld terminated with signal 9 [Killed]\n"
        "      |  ^~~~~\n"
    ),
    "rustc compile_error!": (
        "error: process didn't exit successfully: `rustc x.rs` (signal: 9, SIGKILL: kill)\n"
        " --> c.rs:1:1\n"
        "  |\n"
        '1 | compile_error!("process didn\'t exit successfully: `rustc x.rs` (signal: 9, SIGKILL: kill)");\n'
        "  | ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n"
        "\n"
        "error: aborting due to 1 previous error\n"
    ),
    "rustc compile_error!, clang": (
        "error: clang: error: unable to execute command: Killed\n"
        " --> d.rs:1:1\n"
        "  |\n"
        '1 | compile_error!("clang: error: unable to execute command: Killed");\n'
        "  | ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n"
    ),
    "a Python traceback": (
        "Traceback (most recent call last):\n"
        '  File "<string>", line 1, in <module>\n'
        "RuntimeError: g++: fatal error: Killed signal terminated program cc1plus\n"
    ),
    "a Python traceback with its source line": (
        "Traceback (most recent call last):\n"
        '  File "/src/check.py", line 3, in <module>\n'
        '    raise RuntimeError("collect2: fatal error: ld terminated with signal 9 [Killed]")\n'
        "RuntimeError: collect2: fatal error: ld terminated with signal 9 [Killed]\n"
    ),
    "a string in a test's assertion": (
        'E       assert "g++: fatal error: Killed signal terminated program cc1plus" in ""\n'
    ),
}


@pytest.mark.parametrize("text", QUOTED_KILLED_LINES.values(), ids=QUOTED_KILLED_LINES.keys())
def test_a_killed_process_line_that_an_error_quotes_is_no_kill(text: str) -> None:
    assert killed_line(text) is None
    assert oom_verdict(text, status=1, kills=(5, "in the memory cgroup /x")) is None
    # The real report after the quotation still counts.
    assert killed_line(f"{text}{KILLED_LINE}\ncompilation terminated.\n") == KILLED_LINE


# --- the kernel's log: whom the OOM killer killed

KMSG_RECORDS = (
    # As /dev/kmsg gives them (this machine, Linux 5.x, a memory cgroup v1 limit), with one older record.
    "3,53800,1500000,-;Memory cgroup out of memory: Killed process 100 (python) total-vm:405736kB, "
    "anon-rss:196096kB, file-rss:5972kB, shmem-rss:0kB, UID:0 pgtables:456kB oom_score_adj:1000\n"
    "4,53884,8986824529,-;python invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, "
    "oom_score_adj=1000\n"
    " SUBSYSTEM=memory\n"
    "6,53960,8986824689,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,"
    "oom_memcg=/ci/job7,task_memcg=/ci/job7,task=python,pid=10917,uid=0\n"
    "3,53961,8986824698,-;Memory cgroup out of memory: Killed process 10917 (python) total-vm:405736kB, "
    "anon-rss:196096kB, file-rss:6036kB, shmem-rss:0kB, UID:0 pgtables:444kB oom_score_adj:1000\n"
    "3,53990,8987000000,-;Out of memory: Killed process 10920 (cc1plus) total-vm:1kB\n"
)


def test_the_oom_victims_are_read_from_the_kernel_s_log_from_the_attempt_s_start(tmp_path: Path) -> None:
    from fi_run import memory

    log = tmp_path / "kmsg"
    log.write_text(KMSG_RECORDS)
    # Microseconds since boot: the attempt started at 8986.5 s; the record at 1.5 s is another's.
    assert memory.oom_victims(8986.5, str(log)) == [10917, 10920]
    assert memory.oom_victims(8987.9, str(log)) == [10920]  # the record at 8987.0 s: within the slack (1 s)
    assert memory.oom_victims(9000.0, str(log)) == []
    assert memory.oom_victims(0.0, str(tmp_path / "missing")) is None


def test_a_person_s_sigkill_is_not_retried_when_the_kernel_s_log_names_another_victim() -> None:
    cgroup_kill = (1, "in the memory cgroup /x")
    verdict = oom_verdict("", status=137, kills=cgroup_kill, pid=42, victims=[10917])
    assert verdict is not None
    assert (verdict.retry, verdict.kind) == (False, "killed")
    assert "its log names other processes as killed (pid 10917), not the command (pid 42)" in verdict.reason
    # The command among the victims: the OOM killer's.
    verdict = oom_verdict("", status=137, kills=cgroup_kill, pid=42, victims=[7, 42])
    assert verdict is not None
    assert (verdict.retry, verdict.kind) == (True, "oom")
    # A log that names fewer victims than the kernel counted (records lost), or none, or no log: as before.
    for victims in ([7], [], None):
        verdict = oom_verdict("", status=137, kills=(2, "on this machine"), pid=42, victims=victims)
        assert verdict is not None
        assert verdict.retry, victims
    # A shell that exited 137 (no pid: it did not die of the signal), a killed child's line: as before.
    verdict = oom_verdict("", status=137, kills=cgroup_kill, pid=None, victims=[10917])
    assert verdict is not None
    assert verdict.retry
    verdict = oom_verdict(KILLED_LINE, status=1, kills=cgroup_kill, pid=None, victims=[10917])
    assert verdict is not None
    assert verdict.retry


def test_a_failure_without_a_killed_process_is_left_to_the_contention_verdict() -> None:
    assert oom_verdict("error: expected ';'", status=1, kills=(3, "on this machine")) is None
    assert oom_verdict("Segmentation fault (core dumped)", status=139, kills=(3, "on this machine")) is None


# --- real OOM kills in a memory cgroup


def _fi_run_in(cgroup: Cgroup, tmp_path: Path, *args: str) -> tuple[int, str, list[dict[str, Any]]]:
    """fi_run --log LOG ARGS inside ``cgroup``: (exit status, stderr, the log's records)."""
    log = tmp_path / "steps.log"
    done = run(cgroup.wrap([*fi_run_argv(), "--log", str(log), *args]), cwd=tmp_path)
    records = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return done.status, done.err, records


# First attempt: allocate and touch far beyond the limit (the kernel kills it); later attempts succeed.
ONCE_TOO_BIG = """
import os
if not os.path.exists("attempted"):
    open("attempted", "w").close()
    data = bytearray(512 << 20)
    for i in range(0, len(data), 4096):
        data[i] = 1
print("built")
"""


def test_a_command_the_oom_killer_killed_is_retried_and_logged_as_oom(
    memory_cgroups: Cgroups, tmp_path: Path
) -> None:
    cgroup = memory_cgroups.make(96 * MIB)
    status, err, records = _fi_run_in(cgroup, tmp_path, "--", *py(ONCE_TOO_BIG))
    assert status == 0, err
    assert cgroup.oom_kills() == 1
    [said] = [line for line in err.splitlines() if line.startswith("fi_run:")]
    assert said.startswith(
        'fi_run: out of memory (oom: "exit status 137 (SIGKILL)"; 1 OOM kill in the memory '
    )
    assert f"cgroup {cgroup.directory} while it ran), retry 1/10 in " in said
    assert re.search(r"then once \d.* (MiB|KiB) is available \(at most \d+ s\)$", said), said
    [record] = records
    attempts: list[dict[str, Any]] = record["attempts"]
    first, second = attempts
    assert (first["status"], first["family"], first["line"]) == (137, "oom", "exit status 137 (SIGKILL)")
    assert (second["status"], second["family"]) == (0, None)
    assert isinstance(record["peak_rss"], int)
    assert record["peak_rss"] > 32 * MIB  # the killed attempt's, the largest


def test_a_compiler_line_about_a_killed_process_is_retried_when_the_kernel_killed_it(
    memory_cgroups: Cgroups, tmp_path: Path
) -> None:
    """A shell (as a compiler driver does) runs the process the kernel kills, says so, and exits 1."""
    cgroup = memory_cgroups.make(96 * MIB)
    script = tmp_path / "alloc.py"
    script.write_text(ALLOCATE)
    driver = f"if [ -e attempted ]; then exit 0; fi; touch attempted; {sys.executable} {script} 512; exit 1"
    status, err, records = _fi_run_in(cgroup, tmp_path, "--", "bash", "-c", driver)
    assert status == 0, err
    assert cgroup.oom_kills() == 1
    first = records[0]["attempts"][0]
    assert (first["status"], first["family"]) == (1, "oom")
    assert re.search(r"line 1: +\d+ Killed", first["line"]), first
    assert "out of memory (oom: " in err


# A command that gets an OOM kill into its cgroup's count (a child of its allocates too much), then dies of
# SIGKILL for another reason: what counts is why it died. Its signal handling is set up first.
OOM_THEN = """
import os, signal, subprocess, sys, time
if sys.argv[2] == "interrupt":  # ninja's Ctrl-C: the command dies of SIGKILL after it
    signal.signal(signal.SIGINT, lambda *_: os.kill(os.getpid(), signal.SIGKILL))
else:  # "timeout": deaf to --timeout's SIGTERM, so it gets the SIGKILL that follows
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
subprocess.run([sys.executable, "-c", sys.argv[1], "512"], check=False)
open("oom-happened", "w").close()
time.sleep(600)
"""

# The step's command: runs its arguments (a child that moves itself into another cgroup and is OOM-killed
# there), then is killed with SIGKILL, as by a person.
RUN_THEN_KILLED = """
import os, signal, subprocess, sys
subprocess.run(sys.argv[1:], check=False)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_person_s_sigkill_is_not_retried_even_after_an_oom_kill_elsewhere_on_the_machine(
    memory_cgroups: Cgroups, tmp_path: Path
) -> None:
    """The OOM kill is in another cgroup: the machine's count moves, the step's cgroup's does not."""
    step, other = memory_cgroups.make(), memory_cgroups.make(96 * MIB)
    command = py(RUN_THEN_KILLED, *other.wrap([sys.executable, "-c", ALLOCATE, "512"]))
    status, err, records = _fi_run_in(step, tmp_path, "--", *command)
    assert other.oom_kills() == 1
    assert step.oom_kills() == 0
    assert status == 137
    assert len(records[0]["attempts"]) == 1
    [said] = [line for line in err.splitlines() if line.startswith("fi_run:")]
    assert said.startswith(
        "fi_run: not retried: the command was killed by SIGKILL (exit 137), but the kernel "
    )
    assert f"counted no OOM kill in the memory cgroup {step.directory} while it ran" in said


def _kmsg_readable() -> bool:
    try:
        os.close(os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK))
    except OSError:
        return False
    return True


def test_a_person_s_sigkill_is_not_retried_while_another_process_of_the_step_s_cgroup_is_oom_killed(
    memory_cgroups: Cgroups, tmp_path: Path
) -> None:
    """The step's cgroup counts the OOM kill of the command's child; the command itself then dies of a
    person's SIGKILL. The count cannot tell the two apart; the kernel's log can (benchmarks/false_oom.py)."""
    if not _kmsg_readable():
        pytest.skip("the kernel's log (/dev/kmsg) cannot be read here: the cgroup's count alone decides")
    cgroup = memory_cgroups.make(96 * MIB)
    status, err, records = _fi_run_in(
        cgroup, tmp_path, "--", *py(RUN_THEN_KILLED, sys.executable, "-c", ALLOCATE, "512")
    )
    assert cgroup.oom_kills() == 1
    assert status == 137, err
    assert len(records[0]["attempts"]) == 1
    [said] = [line for line in err.splitlines() if line.startswith("fi_run:")]
    assert said.startswith(
        "fi_run: not retried: the command was killed by SIGKILL (exit 137), and the kernel "
    )
    assert "but its log names other processes as killed (pid " in said


def test_a_person_s_sigkill_is_not_retried(tmp_path: Path) -> None:
    """No cgroup needed: whatever this machine counts, nothing was OOM-killed while the step ran."""
    log = tmp_path / "steps.log"
    kill = "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
    done = run([*fi_run_argv(), "--log", str(log), "--", *py(kill)], cwd=tmp_path)
    assert done.status == 137
    assert len(json.loads(log.read_text())["attempts"]) == 1
    assert (
        "fi_run: not retried: the command was killed by SIGKILL (exit 137), but the kernel counted no OOM"
        in done.err
    )


def test_a_timeout_s_sigkill_is_not_retried_even_after_an_oom_kill_in_the_step(
    memory_cgroups: Cgroups, tmp_path: Path
) -> None:
    cgroup = memory_cgroups.make(96 * MIB)
    status, err, records = _fi_run_in(
        cgroup, tmp_path, "--timeout", "1", "--", *py(OOM_THEN, ALLOCATE, "timeout")
    )
    assert (tmp_path / "oom-happened").exists()
    assert cgroup.oom_kills() == 1
    assert status == 124, err
    attempts: list[dict[str, Any]] = records[0]["attempts"]
    [attempt] = attempts
    assert (attempt["status"], attempt["family"]) == (137, None)
    assert "out of memory" not in err
    assert "timed out after 1 s" in err


def test_an_interrupted_step_is_not_retried_even_after_an_oom_kill_in_it(
    memory_cgroups: Cgroups, tmp_path: Path
) -> None:
    """As ninja does on Ctrl-C: SIGINT to the step's process group; the command then dies of SIGKILL."""
    cgroup = memory_cgroups.make(96 * MIB)
    log = tmp_path / "steps.log"
    argv = cgroup.wrap([*fi_run_argv(), "--log", str(log), "--", *py(OOM_THEN, ALLOCATE, "interrupt")])
    proc = subprocess.Popen(
        argv, cwd=tmp_path, env=base_environ(), stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        wait_until((tmp_path / "oom-happened").exists, "the command's child to be OOM-killed")
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=HANG_TIMEOUT)
    finally:
        kill_session(proc.pid)
    assert cgroup.oom_kills() == 1
    assert proc.returncode == 130, err
    [attempt] = json.loads(log.read_text())["attempts"]
    assert (attempt["status"], attempt["family"]) == (137, None)
    assert b"out of memory" not in err
    assert b"interrupted by SIGINT" in err
