"""Per-resource locks (issue 3): --lock, --shared-lock, --semaphore, under real ninja, with real processes.

Every test has its own --lock-dir under tmp_path (one test checks the default directory). Figures
(steps, -j, concurrency, wall time) are printed for `pytest -s`; wall times are never asserted, except
that waiters proceed within a generous bound after a holder is SIGKILLed.
"""

from __future__ import annotations

import errno
import os
import pty
import select
import shutil
import signal
import stat
import subprocess
import sys
import time
from typing import TYPE_CHECKING, NamedTuple

import pytest
from fi_run_testing import (
    HANG_TIMEOUT,
    Analysis,
    Holder,
    LogError,
    Procs,
    Scripts,
    analyse,
    fi_run_argv,
    file_contains,
    finish,
    ninja_binary,
    open_paths_under,
    process_gone,
    read_log,
    redirected_output,
    run_fi_run,
    run_ninja,
    start_holder,
    tree_listing,
    wait_until,
    write_edges,
    write_scripts,
)

from fi_run.contention.lockdir import _probe, canonical_resource, resource_dir_name
from fi_run.contention.locks import plan_locks
from fi_run.errors import EXIT_TEMPFAIL, UsageError
from fi_run.records import LockRequest

assert sys.platform != "win32"  # POSIX only: conftest.POSIX_ONLY keeps it from being collected on Windows

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence
    from pathlib import Path

    # One step of an overlap build: (tag, fi_run's lock options, seconds step.sh stays inside the resource).
    Step = tuple[str, Sequence[str | os.PathLike[str]], str]


@pytest.fixture
def scripts(tmp_path: Path) -> Scripts:
    return write_scripts(tmp_path / "scripts")


@pytest.fixture
def holder(tmp_path: Path, scripts: Scripts, lock_dir: Path, resource: Path, procs: Procs) -> Holder:
    """A fi_run holding the exclusive lock on ``resource`` (as h.0 in tmp_path/order.log) until released."""
    return start_holder(
        procs, scripts, ["--lock-dir", lock_dir, "--lock", resource], log=tmp_path / "order.log", tag="h.0",
        control=tmp_path / "ctl", cwd=tmp_path,
    )  # fmt: skip


@pytest.fixture
def lock_dir(tmp_path: Path) -> Path:
    return tmp_path / "locks"


@pytest.fixture
def resource(tmp_path: Path) -> Path:
    """A shared resource with something in it: a stand-in for a venv."""
    res = tmp_path / "resource"
    res.mkdir()
    (res / "pyvenv.cfg").write_text("home = /usr/bin\n", encoding="utf-8")
    return res


def waiting_notice(canonical: Path | str, holder: Holder, mode: str = "an exclusive") -> str:
    """The line fi_run prints once when it has waited a while (fi_run.contention.locks.Acquirer._pause)."""
    return (
        f"fi_run: waiting for {mode} lock on {os.fspath(canonical)!r}, "
        f"held by pid {holder.proc.pid}: {' '.join(holder.command)}"
    )


# --- the overlap checker itself: it must be able to fail


def test_overlap_checker_reports_steps_that_overlap() -> None:
    log = "enter x.1 100\nenter x.2 150\nexit x.1 200\nexit x.2 250\n"
    result = analyse(log, exclusive_kinds={"x"})
    assert result.max_concurrency == 2
    assert result.violations == ["x.2 entered while x.1 inside"]
    assert result.unfinished == []


def test_overlap_checker_accepts_steps_one_after_another() -> None:
    log = "enter x.1 100\nexit x.1 200\nenter x.2 200\nexit x.2 250\n"
    result = analyse(log, exclusive_kinds={"x"})
    assert result.max_concurrency == 1
    assert result.violations == []
    assert result.entered == ["x.1", "x.2"]


def test_overlap_checker_counts_readers_and_flags_a_writer_among_them() -> None:
    log = "\n".join(
        [
            "enter r.1 1",
            "enter r.2 2",
            "enter r.3 3",
            "exit r.1 4",
            "enter w.1 5",  # r.2 and r.3 are still inside
            "exit w.1 6",
            "exit r.2 7",
            "exit r.3 8",
            "enter r.4 9",  # a reader entering while nobody is inside: fine
            "exit r.4 10",
        ]
    )
    result = analyse(log, exclusive_kinds={"w"})
    assert result.max_by_kind == {"r": 3, "w": 1}
    assert result.max_concurrency == 3
    assert result.violations == ["w.1 entered while r.2, r.3 inside"]


def test_overlap_checker_flags_a_reader_entering_while_a_writer_is_inside() -> None:
    log = "enter w.1 1\nenter r.1 2\nexit r.1 3\nexit w.1 4\n"
    assert analyse(log, exclusive_kinds={"w"}).violations == ["r.1 entered while w.1 inside"]


def test_overlap_checker_reports_unfinished_steps_and_rejects_malformed_logs() -> None:
    assert analyse("enter x.1 1\nenter y.1 2\nexit y.1 3\n").unfinished == ["x.1"]
    with pytest.raises(LogError, match=r"not 'enter\|exit TAG NS'"):
        analyse("enter x.1\n")
    with pytest.raises(LogError, match="exits but is not inside"):
        analyse("exit x.1 5\n")
    with pytest.raises(LogError, match="entered twice"):
        analyse("enter x.1 1\nexit x.1 2\nenter x.1 3\n")
    with pytest.raises(LogError, match="exits before it entered"):
        analyse("enter x.1 9\nexit x.1 2\n")


def test_step_scripts_record_a_real_overlap_that_the_checker_catches(
    tmp_path: Path, scripts: Scripts, procs: Procs
) -> None:
    """Without fi_run, a step run while another is inside shows up as an overlap in the real log."""
    log = tmp_path / "overlap.log"
    (tmp_path / "ctl").mkdir()
    inside = procs.start(["sh", scripts.hold, log, "x.1", tmp_path / "ctl"], cwd=tmp_path)
    wait_until((tmp_path / "ctl" / "ready").exists, "hold.sh to be inside")
    subprocess.run(["sh", scripts.step, log, "x.2", "0"], check=True, timeout=HANG_TIMEOUT)
    (tmp_path / "ctl" / "release").touch()
    assert finish(inside) == 0
    result = analyse(read_log(log), exclusive_kinds={"x"})
    assert result.max_concurrency == 2
    assert result.violations == ["x.2 entered while x.1 inside"]


# --- real ninja at high -j over one resource: the overlap build


class Overlap(NamedTuple):
    """What an overlap build came to."""

    steps: int  # the edges it had
    result: Analysis  # what its steps' enter/exit log shows
    stamps: list[str]  # the names in its stamps/ directory afterwards, sorted


def write_overlap_build(
    build: Path, scripts: Scripts, log: Path, lock_dir: Path, steps: Iterable[Step]
) -> int:
    """``build``/build.ninja with one edge per step, `fi_run --lock-dir LOCK_DIR LOCKS --stamp stamps/TAG --
    sh step.sh LOG TAG HOLD`: step.sh appends to LOG when it enters the resource and when it leaves.
    Returns how many edges."""
    edges: list[tuple[str, list[str | os.PathLike[str]]]] = []
    for tag, lock_args, hold in steps:
        stamp = f"stamps/{tag}"
        command: list[str | os.PathLike[str]] = ["sh", scripts.step, log, tag, hold]
        edges.append(
            (stamp, [*fi_run_argv(), "--lock-dir", lock_dir, *lock_args, "--stamp", stamp, "--", *command])
        )
    return write_edges(build, edges)


def overlap_build(
    tmp_path: Path,
    scripts: Scripts,
    lock_dir: Path,
    steps: Iterable[Step],
    *,
    jobs: int,
    exclusive_kinds: Iterable[str] = (),
) -> Overlap:
    """Write the overlap build in tmp_path/build (its log: tmp_path/overlap.log) and run ninja -jJOBS, which
    must succeed. A deadlock ends in run()'s hang guard, which kills the build."""
    build, log = tmp_path / "build", tmp_path / "overlap.log"
    count = write_overlap_build(build, scripts, log, lock_dir, steps)
    done = run_ninja(build, f"-j{jobs}")
    assert done.returncode == 0, done.stdout[-4000:]
    result = analyse(read_log(log), exclusive_kinds=exclusive_kinds)
    return Overlap(count, result, sorted(p.name for p in (build / "stamps").iterdir()))


def test_lock_lets_only_one_of_200_steps_inside_at_ninja_j32(
    tmp_path: Path, scripts: Scripts, lock_dir: Path, resource: Path
) -> None:
    tags = [f"x.{i}" for i in range(200)]
    steps, result, stamps = overlap_build(
        tmp_path,
        scripts,
        lock_dir,
        ((tag, ["--lock", "../resource"], "0.01") for tag in tags),
        jobs=32,
        exclusive_kinds={"x"},
    )
    print(f"\n--lock: {steps} steps, -j32, max concurrency {result.max_concurrency}")
    assert result.violations == []
    assert result.max_concurrency == 1
    assert sorted(result.entered) == sorted(tags)
    assert result.unfinished == []
    assert stamps == sorted(tags)


def test_shared_lock_readers_overlap_and_writers_are_alone_at_ninja_j32(
    tmp_path: Path, scripts: Scripts, lock_dir: Path, resource: Path
) -> None:
    tags: list[str] = []  # 150 readers with 10 writers among them, then 10 more writers
    readers = writers = 0
    for i in range(170):
        if i % 16 == 8 or i >= 160:
            tags.append(f"w.{writers}")
            writers += 1
        else:
            tags.append(f"r.{readers}")
            readers += 1
    assert (readers, writers) == (150, 20)
    steps, result, stamps = overlap_build(
        tmp_path,
        scripts,
        lock_dir,
        (
            (tag, ["--lock", resource], "0.02")
            if tag.startswith("w.")
            else (tag, ["--shared-lock", resource], "0.05")
            for tag in tags
        ),
        jobs=32,
        exclusive_kinds={"w"},
    )
    print(
        f"\n--shared-lock: {steps} steps ({readers} readers, {writers} writers), -j32, "
        f"max readers together {result.max_by_kind.get('r')}"
    )
    assert result.violations == []
    assert result.max_by_kind["w"] == 1
    assert result.max_by_kind["r"] >= 2, "readers never overlapped: --shared-lock behaves like --lock"
    assert len(result.entered) == steps
    assert result.unfinished == []
    assert len(stamps) == steps


def test_semaphore_never_exceeds_its_count_and_reaches_it_at_ninja_j32(
    tmp_path: Path, scripts: Scripts, lock_dir: Path, resource: Path
) -> None:
    steps, result, stamps = overlap_build(
        tmp_path,
        scripts,
        lock_dir,
        ((f"s.{i}", ["--semaphore", "../resource=3"], "0.2") for i in range(60)),
        jobs=32,
    )
    print(f"\n--semaphore R=3: {steps} steps, -j32, max concurrency {result.max_concurrency}")
    assert result.max_concurrency == 3
    assert len(result.entered) == 60
    assert result.unfinished == []
    assert len(stamps) == 60


def test_separate_builds_spelling_one_resource_differently_share_its_lock(
    tmp_path: Path, scripts: Scripts, lock_dir: Path, resource: Path, procs: Procs
) -> None:
    """Three ninja builds at once, each naming the resource its own way, from its own directory."""
    (tmp_path / "alias").symlink_to(resource, target_is_directory=True)
    spellings = {
        "a": "../resource",  # relative, from build_a
        "b": "../alias",  # through a symlink, from build_b
        "c": f"{tmp_path}/build_a/../resource/.",  # absolute with '..' and '.', from build_c
    }
    log = tmp_path / "overlap.log"
    builds = []
    for kind, spelling in spellings.items():
        build = tmp_path / f"build_{kind}"
        write_overlap_build(
            build, scripts, log, lock_dir, ((f"{kind}.{i}", ["--lock", spelling], "0.01") for i in range(20))
        )
        builds.append(build)
    ninjas = []
    for build in builds:
        with (build / "ninja.out").open("wb") as out:
            ninjas.append(
                procs.start([ninja_binary(), "-j8"], cwd=build, env={"TERM": "dumb"}, stdout=out, stderr=out)
            )
    for build, ninja in zip(builds, ninjas, strict=True):
        assert finish(ninja) == 0, (build / "ninja.out").read_text()[-4000:]
    result = analyse(read_log(log), exclusive_kinds=spellings)
    switches = sum(1 for a, b in zip(result.entered, result.entered[1:], strict=False) if a[0] != b[0])
    print(
        f"\n3 builds x 20 steps, 3 spellings: max concurrency {result.max_concurrency}, {switches} switches"
    )
    assert result.violations == []
    assert len(result.entered) == 60
    assert switches > 2, "the builds ran one after another, so their locks were never contended"
    assert len([p for p in lock_dir.iterdir() if p.is_dir()]) == 1, "one resource, one lock directory"


# --- resource spelling: unit tests of the canonical name


def test_canonical_resource_maps_every_spelling_to_one_path(tmp_path: Path, resource: Path) -> None:
    (tmp_path / "alias").symlink_to(resource, target_is_directory=True)
    (tmp_path / "a" / "b").mkdir(parents=True)
    real = os.path.realpath(resource)
    spellings = [
        (str(resource), "/"),
        ("resource", str(tmp_path)),
        ("resource/", str(tmp_path)),
        ("./resource/.", str(tmp_path)),
        ("../../resource", str(tmp_path / "a" / "b")),
        ("alias", str(tmp_path)),
        ("../alias", str(tmp_path / "a")),
        (f"{tmp_path}/a/b/../../alias/../resource", "/"),
    ]
    assert {canonical_resource(spelling, start, windows=False) for spelling, start in spellings} == {real}


def test_canonical_resource_of_a_resource_not_yet_created_follows_the_symlinks_above_it(
    tmp_path: Path, resource: Path
) -> None:
    (tmp_path / "alias").symlink_to(resource, target_is_directory=True)
    through_alias = canonical_resource("alias/venv", str(tmp_path), windows=False)
    direct = canonical_resource(str(resource / "venv"), "/", windows=False)
    assert through_alias == direct == os.path.join(os.path.realpath(resource), "venv")
    assert not os.path.exists(direct)


def test_canonical_resource_windows_flag_folds_case_as_this_platforms_normcase(tmp_path: Path) -> None:
    """windows=True applies os.path.normcase. On Windows that folds case; on this platform it is what
    os.path.normcase does here (on POSIX nothing), so two directories differing in case stay two resources,
    as they are on a case-sensitive filesystem."""
    upper, lower = tmp_path / "Venv", tmp_path / "venv"
    upper.mkdir()
    folded = canonical_resource("Venv", str(tmp_path), windows=True)
    assert folded == os.path.normcase(os.path.realpath(upper))
    if sys.platform != "win32":
        assert folded.endswith("Venv")
        lower.mkdir()
        if not os.path.samefile(upper, lower):  # a case-sensitive filesystem
            assert canonical_resource("venv", str(tmp_path), windows=True) != folded


def test_resource_dir_name_is_readable_unique_and_stable() -> None:
    name = resource_dir_name("/work/out/venv")
    base, _, digest = name.rpartition("-")
    assert base == "venv"
    assert len(digest) == 20
    assert all(c in "0123456789abcdef" for c in digest)
    assert resource_dir_name("/work/out/venv") == name
    assert resource_dir_name("/other/out/venv") != name  # same base name, another resource
    assert resource_dir_name("/").startswith("root-")
    odd = resource_dir_name("/x/a b:c*?\\d")
    assert os.sep not in odd
    assert all(c.isalnum() or c in "._-" for c in odd)
    assert len(resource_dir_name("/x/" + "n" * 300)) == 40 + 1 + 20


def test_plan_locks_orders_globally_and_merges_spellings_of_one_resource(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "b_alias").symlink_to(tmp_path / "b", target_is_directory=True)
    real_a, real_b = os.path.realpath(tmp_path / "a"), os.path.realpath(tmp_path / "b")

    def planned(*requests: LockRequest) -> list[tuple[str, tuple[tuple[str, int, int], ...]]]:
        return [
            (p.canonical, p.modes)
            for p in plan_locks(requests, str(tmp_path / "locks"), str(tmp_path), windows=False)
        ]

    b_then_a = planned(LockRequest("b", "exclusive"), LockRequest("a", "exclusive"))
    a_then_b = planned(LockRequest("a", "exclusive"), LockRequest("b", "exclusive"))
    assert b_then_a == a_then_b == [(real_a, (("exclusive", 1, 1),)), (real_b, (("exclusive", 1, 1),))]
    # one resource asked for twice, spelled two ways: exclusive covers shared
    assert planned(LockRequest("b_alias", "shared"), LockRequest("./b", "exclusive")) == [
        (real_b, (("exclusive", 1, 1),))
    ]
    # two counts: the smaller one wins; shared and counted on one resource are one claim, in a fixed order
    assert planned(
        LockRequest("b", "shared"), LockRequest("b", "semaphore", 4), LockRequest("b_alias", "semaphore", 2)
    ) == [(real_b, (("semaphore", 2, 1), ("shared", 1, 1)))]


# --- resource spelling: behaviour of separate fi_run processes


def test_every_spelling_from_any_directory_waits_for_the_same_lock(
    tmp_path: Path, scripts: Scripts, lock_dir: Path, resource: Path, procs: Procs, holder: Holder
) -> None:
    (tmp_path / "alias").symlink_to(resource, target_is_directory=True)
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    before = tree_listing(resource)
    canonical = os.path.realpath(resource)
    log = tmp_path / "order.log"
    # (working directory, how the lock dir is given, how the resource is spelled)
    ways: list[tuple[Path | str, list[str], str]] = [
        (tmp_path, ["--lock-dir", str(lock_dir)], "resource"),
        (tmp_path, ["--lock-dir", str(lock_dir)], "resource/"),
        (deep, ["--lock-dir", "../../locks"], "../../resource"),
        (deep, ["--lock-dir", str(lock_dir)], "../../alias"),
        (tmp_path / "a", [], "../alias/../resource/."),  # the lock dir from FI_RUN_LOCK_DIR
        ("/", ["--lock-dir", str(lock_dir)], f"{tmp_path}/a/b/../../alias"),
    ]
    for number, (cwd, lock_dir_args, spelling) in enumerate(ways):
        marker = tmp_path / f"ran-{number}"
        timed_out = run_fi_run(
            "module",
            [*lock_dir_args, "--lock-timeout", "0.3", "--lock", spelling, "--", "touch", marker],
            cwd=cwd,
            env={"FI_RUN_LOCK_DIR": str(lock_dir)} if not lock_dir_args else None,
        )
        assert timed_out.status == EXIT_TEMPFAIL, (spelling, timed_out)
        assert repr(canonical) in timed_out.err, (spelling, timed_out.err)
        assert f"held by pid {holder.proc.pid}: " in timed_out.err
        assert not marker.exists(), f"{spelling!r} from {cwd}: the command ran while the lock was held"

    # The same spellings waiting in the background (-v: each says when it has waited 2 s), then the
    # holder lets go: every one of them runs, strictly after the holder left.
    waiters = []
    for number, (cwd, lock_dir_args, spelling) in enumerate(ways):
        err_path = tmp_path / f"waiter-{number}.err"
        with err_path.open("wb") as err:
            waiter = procs.start_fi_run(
                [*lock_dir_args, "-v", "--lock", spelling, "--", "sh", scripts.step, log, f"w.{number}", "0"],
                cwd=cwd,
                env={"FI_RUN_LOCK_DIR": str(lock_dir)} if not lock_dir_args else None,
                stderr=err,
            )
        waiters.append((waiter, err_path))
    for _waiter, err_path in waiters:
        wait_until(file_contains(err_path, waiting_notice(canonical, holder)), f"{err_path.name}'s notice")
    holder.release()
    assert finish(holder.proc) == 0
    for waiter, err_path in waiters:
        assert finish(waiter) == 0, err_path.read_text()
    result = analyse(read_log(log), exclusive_kinds={"h", "w"})
    assert result.violations == []
    assert result.entered[0] == "h.0"
    assert sorted(result.entered[1:]) == sorted(f"w.{n}" for n in range(len(ways)))

    # No file inside the resource; one lock directory for all spellings, in the lock dir.
    assert tree_listing(resource) == before
    assert [p.name for p in lock_dir.iterdir() if p.is_dir()] == [resource_dir_name(canonical)]
    assert (lock_dir / resource_dir_name(canonical) / "gate.lock").is_file()


def test_lock_files_are_never_written_inside_the_resource(
    tmp_path: Path, lock_dir: Path, resource: Path
) -> None:
    """uv locks <venv>/.lock itself; fi_run must not touch the resource, whichever kind of lock."""
    before = tree_listing(resource)
    for mode in (["--lock", "resource"], ["--shared-lock", "resource"], ["--semaphore", "resource=2"]):
        done = run_fi_run("module", ["--lock-dir", lock_dir, *mode, "--", "true"], cwd=tmp_path)
        assert done.status == 0, done.err
    assert tree_listing(resource) == before
    assert not (resource / ".lock").exists()
    ours = lock_dir / resource_dir_name(os.path.realpath(resource))
    assert (ours / "gate.lock").is_file()
    assert [p.name for p in lock_dir.iterdir() if p.is_dir()] == [ours.name]


def test_default_lock_dir_is_private_to_the_user(tmp_path: Path, resource: Path) -> None:
    default = f"/tmp/fi_run-locks-{os.getuid()}"
    done = run_fi_run("module", ["--lock", resource, "--", "true"], cwd=tmp_path)  # FI_RUN_LOCK_DIR is unset
    assert done.status == 0, done.err
    ours = os.path.join(default, resource_dir_name(os.path.realpath(resource)))
    try:
        st = os.lstat(default)
        assert stat.S_ISDIR(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o700
        assert st.st_uid == os.getuid()
        assert os.path.isfile(os.path.join(ours, "gate.lock"))
    finally:
        shutil.rmtree(ours, ignore_errors=True)


# --- several locks: one global order


def test_steps_taking_two_locks_in_opposite_orders_do_not_deadlock(
    tmp_path: Path, scripts: Scripts, lock_dir: Path
) -> None:
    (tmp_path / "A").mkdir()
    (tmp_path / "B").mkdir()
    orders = [["A", "B"] if i % 2 == 0 else ["B", "A"] for i in range(40)]
    steps, result, stamps = overlap_build(
        tmp_path,
        scripts,
        lock_dir,
        (
            (f"x.{i}", [arg for name in order for arg in ("--lock", f"../{name}")], "0.01")
            for i, order in enumerate(orders)
        ),
        jobs=16,
        exclusive_kinds={"x"},
    )  # a deadlock ends in run()'s hang guard, which kills the build
    print(f"\n{{A,B}}/{{B,A}}: {steps} steps, -j16")
    assert len(stamps) == 40
    assert result.violations == []  # every step needs both: one at a time
    assert len(result.entered) == 40


# --- a holder that dies


def _start_waiters(
    procs: Procs, tmp_path: Path, scripts: Scripts, lock_dir: Path, resource: Path, log: Path, count: int
) -> list[tuple[subprocess.Popen[bytes], Path]]:
    waiters = []
    for n in range(count):
        err_path = tmp_path / f"waiter-{n}.err"
        with err_path.open("wb") as err:
            proc = procs.start_fi_run(
                [
                    "--lock-dir",
                    lock_dir,
                    "-v",
                    "--lock",
                    resource,
                    "--",
                    "sh",
                    scripts.step,
                    log,
                    f"w.{n}",
                    "0",
                ],
                cwd=tmp_path,
                stderr=err,
            )
        waiters.append((proc, err_path))
    return waiters


def _wait_all_waiting(waiters: list[tuple[subprocess.Popen[bytes], Path]], notice: str) -> None:
    for _proc, err_path in waiters:
        wait_until(file_contains(err_path, notice), f"{err_path.name}'s notice")


def test_sigkilled_holder_and_its_command_do_not_block_the_waiters(
    tmp_path: Path, scripts: Scripts, lock_dir: Path, resource: Path, procs: Procs, holder: Holder
) -> None:
    log = tmp_path / "order.log"
    child = holder.child_pid
    assert os.getpgid(child) == child != holder.proc.pid, "the command runs in a process group of its own"
    waiters = _start_waiters(procs, tmp_path, scripts, lock_dir, resource, log, 3)
    _wait_all_waiting(waiters, waiting_notice(os.path.realpath(resource), holder))

    os.killpg(child, signal.SIGKILL)
    os.kill(holder.proc.pid, signal.SIGKILL)
    killed = time.monotonic()
    for proc, err_path in waiters:
        assert finish(proc, timeout=30) == 0, err_path.read_text()
    waited = time.monotonic() - killed
    print(f"\nwaiters all done {waited:.2f} s after the holder was SIGKILLed")
    assert waited < 5.0, f"waiters took {waited:.1f} s to proceed after the holder died"
    assert holder.proc.wait() == -signal.SIGKILL
    wait_until(lambda: process_gone(child), "the killed command to be gone")

    text = read_log(log)
    assert analyse(text).unfinished == ["h.0"]  # it died inside
    waiters_only = "".join(line for line in text.splitlines(keepends=True) if " h.0 " not in line)
    result = analyse(waiters_only, exclusive_kinds={"w"})
    assert result.violations == []
    assert sorted(result.entered) == ["w.0", "w.1", "w.2"]


def test_sigkill_of_fi_run_alone_leaves_the_lock_with_its_orphaned_command_until_it_ends(
    tmp_path: Path, scripts: Scripts, lock_dir: Path, resource: Path, procs: Procs, holder: Holder
) -> None:
    """The command inherits the lock's open file description (issue 12, docs/faults.md), so the kernel keeps
    the lock while the orphaned command runs on after fi_run is SIGKILLed: the waiters go in after it ends,
    never beside it (before, they went in at once)."""
    log = tmp_path / "order.log"
    child = holder.child_pid
    lock_files = os.fspath(lock_dir.resolve()) + os.sep
    child_fds = [os.readlink(f"/proc/{child}/fd/{fd}") for fd in os.listdir(f"/proc/{child}/fd")]
    assert [t for t in child_fds if t.startswith(lock_files)], "the command did not inherit the lock file"
    waiters = _start_waiters(procs, tmp_path, scripts, lock_dir, resource, log, 3)
    _wait_all_waiting(waiters, waiting_notice(os.path.realpath(resource), holder))

    os.kill(holder.proc.pid, signal.SIGKILL)
    time.sleep(1.0)  # long enough for a waiter to get in, had the lock gone with fi_run
    assert not process_gone(child), "the orphaned command should still be running"
    assert analyse(read_log(log)).entered == ["h.0"]  # nobody went in beside the orphan

    holder.release()
    wait_until(lambda: process_gone(child), "the orphaned command to finish")
    for proc, err_path in waiters:
        assert finish(proc, timeout=30) == 0, err_path.read_text()
    result = analyse(read_log(log))
    assert result.unfinished == []
    assert result.entered[0] == "h.0"
    assert result.max_concurrency == 1
    assert result.violations == []


# --- --lock-timeout


def test_lock_timeout_exits_75_naming_resource_and_holder_without_running_the_command(
    tmp_path: Path, lock_dir: Path, resource: Path, holder: Holder
) -> None:
    stamp, ran = tmp_path / "out" / "waiter.stamp", tmp_path / "ran"
    stamp.parent.mkdir()
    stamp.write_text("stale\n")
    done = run_fi_run(
        "module",
        [
            *("--lock-dir", lock_dir, "--lock-timeout", "0.5", "--lock", "resource", "--stamp", stamp),
            "--",
            "touch",
            ran,
        ],
        cwd=tmp_path,
    )
    assert done.status == 75
    lines = done.err.splitlines()
    assert len(lines) == 1, done.err
    line = lines[0]
    assert line.startswith("fi_run: ")
    assert repr(os.path.realpath(resource)) in line
    assert f"pid {holder.proc.pid}: {' '.join(holder.command)}" in line
    assert "0.5 s" in line
    assert not ran.exists(), "the command ran without its lock"
    assert not stamp.exists(), "a stale stamp survived a step that never ran"
    assert done.out == ""


def test_lock_timeout_default_comes_from_the_environment_and_0_switches_it_off(
    tmp_path: Path, lock_dir: Path, resource: Path, procs: Procs, holder: Holder
) -> None:
    env = {"FI_RUN_LOCK_TIMEOUT": "0.5"}
    done = run_fi_run(
        "module",
        ["--lock-dir", lock_dir, "--lock", resource, "--", "touch", tmp_path / "ran"],
        cwd=tmp_path,
        env=env,
    )
    assert done.status == 75
    assert len(done.err.splitlines()) == 1
    assert f"held by pid {holder.proc.pid}" in done.err
    assert not (tmp_path / "ran").exists()

    # --lock-timeout 0 overrides the environment: wait for as long as it takes.
    err_path = tmp_path / "patient.err"
    with err_path.open("wb") as err:
        patient = procs.start_fi_run(
            [
                "--lock-dir",
                lock_dir,
                "--lock-timeout",
                "0",
                "-v",
                "--lock",
                resource,
                "--",
                "touch",
                tmp_path / "ran",
            ],
            cwd=tmp_path,
            env=env,
            stderr=err,
        )
    # The notice comes after 2 s of waiting: well past the environment's 0.5 s.
    wait_until(lambda: "fi_run: waiting for" in err_path.read_text(), "the patient waiter's notice")
    assert patient.poll() is None
    holder.release()
    assert finish(patient) == 0, err_path.read_text()
    assert (tmp_path / "ran").exists()


# --- the lock is released on every exit path (in-process: the lock must go although the process stays)


def _free_within_a_second(tmp_path: Path, lock_dir: Path, resource: Path) -> None:
    """Another process gets the lock at once (a leaked lock would make it exit 75)."""
    probe = run_fi_run(
        "module",
        ["--lock-dir", lock_dir, "--lock-timeout", "1", "--lock", resource, "--", "true"],
        cwd=tmp_path,
    )
    assert probe.status == 0, probe.err


def _main_in_process(args: list[str], monkeypatch: pytest.MonkeyPatch, cwd: Path) -> tuple[int, str]:
    """fi_run's main() in this process, stdin from /dev/null and stdout/stderr to a file (as under ninja)."""
    from fi_run.cli import main

    for name in list(os.environ):
        if name.startswith("FI_RUN_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(cwd)
    saved_stdin = os.dup(0)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    try:
        with redirected_output() as output:
            status = main(args)
            return status, output()
    finally:
        os.dup2(saved_stdin, 0)
        os.close(saved_stdin)


@pytest.mark.parametrize(
    ("how", "command", "extra", "expected"),
    [
        ("fails", ["sh", "-c", "exit 3"], [], 3),
        ("times out", ["sleep", "30"], ["--timeout", "0.5"], 124),
        ("interrupted", ["sh", "-c", "kill -INT $PPID; exec sleep 30"], [], 130),
        ("not found", ["fi-run-no-such-command"], [], 127),
    ],
)
def test_lock_is_released_on_every_exit_path(
    how: str,
    command: list[str],
    extra: list[str],
    expected: int,
    tmp_path: Path,
    lock_dir: Path,
    resource: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The "interrupted" command sends SIGINT to its parent, which is this process running fi_run."""
    status, output = _main_in_process(
        ["--lock-dir", str(lock_dir), "--lock", str(resource), *extra, "--", *command], monkeypatch, tmp_path
    )
    assert status == expected, (how, output)
    lock_dir.mkdir(exist_ok=True)  # "not found" fails before fi_run looks at locks at all
    assert open_paths_under(lock_dir) == [], f"{how}: lock files still open"
    _free_within_a_second(tmp_path, lock_dir, resource)


def test_lock_timeout_on_a_later_lock_releases_the_ones_already_taken(
    tmp_path: Path, scripts: Scripts, lock_dir: Path, procs: Procs, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = tmp_path / "a_first", tmp_path / "b_second"  # the global order takes a_first first
    first.mkdir()
    second.mkdir()
    holder = start_holder(
        procs, scripts, ["--lock-dir", lock_dir, "--lock", second], log=tmp_path / "log", tag="h.0",
        control=tmp_path / "ctl", cwd=tmp_path,
    )  # fmt: skip
    status, output = _main_in_process(
        [
            "--lock-dir",
            str(lock_dir),
            "--lock-timeout",
            "0.3",
            "--lock",
            str(second),
            "--lock",
            str(first),
            "--",
            "true",
        ],
        monkeypatch,
        tmp_path,
    )
    assert status == 75, output
    assert repr(os.path.realpath(second)) in output
    assert open_paths_under(lock_dir) == []
    _free_within_a_second(tmp_path, lock_dir, first)
    holder.release()
    assert finish(holder.proc) == 0


def test_sigint_to_the_process_group_of_a_holder_exits_130_and_frees_the_lock(
    tmp_path: Path, lock_dir: Path, resource: Path, holder: Holder
) -> None:
    os.killpg(holder.proc.pid, signal.SIGINT)  # as ninja does on Ctrl-C: to the step's process group
    assert finish(holder.proc) == 130
    wait_until(lambda: process_gone(holder.child_pid), "the interrupted command to be gone")
    _free_within_a_second(tmp_path, lock_dir, resource)


# --- the wait notice


def _read_pty_until(master: int, text: bytearray, done: Callable[[], bool], timeout: float) -> None:
    """Append what the terminal shows to ``text`` until ``done()`` or the terminal closes or timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not done():
        ready, _, _ = select.select([master], [], [], 0.05)
        if not ready:
            continue
        try:
            chunk = os.read(master, 4096)
        except OSError as exc:  # EIO: every process holding the terminal has closed it
            if exc.errno == errno.EIO:
                return
            raise
        if not chunk:
            return
        text.extend(chunk)


def test_wait_notice_on_a_terminal_names_the_resource_and_holder_once(
    tmp_path: Path, lock_dir: Path, resource: Path, procs: Procs, holder: Holder
) -> None:
    notice = waiting_notice(os.path.realpath(resource), holder)
    master, slave = pty.openpty()
    try:
        waiter = procs.start_fi_run(
            ["--lock-dir", lock_dir, "--lock", resource, "--", "true"],
            cwd=tmp_path,
            env={"NO_COLOR": "1", "TERM": "dumb"},
            stdout=subprocess.DEVNULL,
            stderr=slave,
        )
        os.close(slave)
        shown = bytearray()
        _read_pty_until(master, shown, lambda: b"\n" in shown, HANG_TIMEOUT)
        assert shown, "no notice on the terminal"
        # Keep holding well past a second notice period: the notice must not repeat.
        _read_pty_until(master, shown, lambda: False, 2.5)
        holder.release()
        assert finish(waiter) == 0
        _read_pty_until(master, shown, lambda: False, 5.0)  # until EIO: the waiter closed the terminal
    finally:
        os.close(master)
    lines = shown.decode().replace("\r", "").splitlines()
    assert lines == [notice]


def test_no_wait_notice_when_stderr_is_a_pipe_unless_verbose(
    tmp_path: Path, lock_dir: Path, resource: Path, procs: Procs, holder: Holder
) -> None:
    notice = waiting_notice(os.path.realpath(resource), holder)
    quiet = procs.start_fi_run(
        ["--lock-dir", lock_dir, "--lock", resource, "--", "true"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    verbose_err = tmp_path / "verbose.err"
    with verbose_err.open("wb") as err:
        verbose = procs.start_fi_run(
            ["--lock-dir", lock_dir, "-v", "--lock", resource, "--", "true"], cwd=tmp_path, stderr=err
        )
    wait_until(lambda: notice in verbose_err.read_text(), "the verbose waiter's notice")
    time.sleep(2.5)  # the quiet waiter, started first, has now waited well over the notice threshold
    assert quiet.poll() is None
    assert verbose.poll() is None
    holder.release()
    out, err_bytes = quiet.communicate(timeout=HANG_TIMEOUT)
    assert quiet.returncode == 0
    assert err_bytes.decode() == ""
    assert out == b""
    assert finish(verbose) == 0
    assert [line for line in verbose_err.read_text().splitlines() if "waiting for" in line] == [notice]


# --- a lock directory whose filesystem cannot lock


def test_probe_marks_a_lock_directory_whose_locks_exclude(tmp_path: Path) -> None:
    directory = tmp_path / "locks"
    directory.mkdir()
    _probe(str(directory))
    marker = directory / ".locks-work"
    assert marker.is_file()
    assert [p.name for p in directory.iterdir()] == [".locks-work"], "the probe lock file was left behind"
    stamp = marker.stat().st_mtime_ns
    _probe(str(directory))  # remembered: not probed again
    assert marker.stat().st_mtime_ns == stamp


def test_a_lock_directory_where_no_lock_can_be_taken_is_refused_in_one_line(tmp_path: Path) -> None:
    """sysfs: a real filesystem on which no lock file can be created, not even by root. (A filesystem whose
    flock() succeeds without excluding, the case _probe exists for, cannot be made here; untested.)"""
    with pytest.raises(UsageError, match=r"^cannot use file locks in lock directory '/sys'"):
        _probe("/sys")
    done = run_fi_run(
        "module", ["--lock-dir", "/sys", "--lock", tmp_path, "--", "touch", tmp_path / "ran"], cwd=tmp_path
    )
    assert done.status == 2
    assert done.err.startswith("fi_run: cannot use file locks in lock directory '/sys'")
    assert len(done.err.splitlines()) == 1
    assert not (tmp_path / "ran").exists()


# --- one resource asked for in two modes, and the order of a mixed line (issue 22)


def _waiting(lock_dir: Path, proc: subprocess.Popen[bytes], kinds: tuple[str, ...]) -> Callable[[], bool]:
    """Has fi_run process ``proc`` put itself in a resource's line, as a waiter of one of ``kinds``?"""

    def check() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"pid {proc.pid} ended (status {proc.returncode}) before it waited")
        return any(
            entry.name.split("-")[1] == str(proc.pid) and entry.suffix[1:] in kinds
            for entry in lock_dir.glob("*/waiters/*")
        )

    return check


def test_a_counted_and_shared_request_on_one_resource_cannot_deadlock_with_a_writer(
    tmp_path: Path, scripts: Scripts, lock_dir: Path, resource: Path, procs: Procs, holder: Holder
) -> None:
    """Issue 22's repro: X holds --lock R; P asks --semaphore R=2 --shared-lock R and queues; E asks --lock R
    and queues behind it. P's two slots used to be taken one after the other: E took the gate between them
    and drained the slots, waiting for P's counted slot while P waited for the gate, for ever. Now one
    resource is one claim: P goes first, then E, alone."""
    log = tmp_path / "order.log"
    p = procs.start_fi_run(
        [
            *("--lock-dir", lock_dir, "--semaphore", f"{resource}=2", "--shared-lock", resource),
            *("--", "sh", scripts.step, log, "p.1", "0.2"),
        ],
        cwd=tmp_path,
    )
    assert wait_until(_waiting(lock_dir, p, ("gate",)), "P to queue")
    e = procs.start_fi_run(
        ["--lock-dir", lock_dir, "--lock", resource, "--", "sh", scripts.step, log, "e.1", "0"], cwd=tmp_path
    )
    assert wait_until(_waiting(lock_dir, e, ("gate",)), "E to queue")
    holder.release()
    assert finish(holder.proc) == 0
    assert (finish(p), finish(e)) == (0, 0)
    result = analyse(read_log(log), exclusive_kinds={"e", "h"})
    assert result.entered == ["h.0", "p.1", "e.1"]
    assert result.violations == []


def test_a_counted_waiter_that_found_every_slot_taken_is_not_overtaken_by_a_later_writer(
    tmp_path: Path, scripts: Scripts, lock_dir: Path, resource: Path, procs: Procs
) -> None:
    """Issue 22: H holds R's one counted slot; S asks for it and waits for a slot; E asks --lock R later.
    E used to take the gate (S waited for a slot, not for the gate) and run before S. First come, first
    served per resource: H, S, E."""
    log = tmp_path / "order.log"
    counted: list[str | os.PathLike[str]] = ["--lock-dir", lock_dir, "--semaphore", f"{resource}=1"]
    holder = start_holder(procs, scripts, counted, log=log, tag="h.0", control=tmp_path / "ctl", cwd=tmp_path)
    s = procs.start_fi_run([*counted, "--", "sh", scripts.step, log, "s.1", "0.2"], cwd=tmp_path)
    assert wait_until(_waiting(lock_dir, s, ("slot",)), "S to wait for a slot")
    e = procs.start_fi_run(
        ["--lock-dir", lock_dir, "--lock", resource, "--", "sh", scripts.step, log, "e.1", "0"], cwd=tmp_path
    )
    assert wait_until(_waiting(lock_dir, e, ("gate", "drain")), "E to queue")
    holder.release()
    assert (finish(holder.proc), finish(s), finish(e)) == (0, 0, 0)
    result = analyse(read_log(log), exclusive_kinds={"e", "h", "s"})
    assert result.entered == ["h.0", "s.1", "e.1"]
    assert result.violations == []


def test_planning_takes_a_counted_and_a_shared_request_on_one_resource_as_one_claim(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    plans = plan_locks(
        [LockRequest("b", "shared"), LockRequest("b", "semaphore", 4), LockRequest("./b", "semaphore", 2)],
        str(tmp_path / "locks"),
        str(tmp_path),
        windows=False,
    )
    assert [(p.canonical, p.modes) for p in plans] == [
        (os.path.realpath(tmp_path / "b"), (("semaphore", 2, 1), ("shared", 1, 1)))
    ]
    assert (
        plans[0].describe()
        == f"a semaphore slot (of 2) and a shared lock on {os.path.realpath(tmp_path / 'b')!r}"
    )


# --- weighted seats (issue 19): --semaphore R=N:K takes K of the N seats, all at once, in arrival order


def test_a_weighted_step_waits_for_all_its_seats_and_a_lighter_later_one_does_not_pass_it(
    tmp_path: Path, scripts: Scripts, lock_dir: Path, resource: Path, procs: Procs
) -> None:
    """A holds 3 of 4 seats; B asks for 2 (one is free: not enough) and waits; C asks for 1 later: one seat is
    free, but B came first, so C waits behind it. Once A leaves, B and C (3 seats) run together."""
    log = tmp_path / "order.log"

    def seats(k: int) -> list[str | os.PathLike[str]]:
        return ["--lock-dir", lock_dir, "--semaphore", f"{resource}=4:{k}"]

    a = start_holder(procs, scripts, seats(3), log=log, tag="a.0", control=tmp_path / "a", cwd=tmp_path)
    b = start_holder(
        procs, scripts, seats(2), log=log, tag="b.1", control=tmp_path / "b", cwd=tmp_path, ready=False
    )
    assert wait_until(_waiting(lock_dir, b.proc, ("slot",)), "B to wait for its 2 seats")
    c = procs.start_fi_run([*seats(1), "--", "sh", scripts.step, log, "c.2", "0"], cwd=tmp_path)
    assert wait_until(_waiting(lock_dir, c, ("gate", "slot")), "C to queue behind B")
    assert read_log(log).split()[1::3] == ["a.0"]  # nobody else is inside
    a.release()
    b.wait_ready()
    assert finish(c) == 0
    b.release()
    assert (finish(a.proc), finish(b.proc)) == (0, 0)
    lines = read_log(log).split("\n")
    exits_a = lines.index(next(line for line in lines if line.startswith("exit a.0 ")))
    # c found a free seat while a held three, yet waited behind b: both began only once a had left.
    assert all(
        lines.index(next(x for x in lines if x.startswith(f"enter {t} "))) > exits_a for t in ("b.1", "c.2")
    )
