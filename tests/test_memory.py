"""fi_run/memory.py (issue 19): sizes, the memory budget, available memory and OOM-kill counts.

The kernel's files are read from trees of real files built in tmp_path (cgroup v1, v2, a hybrid machine, a
container, no cgroup at all), from this machine's own /proc and /sys, and from real memory cgroups made for
the test (root only: cgroup_testing.py; skipped with the reason elsewhere), where the kernel enforces the
limit and OOM-kills for real.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from cgroup_testing import ALLOCATE, MIB
from fi_run_testing import (
    Procs,
    analyse,
    finish,
    py,
    read_log,
    run,
    run_fi_run,
    start_holder,
    wait_until,
    write_scripts,
)

from fi_run import memory
from fi_run.errors import UsageError

if TYPE_CHECKING:
    from cgroup_testing import Cgroup, Cgroups
    from fi_run_testing import Runner

GIB = 1 << 30
V1_UNLIMITED = "9223372036854771712"  # what cgroup v1 shows for "no limit" on 4 KiB pages


# --- sizes


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1.5G", 3 * GIB // 2),
        ("512M", 512 * MIB),
        ("700MiB", 700 * MIB),
        ("2g", 2 * GIB),
        ("1048576", 1048576),
        ("512B", 512),
        ("64k", 64 << 10),
        ("1.5GB", 3 * GIB // 2),
        ("1T", 1 << 40),
        (" 8G ", 8 * GIB),
        ("0", 0),
        ("0.5K", 512),
        ("1.0000001K", 1024),  # fractions of a byte are dropped
    ],
)
def test_sizes_as_people_write_them_are_read_in_powers_of_1024(text: str, size: int) -> None:
    assert memory.parse_size("--mem", text) == size


@pytest.mark.parametrize(
    "text",
    ["", "G", "1.5", "-1G", "1,5G", "1e9", "1.2.3G", "5iB", "5 G", "lots", "nan", "inf", "1_000", "٣G"],
)
def test_a_bad_size_is_one_usage_error_that_names_the_option(text: str) -> None:
    if text == "1.5":  # a plain number is bytes; a fraction of a byte is still a number
        assert memory.parse_size("--mem", text) == 1
        return
    with pytest.raises(UsageError) as caught:
        memory.parse_size("--keep-free-memory", text)
    message = caught.value.message
    assert message == f"--keep-free-memory expects {memory.SIZE_HELP}, got {text!r}"
    assert "\n" not in message


def test_a_size_beyond_an_exbibyte_is_refused() -> None:
    with pytest.raises(UsageError, match="at most 1 EiB, got '2000000T'"):
        memory.parse_size("--mem", "2000000T")


@pytest.mark.parametrize(
    "size", [1, 4095, MIB, MIB + 1, 700 * MIB + 5, GIB - 1, GIB, GIB + 1, 3 * GIB // 2, 10**12]
)
def test_a_suggested_value_reads_back_as_at_least_the_size_and_close_to_it(size: int) -> None:
    value = memory.size_value(size)
    back = memory.parse_size("--mem", value)
    assert size <= back < size + max(MIB, GIB // 10)


def test_sizes_for_people() -> None:
    assert memory.format_size(512) == "512 B"
    assert memory.format_size(700 * MIB) == "700 MiB"
    assert memory.format_size(3 * GIB // 2) == "1.5 GiB"
    assert memory.format_size(1500 * GIB) == "1.46 TiB"
    assert memory.size_value(700 * MIB) == "700M"
    assert memory.size_value(3 * GIB // 2) == "1.5G"
    assert memory.size_value(2 * GIB) == "2G"


def test_the_reserve_is_a_tenth_within_its_bounds_and_never_more_than_half() -> None:
    assert memory.reserve_for(64 * MIB) == 32 * MIB  # a small cgroup: half
    assert memory.reserve_for(1536 * MIB) == 256 * MIB  # 10 % is less than the floor
    assert memory.reserve_for(8 * GIB) == int(8 * GIB * 0.1)
    assert memory.reserve_for(64 * GIB) == 2 * GIB  # capped
    assert memory.reserve_for(0) == 0


# --- the kernel's files, as trees of real files


class Machine:
    """A /proc and a /sys of real files under tmp_path, shaped like a kernel's."""

    def __init__(self, root: Path, *, total_kib: int = 16 << 20, available_kib: int = 12 << 20) -> None:
        self.proc = root / "proc"
        self.sys = root / "sys"
        (self.proc / "self").mkdir(parents=True)
        self.file(
            "proc/meminfo",
            f"MemTotal:       {total_kib} kB\nMemFree: 1 kB\nMemAvailable:   {available_kib} kB\n",
        )
        self.file("proc/vmstat", "nr_free_pages 1\noom_kill 7\nnuma_hit 2\n")
        self.mounts: list[str] = []

    def file(self, relative: str, text: str) -> Path:
        path = self.proc.parent / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def mount(self, fstype: str, options: str, root: str, point: str) -> None:
        number = 30 + len(self.mounts)
        self.mounts.append(
            f"{number} 25 0:{number} {root} {point} rw,relatime - {fstype} cgroup rw,{options}"
        )
        self.file(
            "proc/self/mountinfo", "22 1 0:21 / /sys rw - sysfs sysfs rw\n" + "\n".join(self.mounts) + "\n"
        )

    def v1_group(self, relative: str, limit: str, usage: int = 0, inactive: int = 0, ooms: int = 0) -> None:
        base = f"sys/fs/cgroup/memory{relative}"
        self.file(f"{base}/memory.limit_in_bytes", limit + "\n")
        self.file(f"{base}/memory.usage_in_bytes", f"{usage}\n")
        self.file(f"{base}/memory.stat", f"cache 5\ninactive_file 1\ntotal_inactive_file {inactive}\n")
        self.file(f"{base}/memory.oom_control", f"oom_kill_disable 0\nunder_oom 0\noom_kill {ooms}\n")

    def v2_group(self, relative: str, limit: str, usage: int = 0, inactive: int = 0, ooms: int = 0) -> None:
        base = f"sys/fs/cgroup{relative}"
        self.file(f"{base}/memory.max", limit + "\n")
        self.file(f"{base}/memory.current", f"{usage}\n")
        self.file(f"{base}/memory.stat", f"anon 5\ninactive_file {inactive}\nactive_file 3\n")
        self.file(
            f"{base}/memory.events", f"low 0\nhigh 0\nmax 4\noom 2\noom_kill {ooms}\noom_group_kill 0\n"
        )

    def args(self) -> dict[str, str]:
        return {"proc": str(self.proc), "sys_root": str(self.sys)}


def v1_machine(tmp_path: Path) -> Machine:
    """A hybrid machine like this project's: memory on cgroup v1, an unused v2 hierarchy beside it."""
    machine = Machine(tmp_path)
    machine.file("proc/self/cgroup", "9:name=systemd:/\n4:memory:/ci/job7\n1:cpu:/\n0::/\n")
    machine.mount("cgroup", "cpu", "/", "/sys/fs/cgroup/cpu")
    machine.mount("cgroup", "memory", "/", "/sys/fs/cgroup/memory")
    machine.mount("cgroup2", "nsdelegate", "/", "/sys/fs/cgroup/unified")
    machine.file("sys/fs/cgroup/unified/cgroup.controllers", "hugetlb\n")
    machine.v1_group("", V1_UNLIMITED)
    machine.v1_group("/ci", str(4 * GIB), usage=3 * GIB, inactive=GIB)  # the tight one: 2 GiB free
    machine.v1_group("/ci/job7", V1_UNLIMITED, usage=GIB, inactive=0, ooms=3)
    return machine


def v2_machine(tmp_path: Path) -> Machine:
    machine = Machine(tmp_path)
    machine.file("proc/self/cgroup", "0::/build.slice/run-1.scope\n")
    machine.mount("cgroup2", "nsdelegate,memory_recursiveprot", "/", "/sys/fs/cgroup")
    machine.file("sys/fs/cgroup/cgroup.controllers", "cpuset cpu io memory pids\n")
    machine.v2_group("/build.slice", str(6 * GIB), usage=5 * GIB, inactive=512 * MIB)
    machine.v2_group("/build.slice/run-1.scope", "max", usage=2 * GIB, ooms=1)
    return machine


def test_cgroup_v1_the_tightest_limit_of_the_cgroup_and_its_ancestors_binds(tmp_path: Path) -> None:
    machine = v1_machine(tmp_path)
    found = memory.memory_cgroup(**machine.args())
    assert found is not None
    assert (found.version, found.path) == (1, "/ci/job7")
    assert found.directory == f"{machine.sys}/fs/cgroup/memory/ci/job7"
    limits = memory.memory_limits(**machine.args())
    assert [(limit.size, limit.source) for limit in limits] == [
        (4 * GIB, "cgroup v1 memory.limit_in_bytes of /ci"),
        (16 * GIB, f"MemTotal of {machine.proc}/meminfo"),
    ]
    assert memory.memory_limit(**machine.args()) == limits[0]
    budget = memory.memory_budget(**machine.args())
    assert budget is not None
    assert (budget.size, budget.reserve) == (4 * GIB - int(4 * GIB * 0.1), int(4 * GIB * 0.1))
    assert "cgroup v1 memory.limit_in_bytes of /ci" in budget.describe()
    # /ci holds 3 GiB of which 1 GiB is inactive file cache: 2 GiB working set, 2 GiB free; MemAvailable 12.
    assert memory.available_memory(**machine.args()) == 2 * GIB


def test_cgroup_v2_memory_max_and_the_working_set(tmp_path: Path) -> None:
    machine = v2_machine(tmp_path)
    found = memory.memory_cgroup(**machine.args())
    assert found is not None
    assert (found.version, found.directory) == (2, f"{machine.sys}/fs/cgroup/build.slice/run-1.scope")
    limit = memory.memory_limit(**machine.args())
    assert limit == memory.Limit(6 * GIB, "cgroup v2 memory.max of /build.slice", "/build.slice")
    assert memory.available_memory(**machine.args()) == 6 * GIB - (5 * GIB - 512 * MIB)


def test_the_tightest_cgroup_is_not_always_the_one_with_the_lowest_limit(tmp_path: Path) -> None:
    """Available memory is the least over every limited level: a roomy limit nearly used up binds."""
    machine = v2_machine(tmp_path)
    machine.v2_group("/build.slice/run-1.scope", str(5 * GIB), usage=512 * MIB)
    assert memory.memory_limit(**machine.args()) == memory.Limit(
        5 * GIB, "cgroup v2 memory.max of /build.slice/run-1.scope", "/build.slice/run-1.scope"
    )
    # The scope has 4.5 GiB free; its parent, with the higher limit, 6 GiB less a 4.5 GiB working set.
    assert memory.available_memory(**machine.args()) == 6 * GIB - (5 * GIB - 512 * MIB)


def test_memory_available_beyond_the_machine_s_is_not_available(tmp_path: Path) -> None:
    machine = v2_machine(tmp_path)
    machine.file("proc/meminfo", "MemTotal: 8388608 kB\nMemAvailable: 262144 kB\n")
    assert memory.available_memory(**machine.args()) == 256 * MIB


def test_a_container_without_a_cgroup_namespace_finds_its_cgroup_at_the_top_of_its_mount(
    tmp_path: Path,
) -> None:
    machine = Machine(tmp_path)
    machine.file("proc/self/cgroup", "5:memory:/docker/abc123\n0::/\n")
    machine.mount("cgroup", "memory", "/docker/abc123", "/sys/fs/cgroup/memory")
    machine.v1_group("", str(GIB), usage=100 * MIB)
    found = memory.memory_cgroup(**machine.args())
    assert found is not None
    assert found.directory == found.top == f"{machine.sys}/fs/cgroup/memory"
    assert memory.memory_limit(**machine.args()) == memory.Limit(
        GIB, "cgroup v1 memory.limit_in_bytes of /", "/"
    )


def test_mount_points_with_escaped_characters(tmp_path: Path) -> None:
    machine = Machine(tmp_path)
    machine.file("proc/self/cgroup", "0::/a b\n")
    machine.mount("cgroup2", "", "/", "/sys/fs/cgroup\\040v2")
    machine.file("sys/fs/cgroup v2/cgroup.controllers", "memory\n")
    machine.file("sys/fs/cgroup v2/a b/memory.max", f"{GIB}\n")
    assert memory.memory_limit(**machine.args()) == memory.Limit(GIB, "cgroup v2 memory.max of /a b", "/a b")


def test_without_mountinfo_the_usual_mount_points_are_tried(tmp_path: Path) -> None:
    machine = v1_machine(tmp_path)
    (machine.proc / "self" / "mountinfo").unlink()
    limit = memory.memory_limit(**machine.args())
    assert limit is not None
    assert limit.size == 4 * GIB


def test_without_a_memory_cgroup_memtotal_and_memavailable_decide(tmp_path: Path) -> None:
    machine = Machine(tmp_path, total_kib=2 << 20, available_kib=1 << 20)
    machine.file("proc/self/cgroup", "0::/\n")
    machine.mount("cgroup2", "", "/", "/sys/fs/cgroup")
    machine.file("sys/fs/cgroup/cgroup.controllers", "cpu io\n")  # no memory controller
    assert memory.memory_cgroup(**machine.args()) is None
    assert memory.memory_limit(**machine.args()) == memory.Limit(
        2 * GIB, f"MemTotal of {machine.proc}/meminfo"
    )
    assert memory.available_memory(**machine.args()) == GIB
    counts = memory.oom_counts(**machine.args())
    assert counts == memory.OomCounts(None, None, 7)


def test_where_nothing_can_be_read_nothing_is_known(tmp_path: Path) -> None:
    """macOS and Windows have no /proc: every reading is None, and no OOM kill is ever claimed."""
    args = {"proc": str(tmp_path / "proc"), "sys_root": str(tmp_path / "sys")}
    assert memory.memory_cgroup(**args) is None
    assert memory.memory_limit(**args) is None
    assert memory.memory_budget(**args) is None
    assert memory.available_memory(**args) is None
    assert memory.oom_counts(**args) == memory.OomCounts(None, None, None)
    assert memory.oom_kills_since(None) is None
    assert memory.oom_kills_since((None, None, None), proc=args["proc"]) is None


def test_the_cgroup_s_oom_count_decides_and_the_machine_s_stands_in_without_one(tmp_path: Path) -> None:
    machine = v1_machine(tmp_path)
    before = memory.oom_counts(**machine.args())
    oom_control = f"{machine.sys}/fs/cgroup/memory/ci/job7/memory.oom_control"
    assert before == memory.OomCounts(oom_control, 3, 7)
    mark = memory.oom_mark(**machine.args())
    # Another cgroup's OOM kill: the machine's count moves, this cgroup's does not.
    machine.file("proc/vmstat", "oom_kill 8\n")
    assert memory.oom_kills_between(before, memory.oom_counts(**machine.args())) == (
        0,
        f"in the memory cgroup {os.path.dirname(oom_control)}",
    )
    assert memory.oom_kills_since(mark, proc=str(machine.proc)) == (
        0,
        f"in the memory cgroup {os.path.dirname(oom_control)}",
    )
    machine.v1_group("/ci/job7", V1_UNLIMITED, ooms=4)
    assert memory.oom_kills_since(mark, proc=str(machine.proc))[0] == 1  # type: ignore[index]
    # No cgroup counter: the machine's.
    assert memory.oom_kills_between(memory.OomCounts(None, None, 7), memory.OomCounts(None, None, 9)) == (
        2,
        "on this machine (/proc/vmstat)",
    )
    assert (
        memory.oom_kills_between(memory.OomCounts(None, None, None), memory.OomCounts(None, None, 9)) is None
    )


def test_key_value_files_are_read_line_by_line() -> None:
    assert memory.field(b"oom_kill_disable 0\nunder_oom 0\noom_kill 5\n", b"oom_kill ") == 5
    assert memory.field(b"oom_kill 2", b"oom_kill ") == 2
    assert memory.field(b"oom_group_kill 0\n", b"oom_kill ") is None
    assert memory.field(b"MemAvailable:   1024 kB\n", b"MemAvailable:") == 1 << 20
    assert memory.field(b"x_total_inactive_file 1\ntotal_inactive_file 9\n", b"total_inactive_file ") == 9
    assert memory.field(None, b"oom_kill ") is None


def test_an_oom_retry_waits_for_memory_about_as_long_as_the_killed_attempt_ran() -> None:
    assert memory.memory_wait_bound(0.2) == 1.0
    assert memory.memory_wait_bound(7.5) == 7.5
    assert memory.memory_wait_bound(600.0) == 60.0


def test_a_wait_for_memory_ends_when_enough_is_there_or_after_its_bound() -> None:
    readings = iter([10, 20, 100, 100])
    slept: list[float] = []
    assert memory.wait_for_memory(50, 5.0, slept.append, lambda: next(readings)) == pytest.approx(0.2)
    assert slept == [0.1, 0.1]
    slept.clear()
    assert memory.wait_for_memory(50, 1.0, slept.append, lambda: 10) == pytest.approx(1.0)
    assert len(slept) == 10
    slept.clear()
    assert memory.wait_for_memory(50, 5.0, slept.append, lambda: None) == 0.0  # not known: no wait
    assert slept == []


# --- this machine


@pytest.mark.skipif(sys.platform != "linux", reason="/proc and cgroups are Linux's")
def test_on_this_machine_the_limit_and_available_memory_are_consistent() -> None:
    limit = memory.memory_limit()
    available = memory.available_memory()
    budget = memory.memory_budget()
    assert limit is not None
    assert available is not None
    assert budget is not None
    total = memory.field(Path("/proc/meminfo").read_bytes(), b"MemTotal:")
    assert total is not None
    assert 0 < limit.size <= total
    assert 0 <= available <= limit.size
    assert budget.size == limit.size - memory.reserve_for(limit.size)
    found = memory.memory_cgroup()
    if found is not None:  # the cgroup /proc/self/cgroup names, found on disk
        assert os.path.isdir(found.directory)
        assert found.path in Path("/proc/self/cgroup").read_text()


@pytest.mark.skipif(sys.platform != "linux", reason="/proc and cgroups are Linux's")
def test_the_runner_s_cheap_mark_reads_the_counters_the_thorough_lookup_finds() -> None:
    if sys.platform == "win32":  # skipped there; an if/else is what mypy --platform win32 leaves out
        return
    else:  # noqa: RET505
        from fi_run.step.run_posix import _oom_mark

        cheap = _oom_mark()
        assert cheap is not None
        thorough = memory.oom_mark()
        assert cheap[0] == thorough[0]
        counted, expected = memory.counts_of(cheap), memory.counts_of(thorough)
        assert counted.cgroup == expected.cgroup
        if cheap[0] is None:  # no cgroup counter: the machine's decides, so the cheap mark has it
            assert counted.system == expected.system
            assert counted.system is not None  # /proc/vmstat's oom_kill (Linux >= 4.13)
        else:  # the cgroup's decides: /proc/vmstat, the costly read, is left out
            assert counted.system is None
        assert memory.oom_kills_since(cheap) == memory.oom_kills_since(thorough)


# --- real cgroups: the kernel enforcing a limit


def _in_cgroup(cgroup: Cgroup, code: str, *args: str) -> dict[str, object]:
    done = run(cgroup.wrap(py(code, *args)), cwd=Path.cwd())
    assert done.status == 0, done.err
    result: dict[str, object] = json.loads(done.out)
    return result


_REPORT = """
import json
from fi_run import memory
limit = memory.memory_limit()
budget = memory.memory_budget()
print(json.dumps({"limit": limit.size, "source": limit.source, "available": memory.available_memory(),
                  "budget": budget.size, "cgroup": memory.memory_cgroup().directory}))
"""


def test_inside_a_limited_cgroup_its_limit_is_the_budget_s_and_available_memory_stays_below_it(
    memory_cgroups: Cgroups,
) -> None:
    cgroup = memory_cgroups.make(256 * MIB)
    seen = _in_cgroup(cgroup, _REPORT)
    assert seen["cgroup"] == str(cgroup.directory)
    assert seen["limit"] == 256 * MIB
    assert str(seen["source"]).startswith("cgroup v")
    assert seen["budget"] == 256 * MIB - memory.reserve_for(256 * MIB)
    assert isinstance(seen["available"], int)
    assert 0 < seen["available"] < 256 * MIB


_OOM_SINCE = """
import json, subprocess, sys
from fi_run import memory
mark = memory.oom_mark()
child = subprocess.run([sys.executable, "-c", sys.argv[1], "512"], check=False)
print(json.dumps({"status": child.returncode, "kills": memory.oom_kills_since(mark)}))
"""


def test_an_oom_kill_in_the_cgroup_is_counted_there_and_on_the_machine(memory_cgroups: Cgroups) -> None:
    cgroup = memory_cgroups.make(96 * MIB)
    vmstat_before = memory.oom_kill_count(Path("/proc/vmstat").read_bytes())
    seen = _in_cgroup(cgroup, _OOM_SINCE, ALLOCATE)
    assert seen["status"] == -9  # the allocation was SIGKILLed
    assert seen["kills"] == [1, f"in the memory cgroup {cgroup.directory}"]
    assert cgroup.oom_kills() == 1
    vmstat_after = memory.oom_kill_count(Path("/proc/vmstat").read_bytes())
    assert vmstat_before is not None
    assert vmstat_after is not None
    assert vmstat_after > vmstat_before  # the machine counts a cgroup's OOM kill too


# --- the log: each step's peak resident set (getrusage's RUSAGE_CHILDREN ru_maxrss)

_HOLD = """
import sys
data = bytearray(int(sys.argv[1]) << 20)
for i in range(0, len(data), 4096):
    data[i] = 1
"""


@pytest.mark.skipif(sys.platform == "win32", reason="measured on POSIX (getrusage); Windows measures none")
def test_the_log_records_the_command_s_peak_resident_set(tmp_path: Path, fi_run_module: Runner) -> None:
    log = tmp_path / "steps.log"
    for size in ("0", "64"):
        done = fi_run_module(["--log", str(log), "--", *py(_HOLD, size)], cwd=tmp_path)
        assert done.status == 0, done.err
    small, big = (json.loads(line)["peak_rss"] for line in log.read_text().splitlines())
    assert isinstance(small, int)
    assert isinstance(big, int)
    assert 0 < small < 64 * MIB <= big  # bytes, the 64 MiB it touched included (Linux: KiB * 1024)
    assert big < small + 80 * MIB


@pytest.mark.skipif(sys.platform == "win32", reason="measured on POSIX (getrusage); Windows measures none")
def test_the_peak_is_the_largest_process_the_command_waited_for(
    tmp_path: Path, fi_run_module: Runner
) -> None:
    """A compiler driver's peak is its cc1plus's: getrusage counts the children the command waited for."""
    log = tmp_path / "steps.log"
    driver = "import subprocess, sys; subprocess.run([sys.executable, '-c', sys.argv[1], '64'], check=True)"
    done = fi_run_module(["--log", str(log), "--", *py(driver, _HOLD)], cwd=tmp_path)
    assert done.status == 0, done.err
    assert json.loads(log.read_text())["peak_rss"] >= 64 * MIB


# --- --mem: a share of the memory budget, taken like weighted seats (issue 19, items 1 and 2)


def test_a_mem_step_takes_the_seats_its_peak_needs_rounded_up(tmp_path: Path) -> None:
    machine = v2_machine(tmp_path)
    budget = memory.memory_budget(**machine.args())
    assert budget is not None
    claim = memory.memory_claim(GIB, None, **machine.args())
    assert claim.resource == "memory:///build.slice"  # the cgroup whose limit binds: every step in it shares
    assert (claim.budget, claim.seats) == (budget.size, memory.MEMORY_SEATS)
    assert claim.seat == -(-budget.size // memory.MEMORY_SEATS)
    assert claim.weight == -(-GIB // claim.seat)  # rounded up: never less than declared
    assert claim.weight * claim.seat >= GIB > (claim.weight - 1) * claim.seat
    assert claim.warning is None
    given = memory.memory_claim(512 * MIB, 4 * GIB, **machine.args())  # --mem-limit: that budget, same scope
    assert (given.resource, given.budget, given.weight) == ("memory:///build.slice", 4 * GIB, 16)


def test_a_mem_step_larger_than_the_whole_budget_takes_every_seat_with_a_warning(tmp_path: Path) -> None:
    machine = v1_machine(tmp_path)
    claim = memory.memory_claim(64 * GIB, None, **machine.args())
    assert claim.weight == memory.MEMORY_SEATS
    assert claim.warning is not None
    assert claim.warning.startswith("--mem 64 GiB is more than the memory budget, ")
    assert claim.warning.endswith(": the step runs alone")


def test_where_no_memory_can_be_read_mem_asks_for_a_limit(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="give the budget with --mem-limit SIZE"):
        memory.memory_claim(GIB, None, proc=str(tmp_path / "proc"), sys_root=str(tmp_path / "sys"))


@pytest.mark.skipif(sys.platform == "win32", reason="sh scripts, as tests/test_locks.py (POSIX only)")
def test_mem_steps_together_never_take_more_than_the_budget(tmp_path: Path, procs: Procs) -> None:
    """--mem-limit 1G: two steps of 400M fit (100 of 128 seats), a third waits until one leaves, and a step of
    8M is not let past it: first come, first served."""
    scripts = write_scripts(tmp_path / "scripts")
    log = tmp_path / "order.log"

    def mem(size: str) -> list[str | os.PathLike[str]]:
        return ["--lock-dir", tmp_path / "locks", "--mem-limit", "1G", "--mem", size]

    a = start_holder(procs, scripts, mem("400M"), log=log, tag="a.0", control=tmp_path / "a", cwd=tmp_path)
    b = start_holder(procs, scripts, mem("400M"), log=log, tag="b.1", control=tmp_path / "b", cwd=tmp_path)
    c = procs.start_fi_run([*mem("400M"), "--", "sh", scripts.step, log, "c.2", "0"], cwd=tmp_path)
    wait_until(lambda: any((tmp_path / "locks").glob("*/waiters/*.slot")), "c to wait for 50 seats")
    d = procs.start_fi_run([*mem("8M"), "--", "sh", scripts.step, log, "d.3", "0"], cwd=tmp_path)
    wait_until(lambda: len(list((tmp_path / "locks").glob("*/waiters/*"))) == 2, "d to queue behind c")
    assert analyse(read_log(log)).entered == ["a.0", "b.1"]  # c and d wait
    a.release()
    assert (finish(c), finish(d)) == (0, 0)
    b.release()
    assert (finish(a.proc), finish(b.proc)) == (0, 0)
    lines = read_log(log).split("\n")
    exit_a = lines.index(next(line for line in lines if line.startswith("exit a.0 ")))
    assert all(
        lines.index(next(line for line in lines if line.startswith(f"enter {tag} "))) > exit_a
        for tag in ("c.2", "d.3")
    )


@pytest.mark.skipif(sys.platform == "win32", reason="sh scripts, as tests/test_locks.py (POSIX only)")
def test_a_mem_step_larger_than_the_budget_runs_alone_and_says_so(tmp_path: Path, procs: Procs) -> None:
    scripts = write_scripts(tmp_path / "scripts")
    log = tmp_path / "order.log"
    mem: list[str | os.PathLike[str]] = ["--lock-dir", tmp_path / "locks", "--mem-limit", "1G", "--mem"]
    big = start_holder(
        procs, scripts, [*mem, "3G"], log=log, tag="big.0", control=tmp_path / "big", cwd=tmp_path
    )
    small = procs.start_fi_run([*mem, "8M", "--", "sh", scripts.step, log, "s.1", "0"], cwd=tmp_path)
    wait_until(lambda: any((tmp_path / "locks").glob("*/waiters/*")), "the small step to wait")
    big.release()
    assert (finish(big.proc), finish(small)) == (0, 0)
    assert analyse(read_log(log)).entered == ["big.0", "s.1"]
    done = run_fi_run(
        "module", ["--lock-dir", str(tmp_path / "locks"), "--mem-limit", "1G", "--mem", "3G", "--", "true"]
    )
    assert done.status == 0
    assert (
        done.err
        == "fi_run: --mem 3 GiB is more than the memory budget, 1 GiB (--mem-limit): the step runs alone\n"
    )


def test_inside_a_limited_cgroup_mem_shares_that_cgroup_s_budget(
    tmp_path: Path, memory_cgroups: Cgroups
) -> None:
    """No --mem-limit: the budget is the cgroup's limit less the reserve, and the resource is named after
    the cgroup, so that every step in it shares one budget."""
    cgroup = memory_cgroups.make(512 * MIB)
    argv = [
        sys.executable,
        "-m",
        "fi_run",
        "-v",
        "--lock-dir",
        str(tmp_path / "locks"),
        "--mem",
        "64M",
        "--",
        "true",
    ]
    done = run(cgroup.wrap(argv), cwd=tmp_path)
    assert done.status == 0, done.err
    scope = str(cgroup.directory).partition("/memory")[2] if cgroup.version == 1 else ""
    budget = 512 * MIB - memory.reserve_for(512 * MIB)
    weight = -(-64 * MIB // -(-budget // memory.MEMORY_SEATS))
    held = [line for line in done.err.splitlines() if "locks held after" in line]
    assert len(held) == 1
    assert f"{weight} of the 128 seats of the memory budget 'memory://" in held[0]
    if scope:
        assert held[0].endswith(f"memory://{scope}'")
