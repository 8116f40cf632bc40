"""The build's lock coordinator (issue 18): real ninja under real `fi-run jobserver`, real locks, real faults.

Each build here is a build.ninja in tmp_path whose steps are fi_run around hold.sh (inside the resource
until the test releases it) or step.sh (inside for a moment), all writing one enter/exit log that the
overlap checker reads (fi_run_testing.analyse). A step's wrapper records its fi_run's pid and the
coordinator's address, so the test can see the coordinator's line (`LIST`, as `fi-run locks` asks it) and
kill what it means to kill. Nothing is timed: every wait is for a state the test can see (a file, a
process, the coordinator's own view).
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from fi_run_testing import (
    HANG_TIMEOUT,
    Holder,
    Procs,
    analyse,
    base_environ,
    console_script,
    ninja_binary,
    process_gone,
    read_log,
    start_holder,
    wait_until,
    write_scripts,
)

from fi_run.contention import coordinated
from fi_run.contention.wire import Reader, encode
from fi_run.errors import EXIT_TEMPFAIL, EXIT_TIMEOUT
from fi_run.step import execute
from fi_run.tools import jobserver

assert sys.platform != "win32"  # POSIX only: conftest.POSIX_ONLY keeps it from being collected on Windows


def _q(arg: str | os.PathLike[str]) -> str:
    """A word for a ninja command (run by /bin/sh): quoted for the shell, '$' escaped for ninja."""
    return shlex.quote(os.fspath(arg)).replace("$", "$$")


class Build:
    """A build.ninja of fi_run steps around hold.sh and step.sh, run by ninja under fi-run jobserver."""

    def __init__(self, tmp_path: Path, procs: Procs) -> None:
        self.dir = tmp_path
        self.procs = procs
        self.locks = tmp_path / "locks"
        self.log = tmp_path / "order.log"
        self.ctl = tmp_path / "ctl"
        self.ctl.mkdir()
        self.scripts = write_scripts(tmp_path / "scripts")
        self.edges: list[str] = []
        self.proc: subprocess.Popen[bytes] | None = None

    def fi_run(self, *options: str | os.PathLike[str]) -> str:
        return " ".join(_q(a) for a in [console_script(), "--lock-dir", self.locks, "-v", *options, "--"])

    def _edge(self, tag: str, command: str, before: str) -> None:
        # The wrapper notes fi_run's pid (exec keeps it) and the coordinator the step was given.
        wrapper = (
            f"{before}echo $$$$ > {_q(self.ctl / tag)}.pid && "
            f'echo "$$FI_RUN_COORDINATOR" > {_q(self.ctl / "address")} && exec {command}'
        )
        self.edges.append(f"build {tag}: run\n  cmd = {wrapper}\n")

    def hold(self, tag: str, *options: str | os.PathLike[str], before: str = "") -> None:
        """A step inside the resource (as ``tag``) until release(tag)."""
        control = self.ctl / tag
        control.mkdir()
        command = f"{self.fi_run(*options)} sh {_q(self.scripts.hold)} {_q(self.log)} {tag} {_q(control)}"
        self._edge(tag, command, before)

    def step(self, tag: str, *options: str | os.PathLike[str], seconds: str = "0", before: str = "") -> None:
        """A step inside the resource (as ``tag``) for ``seconds``."""
        command = f"{self.fi_run(*options)} sh {_q(self.scripts.step)} {_q(self.log)} {tag} {seconds}"
        self._edge(tag, command, before)

    def after(self, tag: str) -> str:
        """A `before` that waits until ``tag`` is inside the resource."""
        return f"until [ -e {_q(self.ctl / tag / 'ready')} ]; do sleep 0.01; done; "

    def when(self, event: str) -> str:
        """A `before` that waits until the test says ``event`` happened (signal)."""
        return f"until [ -e {_q(self.ctl / event.replace(' ', '-'))} ]; do sleep 0.01; done; "

    def signal(self, event: str) -> None:
        (self.ctl / event.replace(" ", "-")).touch()

    def start(self, jobs: int = 8) -> None:
        rules = "rule run\n  command = $cmd\n"
        (self.dir / "build.ninja").write_text(rules + "\n".join(self.edges))
        argv: list[str | os.PathLike[str]] = [console_script(), "jobserver", "-j", str(jobs), "--"]
        argv += [ninja_binary(), "-k", "0"]
        env = {"TERM": "dumb", "NINJA_STATUS": "[%f/%t] "}
        self.proc = self.procs.start(
            argv, cwd=self.dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )

    def finish(self) -> tuple[int, str]:
        assert self.proc is not None
        out, _ = self.proc.communicate(timeout=HANG_TIMEOUT)
        return self.proc.returncode, out.decode(errors="replace")

    def pid(self, tag: str) -> int:
        path = self.ctl / f"{tag}.pid"
        wait_until(lambda: path.exists() and path.read_text().strip() != "", f"{tag} to start")
        return int(path.read_text())

    def ready(self, tag: str) -> None:
        wait_until((self.ctl / tag / "ready").exists, f"{tag} to be inside")

    def release(self, tag: str) -> None:
        (self.ctl / tag / "release").touch()

    def address(self) -> str:
        path = self.ctl / "address"
        wait_until(lambda: path.exists() and path.read_text().strip() != "", "a step to start")
        return path.read_text().strip()

    def line(self) -> list[tuple[str, int]]:
        """The coordinator's own view: (holds | waits | stopped, pid) for every step, holders first."""
        return [(state, pid) for state, pid, _command in coordinator_state(self.address())]

    def waiting(self, *tags: str) -> None:
        pids = [self.pid(tag) for tag in tags]
        wait_until(
            lambda: [pid for state, pid in self.line() if state in ("waits", "stopped")] == pids,
            f"{', '.join(tags)} to wait in the coordinator's line, in that order",
        )


def coordinator_state(address: str) -> list[tuple[str, int, str]]:
    """What the coordinator at ``address`` says it holds and queues (its LIST answer)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(HANG_TIMEOUT)
        sock.connect(address)
        sock.sendall(encode(["LIST"]))
        reader = Reader()
        found: list[tuple[str, int, str]] = []
        while True:
            data = sock.recv(65536)
            assert data, "the coordinator closed the connection before END"
            for message in reader.feed(data):
                if message[0] == "END":
                    return found
                assert message[0] == "STATE", message
                found.append((message[3], int(message[4]), message[5]))


@pytest.fixture
def build(tmp_path: Path, procs: Procs) -> Build:
    return Build(tmp_path, procs)


@pytest.fixture
def resource(tmp_path: Path) -> Path:
    res = tmp_path / "venv"
    res.mkdir()
    return res


# --- what a step costs, and the one name of the mark


def test_the_steps_and_the_jobserver_spell_the_mark_one_way() -> None:
    assert coordinated.MARK == jobserver.COORDINATOR == "FI_RUN_COORDINATOR"
    source = Path(execute.__file__).read_text()
    assert f'os.environ.get("{coordinated.MARK}")' in source


def test_a_step_under_the_coordinator_imports_no_filelock(tmp_path: Path) -> None:
    """The point of the coordinator (issue 18): a locked step costs what a plain one does, because filelock
    (about 48 ms) is the coordinator's to import, not the step's."""
    imports = tmp_path / "imports.txt"
    step = [sys.executable, "-X", "importtime", "-m", "fi_run", "--lock-dir", str(tmp_path / "l")]
    step += ["--lock", str(tmp_path), "--shared-lock", str(tmp_path / "r"), "--", "true"]
    script = f"exec {shlex.join(step)} 2> {shlex.quote(str(imports))}"
    done = subprocess.run(
        [console_script(), "jobserver", "--", "sh", "-c", script],
        env=base_environ(),
        capture_output=True,
        text=True,
        timeout=HANG_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr + imports.read_text()
    lines = imports.read_text()
    assert "fi_run.contention.coordinated" in lines
    assert "filelock" not in lines
    assert "fi_run.contention.locks" not in lines
    assert " socket\n" not in lines.replace("|", "")  # the C module only (_socket)


# --- within the build: exclusion, sharing, counting, order


def test_writers_are_alone_readers_share_and_counted_steps_stay_within_n_at_j16(
    build: Build, resource: Path
) -> None:
    licence = build.dir / "licence"
    for i in range(10):
        build.step(f"w.{i}", "--lock", resource, seconds="0.02")
    for i in range(20):
        build.step(f"r.{i}", "--shared-lock", resource, seconds="0.05")
    for i in range(12):
        build.step(f"c.{i}", "--semaphore", f"{licence}=2", seconds="0.05")
    build.start(jobs=16)
    status, out = build.finish()
    assert status == 0, out
    assert out.count("(from the build's coordinator)") == 42, out
    lines = read_log(build.log).splitlines()
    result = analyse("\n".join(line for line in lines if " c." not in line), exclusive_kinds={"w"})
    assert result.violations == []
    assert result.max_by_kind["r"] >= 2, "readers never shared the resource"
    assert result.unfinished == []
    counted = analyse("\n".join(line for line in lines if " c." in line))  # another resource
    assert counted.max_concurrency <= 2
    assert len(counted.entered) == 12


def test_first_come_first_served_a_later_reader_does_not_pass_a_waiting_writer(
    build: Build, resource: Path
) -> None:
    build.hold("h.0", "--lock", resource)
    build.step("w.1", "--lock", resource, before=build.after("h.0"))
    build.step("r.1", "--shared-lock", resource, before=build.when("w.1 queued"))
    build.start()
    build.ready("h.0")
    build.waiting("w.1")
    build.signal("w.1 queued")
    build.waiting("w.1", "r.1")
    build.release("h.0")
    status, out = build.finish()
    assert status == 0, out
    result = analyse(read_log(build.log), exclusive_kinds={"w", "h"})
    assert result.violations == []
    assert result.entered == ["h.0", "w.1", "r.1"]


# --- across builds


def test_a_plain_fi_run_outside_the_build_and_the_build_exclude_each_other(
    build: Build, resource: Path, procs: Procs
) -> None:
    outside_ctl = build.dir / "outside"
    outside_ctl.mkdir()
    outside = procs.start(
        [console_script(), "--lock-dir", build.locks, "--lock", resource, "--", "sh", build.scripts.hold,
         build.log, "o.1", outside_ctl],
        cwd=build.dir,
    )  # fmt: skip
    wait_until((outside_ctl / "ready").exists, "the outside holder to hold the lock")
    build.hold("h.1", "--lock", resource)
    build.step("s.1", "--shared-lock", resource, before=build.after("h.1"))
    build.start()
    wait_until(lambda: build.line() != [], "the build's step to wait for the lock held outside")
    assert build.line() == [("waits", build.pid("h.1"))]
    (outside_ctl / "release").touch()
    assert outside.wait(HANG_TIMEOUT) == 0
    build.ready("h.1")
    # The build holds it now: a plain fi_run outside waits, even for a shared lock.
    late = procs.start(
        [console_script(), "--lock-dir", build.locks, "--shared-lock", resource, "--", "sh",
         build.scripts.step, build.log, "q.2", "0"],
        cwd=build.dir,
    )  # fmt: skip
    wait_until(
        lambda: any(build.locks.glob("*/waiters/*")), "the outside step to queue in the lock directory"
    )
    build.release("h.1")
    status, out = build.finish()
    assert status == 0, out
    assert late.wait(HANG_TIMEOUT) == 0
    result = analyse(read_log(build.log), exclusive_kinds={"o", "h"})
    assert result.violations == []
    assert result.entered[:2] == ["o.1", "h.1"]
    assert set(result.entered[2:]) == {"s.1", "q.2"}  # two readers: together or not, after h.1


# --- whatever dies, nothing runs twice inside a lock


def test_a_step_killed_while_its_command_runs_keeps_the_resource_until_the_command_ends(
    build: Build, resource: Path
) -> None:
    build.hold("a.1", "--lock", resource)
    build.step("b.1", "--lock", resource, before=build.after("a.1"))
    build.start()
    build.ready("a.1")
    command = int((build.ctl / "a.1" / "ready").read_text())
    build.waiting("b.1")
    os.kill(build.pid("a.1"), signal.SIGKILL)
    wait_until(lambda: process_gone(build.pid("a.1")), "a.1's fi_run to be gone")
    # Its command still runs, holding the connection it inherited: b.1 still waits, a.1 still holds.
    assert build.line() == [("holds", build.pid("a.1")), ("waits", build.pid("b.1"))]
    assert not process_gone(command)
    build.release("a.1")
    status, out = build.finish()
    assert status != 0, out  # ninja saw a.1's fi_run killed
    result = analyse(read_log(build.log), exclusive_kinds={"a", "b"})
    assert result.entered == ["a.1", "b.1"]
    assert result.violations == []


def test_the_coordinator_killed_mid_build_leaves_no_two_holders_and_no_hang(
    build: Build, resource: Path, procs: Procs
) -> None:
    build.hold("a.1", "--lock", resource)
    build.step("b.1", "--lock", resource, before=build.after("a.1"))
    build.step("c.1", "--shared-lock", resource, before=build.when("killed"))
    build.start()
    build.ready("a.1")
    build.waiting("b.1")
    assert build.proc is not None
    os.kill(build.proc.pid, signal.SIGKILL)  # the jobserver, and with it the coordinator; ninja goes on
    build.proc.wait(HANG_TIMEOUT)
    build.signal("killed")  # c.1 asks only now: it finds no coordinator at all
    # b.1 lost its coordinator while waiting and c.1 never had one: both wait in the lock directory, behind
    # a.1's command, which holds the lock through the descriptor it inherited.
    wait_until(
        lambda: len(list(build.locks.glob("*/waiters/*"))) == 2, "b.1 and c.1 to queue in the lock dir"
    )
    outside = procs.start(
        [console_script(), "--lock-dir", build.locks, "--lock", resource, "--", "sh", build.scripts.step,
         build.log, "o.1", "0"],
        cwd=build.dir,
    )  # fmt: skip
    wait_until(lambda: len(list(build.locks.glob("*/waiters/*"))) == 3, "a plain fi_run to queue too")
    assert read_log(build.log).split()[:2] == ["enter", "a.1"]
    assert "exit a.1" not in read_log(build.log)
    build.release("a.1")
    assert outside.wait(HANG_TIMEOUT) == 0
    for tag in ("b.1", "c.1"):
        wait_until(lambda tag=tag: f"exit {tag} " in read_log(build.log), f"{tag} to run")  # type: ignore[misc]
    result = analyse(read_log(build.log), exclusive_kinds={"a", "b", "c", "o"})
    assert result.violations == []
    assert result.unfinished == []
    assert sorted(result.entered) == ["a.1", "b.1", "c.1", "o.1"]
    assert result.entered[0] == "a.1"


def test_a_stopped_waiter_keeps_its_place_and_holds_up_nobody(build: Build, resource: Path) -> None:
    build.hold("h.0", "--lock", resource)
    build.step("w.1", "--lock", resource, before=build.after("h.0"))
    build.step("w.2", "--lock", resource, before=build.when("w.1 queued"))
    build.start()
    build.ready("h.0")
    build.waiting("w.1")
    build.signal("w.1 queued")
    build.waiting("w.1", "w.2")
    os.kill(build.pid("w.1"), signal.SIGSTOP)
    try:
        wait_until(lambda: ("stopped", build.pid("w.1")) in build.line(), "w.1 to be seen stopped")
        build.release("h.0")
        wait_until(lambda: "exit w.2 " in read_log(build.log), "w.2 to go past the stopped w.1")
        assert build.line() == [("stopped", build.pid("w.1"))]  # still in the line, in its place
    finally:
        os.kill(build.pid("w.1"), signal.SIGCONT)
    status, out = build.finish()
    assert status == 0, out
    result = analyse(read_log(build.log), exclusive_kinds={"h", "w"})
    assert result.entered == ["h.0", "w.2", "w.1"]
    assert result.violations == []


# --- --lock-timeout and --timeout keep their meanings


def test_lock_timeout_under_the_coordinator_exits_75_naming_the_holder(build: Build, resource: Path) -> None:
    build.hold("h.0", "--lock", resource)
    build.step("w.1", "--lock-timeout", "0.5", "--lock", resource, before=build.after("h.0"))
    build.step("w.2", "--lock", resource, before=build.when("w.1 gave up"))
    build.start()
    build.ready("h.0")
    wait_until(lambda: process_gone(build.pid("w.1")), "w.1 to give up")
    build.signal("w.1 gave up")
    build.waiting("w.2")  # w.1 left the line when it gave up
    build.release("h.0")
    status, out = build.finish()
    assert status != 0
    holder = (
        f"pid {build.pid('h.0')}: sh {build.scripts.hold} {build.log} h.0 {build.ctl / 'h.0'} (in this build)"
    )
    assert (
        f"fi_run: gave up after 0.5 s waiting for an exclusive lock on {os.path.realpath(resource)!r} "
        f"(held by {holder})"
    ) in out
    assert f"FAILED: [code={EXIT_TEMPFAIL}] w.1" in out
    assert analyse(read_log(build.log)).entered == ["h.0", "w.2"]


def test_timeout_stops_a_coordinated_step_and_frees_its_resource(build: Build, resource: Path) -> None:
    build.step("t.1", "--timeout", "1", "--lock", resource, seconds="60")
    build.hold("n.1", "--lock", resource, before=build.when("t.1 holds"))
    build.start()
    wait_until(lambda: "enter t.1 " in read_log(build.log), "t.1 to hold the lock")
    build.signal("t.1 holds")
    build.waiting("n.1")
    assert build.line()[0] == ("holds", build.pid("t.1"))
    build.ready("n.1")  # once --timeout has stopped t.1 (its step.sh never logs an exit: it was killed)
    assert process_gone(build.pid("t.1"))
    build.release("n.1")
    status, out = build.finish()
    assert status != 0
    assert f"FAILED: [code={EXIT_TIMEOUT}] t.1" in out
    assert analyse(read_log(build.log)).entered == ["t.1", "n.1"]


# --- no coordinator to be had


def test_a_step_that_cannot_reach_its_coordinator_takes_the_lock_directory_path(tmp_path: Path) -> None:
    gone = tmp_path / "gone.sock"
    done = subprocess.run(
        [console_script(), "--lock-dir", str(tmp_path / "locks"), "--lock", str(tmp_path), "--", "true"],
        env=base_environ({"FI_RUN_COORDINATOR": str(gone)}),
        capture_output=True,
        text=True,
        timeout=HANG_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == (
        f"fi_run: the build's lock coordinator ({gone}) cannot be reached (No such file or directory): "
        "taking the locks through the lock directory\n"
    )


def test_no_coordinator_is_a_jobserver_without_one(tmp_path: Path) -> None:
    code = "import os, sys; sys.stdout.write(os.environ.get('FI_RUN_COORDINATOR', 'none'))"
    for options, expected in (([], "coordinator.sock"), (["--no-coordinator"], "none")):
        done = subprocess.run(
            [console_script(), "jobserver", *options, "--", sys.executable, "-c", code],
            env=base_environ({"FI_RUN_COORDINATOR": "/an/outer/build/coordinator.sock"}),
            capture_output=True,
            text=True,
            timeout=HANG_TIMEOUT,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.endswith(expected)
        assert not done.stdout.startswith("/an/outer")


def test_weighted_seats_in_the_coordinator_all_at_once_and_in_arrival_order(
    build: Build, resource: Path
) -> None:
    """Issue 19 under the coordinator: a holds 3 of 4 seats; b asks for 2 and waits (one free is not
    enough); c asks for 1 later and queues behind b; once a leaves, b and c run together."""
    seats = [f"{resource}=4:{k}" for k in (0, 1, 2, 3)]
    build.hold("a.0", "--semaphore", seats[3])
    build.hold("b.1", "--semaphore", seats[2], before=build.after("a.0"))
    build.step("c.2", "--semaphore", seats[1], before=build.when("b waits"))
    build.start()
    build.ready("a.0")
    build.waiting("b.1")
    build.signal("b waits")
    build.waiting("b.1", "c.2")
    build.release("a.0")
    build.ready("b.1")
    wait_until(lambda: "exit c.2 " in read_log(build.log), "c.2 to run beside b.1")
    build.release("b.1")
    status, out = build.finish()
    assert status == 0, out
    lines = read_log(build.log).split("\n")
    exits_a = next(i for i, line in enumerate(lines) if line.startswith("exit a.0 "))
    enters = {line.split()[1]: i for i, line in enumerate(lines) if line.startswith("enter ")}
    # c found a free seat while a held three, yet waited behind b: both began only once a had left.
    assert enters["b.1"] > exits_a
    assert enters["c.2"] > exits_a


# The command under `fi-run jobserver` in the slot tests: says where the coordinator and the pool are, then,
# with "greedy", takes every token that shows up in the pool (as ninja starting jobs would) until told to
# stop, and gives them all back; then says how many tokens the pool holds (INFO.pool).
JOBSERVER_COMMAND = """
import os, sys, time
open(sys.argv[1], "w").write(os.environ["FI_RUN_COORDINATOR"] + "\\n" + os.environ["FI_RUN_JOBSERVER"])
fd = os.open(os.environ["FI_RUN_JOBSERVER"].removeprefix("fifo:"), os.O_RDWR | os.O_NONBLOCK)
held = 0
while not os.path.exists(sys.argv[2]):
    if sys.argv[3] == "greedy":
        try:
            held += len(os.read(fd, 64))
            open(sys.argv[1] + ".held", "w").write(str(held))
        except BlockingIOError:
            pass
    time.sleep(0.02)
os.write(fd, b"+" * held)
time.sleep(0.5)  # then count what the pool holds (and put it back)
pool = 0
while True:
    try:
        pool += len(os.read(fd, 64))
    except BlockingIOError:
        break
os.write(fd, b"+" * pool)
open(sys.argv[1] + ".pool", "w").write(str(pool))
"""


class Slots:
    """`fi-run jobserver -j JOBS` around JOBSERVER_COMMAND, a lock held outside the build, and raw clients of
    its coordinator, each a socket speaking the wire protocol as a step does."""

    def __init__(self, tmp_path: Path, procs: Procs, jobs: int, mode: str) -> None:
        self.dir = tmp_path
        self.info, self.stop = tmp_path / "info", tmp_path / "stop"
        self.server = procs.start(
            [console_script(), "jobserver", "-j", str(jobs), "--", sys.executable, "-c", JOBSERVER_COMMAND,
             self.info, self.stop, mode],
            cwd=tmp_path,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        wait_until(lambda: self.info.exists() and "\n" in self.info.read_text(), "the jobserver's command")
        self.address, self.auth = self.info.read_text().split("\n")
        self.procs = procs
        self.scripts = write_scripts(tmp_path / "scripts")
        self.resource = tmp_path / "venv"
        self.outside = self.hold_outside(self.resource, "o.1")

    def hold_outside(self, resource: Path, tag: str) -> Holder:
        """A plain fi_run outside the build holding ``resource`` (exclusive) until released."""
        return start_holder(
            self.procs, self.scripts, ["--lock-dir", self.dir / "locks", "--lock", resource],
            log=self.dir / "order.log", tag=tag, control=self.dir / tag, cwd=self.dir,
        )  # fmt: skip

    def ask(
        self, pid: int, lends_to: str, resource: Path | None = None
    ) -> tuple[socket.socket, Reader, list[str]]:
        """A step's request (for self.resource unless told); its first answer."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(HANG_TIMEOUT)
        sock.connect(self.address)
        lock_dir = str(self.dir / "locks")
        wanted = os.path.realpath(self.resource if resource is None else resource)
        request = ["LOCK", str(pid), lock_dir, f"step {pid}", lends_to, wanted]
        sock.sendall(encode([*request, "exclusive:1:1"]))
        reader = Reader()
        (message,) = reader.feed(sock.recv(65536))
        return sock, reader, message

    def release_outside(self) -> None:
        self.outside.release()
        assert self.outside.proc.wait(HANG_TIMEOUT) == 0

    @staticmethod
    def granted(sock: socket.socket, reader: Reader) -> list[list[str]]:
        """The messages up to the grant (the grant's descriptor closed), then DONE."""
        messages: list[list[str]] = []
        while not messages or messages[-1][0] != "GRANT":
            data, ancillary, _flags, _address = sock.recvmsg(65536, socket.CMSG_SPACE(4 * 4))
            assert data, "the coordinator closed the connection before the grant"
            messages += reader.feed(data)
            for _level, _kind, payload in ancillary:
                os.close(int.from_bytes(payload[:4], sys.byteorder))
        sock.sendall(encode(["DONE"]))
        sock.close()
        return messages

    def finish(self) -> str:
        self.stop.touch()
        _, err = self.server.communicate(timeout=HANG_TIMEOUT)
        assert self.server.returncode == 0, err
        return err.decode()


def test_at_most_j_waiting_steps_have_their_slot_lent_and_every_token_comes_back(
    tmp_path: Path, procs: Procs
) -> None:
    """Each slot lent starts another step; when they all wait for one resource that would start every step
    of the build at once. The coordinator lends for at most -j of its waiting steps (here -j 2), in arrival
    order, and only for steps that lend into this jobserver (101 does not). It lends the token itself, so a
    step that goes away while its slot is lent (103, as if SIGKILLed) leaks nothing: the jobserver counts
    every token back at the end (issue 18's stress run leaked one per such step)."""
    slots = Slots(tmp_path, procs, jobs=2, mode="")
    clients = {pid: slots.ask(pid, "" if pid == 101 else slots.auth) for pid in (101, 102, 103, 104)}
    assert {pid: (m[0], m[3]) for pid, (_s, _r, m) in clients.items()} == {
        101: ("WAIT", "keep"), 102: ("WAIT", "lent"), 103: ("WAIT", "lent"), 104: ("WAIT", "keep"),
    }  # fmt: skip
    clients.pop(103)[0].close()  # gone while lent: the coordinator takes the token back
    slots.release_outside()
    answers = {
        pid: [m[0] for m in slots.granted(sock, reader)] for pid, (sock, reader, _m) in clients.items()
    }
    # 102's slot comes back to it from the pool (the command here takes no token): "returned".
    assert answers == {101: ["GRANT"], 102: ["LOAN", "GRANT"], 104: ["GRANT"]}
    err = slots.finish()
    assert "jobserver:" not in err, err  # no token missing, none too many


def test_the_bound_on_lent_slots_is_per_resource(tmp_path: Path, procs: Procs) -> None:
    """-j 2: two steps waiting for the venv have their slots lent, a third keeps its own; a step waiting for
    another resource is lent for all the same (a bound for the whole build kept the slots of a seed-like
    build's steps waiting for three venvs, and its independent steps could not start)."""
    slots = Slots(tmp_path, procs, jobs=2, mode="")
    other = tmp_path / "other-venv"
    outside = slots.hold_outside(other, "o.2")
    clients = {pid: slots.ask(pid, slots.auth) for pid in (102, 103, 104)}
    clients[105] = slots.ask(105, slots.auth, other)
    assert {pid: (m[0], m[3]) for pid, (_s, _r, m) in clients.items()} == {
        102: ("WAIT", "lent"), 103: ("WAIT", "lent"), 104: ("WAIT", "keep"), 105: ("WAIT", "lent"),
    }  # fmt: skip
    slots.release_outside()
    outside.release()
    assert outside.proc.wait(HANG_TIMEOUT) == 0
    answers = {
        pid: [m[0] for m in slots.granted(sock, reader)] for pid, (sock, reader, _m) in clients.items()
    }
    assert answers == {102: ["LOAN", "GRANT"], 103: ["LOAN", "GRANT"], 104: ["GRANT"], 105: ["LOAN", "GRANT"]}
    err = slots.finish()
    assert "jobserver:" not in err, err  # every token lent came back


def test_a_slot_that_cannot_come_back_at_the_grant_is_taken_back_when_a_job_ends(
    tmp_path: Path, procs: Procs
) -> None:
    """The command takes every token that shows up (ninja starting jobs with the lent slots), so at the grant
    the pool is empty: the step runs on credit ("LOAN credit") and the coordinator takes the token back
    from the next job that ends (the command giving its tokens back). All accounted for at the end."""
    slots = Slots(tmp_path, procs, jobs=2, mode="greedy")
    sock, reader, message = slots.ask(102, slots.auth)
    assert (message[0], message[3]) == ("WAIT", "lent")
    held = tmp_path / "info.held"
    # The pool's own token (-j 2) and the one lent for 102, both taken by the command before the grant.
    wait_until(lambda: held.exists() and held.read_text() == "2", "the command to take the lent token")
    slots.release_outside()
    assert slots.granted(sock, reader) == [["LOAN", "credit"], ["GRANT"]]
    err = slots.finish()
    assert "jobserver:" not in err, err
    # Taken back during the build, not only counted at its end: the pool holds its one token (-j 2), not 2.
    assert (tmp_path / "info.pool").read_text() == "1"


def test_a_coordinator_out_of_descriptors_serves_everyone_in_turn(tmp_path: Path, procs: Procs) -> None:
    """The coordinator holds a descriptor per connected step: with a soft limit of 40, sixty steps asking at
    once cannot all connect. Those it cannot accept yet wait in the listen backlog; all are served, one at a
    time, none runs beside another."""
    address_file, stop = tmp_path / "address", tmp_path / "stop"
    keep = (
        "import os, sys, time\n"
        "open(sys.argv[1], 'w').write(os.environ['FI_RUN_COORDINATOR'])\n"
        "while not os.path.exists(sys.argv[2]): time.sleep(0.02)"
    )
    server = shlex.join([os.fspath(console_script()), "jobserver", "--", sys.executable, "-c", keep])
    files = f"{shlex.quote(str(address_file))} {shlex.quote(str(stop))}"
    procs.start(["sh", "-c", f"ulimit -n 40 && exec {server} {files}"], cwd=tmp_path)
    wait_until(lambda: address_file.exists() and address_file.read_text() != "", "the coordinator")
    scripts = write_scripts(tmp_path / "scripts")
    log = tmp_path / "order.log"
    env = {"FI_RUN_COORDINATOR": address_file.read_text()}
    lock: list[str | os.PathLike[str]] = ["--lock-dir", tmp_path / "locks", "--lock", tmp_path / "venv", "--"]
    lock += ["sh", scripts.step, log]
    steps = [
        procs.start_fi_run([*lock, f"s.{i}", "0.01"], cwd=tmp_path, env=env, stderr=subprocess.PIPE)
        for i in range(60)
    ]
    assert [step.wait(HANG_TIMEOUT) for step in steps] == [0] * 60
    # Served by the coordinator, every one: none found it unreachable and fell back to the lock directory.
    assert [step.stderr.read() for step in steps if step.stderr] == [b""] * 60
    result = analyse(read_log(log), exclusive_kinds={"s"})
    assert result.violations == []
    assert len(result.entered) == 60
    stop.touch()


def test_mem_under_the_coordinator_keeps_the_build_within_its_budget(build: Build) -> None:
    """--mem through the coordinator: 1G budget, 400M steps: two at once, the third waits in the line."""
    mem = ("--mem-limit", "1G", "--mem", "400M")
    build.hold("a.0", *mem)
    build.hold("b.1", *mem, before=build.after("a.0"))
    build.step("c.2", *mem, before=build.after("b.1"))
    build.start()
    build.ready("a.0")
    build.ready("b.1")
    build.waiting("c.2")
    build.release("a.0")
    wait_until(lambda: "exit c.2 " in read_log(build.log), "c.2 to run once a.0 left")
    build.release("b.1")
    status, out = build.finish()
    assert status == 0, out
    assert "of the 128 seats of the memory budget 'memory://" in out
    lines = read_log(build.log).split("\n")
    assert lines.index(next(x for x in lines if x.startswith("enter c.2 "))) > lines.index(
        next(x for x in lines if x.startswith("exit a.0 "))
    )


def test_the_build_s_readers_do_not_pass_a_writer_waiting_outside_the_build(
    build: Build, resource: Path, procs: Procs
) -> None:
    """The build holds the resource's shared slot for its readers and could grant more readers under it
    without a trip through the OS; but a writer outside the build waits (it has the gate and waits for the
    slot to drain). A later reader of the build then waits too: r.1, the outside writer, r.2."""
    build.hold("r.1", "--shared-lock", resource)
    build.step("r.2", "--shared-lock", resource, before=build.when("writer waits"))
    build.start()
    build.ready("r.1")
    writer = procs.start(
        [console_script(), "--lock-dir", build.locks, "--lock", resource, "--", "sh", build.scripts.step,
         build.log, "w.1", "0"],
        cwd=build.dir,
    )  # fmt: skip
    wait_until(lambda: any(build.locks.glob("*/waiters/*.drain")), "the writer to take the gate and wait")
    build.signal("writer waits")
    build.waiting("r.2")
    build.release("r.1")
    assert writer.wait(HANG_TIMEOUT) == 0
    status, out = build.finish()
    assert status == 0, out
    result = analyse(read_log(build.log), exclusive_kinds={"w"})
    assert result.entered == ["r.1", "w.1", "r.2"]
    assert result.violations == []


def test_the_build_and_the_processes_outside_it_are_served_in_the_order_they_came(
    build: Build, resource: Path, procs: Procs
) -> None:
    """One line for everyone: o.0 holds; b.1 (the build), o.2 (outside), b.3 (the build), o.4 (outside) come
    in that order. The coordinator's claim for b.1 serves b.1 at the build's place, not the outsiders who
    came after it (fi-run locks found it handing each claim over as it won it); b.3 came after o.2, so the
    build lets o.2 go first and queues again dated when b.3 came, ahead of o.4."""
    holder_ctl = build.dir / "o.0"
    holder_ctl.mkdir()

    def outside(tag: str, *options: str) -> subprocess.Popen[bytes]:
        script: list[str | Path] = (
            [build.scripts.hold, build.log, tag, holder_ctl]
            if tag == "o.0"
            else [build.scripts.step, build.log, tag, "0"]
        )
        return procs.start(
            [console_script(), "--lock-dir", build.locks, *options, "--lock", resource, "--", "sh", *script],
            cwd=build.dir,
        )

    def entries(count: int, what: str) -> None:
        wait_until(lambda: len(list(build.locks.glob("*/waiters/*.gate"))) == count, what)

    holder = outside("o.0")
    wait_until((holder_ctl / "ready").exists, "o.0 to hold the lock")
    build.step("b.1", "--lock", resource)
    build.step("b.3", "--lock", resource, before=build.when("o.2 queued"))
    build.start()
    build.waiting("b.1")
    entries(1, "the coordinator to queue in the lock directory for b.1")
    second = outside("o.2")
    entries(2, "o.2 to queue")
    build.signal("o.2 queued")
    build.waiting("b.1", "b.3")
    fourth = outside("o.4")
    entries(3, "o.4 to queue")
    (holder_ctl / "release").touch()
    for proc in (holder, second, fourth):
        assert proc.wait(HANG_TIMEOUT) == 0
    status, out = build.finish()
    assert status == 0, out
    result = analyse(read_log(build.log), exclusive_kinds={"o", "b"})
    assert result.violations == []
    assert result.entered == ["o.0", "b.1", "o.2", "b.3", "o.4"]
