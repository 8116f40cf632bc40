"""fi-run jobserver and lending (issue 10): real ninja 1.13 from PyPI, real fi_run steps, real locks.

Concurrency is proved from recorded intervals (each command writes when it started and ended), never from
how long anything took.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from fi_run_testing import (
    HANG_TIMEOUT,
    base_environ,
    console_script,
    ninja_binary,
    only_fi_run_line,
    process_gone,
    wait_until,
)

from fi_run.contention import lending
from fi_run.errors import EXIT_USAGE
from fi_run.tools import jobserver as js

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from cgroup_testing import Cgroups

if sys.platform == "win32":  # the fifo jobserver, POSIX signals, /bin/sh under ninja
    pytest.skip("POSIX jobserver; the Windows semaphore code is type-checked only", allow_module_level=True)

# A build step that records its interval: `rec.py NAME LOG [--touch F] [--wait F...] [--waiters GLOB N]
# [--sleep S]`. It touches its own files when it starts, waits (bounded) for others' files and for N lock
# waiters (files matching GLOB: fi_run registers one after lending its slot), then appends "NAME start end".
RECORDER = """\
import glob, os, socket, sys, time
start = time.time()
name, log, args = sys.argv[1], sys.argv[2], sys.argv[3:]
touch = [args[i + 1] for i, a in enumerate(args) if a == "--touch"]
wait = [args[i + 1] for i, a in enumerate(args) if a == "--wait"]
waiters = [(args[i + 1], int(args[i + 2])) for i, a in enumerate(args) if a == "--waiters"]
queued = [int(args[i + 1]) for i, a in enumerate(args) if a == "--queued"]
sleep = [float(args[i + 1]) for i, a in enumerate(args) if a == "--sleep"]
def in_line():  # steps waiting in the build's coordinator, as it says (its LIST answer: STATE ... waits)
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(os.environ["FI_RUN_COORDINATOR"])
        s.sendall(b"4:LIST,")
        data = b""
        while b"END" not in data:
            data += s.recv(65536)
    return data.count(b"\\0waits\\0")
for path in touch:
    open(path, "w").close()
deadline = time.monotonic() + 60
while not (all(os.path.exists(p) for p in wait) and all(len(glob.glob(g)) >= n for g, n in waiters)
           and all(in_line() >= n for n in queued)):
    if time.monotonic() > deadline:
        sys.exit(f"{name}: gave up waiting for {wait}")
    time.sleep(0.01)
time.sleep(sleep[0] if sleep else 0)
with open(log, "a") as f:
    f.write(f"{name} {start} {time.time()}\\n")
"""


def _q(arg: str | os.PathLike[str]) -> str:
    import shlex

    return shlex.quote(os.fspath(arg)).replace("$", "$$")


class Build:
    """A build.ninja in tmp_path whose steps run the recorder, with or without fi_run around them.

    The server runs without its lock coordinator unless ``coordinator``: these tests pin what a locked step
    does on its own under a jobserver (waiting through the lock directory, whose waiter files they count);
    tests/test_coordinator.py has the same builds with the coordinator."""

    def __init__(self, tmp_path: Path, *, coordinator: bool = False) -> None:
        self.coordinator = coordinator
        self.dir = tmp_path
        self.recorder = tmp_path / "rec.py"
        self.recorder.write_text(RECORDER)
        self.intervals = tmp_path / "intervals"
        self.log = tmp_path / "steps.jsonl"
        self.locks = tmp_path / "locks"
        self.lines = ["rule run\n  command = $cmd\n", "rule touch\n  command = touch $out\n"]
        self.outputs: list[str] = []

    def record(self, name: str, *extra: str) -> list[str]:
        return [sys.executable, str(self.recorder), name, str(self.intervals), *extra]

    def fi_run(self, *options: str) -> list[str]:
        return [str(console_script()), "--lock-dir", str(self.locks), "--log", str(self.log), *options, "--"]

    def step(self, out: str, argv: Sequence[str], *, after: bool = False) -> None:
        """A step writing ``out``; ``after`` gives it a dependent step, which makes ninja 1.13 (critical
        path first) start it before the steps that have none."""
        command = " ".join(_q(a) for a in argv) + f" && touch {out}"
        self.lines.append(f"build {out}: run\n  cmd = {command}\n")
        self.outputs.append(out)
        if after:
            self.lines.append(f"build {out}.after: touch {out}\n")
            self.outputs.append(f"{out}.after")

    def write(self) -> None:
        self.lines.append("build all: phony " + " ".join(self.outputs) + "\ndefault all\n")
        (self.dir / "build.ninja").write_text("\n".join(self.lines))

    def argv(self, jobs: int | None = 4) -> list[str]:
        server = [str(console_script()), "jobserver", *(["-j", str(jobs)] if jobs else [])]
        server += [] if self.coordinator else ["--no-coordinator"]
        server.append("--")
        return [*server, ninja_binary()]

    def env(self, **extra: str) -> dict[str, str]:
        return base_environ({"TERM": "dumb", "NINJA_STATUS": "[%f/%t] ", **extra})

    def run(self, jobs: int | None = 4, **extra: str) -> subprocess.CompletedProcess[str]:
        self.write()
        return subprocess.run(
            self.argv(jobs),
            cwd=self.dir,
            env=self.env(**extra),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=HANG_TIMEOUT,
            check=False,
        )

    def spans(self) -> dict[str, tuple[float, float]]:
        spans = {}
        for line in self.intervals.read_text().splitlines():
            name, start, end = line.split()
            spans[name] = (float(start), float(end))
        return spans

    def records(self) -> list[Any]:
        return [json.loads(line) for line in self.log.read_text().splitlines()]


def most_at_once(spans: Sequence[tuple[float, float]]) -> int:
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running = most = 0
    for _, change in events:
        running += change
        most = max(most, running)
    return most


def server_warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("fi_run: jobserver:")]


# --- the server


def test_the_server_bounds_a_real_ninja_build_to_its_job_count(tmp_path: Path) -> None:
    build = Build(tmp_path)
    for i in range(12):
        build.step(f"s{i}", build.record(f"s{i}", "--sleep", "0.4"))
    done = build.run(jobs=4)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Jobserver mode detected" in done.stdout, done.stdout  # ninja did read the jobserver
    spans = build.spans()
    assert len(spans) == 12
    assert 2 <= most_at_once(list(spans.values())) <= 4
    assert server_warnings(done.stderr) == []


def test_the_command_sees_makeflags_with_its_own_flags_kept_and_the_mark(tmp_path: Path) -> None:
    out = tmp_path / "env.json"
    code = (
        "import json, os, sys; "
        "json.dump([os.environ['MAKEFLAGS'], os.environ['FI_RUN_JOBSERVER']], open(sys.argv[1], 'w'))"
    )
    done = subprocess.run(
        [str(console_script()), "jobserver", "-j", "3", "--", sys.executable, "-c", code, str(out)],
        env=base_environ({"MAKEFLAGS": "k -j8 --jobserver-auth=fifo:/elsewhere"}),
        capture_output=True,
        text=True,
        timeout=HANG_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    makeflags, mark = json.loads(out.read_text())
    words = makeflags.split()
    assert words[:2] == ["k", "-j3"]
    assert words[2] == f"--jobserver-auth={mark}"
    fifo = Path(mark.removeprefix("fifo:"))
    assert not fifo.exists(), "the fifo must be removed"
    assert not fifo.parent.exists(), "and its private directory"


def test_the_command_exit_status_passes_through(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(console_script()), "jobserver", "--", sys.executable, "-c", "raise SystemExit(7)"],
        capture_output=True,
        text=True,
        timeout=HANG_TIMEOUT,
        check=False,
    )
    assert (done.returncode, done.stderr) == (7, "")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--", "ninja", "-j4"], "ninja ignores a jobserver when it is given '-j4'"),
        (["--", "ninja", "-C", "out", "-j", "8", "all"], "given '-j 8'"),
        (["-j", "0", "--", "true"], "-j expects a whole number from 1 to 4096, got '0'"),
        (["-j", "many", "--", "true"], "got 'many'"),
        (["-x", "--", "true"], "jobserver: unrecognized arguments: -x (see fi_run jobserver --help)"),
        (["--"], "no command after '--'"),
        (["true"], "missing '--'"),
        (["--", "no-such-command-for-fi-run"], "no-such-command-for-fi-run"),
        (
            ["--keep-free-memory", "1X", "--", "true"],
            "jobserver: --keep-free-memory expects a size: bytes, or",
        ),
        (["--keep-free-memory=-2G", "--", "true"], "jobserver: --keep-free-memory expects a size"),
    ],
)
def test_bad_invocations_of_the_server_say_one_line_and_run_nothing(
    tmp_path: Path, args: list[str], expected: str
) -> None:
    ninja_dir = Path(ninja_binary()).parent
    done = subprocess.run(
        [str(console_script()), "jobserver", *args],
        cwd=tmp_path,
        env=base_environ({"PATH": f"{ninja_dir}{os.pathsep}{os.environ['PATH']}"}),
        capture_output=True,
        text=True,
        timeout=HANG_TIMEOUT,
        check=False,
    )
    line = only_fi_run_line(done.stderr)
    assert expected in line
    assert done.returncode in (EXIT_USAGE, 127)
    assert list(tmp_path.iterdir()) == []


def test_help(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(console_script()), "jobserver", "--help"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0
    usage = "usage: fi-run jobserver [-j N] [--keep-free-memory SIZE] [--no-coordinator] -- COMMAND"
    assert done.stdout.startswith(usage)
    assert "--keep-free-memory SIZE: while less than SIZE of memory is available" in done.stdout


def test_an_old_ninja_is_warned_about_and_its_steps_are_not_told_to_lend(tmp_path: Path) -> None:
    fake = tmp_path / "bin" / "ninja"  # a ninja 1.11: no jobserver client
    fake.parent.mkdir()
    fake.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = --version ]; then echo 1.11.1; exit 0; fi\n'
        'echo "mark=${FI_RUN_JOBSERVER-unset} makeflags=$MAKEFLAGS"\n'
    )
    fake.chmod(0o755)
    done = subprocess.run(
        [str(console_script()), "jobserver", "-j", "2", "--", str(fake)],
        capture_output=True,
        text=True,
        timeout=HANG_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0
    assert "cannot use a jobserver (1.13 can)" in only_fi_run_line(done.stderr)
    assert done.stdout.startswith("mark=unset makeflags=-j2 --jobserver-auth=fifo:")


# --- lending


def _held_outside(build: Build, resource: Path, until: Sequence[Path]) -> subprocess.Popen[bytes]:
    """Another process (another build) holds the lock on ``resource`` until every file in ``until`` exists."""
    held = build.dir / "held"
    waits = [arg for path in until for arg in ("--wait", str(path))]
    holder = subprocess.Popen(
        [*build.fi_run("--lock", str(resource)), *build.record("outside", "--touch", str(held), *waits)],
        env=base_environ(),
        stdin=subprocess.DEVNULL,
    )
    assert wait_until(held.exists, HANG_TIMEOUT)
    return holder


@pytest.mark.parametrize("coordinator", [False, True], ids=["lock-directory", "coordinator"])
@pytest.mark.parametrize("repay", ["1", "0"], ids=["repay-after", "token-before-command"])
def test_a_step_waiting_for_a_lock_lends_its_slot_and_an_independent_step_runs(
    tmp_path: Path, repay: str, coordinator: bool
) -> None:
    """-j3: two steps wait for a lock held elsewhere; two independent steps that can only finish together
    (each waits for the other to start) run meanwhile: four jobs at once, which ninja only starts because
    the waiting steps gave their slots back. Either way of taking the slot back (FI_RUN_LEND_REPAY); waiting
    through the lock directory, or in the build's coordinator (which tells a step it must wait)."""
    build = Build(tmp_path, coordinator=coordinator)
    resource = tmp_path / "venv"
    started = [tmp_path / "i1.started", tmp_path / "i2.started"]
    holder = _held_outside(build, resource, started)
    for w in ("w1", "w2"):
        build.step(w, [*build.fi_run("--lock", str(resource)), *build.record(w)], after=True)
    # A job that ends once both have lent: ninja 1.13 looks for tokens only when one of its jobs ends.
    two_waiting = (
        ["--queued", "2"] if coordinator else ["--waiters", str(build.locks / "*" / "waiters" / "*"), "2"]
    )
    build.step("q", build.record("q", *two_waiting), after=True)
    build.step("i1", build.record("i1", "--touch", str(started[0]), "--wait", str(started[1])))
    build.step("i2", build.record("i2", "--touch", str(started[1]), "--wait", str(started[0])))
    done = build.run(jobs=3, FI_RUN_LEND_REPAY=repay)
    assert holder.wait(HANG_TIMEOUT) == 0
    assert done.returncode == 0, done.stdout + done.stderr
    assert server_warnings(done.stderr) == []
    spans = build.spans()
    waits = {}
    for record in build.records():
        name = record["argv"][2]  # [python, rec.py, NAME, ...]
        if name in ("w1", "w2"):
            (loan,) = record["lent"]
            assert loan["resource"] == os.path.realpath(resource)
            start = float(record["start"]) + loan["start"]
            waits[name] = (start, start + loan["duration"])
    assert set(waits) == {"w1", "w2"}
    # Four jobs at once under -j3: both loans and both independent steps.
    assert most_at_once([*waits.values(), spans["i1"], spans["i2"]]) == 4

    # The loans, as `fi_run report` and `fi_run trace` show them.
    report = _tool("report", "--json", str(build.log))
    (lent,) = json.loads(report)["lent"]
    assert (lent["resource"], lent["loans"], lent["steps"]) == (os.path.realpath(resource), 2, 2)
    assert lent["seconds"] == pytest.approx(sum(end - start for start, end in waits.values()), abs=0.01)
    assert "job slots lent" in _tool("report", str(build.log))
    trace = json.loads(_tool("trace", str(build.log)))
    begins = [e for e in trace["traceEvents"] if e.get("cat") == "lent" and e["ph"] == "b"]
    ends = [e for e in trace["traceEvents"] if e.get("cat") == "lent" and e["ph"] == "e"]
    assert len(begins) == len(ends) == 2
    assert {e["args"]["resource"] for e in begins} == {os.path.realpath(resource)}


def _tool(*args: str) -> str:
    done = subprocess.run(
        [str(console_script()), *args], capture_output=True, text=True, timeout=HANG_TIMEOUT, check=False
    )
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    return done.stdout


def test_no_jobserver_and_auto_without_the_mark_lend_nothing(tmp_path: Path) -> None:
    """An outer make's jobserver (MAKEFLAGS without fi_run's mark): --lend-slot auto leaves it alone;
    --lend-slot always lends and takes the token back."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
    os.write(fd, b"+++")
    build = Build(tmp_path)
    resource = tmp_path / "venv"
    release = tmp_path / "release"
    holder = _held_outside(build, resource, [release])
    makeflags = f"-j4 --jobserver-auth=fifo:{fifo}"
    steps = []
    for policy in ("auto", "always", "never"):
        steps.append(
            subprocess.Popen(
                [*build.fi_run("--lock", str(resource), "--lend-slot", policy), *build.record(policy)],
                env=base_environ({"MAKEFLAGS": makeflags}),
            )
        )
    steps.append(  # no MAKEFLAGS at all
        subprocess.Popen([*build.fi_run("--lock", str(resource)), *build.record("none")], env=base_environ())
    )
    waiters = build.locks
    assert wait_until(lambda: len(list(waiters.glob("*/waiters/*"))) >= 4, HANG_TIMEOUT)
    release.touch()
    assert [p.wait(HANG_TIMEOUT) for p in [holder, *steps]] == [0] * 5
    lent = {record["argv"][2]: bool(record["lent"]) for record in build.records()}
    assert lent == {"outside": False, "auto": False, "always": True, "never": False, "none": False}
    assert os.read(fd, 100) == b"+++", "every token is back in the outer jobserver"
    os.close(fd)


@pytest.mark.parametrize("kind", ["regular-file", "dev-null", "fifo"])
def test_lend_slot_always_lends_only_to_a_real_fifo(tmp_path: Path, kind: str) -> None:
    """Issue 22: --lend-slot always takes whatever `fifo:PATH` MAKEFLAGS names. A regular file had its first
    byte overwritten by the lent token; /dev/null made the repay loop spin for its whole 60 s bound. Only a
    real fifo is lent to; anything else gets one warning, no loan and is never written to."""
    path = {"regular-file": tmp_path / "not-a-fifo", "dev-null": Path(os.devnull), "fifo": tmp_path / "fifo"}[
        kind
    ]
    fd = -1
    if kind == "regular-file":
        path.write_bytes(b"precious")
    elif kind == "fifo":
        os.mkfifo(path)
        fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
        os.write(fd, b"++")
    build = Build(tmp_path)
    resource = tmp_path / "venv"
    release = tmp_path / "release"
    holder = _held_outside(build, resource, [release])
    step = subprocess.Popen(
        [*build.fi_run("--lock", str(resource), "--lend-slot", "always"), *build.record("step")],
        env=base_environ({"MAKEFLAGS": f"-j4 --jobserver-auth=fifo:{path}"}),
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_until(lambda: any(build.locks.glob("*/waiters/*")), "the step to wait for the lock")
    finally:
        release.touch()
    _, err = step.communicate(timeout=HANG_TIMEOUT)
    assert holder.wait(HANG_TIMEOUT) == 0
    assert step.returncode == 0, err
    (record,) = [r for r in build.records() if r["argv"][2] == "step"]
    if kind == "fifo":
        assert err == ""
        (loan,) = record["lent"]
        assert loan["lost"] is False
        assert os.read(fd, 100) == b"++", "the lent token came back"
        os.close(fd)
        return
    line = only_fi_run_line(err)
    what = "a regular file" if kind == "regular-file" else "a character device"
    assert line == (
        f"fi_run: cannot lend the job slot to the jobserver 'fifo:{path}': '{path}' is not a fifo ({what})"
    )
    assert record["lent"] == []  # the step kept its slot: nothing owed, nothing to wait for afterwards
    if kind == "regular-file":
        assert path.read_bytes() == b"precious"


def test_the_token_io_refuses_what_is_not_a_fifo_and_never_spins_on_end_of_file(tmp_path: Path) -> None:
    """The primitives under the test above: _fifo_open refuses a regular file, /dev/null and a directory
    (before writing anything); a descriptor that reads as end-of-file (which no fifo opened for writing does)
    is an error for the waits, which would otherwise call it again and again without sleeping."""
    regular = tmp_path / "file"
    regular.write_bytes(b"x")
    for path, what in (
        (regular, "a regular file"),
        (Path(os.devnull), "a character device"),
        (tmp_path, "a directory"),
    ):
        with pytest.raises(OSError, match=rf"is not a fifo \({what}\)"):
            lending._fifo_open(str(path))
    assert regular.read_bytes() == b"x"
    null = os.open(os.devnull, os.O_RDONLY)
    try:
        with pytest.raises(OSError, match="end-of-file"):
            lending._fifo_take(null, 30.0)
    finally:
        os.close(null)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    fd = lending._fifo_open(str(fifo))
    try:
        assert lending._fifo_take(fd, 0) is False  # empty: nothing to take, no wait asked for
        lending._fifo_give(fd)
        assert lending._fifo_take(fd, 1.0) is True
    finally:
        os.close(fd)


def test_a_lock_timeout_takes_the_lent_token_back_before_exiting(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
    os.write(fd, b"++")
    build = Build(tmp_path)
    resource = tmp_path / "venv"
    release = tmp_path / "release"
    holder = _held_outside(build, resource, [release])
    try:
        done = subprocess.run(
            [*build.fi_run("--lock", str(resource), "--lock-timeout", "0.5"), *build.record("late")],
            env=base_environ(
                {"MAKEFLAGS": f"-j3 --jobserver-auth=fifo:{fifo}", "FI_RUN_JOBSERVER": f"fifo:{fifo}"}
            ),
            capture_output=True,
            text=True,
            timeout=HANG_TIMEOUT,
            check=False,
        )
    finally:
        release.touch()
        holder.wait(HANG_TIMEOUT)
    assert done.returncode == 75
    assert "gave up after 0.5 s" in only_fi_run_line(done.stderr)
    (record,) = [r for r in build.records() if r["argv"][2] == "late"]
    (loan,) = record["lent"]
    assert loan["duration"] is not None
    assert loan["lost"] is False
    assert os.read(fd, 100) == b"++", "the token lent while waiting is back"
    os.close(fd)


def test_a_step_that_cannot_take_its_slot_back_says_so_within_the_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In-process, on a real fifo: the lent token is taken by someone else and never comes back."""
    import io

    from fi_run.messages import Reporter
    from fi_run.records import StepRecord
    from fi_run.step.interrupts import Interrupts

    monkeypatch.setattr(lending, "REPAY_BOUND_SECONDS", 0.3)  # instead of a minute
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
    err = io.StringIO()
    record = StepRecord()
    with Interrupts() as interrupts:
        lender = lending.Lender(f"fifo:{fifo}", Reporter(stream=err), record, interrupts, repay_after=True)
        lender.lend("/some/venv")
        assert os.read(fd, 10) == b"+"  # another job takes the lent token
        lender.take_back()  # none there: the command runs on credit
        assert record.loans[0]["credit"] is True
        lender.settle()  # waits at most the bound for a token to repay with, then gives up
    assert "could not take the job slot back from the jobserver within 0.3 s" in err.getvalue()
    assert record.loans[0].get("lost") is True
    assert lender.owed == 0
    os.close(fd)


def test_a_jobserver_that_fails_while_a_token_is_owed_is_given_up_with_one_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In-process: the step's descriptor on a real fifo is turned (dup2) into one on /dev/null after it lent.
    Taking the slot back meets end-of-file: one warning, the loan noted as lost, and neither take_back() nor
    settle() waits on it. Before, the wait called the empty descriptor again and again for its whole bound."""
    import io

    from fi_run.messages import Reporter
    from fi_run.records import StepRecord
    from fi_run.step.interrupts import Interrupts

    monkeypatch.setattr(lending, "REPAY_BOUND_SECONDS", 0.5)  # instead of a minute, should it wait after all
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    err = io.StringIO()
    record = StepRecord()
    null = os.open(os.devnull, os.O_RDWR)
    with Interrupts() as interrupts:
        lender = lending.Lender(f"fifo:{fifo}", Reporter(stream=err), record, interrupts, repay_after=False)
        lender.lend("/some/venv")
        assert lender._tokens is not None
        os.dup2(null, lender._tokens.handle)
        lender.take_back()  # waits for a token (repay_after=False): meets end-of-file instead
        lender.settle()
        lender.lend(None)  # a retry back-off: the jobserver is not used again
    os.close(null)
    assert err.getvalue() == (
        f"fi_run: cannot take the job slot back from the jobserver 'fifo:{fifo}': "
        "the jobserver's fifo reads as end-of-file\n"
    )
    (loan,) = record.loans
    assert loan.get("lost") is True
    assert lender.owed == 0


def test_a_signal_right_after_the_token_is_written_still_finds_the_loan_noted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGINT delivered just after the token went into the fifo: the step ends (Interrupted) with the loan
    noted, and settle() takes the token back, so none is lost or left over."""
    import io

    from fi_run.messages import Reporter
    from fi_run.records import StepRecord
    from fi_run.step.interrupts import Interrupted, Interrupts

    give = lending._Tokens.give

    def give_then_signal(self: lending._Tokens) -> None:
        give(self)
        os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(lending._Tokens, "give", give_then_signal)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
    record = StepRecord()
    with Interrupts() as interrupts:
        lender = lending.Lender(
            f"fifo:{fifo}", Reporter(stream=io.StringIO()), record, interrupts, repay_after=True
        )
        with pytest.raises(Interrupted):
            lender.lend("/some/venv")
        assert lender.owed == 1
        assert len(record.loans) == 1
        lender.settle()
    assert lender.owed == 0
    assert record.loans[0]["duration"] is not None
    with pytest.raises(BlockingIOError):
        os.read(fd, 10)  # the token went back out of the fifo: nothing left over
    os.close(fd)


def test_a_lent_slot_is_taken_back_after_a_retry_back_off(tmp_path: Path) -> None:
    from fi_run_testing import UV_2767_MESSAGE

    flaky = (
        "import os, sys\n"
        f"if not os.path.exists({str(tmp_path / 'once')!r}):\n"
        f"    open({str(tmp_path / 'once')!r}, 'w').close()\n"
        f"    sys.exit(print({UV_2767_MESSAGE!r}, file=sys.stderr) or 2)\n"
    )
    (tmp_path / "flaky.py").write_text(flaky)
    build = Build(tmp_path)
    build.step("flaky", [*build.fi_run(), sys.executable, str(tmp_path / "flaky.py")])
    done = build.run(jobs=2)
    assert done.returncode == 0, done.stdout + done.stderr
    (record,) = build.records()
    assert len(record["attempts"]) == 2
    (loan,) = record["lent"]
    assert loan["resource"] is None
    assert server_warnings(done.stderr) == []


# --- token accounting


def test_sigint_to_the_build_returns_every_token_and_leaves_no_process(tmp_path: Path) -> None:
    build = Build(tmp_path)
    resource = tmp_path / "venv"
    pids = tmp_path / "pids"
    pids.mkdir()
    # Four lock-bound steps (one runs, three wait and lend), four that run until stopped, and two that end
    # soon (ninja 1.13 looks for lent tokens when one of its jobs ends).
    record_pid = (
        "import os, sys, time; "
        "open(os.path.join(sys.argv[1], str(os.getpid())), 'w').close(); time.sleep(120)"
    )
    for i in range(4):
        build.step(
            f"w{i}", [*build.fi_run("--lock", str(resource)), sys.executable, "-c", record_pid, str(pids)]
        )
        build.step(f"s{i}", [*build.fi_run(), sys.executable, "-c", record_pid, str(pids)])
    for i in range(2):
        build.step(f"q{i}", build.record(f"q{i}", "--sleep", "0.2"), after=True)
    build.write()
    proc = subprocess.Popen(
        build.argv(jobs=4),
        cwd=tmp_path,
        env=build.env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        # Interrupted while commands run and at least one step waits for the lock with its slot lent.
        assert wait_until(lambda: len(list(pids.iterdir())) >= 2, HANG_TIMEOUT)
        assert wait_until(lambda: len(list(build.locks.glob("*/waiters/*"))) >= 1, HANG_TIMEOUT)
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=HANG_TIMEOUT)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, out + err
    assert server_warnings(err) == ["fi_run: jobserver: interrupted by SIGINT"], err
    for pid in sorted(int(name) for name in os.listdir(pids)):
        assert wait_until(functools.partial(process_gone, pid)), f"command {pid} outlived the build"


def test_a_waiter_killed_with_sigkill_is_reported_as_a_leaked_token(tmp_path: Path) -> None:
    build = Build(tmp_path)
    resource = tmp_path / "venv"
    release = tmp_path / "release"
    holder = _held_outside(build, resource, [release])
    pidfile = tmp_path / "waiter.pid"
    waiter = " ".join(_q(a) for a in [*build.fi_run("--lock", str(resource)), *build.record("w")])
    build.lines.append(f"build w: run\n  cmd = echo $$$$ > {_q(pidfile)} && exec {waiter}\n")
    build.outputs.append("w")
    build.write()
    proc = subprocess.Popen(
        build.argv(jobs=2),
        cwd=tmp_path,
        env=build.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_until(lambda: len(list(build.locks.glob("*/waiters/*"))) >= 1, HANG_TIMEOUT)
        os.kill(int(pidfile.read_text()), signal.SIGKILL)  # it has lent its slot: it registers after lending
        out, err = proc.communicate(timeout=HANG_TIMEOUT)
    finally:
        release.touch()
        holder.wait(HANG_TIMEOUT)
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0, out + err  # ninja: the step failed (1.13 passes on its status, 137)
    (warning,) = server_warnings(err)
    assert "1 token more than were handed out came back: leaked by a step killed (SIGKILL)" in warning


def test_ninja_given_j_under_the_server_is_refused_and_a_plain_step_imports_no_jobserver(
    tmp_path: Path,
) -> None:
    done = subprocess.run(
        [str(console_script()), "jobserver", "--", ninja_binary(), "-j2"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == EXIT_USAGE
    assert "ignores a jobserver" in only_fi_run_line(done.stderr)
    lines = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "-m",
            "fi_run",
            "--lock-dir",
            str(tmp_path / "l"),
            "--lock",
            str(tmp_path),
            "--",
            "true",
        ],
        env=base_environ(),
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    assert "fi_run.contention.locks" in lines
    assert "fi_run.contention.lending" not in lines


# --- --keep-free-memory (issue 19)


def accounting_warnings(stderr: str) -> list[str]:
    return [line for line in server_warnings(stderr) if "token" in line and "held back" not in line]


def test_a_memory_floor_above_the_memory_there_is_runs_one_job_at_a_time_and_returns_every_token(
    tmp_path: Path,
) -> None:
    """Every token is held before ninja starts and memory never comes back: only ninja's own first job runs
    (its first slot takes no token), and the tokens held count as returned."""
    build = Build(tmp_path)
    for i in range(5):
        build.step(f"s{i}", build.record(f"s{i}", "--sleep", "0.2"))
    build.write()
    argv = build.argv(jobs=4)
    argv[argv.index("--") : argv.index("--")] = ["--keep-free-memory", "1000T"]
    done = subprocess.run(
        argv, cwd=tmp_path, env=build.env(), capture_output=True, text=True, timeout=HANG_TIMEOUT, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    spans = build.spans()
    assert len(spans) == 5
    assert most_at_once(list(spans.values())) == 1
    assert accounting_warnings(done.stderr) == []
    warned = server_warnings(done.stderr)
    assert any("--keep-free-memory 1000 TiB is not less than the memory there is" in w for w in warned), (
        warned
    )
    assert any(w.endswith("up to 3 job tokens were held back") for w in warned), warned


def test_a_memory_floor_below_what_is_available_leaves_the_build_its_job_slots(tmp_path: Path) -> None:
    build = Build(tmp_path)
    a, b = tmp_path / "a.started", tmp_path / "b.started"
    build.step("a", build.record("a", "--touch", str(a), "--wait", str(b)))  # each waits for the other
    build.step("b", build.record("b", "--touch", str(b), "--wait", str(a)))
    build.write()
    argv = build.argv(jobs=2)
    argv[argv.index("--") : argv.index("--")] = ["--keep-free-memory", "1M"]
    done = subprocess.run(
        argv, cwd=tmp_path, env=build.env(), capture_output=True, text=True, timeout=HANG_TIMEOUT, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert most_at_once(list(build.spans().values())) == 2
    assert server_warnings(done.stderr) == []  # memory was never short: no summary either


class Scripted:
    """Available memory as a test script says, one reading per look."""

    def __init__(self, readings: list[int | None]) -> None:
        self.readings = readings

    def __call__(self) -> int | None:
        return self.readings.pop(0)


def test_the_floor_holds_every_token_while_memory_is_short_and_hands_them_back_one_per_look() -> None:
    """A real fifo server; only memory is scripted: 100 is the floor."""
    server = js._create_server(3)
    try:
        floor = js.MemoryFloor(server, 100, Scripted([500, 500, 50, 50, 500, 500, 500, 500]))
        floor.take_all()  # as start() does before the command runs
        floor.look()  # 500: one token back
        assert (floor.withheld, server.count()) == (2, 1)  # (count takes what the pool has: a job took it)
        floor.look()  # 500: another
        assert floor.withheld == 1
        server.give()  # the job that took a token ends: its token comes back
        floor.look()  # 50: short, everything in the pool is held
        assert (floor.withheld, floor.low, floor.most) == (3, 1, 3)  # the one handed out came back
        floor.look()  # 50: nothing left to take
        assert floor.withheld == 3
        for expected in (2, 1, 0, 0):  # memory back: one per look
            floor.look()
            assert floor.withheld == expected
        assert server.count() == 3  # every token back in the pool: the accounting balances
        assert floor.summary() == (
            "jobserver: less than --keep-free-memory 100 B was available in 2 of 8 looks (every 0.1 s); "
            "up to 3 job tokens were held back"
        )
    finally:
        server.close()


def test_the_floor_reads_the_cgroup_s_memory_not_the_machine_s(
    tmp_path: Path, memory_cgroups: Cgroups
) -> None:
    """In a 128 MiB cgroup a floor of 200 MiB is never met, however much memory the machine has free."""
    cgroup = memory_cgroups.make(128 << 20)
    build = Build(tmp_path)
    for i in range(3):
        build.step(f"s{i}", build.record(f"s{i}", "--sleep", "0.2"))
    build.write()
    argv = build.argv(jobs=3)
    argv[argv.index("--") : argv.index("--")] = ["--keep-free-memory", "200M"]
    done = subprocess.run(
        cgroup.wrap(argv),
        cwd=tmp_path,
        env=build.env(),
        capture_output=True,
        text=True,
        timeout=HANG_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert most_at_once(list(build.spans().values())) == 1
    warned = server_warnings(done.stderr)
    assert any("is not less than the memory there is (128 MiB, cgroup v" in w for w in warned), warned
    assert accounting_warnings(done.stderr) == []


# --- the pure rules


def test_ninja_default_jobs_follows_ninja() -> None:
    assert [js.ninja_default_jobs(n) for n in (0, 1, 2, 3, 8)] == [2, 2, 3, 5, 10]


@pytest.mark.parametrize(
    ("args", "found"),
    [
        (["-j4"], "-j4"),
        (["-j", "4", "all"], "-j 4"),
        (["-vj4"], "-vj4"),
        (["-C", "-j4"], None),  # -j4 is -C's directory
        (["-Cout", "-j4"], "-j4"),
        (["-t", "clean", "-j4"], None),
        (["all", "--verbose"], None),
        (["-k", "0", "-n"], None),
    ],
)
def test_ninja_jobs_option(args: list[str], found: str | None) -> None:
    assert js.ninja_jobs_option(args) == found


def test_makeflags_and_auth() -> None:
    assert js.makeflags_with("", 4, "fifo:/p") == "-j4 --jobserver-auth=fifo:/p"
    assert js.makeflags_with("k -j8 --jobserver-auth=3,4 -- V=1", 2, "fifo:/p") == (
        "k -j2 --jobserver-auth=fifo:/p -- V=1"
    )
    assert lending.jobserver_auth("-j4 --jobserver-auth=fifo:/a --jobserver-auth=fifo:/b") == "fifo:/b"
    assert lending.jobserver_auth("n -j4 --jobserver-auth=fifo:/a") is None  # make -n
    assert lending.jobserver_auth("-k") is None


@pytest.mark.parametrize("windows", [False, True])
def test_lending_auth(windows: bool) -> None:
    def auth(policy: str, environ: Mapping[str, str]) -> str | None:
        return lending.lending_auth(policy, environ, windows=windows)

    native = "jobserver_sem" if windows else "fifo:/p"
    foreign = "fifo:/p" if windows else "jobserver_sem"
    marked = {"MAKEFLAGS": f"-j4 --jobserver-auth={native}", "FI_RUN_JOBSERVER": native}
    unmarked = {"MAKEFLAGS": f"-j4 --jobserver-auth={native}"}
    assert auth("auto", marked) == native
    assert auth("never", marked) is None
    assert auth("auto", unmarked) is None
    assert auth("always", unmarked) == native
    assert auth("always", {"MAKEFLAGS": "-j4 --jobserver-auth=3,4"}) is None  # pipe style: no descriptors
    assert auth("always", {"MAKEFLAGS": f"-j4 --jobserver-auth={foreign}"}) is None
    assert auth("auto", {"FI_RUN_JOBSERVER": native}) is None
    # A make between fi-run jobserver and the step made its own jobserver: not fi_run's to lend to.
    assert auth("auto", {**marked, "MAKEFLAGS": "-j2 --jobserver-auth=fifo:/other"}) is None


def test_accounting_messages() -> None:
    assert js.accounting_message(3, 3, windows=False) is None
    assert "2 of 3 tokens did not come back" in str(js.accounting_message(3, 1, windows=False))
    one = str(js.accounting_message(3, 4, windows=False))
    assert "1 token more than were handed out came back: leaked by a step killed (SIGKILL)" in one
    assert "while lending its job slot, so the build could run up to 1 job beyond -j" in one
    two = str(js.accounting_message(3, 5, windows=False))
    assert "leaked by steps killed (SIGKILL) while lending their job slots" in two
    assert "up to 2 jobs beyond -j" in two


def test_the_surplus_message_on_windows_names_no_posix_signal() -> None:
    """Issue 22: on Windows a step is killed by TerminateProcess (taskkill /F), not SIGKILL."""
    one = str(js.accounting_message(3, 4, windows=True))
    assert "SIGKILL" not in one
    assert "leaked by a step killed (TerminateProcess, taskkill /F) while lending its job slot" in one
    two = str(js.accounting_message(3, 6, windows=True))
    assert "steps killed (TerminateProcess, taskkill /F) while lending their job slots" in two


def test_the_jobserver_flags_go_before_makeflags_command_line_variables() -> None:
    """Issue 22 (suspected, GNU make 4.4 not here): make reads no option after MAKEFLAGS' ' -- ' word."""
    flags = js.makeflags_with("k -- CC=clang CFLAGS=-O2", 4, "fifo:/tmp/x/fifo")
    assert flags == "k -j4 --jobserver-auth=fifo:/tmp/x/fifo -- CC=clang CFLAGS=-O2"
    assert js.makeflags_with("", 2, "fifo:/f") == "-j2 --jobserver-auth=fifo:/f"


def test_parse_version() -> None:
    assert js.parse_version("1.13.2.git.kitware.jobserver-pipe-1\n") == (1, 13, 2)
    assert js.parse_version("1.11.1") < (1, 13)
    assert js.parse_version("garbage") == ()


def test_lend_slot_option_is_checked(tmp_path: Path) -> None:
    for args, env in ((["--lend-slot", "sometimes"], {}), ([], {"FI_RUN_LEND_SLOT": "maybe"})):
        done = subprocess.run(
            [sys.executable, "-m", "fi_run", *args, "--", "true"],
            env=base_environ(env),
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == EXIT_USAGE
        assert "expects auto, always or never" in only_fi_run_line(done.stderr)
