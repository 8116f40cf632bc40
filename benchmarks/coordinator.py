"""Benchmark: what a locked step costs with and without the build's lock coordinator (issue 18).

1. CPU per step, run by path (as GN runs it): a plain step; --shared-lock and --lock through the lock
   directory (filelock imported by the step); the same under a running coordinator (the step's own CPU, and
   the coordinator's CPU per step, from the jobserver's rusage). ROUNDS interleaved rounds, each running every
   way once in a fresh random order; medians.
2. The GN-like build: ACTIONS actions, each `python -c "import json"` run by fi_run by path, under
   `fi-run jobserver -j 4 -- ninja`, three ways: no lock; --shared-lock on one venv under the coordinator; the
   same with --no-coordinator (every step through the lock directory). Wall and CPU (all processes of the
   build), BUILDS interleaved runs each; medians.

Usage: python benchmarks/coordinator.py [--rounds 30] [--actions 600] [--builds 3]
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

from common import prepare

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAIN = os.path.join(HERE, "fi_run", "__main__.py")
FI_RUN = os.path.join(os.path.dirname(sys.executable), "fi-run")
NINJA = os.path.join(os.path.dirname(sys.executable), "ninja")


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def process_cpu(pid: int) -> float:
    """A live process's own CPU seconds (Linux /proc)."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rpartition(b")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def per_step(rounds: int, env: dict[str, str], tmp: str) -> None:
    keep = (
        "import os, sys, time\n"
        "open(sys.argv[1], 'w').write(os.environ['FI_RUN_COORDINATOR'])\n"
        "while not os.path.exists(sys.argv[2]): time.sleep(0.05)"
    )
    address_file, stop = os.path.join(tmp, "address"), os.path.join(tmp, "stop")
    server = subprocess.Popen(
        [FI_RUN, "jobserver", "--", sys.executable, "-c", keep, address_file, stop], env=env
    )
    while not os.path.exists(address_file) or not open(address_file).read():  # noqa: SIM115
        time.sleep(0.01)
    coordinated = {**env, "FI_RUN_COORDINATOR": open(address_file).read()}  # noqa: SIM115
    plain_env = {k: v for k, v in env.items() if k != "FI_RUN_COORDINATOR"}
    locks = ["--lock-dir", os.path.join(tmp, "locks")]
    venv = os.path.join(tmp, "venv")
    ways = {
        "python -c pass": ([sys.executable, "-c", "pass"], plain_env),
        "plain step": ([sys.executable, MAIN, "--", "true"], plain_env),
        "--shared-lock, lock directory": (
            [sys.executable, MAIN, *locks, "--shared-lock", venv, "--", "true"],
            plain_env,
        ),
        "--lock, lock directory": ([sys.executable, MAIN, *locks, "--lock", venv, "--", "true"], plain_env),
        "--shared-lock, coordinator": (
            [sys.executable, MAIN, *locks, "--shared-lock", venv, "--", "true"],
            coordinated,
        ),
        "--lock, coordinator": ([sys.executable, MAIN, *locks, "--lock", venv, "--", "true"], coordinated),
    }
    cpu: dict[str, list[float]] = {name: [] for name in ways}
    coordinator_cpu: dict[str, list[float]] = {name: [] for name in ways if "coordinator" in name}
    rng = random.Random(1)
    for _ in range(rounds):
        order = list(ways)
        rng.shuffle(order)
        for name in order:
            argv, way_env = ways[name]
            before, server_before = children_cpu(), process_cpu(server.pid)
            subprocess.run(argv, env=way_env, check=True, stdout=subprocess.DEVNULL)
            cpu[name].append((children_cpu() - before) * 1000)
            if name in coordinator_cpu:
                coordinator_cpu[name].append((process_cpu(server.pid) - server_before) * 1000)
    open(stop, "w").close()
    server.wait()
    plain = statistics.median(cpu["plain step"])
    print(f"\nCPU per step, by path, medians of {rounds} interleaved rounds (ms; x: against a plain step)")
    for name, values in cpu.items():
        median = statistics.median(values)
        extra = ""
        if name in coordinator_cpu:
            # The coordinator's clock ticks are coarse (10 ms): the mean over the rounds, not the median.
            spent = statistics.mean(coordinator_cpu[name])
            extra = f"   + coordinator {spent:.2f} ms/step = {(median + spent) / plain:.2f}x"
        print(f"  {name:32} {median:7.2f}  {median / plain:5.2f}x{extra}")


def gn_like(actions: int, builds: int, env: dict[str, str], tmp: str) -> None:
    venv = os.path.join(tmp, "venv")
    os.makedirs(venv, exist_ok=True)
    results: dict[str, list[tuple[float, float]]] = {}
    ways = {
        "no lock": ([], []),
        "--shared-lock, coordinator": (["--shared-lock", venv], []),
        "--shared-lock, --no-coordinator": (["--shared-lock", venv], ["--no-coordinator"]),
    }
    rng = random.Random(2)
    for run in range(builds):
        order = list(ways)
        rng.shuffle(order)
        for name in order:
            lock, server_options = ways[name]
            build = os.path.join(tmp, f"build-{run}-{order.index(name)}")
            os.makedirs(build)
            step = [sys.executable, MAIN, "--lock-dir", os.path.join(tmp, "locks"), *lock, "--"]
            step += [sys.executable, "-c", "import json"]
            command = shlex.join(step).replace("$", "$$")
            lines = ["rule run\n  command = " + command + " && touch $out\n"]
            lines += [f"build out{i}: run\n" for i in range(actions)]
            with open(os.path.join(build, "build.ninja"), "w") as f:
                f.write("\n".join(lines))
            argv = [FI_RUN, "jobserver", "-j", "4", *server_options, "--", NINJA]
            before, start = children_cpu(), time.monotonic()
            subprocess.run(argv, cwd=build, env=env, check=True, stdout=subprocess.DEVNULL)
            results.setdefault(name, []).append((time.monotonic() - start, children_cpu() - before))
    base_wall = statistics.median(w for w, _ in results["no lock"])
    base_cpu = statistics.median(c for _, c in results["no lock"])
    print(
        f"\n{actions} GN-like actions (python -c 'import json'), by path, fi-run jobserver -j 4, "
        f"{builds} runs each"
    )
    print(f"  {'way':34} {'wall s':>8} {'x':>6} {'CPU s':>8} {'x':>6}")
    for name, runs in results.items():
        wall = statistics.median(w for w, _ in runs)
        cpu = statistics.median(c for _, c in runs)
        print(f"  {name:34} {wall:8.2f} {wall / base_wall:6.2f} {cpu:8.2f} {cpu / base_cpu:6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--actions", type=int, default=600)
    parser.add_argument("--builds", type=int, default=3)
    args = parser.parse_args()
    env = prepare()
    env.pop("FI_RUN_COORDINATOR", None)
    load = os.getloadavg()[0]
    print(
        f"{sys.version.split()[0]}, {os.cpu_count()} CPUs, load {load:.1f}, {time.strftime('%Y-%m-%d %H:%M')}"
    )
    with tempfile.TemporaryDirectory(prefix="fi_run-coordinator-bench-") as tmp:
        if args.rounds:
            per_step(args.rounds, env, tmp)
        if args.builds:
            gn_like(args.actions, args.builds, env, tmp)


if __name__ == "__main__":
    main()
