"""Benchmark (issue 19): what --mem costs a step, and whether a heavy step waits behind light ones.

1. CPU per step, by path, through the lock directory (no coordinator): `--semaphore R=128:8 -- true` against
   `--mem 100M -- true` (which reads the memory budget from the cgroup or /proc/meminfo and takes that many
   of 128 seats of memory://SCOPE: memory.memory_claim), ROUNDS interleaved rounds in a fresh random order
   each; medians of the children's user + system time. Goal: --mem costs at most 5 ms more.
2. Weights, first come first served: a stream of weight-1 steps (`--semaphore R=4`, HOLD seconds each, one
   starting every HOLD/4 s, so the 4 seats stay full) and, once the stream runs, one weight-4 step
   (`--semaphore R=4:4`). Each step's --log says when it began to wait for the seats and how long it
   waited; the commands note entering and leaving in one O_APPEND file (never more than 4 seats taken).
   Reported: how long the weight-4 step waited and how many weight-1 steps that began to wait after it
   entered before it. Goal: it waits
   at most one hold time (for the holders inside when it came) and none of the later ones passes it. Run
   through the lock directory, and under `fi-run jobserver` (the coordinator), TRIALS times each.

Usage: python benchmarks/memory_steps.py [--rounds 30] [--hold 0.4] [--trials 5]
"""

from __future__ import annotations

import argparse
import json
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

# A step's command: note entering, hold, note leaving (one write each: O_APPEND keeps lines whole).
NOTE = 'echo "s $0 $(date +%s.%N)" >> "$1"; sleep "$2"; echo "e $0 $(date +%s.%N)" >> "$1"'


def cpu_of(argv: list[str], env: dict[str, str], cwd: str) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"exit {done.returncode}: {argv}: {done.stderr.decode()}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def per_step(rounds: int, env: dict[str, str], tmp: str) -> None:
    locks = os.path.join(tmp, "locks-cpu")
    ways = {
        "plain step": [sys.executable, MAIN, "--", "true"],
        "--semaphore R=128:8": [
            sys.executable,
            MAIN,
            "--lock-dir",
            locks,
            "--semaphore",
            "R=128:8",
            "--",
            "true",
        ],
        "--mem 100M": [sys.executable, MAIN, "--lock-dir", locks, "--mem", "100M", "--", "true"],
    }
    times: dict[str, list[float]] = {name: [] for name in ways}
    step_env = {**env, "FI_RUN_COORDINATOR": ""}
    step_env.pop("MAKEFLAGS", None)
    for argv in ways.values():  # warm up: lock files made, caches filled
        cpu_of(argv, step_env, tmp)
    for _ in range(rounds):
        order = list(ways.items())
        random.shuffle(order)
        for name, argv in order:
            times[name].append(cpu_of(argv, step_env, tmp) * 1000)
    load = os.getloadavg()[0]
    print(f"{sys.version.split()[0]}, 2 CPUs, load {load:.1f}, {time.strftime('%Y-%m-%d %H:%M')}")
    print(f"\nCPU per step, by path, lock directory, medians of {rounds} interleaved rounds (ms)")
    base = statistics.median(times["--semaphore R=128:8"])
    for name, values in times.items():
        median = statistics.median(values)
        extra = f"   {median - base:+.2f} ms against --semaphore" if name == "--mem 100M" else ""
        print(f"  {name:24} {median:7.2f}{extra}")


def events(path: str) -> list[tuple[str, str, float]]:
    with open(path) as f:
        return [(kind, tag, float(at)) for kind, tag, at in (line.split() for line in f if line.strip())]


def weights_trial(
    hold: float, under_jobserver: bool, env: dict[str, str], tmp: str, trial: int
) -> tuple[float, int]:
    """One trial: (the weight-4 step's wait in seconds, later weight-1 arrivals that entered before it)."""
    work = os.path.join(tmp, f"weights-{int(under_jobserver)}-{trial}")
    os.makedirs(work)
    log = os.path.join(work, "events")
    steps = os.path.join(work, "steps.jsonl")  # --log: when each step began to wait, and how long
    locks = os.path.join(work, "locks")
    light = 16
    gap = hold / 4
    heavy_at = 6  # the heavy step arrives after this many light ones have started
    lines = ["rule run\n  command = $cmd\n"]
    for i in range(light + 1):
        heavy = i == heavy_at
        tag = "H" if heavy else f"L{i}"
        seats = "R=4:4" if heavy else "R=4"
        start = i * gap if not heavy else (heavy_at - 0.5) * gap
        fi_run = " ".join(
            shlex.quote(a)
            for a in (sys.executable, MAIN, "--lock-dir", locks, "--log", steps, "--semaphore", seats)
        )
        note = f"sh -c {shlex.quote(NOTE.replace('$', '$$'))} {tag} {shlex.quote(log)} {hold}"
        lines.append(f"build {tag}: run\n  cmd = sleep {start:.3f}; exec {fi_run} -- {note}\n")
    with open(os.path.join(work, "build.ninja"), "w") as f:
        f.write("".join(lines))
    jobs = str(light + 2)
    argv = [FI_RUN, "jobserver", "-j", jobs, "--", NINJA] if under_jobserver else [NINJA, "-j", jobs]
    done = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"the build failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")
    seen = events(log)
    arrived: dict[str, float] = {}  # when the step began to wait for the seats (its --log record)
    entered: dict[str, float] = {}
    with open(steps) as f:
        for line in f:
            record = json.loads(line)
            [lock] = record["locks"]
            tag = record["argv"][3]  # sh -c NOTE TAG LOG HOLD
            arrived[tag] = record["start"] + lock["wait_start"]
            entered[tag] = arrived[tag] + lock["wait"]
    inside = 0
    for kind, _tag, _at in sorted(seen, key=lambda e: e[2]):
        if kind in "se":
            inside += 1 if kind == "s" else -1
            if inside > 4:
                raise SystemExit(
                    "more than 4 weight-1 steps inside at once, or the weight-4 step with others"
                )
    passed = sum(
        1 for tag in entered if tag != "H" and arrived[tag] > arrived["H"] and entered[tag] < entered["H"]
    )
    return entered["H"] - arrived["H"], passed


def weights(hold: float, trials: int, env: dict[str, str], tmp: str) -> None:
    print(f"\nA weight-4 step among weight-1 steps on 4 seats, each holding {hold:g} s; {trials} trials each")
    print(f"  {'way':28} {'waits s (each trial)':40} {'later ones that passed it'}")
    for under_jobserver in (False, True):
        results = [weights_trial(hold, under_jobserver, env, tmp, t) for t in range(trials)]
        waits = " ".join(f"{w:.2f}" for w, _ in results)
        passed = " ".join(str(p) for _, p in results)
        name = "coordinator (fi-run jobserver)" if under_jobserver else "lock directory (ninja -j)"
        print(f"  {name:28} {waits:40} {passed}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--hold", type=float, default=0.4)
    parser.add_argument("--trials", type=int, default=5)
    args = parser.parse_args()
    env = prepare()
    with tempfile.TemporaryDirectory() as tmp:
        per_step(args.rounds, env, tmp)
        weights(args.hold, args.trials, env, tmp)


if __name__ == "__main__":
    main()
