"""Benchmark 1: fi_run's own cost per build step.

Runs each command many times, interleaved (one round runs every command once, in a fresh random order, so
machine noise hits all of them alike), and reports the median wall time and its ratio to `python -c pass`.
Then lists the modules `python -X importtime -m fi_run ...` spends most on, so a regression has a culprit.

Usage: python benchmarks/overhead.py [--rounds N]      (uses the Python running it, and fi-run beside it)
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

from common import prepare

import fi_run

UV_LAUNCHER = """#!{python}
# -*- coding: utf-8 -*-
import sys
from fi_run.__main__ import entrypoint
if __name__ == "__main__":
    if sys.argv[0].endswith("-script.pyw"):
        sys.argv[0] = sys.argv[0][:-11]
    elif sys.argv[0].endswith(".exe"):
        sys.argv[0] = sys.argv[0][:-4]
    sys.exit(entrypoint())
"""


def measure(commands: dict[str, list[str]], rounds: int, env: dict[str, str]) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in commands}
    names = list(commands)
    for _ in range(rounds):
        random.shuffle(names)
        for name in names:
            start = time.perf_counter()
            result = subprocess.run(
                commands[name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=False
            )
            times[name].append(time.perf_counter() - start)
            if result.returncode != 0:
                raise SystemExit(f"{name}: exit {result.returncode}: {commands[name]}")
    return times


def importtime(argv: list[str], env: dict[str, str], top: int = 12) -> list[tuple[int, str]]:
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    rows = []
    for line in proc.stderr.splitlines():
        fields = line.removeprefix("import time:").split("|")
        if len(fields) == 3 and fields[0].strip().isdigit():
            rows.append((int(fields[0]), fields[2].rstrip()))
    rows.sort(reverse=True)
    return rows[:top]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    py = sys.executable
    bindir = os.path.dirname(py)
    pip_launcher = os.path.join(bindir, "fi-run")
    true = "/bin/true" if os.path.exists("/bin/true") else "true"
    with tempfile.TemporaryDirectory() as tmp:
        # The console script as uv writes it (pip's launcher also imports re, ~10 ms here; uv's does not).
        uv_launcher = os.path.join(tmp, "fi-run-uv")
        with open(uv_launcher, "w", encoding="utf-8") as f:
            f.write(UV_LAUNCHER.format(python=py))
        os.chmod(uv_launcher, 0o755)
        main_py = os.path.join(os.path.dirname(os.path.abspath(fi_run.__file__)), "__main__.py")
        stamp = os.path.join(tmp, "s.stamp")
        lockdir = os.path.join(tmp, "locks")
        step = ["--stamp", stamp, "--env", "K=V", "--", true]
        locked = ["--stamp", stamp, "--lock-dir", lockdir, "--lock", tmp, "--", true]
        commands = {
            "true (bare command)": [true],
            "python -c pass": [py, "-c", "pass"],
            'python -c "import filelock"': [py, "-c", "import filelock"],
            "fi-run --stamp S --env K=V -- true (pip's launcher)": [pip_launcher, *step],
            "fi-run ... (uv's launcher)": [uv_launcher, *step],
            "python fi_run/__main__.py ... (by path, as GN)": [py, main_py, *step],
            "python -m fi_run --stamp S --env K=V -- true": [py, "-m", "fi_run", *step],
            "fi-run --stamp S --lock R -- true (pip's launcher)": [pip_launcher, *locked],
            "fi-run --stamp S --lock R -- true (uv's launcher)": [uv_launcher, *locked],
        }
        env = prepare()
        times = measure(commands, args.rounds, env)
        base = statistics.median(times["python -c pass"])
        base_filelock = statistics.median(times['python -c "import filelock"'])
        print(
            f"{sys.version.split()[0]} on {os.uname().sysname} {os.uname().machine}, {os.cpu_count()} CPUs, "
            f"{args.rounds} interleaved rounds, {time.strftime('%Y-%m-%d')}"
        )
        print(f"{'command':52} {'median ms':>10} {'vs python -c pass':>18} {'vs import filelock':>19}")
        for name, values in times.items():
            median = statistics.median(values)
            print(f"{name:52} {median * 1000:10.1f} {median / base:17.2f}x {median / base_filelock:18.2f}x")
        for label, argv in (
            (
                "no lock",
                [py, "-X", "importtime", "-m", "fi_run", "--stamp", stamp, "--env", "K=V", "--", true],
            ),
            (
                "--lock",
                [py, "-X", "importtime", "-m", "fi_run", "--lock-dir", lockdir, "--lock", tmp, "--", true],
            ),
        ):
            print(f"\npython -X importtime, {label}: largest self times")
            for self_us, name in importtime(argv, env):
                print(f"  {self_us:7d} us  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
