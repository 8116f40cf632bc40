"""Benchmark (issue 19): unwrapped steps in a memory cgroup, with and without a jobserver memory floor.

A build of STEPS steps, each a Python process that allocates and touches SIZE MiB and holds it HOLD seconds,
none of them wrapped in fi_run, run by ninja at -j JOBS inside a memory cgroup of LIMIT MiB (no swap) made
for the run (root; cgroup v1 below this process's own memory cgroup, v2 at the top of the hierarchy), and
removed afterwards. The ways, interleaved over --runs:
  (n) ninja -j JOBS, no jobserver;
  (j) fi-run jobserver -j JOBS -- ninja: the same slots, no floor;
  (f) fi-run jobserver -j JOBS --keep-free-memory FLOOR -- ninja.
Each runs with `ninja -k 0`, so that a step the kernel kills does not stop the others. Reported per way
(medians over the runs): wall time, the steps that made their output, the cgroup's OOM kills (v1
memory.oom_control / v2 memory.events: oom_kill) and its peak usage (v1 memory.max_usage_in_bytes, v2
memory.peak where the kernel has it).

Usage: sudo python benchmarks/memory_floor.py [--steps 12] [--size 150] [--hold 1] [--jobs 6] [--limit 512]
                                              [--floor 200M] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

from common import prepare

from fi_run import memory

ALLOCATE = """
import sys, time
data = bytearray(int(sys.argv[1]) << 20)
for i in range(0, len(data), 4096):
    data[i] = 1
time.sleep(float(sys.argv[2]))
open(sys.argv[3], "w").close()
"""


def make_cgroup(limit: int) -> tuple[str, int]:
    found = memory.memory_cgroup()
    if found is None:
        sys.exit("memory_floor.py: no memory cgroup hierarchy is mounted")
    parent = found.directory if found.version == 1 else found.top
    directory = os.path.join(parent, f"fi_run-bench-{uuid.uuid4().hex[:12]}")
    os.mkdir(directory)
    if found.version == 1:
        files = [("memory.limit_in_bytes", limit), ("memory.memsw.limit_in_bytes", limit)]
    else:
        files = [("memory.max", limit), ("memory.swap.max", 0)]
    for name, value in files:
        if os.path.exists(os.path.join(directory, name)):
            with open(os.path.join(directory, name), "w") as f:
                f.write(str(value))
    return directory, found.version


def remove_cgroup(directory: str) -> None:
    for _ in range(500):
        try:
            os.rmdir(directory)
            return
        except OSError:
            time.sleep(0.01)
    sys.exit(f"memory_floor.py: could not remove {directory}")


def peak_and_kills(directory: str, version: int) -> tuple[int | None, int]:
    def read(name: str) -> bytes | None:
        try:
            with open(os.path.join(directory, name), "rb") as f:
                return f.read()
        except OSError:
            return None

    peak = read("memory.max_usage_in_bytes" if version == 1 else "memory.peak")
    kills = memory.oom_kill_count(read("memory.oom_control" if version == 1 else "memory.events"))
    return (int(peak) if peak and peak.strip().isdigit() else None), kills or 0


def one_run(way: str, args: argparse.Namespace, env: dict[str, str]) -> dict[str, float]:
    work = tempfile.mkdtemp(prefix="fi_run-memory-floor-")
    try:
        with open(os.path.join(work, "alloc.py"), "w") as f:
            f.write(ALLOCATE)
        lines = [f"rule alloc\n  command = {sys.executable} alloc.py {args.size} {args.hold} $out\n"]
        lines += [f"build out{i}: alloc\n" for i in range(args.steps)]
        with open(os.path.join(work, "build.ninja"), "w") as f:
            f.write("".join(lines))
        ninja = shutil.which("ninja", path=os.path.dirname(sys.executable) + os.pathsep + env["PATH"])
        assert ninja is not None, "no ninja: pip install ninja"
        fi_run = [sys.executable, "-m", "fi_run", "jobserver", "-j", str(args.jobs)]
        command = {
            "n": [ninja, "-k", "0", "-j", str(args.jobs)],
            "j": [*fi_run, "--", ninja, "-k", "0"],
            "f": [*fi_run, "--keep-free-memory", args.floor, "--", ninja, "-k", "0"],
        }[way]
        directory, version = make_cgroup(args.limit << 20)
        enter = 'echo $$ > "$0/cgroup.procs" && exec "$@"'
        started = time.monotonic()
        subprocess.run(
            ["/bin/sh", "-c", enter, directory, *command],
            cwd=work,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )
        wall = time.monotonic() - started
        peak, kills = peak_and_kills(directory, version)
        remove_cgroup(directory)
        made = sum(1 for i in range(args.steps) if os.path.exists(os.path.join(work, f"out{i}")))
        return {"wall": wall, "made": made, "kills": kills, "peak": (peak or 0) / (1 << 20)}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--size", type=int, default=150, help="MiB each step allocates and touches")
    parser.add_argument("--hold", type=float, default=1.0, help="seconds each step holds it")
    parser.add_argument("--jobs", type=int, default=6)
    parser.add_argument("--limit", type=int, default=512, help="the cgroup's limit, MiB")
    parser.add_argument("--floor", default="200M", help="--keep-free-memory for way (f)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--ways", default="n,j,f")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("memory_floor.py: making a memory cgroup needs root")
    env = prepare()
    ways = args.ways.split(",")
    results: dict[str, list[dict[str, float]]] = {way: [] for way in ways}
    for _ in range(args.runs):
        for way in ways:
            results[way].append(one_run(way, args, env))
    load = os.getloadavg()[0]
    print(
        f"{args.steps} steps of {args.size} MiB held {args.hold:g} s, -j{args.jobs}, cgroup limit "
        f"{args.limit} MiB, floor {args.floor}; {args.runs} interleaved runs, medians; load {load:.2f}, "
        f"{time.strftime('%Y-%m-%d %H:%M')}"
    )
    names = {"n": "(n) ninja -j", "j": "(j) jobserver", "f": f"(f) --keep-free-memory {args.floor}"}
    print(f"{'way':34} {'wall s':>7} {'made':>5} {'OOM kills':>10} {'peak MiB':>9}   runs (made/kills)")
    for way in ways:
        runs = results[way]

        def median(key: str, runs: list[dict[str, float]] = runs) -> float:
            return statistics.median(r[key] for r in runs)

        detail = " ".join(f"{r['made']:.0f}/{r['kills']:.0f}" for r in runs)
        print(
            f"{names[way]:34} {median('wall'):7.2f} {median('made'):5.0f} {median('kills'):10.0f} "
            f"{median('peak'):9.0f}   {detail}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
