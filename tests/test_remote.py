"""redis:// resources against a real redis-server (issue 21): FIFO across "machines", leases, fencing, a
SIGKILLed holder, restarts, an unreachable server, the password, and the build's coordinator.

Each test starts its own redis-server on a loopback port it picks (redis_testing.py) and stops it after.
Two "machines" are two lock directories (and, under `fi-run jobserver`, two coordinators) sharing that
server. The steps' commands are hold.sh and step.sh writing one enter/exit log that the overlap checker
reads (fi_run_testing.analyse); nothing is timed: every wait is for a state the test can see (a file, the
server's own line via remote.look).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from fi_run_testing import (
    HANG_TIMEOUT,
    Procs,
    analyse,
    base_environ,
    console_script,
    finish,
    kill_session,
    ninja_binary,
    only_fi_run_line,
    read_log,
    run,
    start_holder,
    wait_until,
    write_scripts,
)
from redis_testing import RedisServer, redis_environ

from fi_run.contention import remote
from fi_run.contention.remote import acl_setuser
from fi_run.errors import EXIT_TEMPFAIL, EXIT_TIMEOUT, EXIT_UNAVAILABLE, EXIT_USAGE
from fi_run.observe import lockview

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from fi_run_testing import Holder, Scripts

assert sys.platform != "win32"  # POSIX only: conftest.POSIX_ONLY keeps it from being collected on Windows

PASSWORD = "s3cret-for-the-tests"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    started = RedisServer(tmp_path / "redis").start()
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def scripts(tmp_path: Path) -> Scripts:
    return write_scripts(tmp_path / "scripts")


def fi_run(*args: str | os.PathLike[str]) -> list[str]:
    return [sys.executable, "-m", "fi_run", *(os.fspath(a) for a in args)]


def machine(tmp_path: Path, name: str) -> list[str]:
    """The options of one "machine": its own lock directory."""
    return ["--lock-dir", str(tmp_path / name / "locks")]


def hold(
    procs: Procs,
    scripts: Scripts,
    tmp_path: Path,
    options: Sequence[str | os.PathLike[str]],
    *,
    log: Path,
    tag: str,
) -> Holder:
    """``fi_run OPTIONS -- sh hold.sh LOG TAG``, with the tests' Redis environment, once it holds."""
    return start_holder(
        procs, scripts, options, log=log, tag=tag, control=tmp_path / tag, cwd=tmp_path, env=redis_environ()
    )


def step(procs: Procs, tmp_path: Path, argv: list[str | os.PathLike[str]]) -> subprocess.Popen[bytes]:
    """``fi_run ARGV`` in the background, with the tests' Redis environment."""
    return procs.start_fi_run(argv, cwd=tmp_path, env=redis_environ())


def in_line(server: RedisServer, name: str, waiters: int) -> bool:
    return len(server.look(name).waiters) >= waiters


# --- a step of its own (no coordinator)


def test_a_step_holds_a_remote_seat_and_its_command_gets_the_fence(
    tmp_path: Path, server: RedisServer
) -> None:
    log = tmp_path / "steps.log"
    fences = []
    for _ in range(3):
        done = run(
            fi_run(
                "--log",
                log,
                "--semaphore",
                server.url("seats") + "=2",
                "--",
                "sh",
                "-c",
                'echo "$FI_RUN_FENCE_SEATS"',
            ),
            cwd=tmp_path,
            env={**os.environ, **redis_environ()},
        )
        assert (done.status, done.err) == (0, ""), done
        fences.append(int(done.out))
    assert fences == sorted(fences), "fences grow with every grant"
    assert len(set(fences)) == 3
    records = [json.loads(line) for line in log.read_text().splitlines()]
    locks = [record["locks"][0] for record in records]
    assert [lock["fence"] for lock in locks] == fences
    assert {lock["host"] for lock in locks} == {os.uname().nodename}
    assert {lock["resource"] for lock in locks} == {f"redis://127.0.0.1:{server.port}/0/seats"}
    assert server.look("seats").holders == [], "every seat was let go"


def test_seats_are_never_over_granted_between_two_machines(
    tmp_path: Path, server: RedisServer, scripts: Scripts, procs: Procs
) -> None:
    log = tmp_path / "order.log"
    steps = []
    for i in range(8):
        where = machine(tmp_path, "a" if i % 2 else "b")
        weight = ":2" if i % 3 == 0 else ""
        steps.append(
            procs.start_fi_run(
                [
                    *where,
                    "--semaphore",
                    server.url("licences") + f"=3{weight}",
                    "--",
                    "sh",
                    scripts.step,
                    log,
                    f"s.{i}",
                    "0.2",
                ],
                cwd=tmp_path,
                env=redis_environ(),
            )
        )
    assert [finish(p) for p in steps] == [0] * 8
    # Weights: a :2 step counts twice. The checker counts steps; rebuild seats from the tags.
    inside: dict[str, int] = {}
    most = 0
    for line in read_log(log).splitlines():
        event, tag, _stamp = line.split()
        if event == "enter":
            inside[tag] = 2 if int(tag.split(".")[1]) % 3 == 0 else 1
            most = max(most, sum(inside.values()))
        else:
            del inside[tag]
    assert most <= 3, "more than 3 seats were in use at once"
    assert len(analyse(read_log(log)).entered) == 8


def test_waiters_are_served_in_the_order_they_asked_across_machines(
    tmp_path: Path, server: RedisServer, scripts: Scripts, procs: Procs
) -> None:
    log = tmp_path / "order.log"
    holder = hold(procs, scripts, tmp_path, ["--lock", server.url("deploy")], log=log, tag="holder.0")
    tags = [f"w.{i}" for i in range(6)]
    waiting = []
    for number, tag in enumerate(tags):
        where = machine(tmp_path, "ab"[number * 7 % 3 % 2])  # the machines in an irregular order
        waiting.append(
            step(
                procs,
                tmp_path,
                [*where, "--lock", server.url("deploy"), "--", "sh", scripts.step, log, tag, "0"],
            )
        )
        wait_until(partial(in_line, server, "deploy", number + 1), f"{tag} in the server's line")
    line = server.look("deploy")
    assert [w.mode for w in line.waiters] == ["exclusive"] * 6
    assert line.holders[0].host == os.uname().nodename
    holder.release()
    assert [finish(p) for p in [holder.proc, *waiting]] == [0] * 7
    analysis = analyse(read_log(log), exclusive_kinds=["holder", "w"])
    assert analysis.violations == []
    assert analysis.entered == ["holder.0", *tags]


def test_a_writer_waiting_behind_readers_is_not_passed_by_a_later_reader(
    tmp_path: Path, server: RedisServer, scripts: Scripts, procs: Procs
) -> None:
    log = tmp_path / "order.log"
    reader = hold(procs, scripts, tmp_path, ["--shared-lock", server.url("venv")], log=log, tag="r.0")
    writer = step(
        procs, tmp_path, ["--lock", server.url("venv"), "--", "sh", scripts.step, log, "w.1", "0.1"]
    )
    wait_until(lambda: in_line(server, "venv", 1), "the writer in line")
    late = step(
        procs, tmp_path, ["--shared-lock", server.url("venv"), "--", "sh", scripts.step, log, "r.2", "0"]
    )
    wait_until(lambda: in_line(server, "venv", 2), "the late reader in line")
    reader.release()
    assert [finish(p) for p in (reader.proc, writer, late)] == [0, 0, 0]
    analysis = analyse(read_log(log), exclusive_kinds=["w"])
    assert analysis.violations == []
    assert analysis.entered == ["r.0", "w.1", "r.2"]


def test_a_sigkilled_holder_is_dropped_when_its_lease_ends(
    tmp_path: Path, server: RedisServer, scripts: Scripts, procs: Procs
) -> None:
    log = tmp_path / "order.log"
    holder = hold(procs, scripts, tmp_path, ["--lock", server.url("device")], log=log, tag="dead.0")
    waiter = step(
        procs, tmp_path, ["--lock", server.url("device"), "--", "sh", scripts.step, log, "next.1", "0"]
    )
    wait_until(lambda: in_line(server, "device", 1), "the waiter in line")
    kill_session(holder.proc.pid)  # fi_run and its command, as a machine that died
    holder.proc.wait(timeout=HANG_TIMEOUT)
    killed = time.monotonic()
    assert finish(waiter) == 0
    # Nobody let go: the seat came free because the holder's lease ended (measured in benchmarks/).
    assert time.monotonic() - killed < HANG_TIMEOUT
    assert analyse(read_log(log)).entered == ["dead.0", "next.1"]
    assert server.look("device").holders == []


def test_lock_timeout_is_exit_75_naming_the_remote_holder_and_leaves_the_line(
    tmp_path: Path, server: RedisServer, scripts: Scripts, procs: Procs
) -> None:
    log = tmp_path / "order.log"
    holder = hold(procs, scripts, tmp_path, ["--semaphore", server.url("seats") + "=1"], log=log, tag="h.0")
    done = run(
        fi_run(
            "--lock-timeout", "0.5", "--stamp", "s", "--semaphore", server.url("seats") + "=1", "--", "true"
        ),
        cwd=tmp_path,
        env={**os.environ, **redis_environ()},
    )
    assert (done.status, done.out) == (EXIT_TEMPFAIL, "")
    line = only_fi_run_line(done.err)
    assert (
        f"gave up after 0.5 s waiting for a semaphore slot (of 1) on 'redis://127.0.0.1:{server.port}/0/seats'"
        in line
    )
    assert f"on {os.uname().nodename}: sh {scripts.hold}" in line, line
    assert server.look("seats").waiters == [], "its ticket left the line"
    assert not (tmp_path / "s").exists()
    holder.release()
    assert finish(holder.proc) == 0


def test_an_interrupted_waiter_leaves_the_line(
    tmp_path: Path, server: RedisServer, scripts: Scripts, procs: Procs
) -> None:
    log = tmp_path / "order.log"
    holder = hold(procs, scripts, tmp_path, ["--lock", server.url("x")], log=log, tag="h.0")
    waiter = procs.start_fi_run(
        ["--lock", server.url("x"), "--", "true"], cwd=tmp_path, env=redis_environ(), stderr=subprocess.PIPE
    )
    wait_until(lambda: in_line(server, "x", 1), "the waiter in line")
    waiter.send_signal(signal.SIGTERM)
    assert finish(waiter) == 128 + signal.SIGTERM
    assert waiter.stderr is not None
    assert (
        only_fi_run_line(waiter.stderr.read().decode()) == "fi_run: interrupted by SIGTERM; no stamp written"
    )
    assert server.look("x").waiters == []
    holder.release()
    assert finish(holder.proc) == 0


def test_an_unreachable_server_is_exit_69_in_one_line_and_no_local_lock(tmp_path: Path) -> None:
    port = RedisServer(tmp_path / "never").port or 1  # nothing listens on port 1 of the loopback
    locks = tmp_path / "locks"
    done = run(
        fi_run(
            "--lock-dir", locks, "--stamp", "s", "--lock", f"redis://127.0.0.1:{port}/seats", "--", "true"
        ),
        cwd=tmp_path,
        env={**os.environ, **redis_environ()},
    )
    assert (done.status, done.out) == (EXIT_UNAVAILABLE, "")
    line = only_fi_run_line(done.err)
    assert f"cannot reach the Redis server of 'redis://127.0.0.1:{port}/0/seats'" in line
    assert "no local lock stands in for it" in line
    assert not (tmp_path / "s").exists()
    assert not locks.exists(), "nothing was locked locally instead"


def test_the_password_comes_from_the_environment_and_is_never_shown(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis", password=PASSWORD).start()
    try:
        url = server.url("seats") + "=1"
        log = tmp_path / "steps.log"
        args = fi_run("--log", log, "--semaphore", url, "--", "true")
        refused = run(args, cwd=tmp_path, env={**os.environ, **redis_environ()})
        assert (refused.status, refused.out) == (EXIT_USAGE, "")
        assert "set FI_RUN_REDIS_PASSWORD" in only_fi_run_line(refused.err)
        wrong = run(args, cwd=tmp_path, env={**os.environ, **redis_environ(FI_RUN_REDIS_PASSWORD="nope")})
        assert wrong.status == EXIT_USAGE
        assert "refused fi_run's credentials" in only_fi_run_line(wrong.err)
        verbose = fi_run("-v", "--log", log, "--semaphore", url, "--", "true")
        done = run(verbose, cwd=tmp_path, env={**os.environ, **redis_environ(FI_RUN_REDIS_PASSWORD=PASSWORD)})
        assert done.status == 0, done
        for text in (refused.err, wrong.err, done.err, log.read_text()):
            assert PASSWORD not in text
    finally:
        server.stop()


def test_a_hold_past_its_cap_stops_the_command_with_exit_124(tmp_path: Path, server: RedisServer) -> None:
    done = run(
        fi_run("--stamp", "s", "--lock", server.url("slow"), "--", "sleep", "30"),
        cwd=tmp_path,
        env={**os.environ, **redis_environ(FI_RUN_REDIS_MAX_HOLD="0.5")},
    )
    assert (done.status, done.out) == (EXIT_TIMEOUT, "")
    line = only_fi_run_line(done.err)
    assert f"held 'redis://127.0.0.1:{server.port}/0/slow' for 0.5 s, the cap on a remote hold" in line
    assert not (tmp_path / "s").exists()
    assert server.look("slow").holders == []


def test_a_step_takes_local_and_remote_resources_in_one_order(
    tmp_path: Path, server: RedisServer, scripts: Scripts
) -> None:
    log = tmp_path / "steps.log"
    done = run(
        fi_run(
            *machine(tmp_path, "a"),
            "-v",
            "--log",
            log,
            "--lock",
            server.url("z"),
            "--lock",
            tmp_path / "local",
            "--",
            "true",
        ),
        cwd=tmp_path,
        env={**os.environ, **redis_environ()},
    )
    assert done.status == 0, done
    locks = json.loads(log.read_text())["locks"]
    assert [lock["resource"] for lock in locks] == [
        str(tmp_path / "local"),
        f"redis://127.0.0.1:{server.port}/0/z",
    ]
    assert "fence" not in locks[0]
    assert "fence" in locks[1]


# --- restarts


@pytest.mark.parametrize(
    "how",
    ["crash without its data", "crash with an append-only file", "FLUSHALL", "a slow load of its data"],
)
def test_a_restart_keeps_the_seats_held_and_grants_nothing_new_until_holders_are_back(
    tmp_path: Path, scripts: Scripts, procs: Procs, how: str
) -> None:
    """What a restart does to held seats (docs/remote.md): for one lease after fi_run first reaches the
    restarted server it grants nothing and drops nobody; holders renew (or claim back the seat a server
    without its data forgot). A FLUSHALL is a loss of data like a restart without it; a server that loads
    its data answers LOADING meanwhile, which a newcomer waits out (not exit 69)."""
    server = RedisServer(tmp_path / "redis", persist=how == "crash with an append-only file").start()
    try:
        log = tmp_path / "order.log"
        holder = hold(
            procs, scripts, tmp_path, ["--semaphore", server.url("lab") + "=1"], log=log, tag="old.0"
        )
        fence = server.look("lab").holders[0].fence
        if how == "FLUSHALL":
            assert server.call("FLUSHALL") == "OK"
        elif how == "a slow load of its data":
            # 1.5 million keys in an RDB file: the restarted server takes a second or more to load them. A
            # server loading its data for longer than a lease keeps its waiters waiting (resp.ServerLoading).
            fill = "for i = 1, 1500000 do redis.call('SET', 'k' .. i, 'x') end"
            assert server.call("EVAL", fill, 0) is None
            assert server.call("SAVE") == "OK"
            server.restart(crash=True, wait=False)
        else:
            server.restart(crash=True)
        newcomer = procs.start_fi_run(
            ["--semaphore", server.url("lab") + "=1", "--", "sh", scripts.step, log, "new.1", "0"],
            cwd=tmp_path,
            env=redis_environ(),
            stderr=subprocess.PIPE,
        )
        if how == "a slow load of its data":
            server.was_loading = False  # from here on: seen loading after the newcomer started
            wait_until(lambda: server.loading() is False, "the server to have loaded its data")
            assert server.was_loading, "the newcomer did not meet a server loading its data"
        # The old holder is back on the server (renewed, or claimed back) and the newcomer waits behind it.
        wait_until(
            lambda: [h.fence for h in server.look("lab").holders] == [fence] and in_line(server, "lab", 1),
            "the holder back and the newcomer in line",
        )
        assert server.look("lab").waiters[0].fence > fence, "fences still grow after the restart"
        holder.release()
        assert [finish(holder.proc), finish(newcomer)] == [0, 0]
        assert newcomer.stderr is not None
        assert newcomer.stderr.read() == b""
        analysis = analyse(read_log(log), exclusive_kinds=["old", "new"])
        assert analysis.violations == []
        assert analysis.entered == ["old.0", "new.1"]
    finally:
        server.stop()


# --- under the build's coordinator (fi-run jobserver)


class Build:
    """A build.ninja of fi_run steps on redis:// resources, run by ninja under fi-run jobserver: one
    "machine" (its lock directory, its coordinator)."""

    def __init__(self, tmp_path: Path, name: str, procs: Procs, scripts: Scripts) -> None:
        self.dir = tmp_path / name
        self.dir.mkdir()
        self.name = name
        self.procs = procs
        self.scripts = scripts
        self.ctl = self.dir / "ctl"
        self.ctl.mkdir()
        self.edges: list[str] = []
        self.proc: subprocess.Popen[bytes] | None = None

    def edge(self, tag: str, lock: list[str], command: str, before: str = "") -> None:
        fi = " ".join([str(console_script()), "--lock-dir", str(self.dir / "locks"), *lock, "--"])
        wrapper = f"{before}echo $$$$ > {self.ctl / tag}.pid && exec {fi} {command}"
        self.edges.append(f"build {tag}: run\n  cmd = {wrapper}\n")

    def start(self, jobs: int, env: dict[str, str]) -> None:
        (self.dir / "build.ninja").write_text("rule run\n  command = $cmd\n" + "\n".join(self.edges))
        argv = [str(console_script()), "jobserver", "-j", str(jobs), "--", ninja_binary(), "-k", "0"]
        self.proc = self.procs.start(
            argv, cwd=self.dir, env={**env, "TERM": "dumb"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )

    def finish(self) -> tuple[int, str]:
        assert self.proc is not None
        out, _ = self.proc.communicate(timeout=HANG_TIMEOUT)
        return self.proc.returncode, out.decode(errors="replace")

    def pid(self, tag: str) -> int:
        path = self.ctl / f"{tag}.pid"
        wait_until(lambda: path.exists() and path.read_text().strip() != "", f"{tag} to start")
        return int(path.read_text())


@pytest.mark.parametrize("lock", [["--lock"], ["--semaphore", "=1"]], ids=["lock", "semaphore of 1"])
def test_two_coordinators_serve_one_resource_in_request_order(
    tmp_path: Path, server: RedisServer, scripts: Scripts, procs: Procs, lock: list[str]
) -> None:
    """Two "machines" (lock directories and coordinators) on one server: the grants (one at a time, so the
    order they enter in) follow the order the steps asked in, whichever machine asked."""
    log = tmp_path / "order.log"

    def asking(url: str) -> list[str]:
        return [lock[0], url + (lock[1] if len(lock) > 1 else "")]

    holder = hold(procs, scripts, tmp_path, asking(server.url("seats")), log=log, tag="h.0")
    builds = {name: Build(tmp_path, name, procs, scripts) for name in ("a", "b")}
    order = ["a", "b", "b", "a", "b", "a"]
    for number, name in enumerate(order):
        # Each step asks only once the one before it is in the server's line: the request order is known.
        gate = tmp_path / f"asked-{number}"
        before = f"until [ -e {gate} ]; do sleep 0.01; done; "
        builds[name].edge(
            f"s.{number}", asking(server.url("seats")), f"sh {scripts.step} {log} s.{number} 0.05", before
        )
    for build in builds.values():
        build.start(jobs=8, env=redis_environ())
    for number in range(len(order)):
        (tmp_path / f"asked-{number}").touch()
        wait_until(partial(in_line, server, "seats", number + 1), f"step {number} in the server's line")
    waiters = server.look("seats").waiters
    assert {w.build for w in waiters} == {b.proc.pid for b in builds.values() if b.proc}, (
        "asked by the coordinators"
    )
    holder.release()
    results = [build.finish() for build in builds.values()]
    assert [status for status, _out in results] == [0, 0], results
    analysis = analyse(read_log(log), exclusive_kinds=["h", "s"])
    assert analysis.violations == []
    assert analysis.entered == ["h.0", *(f"s.{n}" for n in range(len(order)))]


def test_under_the_coordinator_a_killed_step_s_command_keeps_its_seat(
    tmp_path: Path, server: RedisServer, scripts: Scripts, procs: Procs
) -> None:
    log = tmp_path / "order.log"
    build = Build(tmp_path, "a", procs, scripts)
    control = tmp_path / "hold"
    control.mkdir()
    build.edge("k.0", ["--lock", server.url("dev")], f"sh {scripts.hold} {log} k.0 {control}")
    build.edge(
        "n.1",
        ["--lock", server.url("dev")],
        f"sh {scripts.step} {log} n.1 0",
        f"until [ -e {control}/ready ]; do sleep 0.01; done; ",
    )
    build.start(jobs=4, env=redis_environ())
    wait_until((control / "ready").exists, "k.0 inside")
    wait_until(lambda: in_line(server, "dev", 1), "n.1 in line")
    os.kill(build.pid("k.0"), signal.SIGKILL)  # the step's fi_run; its command runs on
    time.sleep(2 * 1.5)  # two leases: the seat would have lapsed by now if nobody renewed it
    assert analyse(read_log(log)).entered == ["k.0"], "nobody entered while the command still ran"
    (control / "release").touch()
    status, out = build.finish()
    assert status != 0, out  # k.0 was killed: ninja reports the failed edge
    analysis = analyse(read_log(log), exclusive_kinds=["k", "n"])
    assert analysis.violations == []
    assert analysis.entered == ["k.0", "n.1"]


def test_a_step_renews_its_seat_itself_when_the_coordinator_dies(
    tmp_path: Path, server: RedisServer, scripts: Scripts, procs: Procs
) -> None:
    log = tmp_path / "order.log"
    build = Build(tmp_path, "a", procs, scripts)
    control = tmp_path / "hold"
    control.mkdir()
    build.edge("k.0", ["--lock", server.url("dev")], f"sh {scripts.hold} {log} k.0 {control}")
    build.start(jobs=4, env=redis_environ())
    wait_until((control / "ready").exists, "k.0 inside")
    assert build.proc is not None
    os.kill(build.proc.pid, signal.SIGKILL)  # the jobserver, and its coordinator with it
    other = step(procs, tmp_path, ["--lock", server.url("dev"), "--", "sh", scripts.step, log, "o.1", "0"])
    wait_until(lambda: in_line(server, "dev", 1), "another machine's step in line")
    time.sleep(2 * 1.5)  # two leases: the seat would have lapsed by now if nobody renewed it
    assert analyse(read_log(log)).entered == ["k.0"], "nobody entered while the command still ran"
    (control / "release").touch()
    assert finish(other) == 0
    analysis = analyse(read_log(log), exclusive_kinds=["k", "o"])
    assert analysis.violations == []
    assert analysis.entered == ["k.0", "o.1"]


def test_under_the_coordinator_an_unreachable_server_is_exit_69(
    tmp_path: Path, procs: Procs, scripts: Scripts
) -> None:
    build = Build(tmp_path, "a", procs, scripts)
    build.edge("u.0", ["--stamp", str(tmp_path / "s"), "--lock", "redis://127.0.0.1:1/x"], "true")
    build.start(jobs=2, env=redis_environ())
    status, out = build.finish()
    assert status != 0
    said = [line for line in out.splitlines() if line.startswith("fi_run:") and "jobserver" not in line]
    assert len(said) == 1, out
    assert said[0].startswith(
        "fi_run: cannot reach the Redis server of 'redis://127.0.0.1:1/0/x' (127.0.0.1:1: "
    )
    assert said[0].endswith("; no local lock stands in for it")
    assert not (tmp_path / "s").exists()


def test_the_report_names_the_machine_of_each_remote_holder_and_waiter(
    tmp_path: Path, server: RedisServer, scripts: Scripts, procs: Procs
) -> None:
    logs = {name: tmp_path / f"{name}.log" for name in ("a", "b")}
    order = tmp_path / "order.log"
    holder = hold(
        procs,
        scripts,
        tmp_path,
        [*machine(tmp_path, "a"), "--log", logs["a"], "--lock", server.url("deploy")],
        log=order,
        tag="h.0",
    )
    waiter = step(
        procs,
        tmp_path,
        [*machine(tmp_path, "b"), "--log", logs["b"], "--lock", server.url("deploy"), "--", "true"],
    )
    wait_until(partial(in_line, server, "deploy", 1), "b's step in line")
    holder.release()
    assert [finish(holder.proc), finish(waiter)] == [0, 0]
    host = os.uname().nodename
    done = run(fi_run("report", "--json", logs["a"], logs["b"]), cwd=tmp_path)
    assert done.status == 0, done.err
    [resource] = json.loads(done.out)["resources"]
    assert resource["resource"] == f"redis://127.0.0.1:{server.port}/0/deploy"
    assert resource["longest"]["host"] == host
    assert [(h["host"], h["steps"]) for h in resource["hosts"]] == [(host, 2)]
    assert resource["blockers"][0]["host"] == host
    text = run(fi_run("report", logs["a"], logs["b"]), cwd=tmp_path)
    assert f"  by machine for redis://127.0.0.1:{server.port}/0/deploy" in text.out, text.out
    assert f" on {host}" in text.out


def test_fi_run_locks_shows_a_remote_resource_s_holder_and_waiters_with_their_machines(
    tmp_path: Path, server: RedisServer, scripts: Scripts, procs: Procs
) -> None:
    """Issue 21, item 4: `fi-run locks --redis URL` asks the server: the holder (its machine, pid, fence)
    and the waiters of every machine, numbered in the order the server will serve them."""
    holder = hold(
        procs,
        scripts,
        tmp_path,
        [*machine(tmp_path, "a"), "--semaphore", server.url("seats") + "=2:2"],
        log=tmp_path / "order.log",
        tag="h.0",
    )
    waiters = []
    for number, name in enumerate(("b", "a"), 1):
        waiters.append(
            step(
                procs,
                tmp_path,
                [*machine(tmp_path, name), "--semaphore", server.url("seats") + "=2", "--", "true"],
            )
        )
        wait_until(partial(in_line, server, "seats", number), f"waiter {number} in line")
    host = os.uname().nodename
    url = server.url("seats") + "=2"  # as the steps spell it: =N is ignored
    done = run(fi_run("locks", *machine(tmp_path, "b"), "--json", "--redis", url), cwd=tmp_path)
    assert done.status == 0, done.err
    [seen] = json.loads(done.out)["remote"]
    assert list(seen) == list(lockview.REMOTE_KEYS)
    assert seen["resource"] == f"redis://127.0.0.1:{server.port}/0/seats"
    [held] = seen["holders"]
    assert list(held) == list(lockview.REMOTE_ENTRY_KEYS)
    assert (held["host"], held["pid"], held["mode"], held["seats"], held["weight"]) == (
        host, holder.proc.pid, "semaphore", 2, 2,
    )  # fmt: skip
    assert held["fence"] > 0
    assert [(w["host"], w["pid"], w["weight"]) for w in seen["waiters"]] == [
        (host, waiters[0].pid, 1), (host, waiters[1].pid, 1),
    ]  # fmt: skip
    text = run(
        fi_run("locks", *machine(tmp_path, "b"), "--redis", url),
        cwd=tmp_path,
        env=base_environ({"NO_COLOR": "1"}),
    )
    assert text.status == 0, text.err
    lines = text.out.splitlines()
    at = lines.index(f"redis://127.0.0.1:{server.port}/0/seats")
    assert lines[at + 2] == "  held by"
    assert f"pid {holder.proc.pid}  semaphore (2 of 2)  on {host}, fence {held['fence']}" in lines[at + 3]
    assert lines[at + 4] == "  waiting, in the order they will be served"
    assert lines[at + 5].startswith(f"  1.  pid {waiters[0].pid}  semaphore (1 of 2)  on {host}"), lines
    assert lines[at + 6].startswith(f"  2.  pid {waiters[1].pid}  semaphore (1 of 2)  on {host}"), lines
    holder.release()
    assert [finish(holder.proc), *(finish(w) for w in waiters)] == [0, 0, 0]


def test_fi_run_locks_with_an_unreachable_server_is_exit_69_in_one_line(tmp_path: Path) -> None:
    port = RedisServer(tmp_path / "never").port or 1  # nothing listens on port 1 of the loopback
    locks = ["--lock-dir", str(tmp_path / "locks")]
    done = run(fi_run("locks", *locks, "--redis", f"redis://127.0.0.1:{port}/x"), cwd=tmp_path)
    assert (done.status, done.out) == (EXIT_UNAVAILABLE, "")
    assert f"cannot reach the Redis server of 'redis://127.0.0.1:{port}/0/x'" in only_fi_run_line(done.err)
    # A password in the URL is refused, as in a step's options, and never shown.
    bad = run(fi_run("locks", *locks, "--redis", "redis://:hunter2-xyz@127.0.0.1/x"), cwd=tmp_path)
    assert (bad.status, bad.out) == (EXIT_USAGE, "")
    assert "FI_RUN_REDIS_PASSWORD" in only_fi_run_line(bad.err)
    assert "hunter2-xyz" not in bad.err


def test_the_view_s_remote_keys_are_the_server_s() -> None:
    assert set(lockview.REMOTE_ENTRY_KEYS) == set(remote.Entry.__slots__)
    assert list(lockview.REMOTE_KEYS) == list(remote.View("r", 0.0, [], []).as_json())


def test_an_acl_user_with_only_the_documented_commands_can_do_all_fi_run_does(
    tmp_path: Path, scripts: Scripts, procs: Procs
) -> None:
    server = RedisServer(tmp_path / "redis", password=PASSWORD).start()
    try:
        line = acl_setuser("builds", "builds-password")
        assert server.call(*line.split()) == "OK"
        assert (
            f"`{acl_setuser('fi-run')}`" in (Path(__file__).parent.parent / "docs" / "remote.md").read_text()
        )
        env = redis_environ(FI_RUN_REDIS_PASSWORD="builds-password")
        url = f"redis://builds@127.0.0.1:{server.port}/seats"
        log = tmp_path / "order.log"
        holder = start_holder(
            procs,
            scripts,
            ["--semaphore", url + "=1"],
            log=log,
            tag="h.0",
            control=tmp_path / "h",
            cwd=tmp_path,
            env=env,
        )
        # A waiter alone and one under a coordinator: every call either makes (wake lists, the hub's too).
        alone = procs.start_fi_run(
            ["--semaphore", url + "=1", "--", "sh", scripts.step, log, "a.1", "0"],
            cwd=tmp_path,
            env=env,
        )
        wait_until(partial(in_line, server, "seats", 1), "a.1 in line")
        build = Build(tmp_path, "b", procs, scripts)
        build.edge("b.2", ["--semaphore", url + "=1"], f"sh {scripts.step} {log} b.2 0")
        build.start(jobs=2, env=env)
        wait_until(partial(in_line, server, "seats", 2), "b.2 in line")
        holder.release()
        assert [finish(holder.proc), finish(alone), build.finish()[0]] == [0, 0, 0]
        assert analyse(read_log(log)).entered == ["h.0", "a.1", "b.2"]
    finally:
        server.stop()


def test_a_read_only_replica_is_exit_69_naming_what_the_server_said(
    tmp_path: Path, server: RedisServer
) -> None:
    replica = RedisServer(tmp_path / "replica", replica_of=server.port).start()
    try:
        done = run(
            fi_run("--lock", replica.url("x"), "--", "true"),
            cwd=tmp_path,
            env={**os.environ, **redis_environ()},
        )
        assert (done.status, done.out) == (EXIT_UNAVAILABLE, "")
        line = only_fi_run_line(done.err)
        assert f"the Redis server at 127.0.0.1:{replica.port}" in line
        assert "cannot serve the lock: READONLY" in line
    finally:
        replica.stop()
