"""Benchmark: what --log / FI_RUN_LOG costs a build step.

Runs `fi-run --stamp S -- true` (and the same with one --lock) with and without FI_RUN_LOG, interleaved: each
round runs every variant once, in a fresh random order, so machine noise hits them alike. Prints the median
wall time of each, the difference the log makes, and the cost of building and appending one record measured
in-process (no process start-up noise).

Usage: python benchmarks/log_overhead.py [--rounds N]      (uses the Python running it, and fi-run beside it)
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time


def measure(commands: dict[str, tuple[list[str], dict[str, str]]], rounds: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in commands}
    names = list(commands)
    for _ in range(rounds):
        random.shuffle(names)
        for name in names:
            argv, env = commands[name]
            start = time.perf_counter()
            result = subprocess.run(
                argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False
            )
            times[name].append(time.perf_counter() - start)
            if result.returncode != 0 or result.stderr:
                raise SystemExit(f"{name}: exit {result.returncode} {result.stderr!r}: {argv}")
    return times


def append_cost(directory: str, count: int = 2000) -> float:
    """Seconds to build one record and append it (what a logged step adds after its command), in-process."""
    from fi_run.messages import Reporter
    from fi_run.observe.steplog import append, as_step
    from fi_run.records import StepRecord, StepSpec

    spec = StepSpec(command=("true",), start_dir=directory, stamp=os.path.join(directory, "s"))
    path = os.path.join(directory, "inprocess.log")
    reporter = Reporter()
    start = time.perf_counter()
    for _ in range(count):
        record = StepRecord()
        record.add_attempt(0.0, 0, None, None)
        append(path, as_step(record, spec, 0, None), reporter)
    return (time.perf_counter() - start) / count


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=30, help="interleaved rounds (default 30)")
    args = parser.parse_args()
    fi_run = os.path.join(os.path.dirname(sys.executable), "fi-run")
    true = "/bin/true" if os.path.exists("/bin/true") else "true"
    base = {k: v for k, v in os.environ.items() if not k.startswith("FI_RUN_")}
    with tempfile.TemporaryDirectory() as tmp:
        stamp = os.path.join(tmp, "s.stamp")
        log = os.path.join(tmp, "fi_run.log")
        logged = {**base, "FI_RUN_LOG": log}
        plain_argv = [fi_run, "--stamp", stamp, "--", true]
        lock_dir = os.path.join(tmp, "locks")
        lock_argv = [fi_run, "--stamp", stamp, "--lock-dir", lock_dir, "--lock", tmp, "--", true]
        commands = {
            "fi-run --stamp S -- true": (plain_argv, base),
            "FI_RUN_LOG=L fi-run --stamp S -- true": (plain_argv, logged),
            "fi-run --stamp S --lock R -- true": (lock_argv, base),
            "FI_RUN_LOG=L fi-run --stamp S --lock R -- true": (lock_argv, logged),
        }
        times = measure(commands, args.rounds)
        with open(log, encoding="ascii") as stream:
            lines = sum(1 for _ in stream)
        per_record = append_cost(tmp)
    medians = {name: statistics.median(values) for name, values in times.items()}
    machine = f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs"
    print(
        f"Python {sys.version.split()[0]} on {machine}, {args.rounds} interleaved rounds, "
        f"{time.strftime('%Y-%m-%d')}"
    )
    print(f"{'command':48} {'median ms':>10} {'IQR ms':>13} {'log adds ms':>12} {'log adds':>9}")
    pairs = [
        ("fi-run --stamp S -- true", "FI_RUN_LOG=L fi-run --stamp S -- true"),
        ("fi-run --stamp S --lock R -- true", "FI_RUN_LOG=L fi-run --stamp S --lock R -- true"),
    ]

    def iqr(name: str) -> str:
        quartiles = statistics.quantiles(times[name], n=4)
        return f"{quartiles[0] * 1000:.1f}-{quartiles[2] * 1000:.1f}"

    for without, with_log in pairs:
        print(f"{without:48} {medians[without] * 1000:10.1f} {iqr(without):>13}")
        delta = medians[with_log] - medians[without]
        print(
            f"{with_log:48} {medians[with_log] * 1000:10.1f} {iqr(with_log):>13} {delta * 1000:+12.2f} "
            f"{delta / medians[without] * 100:+8.1f}%"
        )
    print(f"\n{lines} log lines written ({2 * args.rounds} expected)")
    print(f"in-process: building and appending one record takes {per_record * 1e6:.1f} us (mean of 2000)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
