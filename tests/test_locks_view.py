"""`fi-run locks` (issue 18, item 4): who holds each resource and who waits, in the order they will be served.

Real fi_run processes hold and wait on real locks in a lock directory of the test's own; real ninja runs
real steps under real `fi-run jobserver` with its coordinator. Every listing is checked against what then
happens: the test releases the holders and reads the order in which the waiters enter the resource from
the enter/exit log (fi_run_testing.analyse). Nothing is timed: each wait is for a state the test can see.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import test_coordinator
from fi_run_testing import (
    HANG_TIMEOUT,
    Holder,
    Procs,
    Scripts,
    analyse,
    base_environ,
    console_script,
    finish,
    process_gone,
    read_log,
    run,
    start_holder,
    wait_until,
    write_scripts,
)

from fi_run.cli import OPTIONS
from fi_run.contention import coordinator, doorbell, locks
from fi_run.contention.lockdir import default_lock_dir, describe_modes, resource_dir_name
from fi_run.observe import lockview
from fi_run.tools import locks as locks_tool

assert sys.platform != "win32"  # POSIX only: conftest.POSIX_ONLY keeps it from being collected on Windows

if TYPE_CHECKING:
    import subprocess
    from collections.abc import Callable, Sequence

Json = dict[str, Any]


@pytest.fixture
def scripts(tmp_path: Path) -> Scripts:
    return write_scripts(tmp_path / "scripts")


@pytest.fixture
def lock_dir(tmp_path: Path) -> Path:
    return tmp_path / "locks"


@pytest.fixture
def resource(tmp_path: Path) -> Path:
    res = tmp_path / "venv"
    res.mkdir()
    return res


def view(lock_dir: Path | None, *, env: dict[str, str | None] | None = None, cwd: Path | None = None) -> Json:
    """`fi-run locks --json` (--lock-dir LOCK_DIR unless None): it must succeed and say nothing else."""
    argv: list[str | os.PathLike[str]] = [console_script(), "locks", "--json"]
    if lock_dir is not None:
        argv += ["--lock-dir", lock_dir]
    done = run(argv, cwd=cwd or Path.cwd(), env=base_environ(env))
    assert (done.status, done.err) == (0, ""), done
    found = json.loads(done.out)
    assert isinstance(found, dict)
    return found


def the_resource(seen: Json, resource: Path) -> Json:
    found: list[Json] = [r for r in seen["resources"] if r["resource"] == os.path.realpath(resource)]
    assert len(found) == 1, seen
    return found[0]


def tag(command: str) -> str:
    """The tag of a step.sh or hold.sh command (`sh SCRIPT LOG TAG ...`)."""
    return command.split()[3]


def tags(entries: list[Json]) -> list[str]:
    return [tag(entry["command"]) for entry in entries]


def modes(entry: Json) -> list[tuple[str, int | None, int | None]] | None:
    """An entry's modes as (mode, slots, weight)."""
    return None if entry["modes"] is None else [(m["mode"], m["slots"], m["weight"]) for m in entry["modes"]]


def in_line(
    lock_dir: Path, proc: subprocess.Popen[bytes], kinds: Sequence[str] = ("gate",)
) -> Callable[[], bool]:
    """Has fi_run process ``proc`` put itself in a resource's line, as a waiter of one of ``kinds``?"""

    def check() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"pid {proc.pid} ended (status {proc.returncode}) before it waited")
        return any(
            entry.name.split("-")[1] == str(proc.pid) and entry.suffix[1:] in kinds
            for entry in lock_dir.glob("*/waiters/*")
        )

    return check


class Steps:
    """Plain fi_run steps around step.sh and hold.sh, on one resource, in one lock directory."""

    def __init__(
        self, tmp_path: Path, scripts: Scripts, lock_dir: Path, resource: Path, procs: Procs
    ) -> None:
        self.tmp_path = tmp_path
        self.scripts = scripts
        self.lock_dir = lock_dir
        self.resource = resource
        self.procs = procs
        self.log = tmp_path / "order.log"
        self.started: list[subprocess.Popen[bytes]] = []

    def options(self, mode: str | Sequence[str]) -> list[str | os.PathLike[str]]:
        """The options of a step in ``mode`` (exclusive, shared, counted: one seat of one), or ``mode``."""
        if not isinstance(mode, str):
            return ["--lock-dir", self.lock_dir, *mode]
        flag, value = {
            "exclusive": ("--lock", os.fspath(self.resource)),
            "shared": ("--shared-lock", os.fspath(self.resource)),
            "counted": ("--semaphore", f"{self.resource}=1"),
        }[mode]
        return ["--lock-dir", self.lock_dir, flag, value]

    def hold(self, tag: str, mode: str | Sequence[str]) -> Holder:
        return start_holder(
            self.procs, self.scripts, self.options(mode), log=self.log, tag=tag,
            control=self.tmp_path / "ctl" / tag, cwd=self.tmp_path,
        )  # fmt: skip

    def wait(
        self,
        tag: str,
        mode: str | Sequence[str],
        kinds: Sequence[str] = ("gate",),
        env: dict[str, str | None] | None = None,
    ) -> subprocess.Popen[bytes]:
        """A step that queues for the resource; returns once it stands in the line (as one of ``kinds``)."""
        proc = self.procs.start_fi_run(
            [*self.options(mode), "--", "sh", self.scripts.step, self.log, tag, "0"],
            cwd=self.tmp_path,
            env=env,
        )
        wait_until(in_line(self.lock_dir, proc, kinds), f"{tag} to queue")
        self.started.append(proc)
        return proc

    def finish(self, *holders: Holder) -> list[str]:
        """Release the holders, wait for every step, and return the order they entered the resource in."""
        for holder in holders:
            holder.release()
        for proc in [*(h.proc for h in holders), *self.started]:
            assert finish(proc) == 0
        result = analyse(read_log(self.log), exclusive_kinds={"w", "h"})
        assert result.violations == []
        assert result.unfinished == []
        return result.entered


@pytest.fixture
def steps(tmp_path: Path, scripts: Scripts, lock_dir: Path, resource: Path, procs: Procs) -> Steps:
    return Steps(tmp_path, scripts, lock_dir, resource, procs)


# --- plain fi_run processes


def test_an_exclusive_holder_and_its_waiters_are_listed_in_the_order_the_grants_then_happen(
    steps: Steps, resource: Path
) -> None:
    holder = steps.hold("h.0", "exclusive")
    line = [("w.1", "exclusive"), ("r.2", "shared"), ("w.3", "exclusive"), ("c.4", "counted")]
    line += [("w.5", "exclusive"), ("r.6", "shared")]
    pids = {name: steps.wait(name, mode).pid for name, mode in line}
    seen = the_resource(view(steps.lock_dir), resource)
    assert seen["directory"] == resource_dir_name(os.path.realpath(resource))
    [held] = seen["holders"]
    assert (held["pid"], held["command"], held["files"], held["how"], held["build"], held["state"]) == (
        holder.proc.pid, " ".join(holder.command), ["gate.lock"], "kernel", None, "holds",
    )  # fmt: skip
    assert modes(held) == [("exclusive", 1, 1)]
    assert held["seconds"] >= 0
    waiters = seen["waiters"]
    assert [w["position"] for w in waiters] == [1, 2, 3, 4, 5, 6]
    assert [(tag(w["command"]), w["pid"]) for w in waiters] == [(name, pids[name]) for name, _ in line]
    assert [modes(w) for w in waiters] == [
        [("exclusive", 1, 1)], [("shared", 1, 1)], [("exclusive", 1, 1)], [("semaphore", 1, 1)],
        [("exclusive", 1, 1)], [("shared", 1, 1)],
    ]  # fmt: skip
    assert {(w["kind"], w["state"], w["build"]) for w in waiters} == {("gate", "waits", None)}
    assert all(w["seconds"] >= 0 for w in waiters)
    # Each reader and counted step sits between two writers: the order they enter in is the grants' order.
    assert steps.finish(holder) == ["h.0", *tags(waiters)]


def test_shared_and_counted_holders_a_counted_waiter_for_a_slot_and_a_writer_behind_it(
    steps: Steps, resource: Path
) -> None:
    readers = [steps.hold("r.1", "shared"), steps.hold("r.2", "shared")]
    counted = steps.hold("c.1", "counted")
    steps.wait("c.2", "counted", kinds=("slot",))  # the gate is free, the one slot is not
    steps.wait("w.3", "exclusive")  # in line behind c.2 (issue 22)
    seen = the_resource(view(steps.lock_dir), resource)
    holders = {tag(h["command"]): h for h in seen["holders"]}
    assert sorted(holders) == ["c.1", "r.1", "r.2"]
    assert [holders[t]["pid"] for t in ("r.1", "r.2", "c.1")] == [h.proc.pid for h in (*readers, counted)]
    assert modes(holders["r.1"]) == modes(holders["r.2"]) == [("shared", 1, 1)]
    assert modes(holders["c.1"]) == [("semaphore", 1, 1)]
    assert holders["c.1"]["files"] == ["sem-0.lock"]
    assert sorted(holders["r.1"]["files"] + holders["r.2"]["files"]) == ["shared-0.lock", "shared-1.lock"]
    assert [(tag(w["command"]), w["kind"], w["position"]) for w in seen["waiters"]] == [
        ("c.2", "slot", 1), ("w.3", "gate", 2),
    ]  # fmt: skip
    assert steps.finish(*readers, counted)[3:] == ["c.2", "w.3"]


def test_a_writer_draining_the_readers_comes_first_and_is_not_listed_as_a_holder(
    steps: Steps, resource: Path
) -> None:
    reader = steps.hold("r.1", "shared")
    writer = steps.wait("w.2", "exclusive", kinds=("drain",))  # it has the gate, and waits for r.1 to leave
    steps.wait("r.3", "shared")
    seen = the_resource(view(steps.lock_dir), resource)
    assert [(h["pid"], modes(h)) for h in seen["holders"]] == [(reader.proc.pid, [("shared", 1, 1)])]
    first = seen["waiters"][0]
    assert (first["pid"], first["kind"], modes(first)) == (writer.pid, "drain", [("exclusive", 1, 1)])
    assert tags(seen["waiters"]) == ["w.2", "r.3"]
    assert steps.finish(reader) == ["r.1", "w.2", "r.3"]


def test_a_sigkilled_waiter_s_entry_and_an_entry_whose_port_is_closed_are_not_listed(
    steps: Steps, resource: Path
) -> None:
    holder = steps.hold("h.0", "exclusive")
    killed = steps.wait("w.1", "exclusive")
    steps.wait("w.2", "exclusive")
    steps.started.remove(killed)
    killed.send_signal(signal.SIGKILL)
    killed.wait(HANG_TIMEOUT)
    waiters = next(steps.lock_dir.glob("*/waiters"))
    assert [e for e in waiters.iterdir() if e.name.split("-")[1] == str(killed.pid)], "no stale entry left"
    # A live pid whose port is closed: a reused pid's entry. Older than every other entry.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (waiters / f"{1:020d}-{os.getpid()}-{port}.gate").touch()
    seen = the_resource(view(steps.lock_dir), resource)
    assert [(tag(w["command"]), w["position"]) for w in seen["waiters"]] == [("w.2", 1)]
    assert steps.finish(holder) == ["h.0", "w.2"]


def test_a_stopped_waiter_keeps_its_place_and_is_shown_stopped(steps: Steps, resource: Path) -> None:
    holder = steps.hold("h.0", "exclusive")
    stopped = steps.wait("w.1", "exclusive")
    steps.wait("w.2", "exclusive")
    os.kill(stopped.pid, signal.SIGSTOP)
    try:
        wait_until(lambda: lockview._stopped(stopped.pid), "w.1 to be stopped")
        seen = the_resource(view(steps.lock_dir), resource)
        assert [(tag(w["command"]), w["state"]) for w in seen["waiters"]] == [
            ("w.1", "stopped"),
            ("w.2", "waits"),
        ]
    finally:
        os.kill(stopped.pid, signal.SIGCONT)
    assert steps.finish(holder) == ["h.0", "w.1", "w.2"]


def test_a_weighted_semaphore_holder_and_waiter_are_shown_k_of_n_and_served_in_order(
    steps: Steps, resource: Path
) -> None:
    """--semaphore R=4:K (issue 19): c.0 holds 3 of the 4 seats; c.1 asks for 2 and waits for a slot (one free
    seat is not enough); w.2 queues behind it."""
    holder = steps.hold("c.0", ["--semaphore", f"{resource}=4:3"])
    waiter = steps.wait("c.1", ["--semaphore", f"{resource}=4:2"], kinds=("slot",))
    steps.wait("w.2", "exclusive")
    seen = the_resource(view(steps.lock_dir), resource)
    [held] = seen["holders"]
    assert (held["pid"], held["files"], modes(held)) == (
        holder.proc.pid, ["sem-0.lock", "sem-1.lock", "sem-2.lock"], [("semaphore", 4, 3)],
    )  # fmt: skip
    assert [(tag(w["command"]), w["kind"], w["position"], modes(w)) for w in seen["waiters"]] == [
        ("c.1", "slot", 1, [("semaphore", 4, 2)]), ("w.2", "gate", 2, [("exclusive", 1, 1)]),
    ]  # fmt: skip
    argv: list[str | os.PathLike[str]] = [console_script(), "locks", "--lock-dir", steps.lock_dir]
    terminal = run(argv, cwd=steps.tmp_path, env=base_environ({"NO_COLOR": "1"}))
    assert re.search(rf"\n {{6}}pid {holder.proc.pid}  semaphore \(3 of 4\)  ", terminal.out), terminal.out
    assert re.search(rf"\n  1\.  pid {waiter.pid}  semaphore \(2 of 4\)  for a slot ", terminal.out), (
        terminal.out
    )
    assert steps.finish(holder) == ["c.0", "c.1", "w.2"]


def test_a_mem_holder_and_waiter_are_shown_with_their_seats_of_the_memory_budget(steps: Steps) -> None:
    """--mem (issue 19): the resource is the memory budget, memory://SCOPE, in 128 seats; m.0 takes 100 of
    a 128M budget (its --mem-limit), m.1 50 (its FI_RUN_MEM_LIMIT) and waits for them."""
    from fi_run.memory import MEMORY_SEATS, memory_claim

    budget = memory_claim(1, 128 << 20).resource  # the budget the steps see, in this process's cgroup
    holder = steps.hold("m.0", ["--mem-limit", "128M", "--mem", "100M"])
    waiter = steps.wait("m.1", ["--mem", "50M"], kinds=("slot",), env={"FI_RUN_MEM_LIMIT": "128M"})
    [found] = view(steps.lock_dir)["resources"]
    assert (found["resource"], found["directory"]) == (budget, resource_dir_name(budget))
    [held] = found["holders"]
    assert (held["pid"], len(held["files"]), modes(held)) == (holder.proc.pid, 100, [("semaphore", 128, 100)])
    [waits] = found["waiters"]
    assert (waits["pid"], waits["kind"], waits["position"], modes(waits)) == (
        waiter.pid, "slot", 1, [("semaphore", MEMORY_SEATS, 50)],
    )  # fmt: skip
    argv: list[str | os.PathLike[str]] = [console_script(), "locks", "--lock-dir", steps.lock_dir]
    lines = run(argv, cwd=steps.tmp_path, env=base_environ({"NO_COLOR": "1"})).out.splitlines()
    assert lines[1:4] == [
        "", budget, "  (the memory budget --mem steps share, 128 seats: each takes its peak's share)",
    ]  # fmt: skip
    assert re.fullmatch(
        rf" {{6}}pid {holder.proc.pid}  memory \(100 of 128 seats\) +\d+\.\d s  sh .*", lines[5]
    ), lines
    assert re.fullmatch(rf"  1\.  pid {waiter.pid}  memory \(50 of 128 seats\) +for a slot .*", lines[7]), (
        lines
    )
    assert steps.finish(holder) == ["m.0", "m.1"]


# --- builds under fi-run jobserver: the coordinator's line in its place


def registered(build: test_coordinator.Build) -> int:
    """The pid of the build's coordinator, as it registered itself in the lock directory."""
    directory = build.locks / coordinator.COORDINATORS
    wait_until(lambda: directory.is_dir() and any(directory.iterdir()), "the coordinator to register")
    [entry] = list(directory.iterdir())
    assert build.proc is not None
    assert int(entry.name) == build.proc.pid
    return build.proc.pid


def queued_in_line(build: test_coordinator.Build, jobserver: int) -> None:
    """Wait until the build's coordinator stands in the lock directory's line (its claim for a step)."""
    wait_until(
        lambda: any(e.name.split("-")[1] == str(jobserver) for e in build.locks.glob("*/waiters/*")),
        "the coordinator to queue in the lock directory",
    )


def outside(
    build: test_coordinator.Build,
    tag: str,
    procs: Procs,
    resource: Path,
    options: Sequence[str | os.PathLike[str]] = (),
    kinds: Sequence[str] = ("gate",),
) -> subprocess.Popen[bytes]:
    """A plain fi_run outside the build, queued for ``resource`` (--lock; or asking ``options``) as one of
    ``kinds``."""
    asks = list(options) or ["--lock", resource]
    proc = procs.start(
        [console_script(), "--lock-dir", build.locks, *asks, "--", "sh", build.scripts.step, build.log, tag,
         "0"],
        cwd=build.dir,
    )  # fmt: skip
    wait_until(in_line(build.locks, proc, kinds), f"{tag} to queue in the lock directory")
    return proc


def outside_holder(build: test_coordinator.Build, procs: Procs, resource: Path) -> Holder:
    return start_holder(
        procs, write_scripts(build.dir / "outside"), ["--lock-dir", build.locks, "--lock", resource],
        log=build.log, tag="h.0", control=build.dir / "outside" / "ctl", cwd=build.dir,
    )  # fmt: skip


def test_a_build_in_the_line_is_served_at_its_place_and_its_step_that_came_later_after_the_outsider(
    tmp_path: Path, procs: Procs, resource: Path
) -> None:
    """The coordinator queues for b.1 before o.2 arrives: the claim it wins at its place serves b.1. b.3 came
    after o.2, who still waits: the build lets the lock go and queues again behind o.2 (coordinator._pump).
    One line, in the order they came: b.1, o.2, b.3."""
    build = test_coordinator.Build(tmp_path, procs)
    holder = outside_holder(build, procs, resource)
    build.step("b.1", "--lock", resource)
    build.step("b.3", "--lock", resource, before=build.when("o.2 queued"))
    build.start()
    build.waiting("b.1")
    jobserver = registered(build)
    queued_in_line(build, jobserver)
    late = outside(build, "o.2", procs, resource)
    build.signal("o.2 queued")
    build.waiting("b.1", "b.3")
    seen = view(build.locks)
    assert [(c["pid"], c["state"]) for c in seen["coordinators"]] == [(jobserver, "answered")]
    found = the_resource(seen, resource)
    assert [(h["pid"], h["build"]) for h in found["holders"]] == [(holder.proc.pid, None)]
    assert [
        (tag(w["command"]), w["pid"], w["build"], w["kind"], w["position"]) for w in found["waiters"]
    ] == [
        ("b.1", build.pid("b.1"), jobserver, "gate", 1),
        ("o.2", late.pid, None, "gate", 2),
        ("b.3", build.pid("b.3"), jobserver, "build", 3),
    ]
    assert modes(found["waiters"][0]) == modes(found["waiters"][2]) == [("exclusive", 1, 1)]
    holder.release()
    status, out = build.finish()
    assert status == 0, out
    assert finish(late) == 0
    result = analyse(read_log(build.log), exclusive_kinds={"h", "b", "o"})
    assert result.violations == []
    assert result.entered == ["h.0", *tags(found["waiters"])]


def test_a_build_holding_the_resource_shows_its_holder_and_serves_its_step_that_came_before_an_outsider(
    tmp_path: Path, procs: Procs, resource: Path
) -> None:
    """b.2 waits in the build's line, behind b.1, before o.3 comes: once b.1 is done the build hands the lock
    to b.2 without a trip through the lock directory (nobody outside came before b.2), then lets it go."""
    build = test_coordinator.Build(tmp_path, procs)
    build.hold("b.1", "--lock", resource)
    build.step("b.2", "--lock", resource, before=build.after("b.1"))
    build.start()
    build.ready("b.1")
    build.waiting("b.2")
    jobserver = registered(build)
    late = outside(build, "o.3", procs, resource)
    found = the_resource(view(build.locks), resource)
    [held] = found["holders"]
    assert (held["pid"], tag(held["command"]), held["build"], held["how"], held["files"]) == (
        build.pid("b.1"), "b.1", jobserver, "coordinator", ["gate.lock"],
    )  # fmt: skip
    assert modes(held) == [("exclusive", 1, 1)]
    assert [(tag(w["command"]), w["build"], w["kind"]) for w in found["waiters"]] == [
        ("b.2", jobserver, "build"), ("o.3", None, "gate"),
    ]  # fmt: skip
    build.release("b.1")
    status, out = build.finish()
    assert status == 0, out
    assert finish(late) == 0
    result = analyse(read_log(build.log), exclusive_kinds={"b", "o"})
    assert result.violations == []
    assert result.entered == ["b.1", *tags(found["waiters"])]


def test_a_build_s_writer_after_its_reader_needs_a_claim_of_its_own_and_goes_behind_the_outsider(
    tmp_path: Path, procs: Procs, resource: Path
) -> None:
    """The coordinator waits in the line with a shared claim for b.1; b.2, a writer, queues in the build after
    it, and o.3 outside after that. b.2 cannot go under the build's shared slot: once b.1 is done the
    coordinator queues again for the exclusive lock, behind o.3, although b.2 came first: b.1, o.3, b.2."""
    build = test_coordinator.Build(tmp_path, procs)
    holder = outside_holder(build, procs, resource)
    build.step("b.1", "--shared-lock", resource)
    build.step("b.2", "--lock", resource, before=build.when("b.1 queued"))
    build.start()
    build.waiting("b.1")
    build.signal("b.1 queued")
    build.waiting("b.1", "b.2")
    jobserver = registered(build)
    queued_in_line(build, jobserver)
    late = outside(build, "o.3", procs, resource)
    found = the_resource(view(build.locks), resource)
    assert [(tag(w["command"]), w["build"], w["kind"], modes(w)) for w in found["waiters"]] == [
        ("b.1", jobserver, "gate", [("shared", 1, 1)]),
        ("o.3", None, "gate", [("exclusive", 1, 1)]),
        ("b.2", jobserver, "build", [("exclusive", 1, 1)]),
    ]
    holder.release()
    status, out = build.finish()
    assert status == 0, out
    assert finish(late) == 0
    result = analyse(read_log(build.log), exclusive_kinds={"h", "o"})
    assert result.violations == []
    assert result.entered == ["h.0", *tags(found["waiters"])]


def test_a_build_s_weighted_step_that_came_before_a_draining_writer_is_served_first(
    tmp_path: Path, procs: Procs, resource: Path
) -> None:
    """b.1 holds 3 of the 4 seats; b.2 asks for 2 and waits in the build's line (3 + 2 > 4); then o.3, a
    writer outside, takes the gate and waits for the build's seats to drain. Once b.1 is done the build hands
    2 of its 3 seats to b.2 (o.3 came after it), then lets them go: b.1, b.2, o.3."""
    build = test_coordinator.Build(tmp_path, procs)
    build.hold("b.1", "--semaphore", f"{resource}=4:3")
    build.step("b.2", "--semaphore", f"{resource}=4:2", before=build.after("b.1"))
    build.start()
    build.ready("b.1")
    build.waiting("b.2")
    jobserver = registered(build)
    writer = outside(build, "o.3", procs, resource, kinds=("drain",))
    found = the_resource(view(build.locks), resource)
    [held] = found["holders"]
    assert (tag(held["command"]), held["build"], held["how"], held["files"], modes(held)) == (
        "b.1", jobserver, "coordinator", ["sem-0.lock", "sem-1.lock", "sem-2.lock"], [("semaphore", 4, 3)],
    )  # fmt: skip
    assert [(tag(w["command"]), w["build"], w["kind"], modes(w)) for w in found["waiters"]] == [
        ("b.2", jobserver, "build", [("semaphore", 4, 2)]), ("o.3", None, "drain", [("exclusive", 1, 1)]),
    ]  # fmt: skip
    build.release("b.1")
    status, out = build.finish()
    assert status == 0, out
    assert finish(writer) == 0
    result = analyse(read_log(build.log), exclusive_kinds={"o"})
    assert result.violations == []
    assert result.entered == ["b.1", *tags(found["waiters"])]


def test_a_build_s_mem_steps_are_shown_with_their_seats_and_served_in_the_order_they_came(
    tmp_path: Path, procs: Procs
) -> None:
    """--mem through the coordinator, a 128M budget: b.1 holds 100 seats, b.2 asks for 50 and waits in the
    build's line; o.3 outside asks for 100 later and waits for a slot. Once b.1 is done, b.2 goes first."""
    from fi_run.memory import memory_claim

    budget = memory_claim(1, 128 << 20).resource
    build = test_coordinator.Build(tmp_path, procs)
    build.hold("b.1", "--mem-limit", "128M", "--mem", "100M")
    build.step("b.2", "--mem-limit", "128M", "--mem", "50M", before=build.after("b.1"))
    build.start()
    build.ready("b.1")
    build.waiting("b.2")
    jobserver = registered(build)
    late = outside(build, "o.3", procs, tmp_path, ["--mem-limit", "128M", "--mem", "100M"], kinds=("slot",))
    [found] = view(build.locks)["resources"]
    assert found["resource"] == budget
    [held] = found["holders"]
    assert (tag(held["command"]), held["build"], len(held["files"]), modes(held)) == (
        "b.1", jobserver, 100, [("semaphore", 128, 100)],
    )  # fmt: skip
    assert [(tag(w["command"]), w["build"], w["kind"], modes(w)) for w in found["waiters"]] == [
        ("b.2", jobserver, "build", [("semaphore", 128, 50)]),
        ("o.3", None, "slot", [("semaphore", 128, 100)]),
    ]  # fmt: skip
    build.release("b.1")
    status, out = build.finish()
    assert status == 0, out
    assert finish(late) == 0
    result = analyse(read_log(build.log), exclusive_kinds=set())
    assert result.entered == ["b.1", *tags(found["waiters"])]


def test_a_dead_coordinator_is_reported_and_ignored_and_its_step_holds_through_its_descriptor(
    tmp_path: Path, procs: Procs, resource: Path
) -> None:
    build = test_coordinator.Build(tmp_path, procs)
    build.hold("b.1", "--lock", resource)
    build.start()
    build.ready("b.1")
    jobserver = registered(build)
    assert build.proc is not None
    os.kill(jobserver, signal.SIGKILL)  # the coordinator with it; b.1's command keeps the gate it was given
    build.proc.wait(HANG_TIMEOUT)
    seen = view(build.locks)
    [dead] = seen["coordinators"]
    assert (dead["pid"], dead["state"]) == (jobserver, "gone")
    assert "ignored" in dead["detail"]
    [held] = the_resource(seen, resource)["holders"]
    assert (held["pid"], tag(held["command"]), held["how"], held["build"]) == (
        build.pid("b.1"), "b.1", "descriptor", None,
    )  # fmt: skip
    terminal = run([console_script(), "locks", "--lock-dir", build.locks], cwd=tmp_path)
    assert terminal.status == 0
    assert f"build coordinator pid {jobserver}: pid {jobserver} is not running" in terminal.out
    build.release("b.1")
    wait_until(lambda: process_gone(build.pid("b.1")), "b.1 to end")


def test_a_coordinator_that_does_not_answer_is_reported_and_not_waited_for(
    tmp_path: Path, procs: Procs, resource: Path
) -> None:
    build = test_coordinator.Build(tmp_path, procs)
    build.hold("b.1", "--lock", resource)
    build.start()
    build.ready("b.1")
    jobserver = registered(build)
    os.kill(jobserver, signal.SIGSTOP)
    try:
        seen = view(build.locks)
    finally:
        os.kill(jobserver, signal.SIGCONT)
    [silent] = seen["coordinators"]
    assert (silent["pid"], silent["state"]) == (jobserver, "no answer")
    assert silent["detail"] == f"it did not answer within {lockview.COORDINATOR_BOUND:g} s: ignored"
    [held] = the_resource(seen, resource)["holders"]  # the kernel's answer: the coordinator holds it
    assert (held["pid"], held["build"], held["how"]) == (jobserver, jobserver, "kernel")
    build.release("b.1")
    status, out = build.finish()
    assert status == 0, out


# --- the document, the terminal view, the lock directory


def test_the_json_document_has_the_documented_keys_at_every_level(
    steps: Steps, resource: Path, tmp_path: Path
) -> None:
    holder = steps.hold("h.0", "exclusive")
    steps.wait("w.1", "exclusive")
    gone = run([sys.executable, "-c", "import os; print(os.getpid())"], cwd=tmp_path)
    registrations = steps.lock_dir / "coordinators"
    registrations.mkdir()
    (registrations / gone.out.strip()).write_text(os.fspath(tmp_path / "gone.sock"))
    seen = view(steps.lock_dir)
    assert list(seen) == list(lockview.JSON_KEYS)
    assert seen["locks_version"] == lockview.LOCKS_VERSION
    assert (seen["lock_dir"], seen["exists"]) == (os.fspath(steps.lock_dir), True)
    [dead] = seen["coordinators"]
    assert list(dead) == list(lockview.COORDINATOR_KEYS)
    assert (dead["pid"], dead["state"]) == (int(gone.out), "gone")
    [found] = seen["resources"]
    assert list(found) == list(lockview.RESOURCE_KEYS)
    assert (found["resource"], found["problem"]) == (os.path.realpath(resource), None)
    assert [list(h) for h in found["holders"]] == [list(lockview.HOLDER_KEYS)]
    assert [list(w) for w in found["waiters"]] == [list(lockview.WAITER_KEYS)]
    assert [list(m) for m in found["waiters"][0]["modes"]] == [list(lockview.MODE_KEYS)]
    assert steps.finish(holder) == ["h.0", "w.1"]


def test_the_terminal_view_numbers_the_waiters_and_colours_like_report(steps: Steps, resource: Path) -> None:
    holder = steps.hold("h.0", "exclusive")
    first = steps.wait("w.1", "exclusive")
    second = steps.wait("r.2", "shared")
    argv: list[str | os.PathLike[str]] = [console_script(), "locks", "--lock-dir", steps.lock_dir]
    plain = run(argv, cwd=steps.tmp_path, env=base_environ({"NO_COLOR": "1"}))
    assert (plain.status, plain.err) == (0, "")
    lines = plain.out.splitlines()
    assert lines[0] == f"fi_run locks  {steps.lock_dir}: 1 held or waited for"
    assert lines[1:4] == ["", os.path.realpath(resource), "  held by"]
    # Columns: place, pid, lock, where it waits, how long, the command (cut to 120 columns off a terminal).
    assert re.fullmatch(rf" {{6}}pid {holder.proc.pid} +exclusive +\d+\.\d s  sh /.*", lines[4])
    assert lines[5] == "  waiting, in the order they will be served"
    assert re.fullmatch(rf"  1\.  pid {first.pid} +exclusive  at the gate +\d+\.\d s  sh /.*", lines[6])
    assert re.fullmatch(rf"  2\.  pid {second.pid} +shared {{5}}at the gate +\d+\.\d s  sh /.*", lines[7])
    assert len({line.index(" s  sh ") for line in (lines[4], *lines[6:])}) == 1, "the columns are not aligned"
    assert all(len(line) <= 120 for line in lines)
    assert len(lines) == 8
    assert "\x1b[" not in plain.out
    coloured = run(argv, cwd=steps.tmp_path, env=base_environ({"CLICOLOR_FORCE": "1"}))
    assert f"\x1b[36m{os.path.realpath(resource)}\x1b[0m" in coloured.out
    assert coloured.out.startswith("\x1b[1mfi_run locks\x1b[0m")
    assert steps.finish(holder) == ["h.0", "w.1", "r.2"]
    idle = run(argv, cwd=steps.tmp_path, env=base_environ({"NO_COLOR": "1"}))
    assert idle.out == f"fi_run locks  {steps.lock_dir}: nothing held, nobody waiting, 1 idle\n"


def test_a_directory_an_older_fi_run_made_is_shown_by_its_name(steps: Steps, resource: Path) -> None:
    holder = steps.hold("h.0", "exclusive")
    [directory] = steps.lock_dir.glob("venv-*")
    (directory / "resource").unlink()
    seen = view(steps.lock_dir)
    [found] = seen["resources"]
    assert (found["resource"], found["directory"]) == (None, directory.name)
    assert [h["pid"] for h in found["holders"]] == [holder.proc.pid]
    terminal = run([console_script(), "locks", "--lock-dir", steps.lock_dir], cwd=steps.tmp_path)
    assert (
        f"\n{directory.name}\n  (a directory without a resource file: made by an older fi_run)\n"
        in terminal.out
    )
    assert steps.finish(holder) == ["h.0"]


def test_a_lock_directory_that_does_not_exist_yet_locks_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "not" / "yet"
    assert view(missing) == {
        "locks_version": lockview.LOCKS_VERSION, "lock_dir": os.fspath(missing), "exists": False,
        "coordinators": [], "resources": [], "remote": [],
    }  # fmt: skip
    done = run([console_script(), "locks", "--lock-dir", missing], cwd=tmp_path)
    assert done == (0, f"fi_run locks  {missing}: does not exist yet, so nothing is locked\n", "")
    assert not missing.exists()


def test_the_lock_directory_is_the_steps_one_the_option_wins_over_the_variable(tmp_path: Path) -> None:
    from_env, from_option = tmp_path / "env", tmp_path / "option"
    assert view(None, env={"FI_RUN_LOCK_DIR": os.fspath(from_env)})["lock_dir"] == os.fspath(from_env)
    assert view(from_option, env={"FI_RUN_LOCK_DIR": os.fspath(from_env)})["lock_dir"] == os.fspath(
        from_option
    )
    assert view(Path("rel"), cwd=tmp_path)["lock_dir"] == os.fspath(tmp_path / "rel")
    default = default_lock_dir(windows=False, environ=os.environ)
    assert view(None, env={"FI_RUN_LOCK_DIR": ""})["lock_dir"] == default
    assert view(None)["lock_dir"] == default
    [variable] = [o.env for o in OPTIONS if "--lock-dir" in o.flags]
    assert variable == locks_tool.LOCK_DIR_VARIABLE


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bogus"], "locks: unrecognized arguments: --bogus (see fi_run locks --help)"),
        (["extra"], "locks: unrecognized arguments: extra (see fi_run locks --help)"),
        (["--lock-dir"], "locks: argument --lock-dir: expected one argument (see fi_run locks --help)"),
        (["--lock-dir", ""], "locks: --lock-dir expects a path, got '' (see fi_run locks --help)"),
    ],
)
def test_a_bad_option_is_one_line_and_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    done = run([console_script(), "locks", *args], cwd=tmp_path)
    assert done == (2, "", f"fi_run: {message}\n")


def test_an_unreadable_lock_directory_is_one_line_and_exit_2(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    done = run([console_script(), "locks", "--lock-dir", not_a_dir], cwd=tmp_path)
    expected = f"fi_run: locks: cannot read lock directory {os.fspath(not_a_dir)!r}: Not a directory"
    assert done == (2, "", f"{expected}; set --lock-dir\n")
    if os.geteuid() == 0:
        return  # root reads a directory whatever its mode
    closed = tmp_path / "closed"
    closed.mkdir(mode=0)
    try:
        done = run([console_script(), "locks", "--lock-dir", closed], cwd=tmp_path)
    finally:
        closed.chmod(0o700)
    expected = f"fi_run: locks: cannot read lock directory {os.fspath(closed)!r}: Permission denied"
    assert done == (2, "", f"{expected}; set --lock-dir\n")


def test_help_names_the_options_and_every_json_key(tmp_path: Path) -> None:
    done = run([console_script(), "locks", "--help"], cwd=tmp_path)
    assert done.status == 0
    assert done.out.startswith("usage: fi_run locks [-h] [--lock-dir DIR] [--redis URL] [--json]\n")
    for key, meaning in lockview.JSON_KEYS.items():
        assert f"  {key}: {meaning}" in done.out


# --- what the view reads, as the protocol writes it


def test_the_view_spells_the_lock_directory_s_names_as_the_protocol_does() -> None:
    assert lockview.COORDINATORS == coordinator.COORDINATORS
    assert lockview.WAITERS == locks._WAITERS
    assert lockview.GATE == locks._GATE
    assert lockview._HOLDER_SIZE == locks._HOLDER_SIZE


def test_a_holder_record_reads_back_as_written(tmp_path: Path) -> None:
    lock = tmp_path / "gate.lock"
    locks.write_holder(os.fspath(lock), locks.holder_record(4321, "sh step.sh log w.1 0"), 0o600)
    record = lockview._record(os.fspath(lock))
    assert record is not None
    assert record[:2] == (4321, "sh step.sh log w.1 0")
    assert abs(record[2] - time.time()) < HANG_TIMEOUT


@pytest.mark.parametrize(
    ("canonical", "asked"),
    [
        ("/a/venv's dir", (("exclusive", 1, 1),)),
        ("/a/venv's dir", (("shared", 1, 1),)),
        ("/a/venv's dir", (("semaphore", 3, 1),)),
        ("/a/venv's dir", (("semaphore", 8, 3),)),
        ("/a/venv's dir", (("semaphore", 2, 1), ("shared", 1, 1))),
        ("/a/venv's dir", (("semaphore", 4, 4), ("shared", 1, 1))),
        ("memory://machine", (("semaphore", 128, 1),)),
        ("memory:///build.slice", (("semaphore", 128, 37),)),
    ],
)
def test_a_coordinator_s_description_reads_back_as_the_modes_asked(
    canonical: str, asked: tuple[tuple[str, int, int], ...]
) -> None:
    assert lockview._modes_of(describe_modes(canonical, asked), canonical) == asked


@pytest.mark.parametrize(
    "what",
    [
        "something else on '/a'",
        "an exclusive lock on '/b'",
        "x semaphore slots (of 8) on '/a'",
        "3 semaphore slots (of y) on '/a'",
        "a semaphore slot (of ) on '/a'",
        "an exclusive lock and a bogus on '/a'",
        "3 of the 128 seats of the memory budget '/a'",
        "an exclusive lock",
    ],
)
def test_a_description_that_is_not_one_reads_as_not_known(what: str) -> None:
    assert lockview._modes_of(what, "/a") is None
    assert lockview._modes_of("x of the 128 seats of the memory budget 'memory://m'", "memory://m") is None


def test_the_view_spells_the_memory_budget_as_memory_py_does() -> None:
    from fi_run import memory

    assert lockview.MEMORY_SCHEME == memory.MEMORY_SCHEME
    assert lockview.MEMORY_SEATS == memory.MEMORY_SEATS


def test_a_waiter_entry_s_name_parses_as_the_doorbell_writes_it() -> None:
    assert doorbell.parse_entry("00000000000000001234-56-7890.drain") == (1234, 56, 7890, "drain")
    assert doorbell.parse_entry("junk.gate") is None


def test_the_locks_a_fi_run_command_line_asks_for_are_read_as_fi_run_reads_them() -> None:
    from fi_run.cli import lock_requests
    from fi_run.records import LockRequest

    argv = [
        "/usr/bin/python3",
        "-m",
        "fi_run",
        "-v",
        "--lock-dir",
        "--lock",
        "--lock=a",
        "--shared-lock",
        "b",
    ]
    argv += ["--semaphore", "c=2", "--semaphore", "d=8:3", "--semaphore", "e=2:3", "--semaphore", "bad"]
    argv += ["--stamp", "--lock", "--", "--lock", "x"]
    assert lock_requests(argv) == [
        LockRequest("a", "exclusive"), LockRequest("b", "shared"), LockRequest("c", "semaphore", 2),
        LockRequest("d", "semaphore", 8, 3),
    ]  # fmt: skip
    assert lock_requests(["sh", "hold.sh", "--lock"]) == []


def test_a_fi_run_command_line_s_mem_is_read_as_the_seats_execute_takes() -> None:
    from fi_run.cli import lock_requests
    from fi_run.memory import MEMORY_SEATS, memory_claim
    from fi_run.records import LockRequest

    budget = memory_claim(1, 128 << 20).resource  # the budget this process sees: memory://SCOPE
    argv = ["fi-run", "--mem", "10M", "--lock", "a", "--mem-limit=128M", "--", "--mem", "1G"]
    assert lock_requests(argv, {}) == [
        LockRequest("a", "exclusive"), LockRequest(budget, "semaphore", MEMORY_SEATS, 10),
    ]  # fmt: skip
    assert lock_requests(argv) == [LockRequest("a", "exclusive")]  # no environment: no --mem either
    # The budget from the process's environment, as parse() takes it; its command line wins.
    from_env = ["fi-run", "--mem", "10M", "--", "true"]
    env = {"FI_RUN_MEM_LIMIT": "64M"}
    assert lock_requests(from_env, env) == [LockRequest(budget, "semaphore", MEMORY_SEATS, 20)]
    assert lock_requests(["fi-run", "--mem-limit", "128M", *from_env[1:]], env)[0].weight == 10
    assert (
        lock_requests(["fi-run", "--mem", "2G", "--mem-limit", "1G", "--", "x"], {})[0].weight == MEMORY_SEATS
    )
    for bad in (["--mem", "lots"], ["--mem", "0"], ["--mem", "1M", "--mem-limit", "x"]):
        assert lock_requests(["fi-run", *bad, "--", "true"], {"FI_RUN_MEM_LIMIT": "bad"}) == []
