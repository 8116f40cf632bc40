"""Stress: many mixed lock steps at high -j, checked by an interval checker; then the same with SIGKILLs.

STEPS fi_run processes, at most JOBS at once, each on one of two resources, each resource spelled eight ways
(relative, absolute, through a symlink, with '..', './', a trailing '/.', ...):
- R: --lock (exclusive, 40 %) or --shared-lock (40 %);
- S: --semaphore S=4 (20 %).
Each command is sh with builtins only: it appends "s KIND ID" to an events file, sleeps HOLD, appends
"e KIND ID". The events file is opened O_APPEND by every writer, so its line order is the order things
happened, without clocks. The checker walks it: an exclusive holder of R is never inside with anyone, no
shared holder is inside with an exclusive one, and S never has more than 4 inside.

Fairness comes from the --log every step writes: a step arrives when it starts waiting for its lock and
acquires it ``wait`` later. For each exclusive step: how many steps on R that arrived after it acquired R
before it ("overtaken by"), how many of those were readers, and its wait against its fair share (the
holds of the steps ahead of it in arrival order that were still waiting or holding when it arrived).

The fault run does the same while killing random fi_run processes (holders and waiters alike) with
SIGKILL every KILL_EVERY seconds. A killed holder's command keeps the lock until it ends (the command
inherits the lock, docs/faults.md), so the checker must still find no overlap.

Usage: python benchmarks/stress.py [--steps 2000] [--jobs 64] [--hold 0.01] [--fault-steps 500]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import prepare

SEM_SLOTS = 4


def spellings(root: Path, name: str) -> list[str]:
    """Eight spellings of root/name, relative to root (the steps' working directory)."""
    (root / name).mkdir(exist_ok=True)
    link = root / f"link-to-{name}"
    if not link.exists():
        link.symlink_to(root / name, target_is_directory=True)
    (root / "sub").mkdir(exist_ok=True)
    return [
        name,
        str(root / name),
        f"./{name}",
        f"{name}/.",
        f"sub/../{name}",
        f"link-to-{name}",
        str(link),
        f"{root}/sub/../{name}/",
    ]


def plan(steps: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    kinds = []
    for _ in range(steps):
        roll = rng.random()
        kinds.append("x" if roll < 0.4 else "r" if roll < 0.8 else "s")
    return [(kind, f"{kind}{i}") for i, kind in enumerate(kinds)]


def run(
    root: Path, steps: int, jobs: int, hold: float, seed: int, kill_every: float | None, env: dict[str, str]
) -> tuple[float, int, Path, Path]:
    """Run the steps; return (wall seconds, fi_run processes killed, events file, log file)."""
    rng = random.Random(seed + 1)
    r_names, s_names = spellings(root, "R"), spellings(root, "S")
    events, log, locks = root / "events", root / "steps.log", root / "locks"
    fi_run = str(Path(sys.executable).parent / "fi-run")
    script = f'echo "s $0 $1" >> {events}; sleep {hold}; echo "e $0 $1" >> {events}'
    todo = plan(steps, seed)
    running: list[subprocess.Popen[bytes]] = []
    killed = 0
    next_kill = time.monotonic() + (kill_every or 0)
    started = time.monotonic()
    while todo or running:
        while todo and len(running) < jobs:
            kind, tag = todo.pop(0)
            lock = (
                ["--lock", rng.choice(r_names)]
                if kind == "x"
                else ["--shared-lock", rng.choice(r_names)]
                if kind == "r"
                else ["--semaphore", f"{rng.choice(s_names)}={SEM_SLOTS}"]
            )
            argv = [
                fi_run,
                "--lock-dir",
                str(locks),
                "--log",
                str(log),
                *lock,
                "--",
                "sh",
                "-c",
                script,
                kind,
                tag,
            ]
            running.append(subprocess.Popen(argv, cwd=root, env=env, stdin=subprocess.DEVNULL))
        if kill_every is not None and time.monotonic() >= next_kill and running:
            victim = rng.choice(running)
            if victim.poll() is None:
                victim.kill()
                killed += 1
            next_kill = time.monotonic() + kill_every
        still = []
        for proc in running:
            status = proc.poll()
            if status is None:
                still.append(proc)
            elif status not in (0, -9):
                raise SystemExit(f"a step failed with status {status}: {proc.args}")
        running = still
        time.sleep(0.002)
    wall = time.monotonic() - started
    # Orphans of killed holders still finish their commands: wait until every started command has ended.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        lines = events.read_text().split("\n")
        if sum(line.startswith("s ") for line in lines) == sum(line.startswith("e ") for line in lines):
            break
        time.sleep(0.1)
    return wall, killed, events, log


def check_intervals(events: Path) -> dict[str, int]:
    """Walk the events in file order; count violations of each rule and the most inside at once."""
    inside = {"x": 0, "r": 0, "s": 0}
    result = {"steps": 0, "overlaps": 0, "max_readers": 0, "max_sem": 0, "sem_over": 0}
    for line in events.read_text().splitlines():
        what, kind, _tag = line.split()
        if what == "s":
            result["steps"] += 1
            if kind == "x" and (inside["x"] or inside["r"]):
                result["overlaps"] += 1
            if kind == "r" and inside["x"]:
                result["overlaps"] += 1
            inside[kind] += 1
            if kind == "s" and inside["s"] > SEM_SLOTS:
                result["sem_over"] += 1
        else:
            inside[kind] -= 1
        result["max_readers"] = max(result["max_readers"], inside["r"])
        result["max_sem"] = max(result["max_sem"], inside["s"])
    return result


def fairness(log: Path) -> dict[str, float]:
    """From the --log: arrival order against acquisition order on R, and waits against the fair share."""
    steps = []  # (arrival, acquired, released, mode) on R
    for line in log.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        for lock in record.get("locks", []):
            if lock.get("mode") not in ("exclusive", "shared") or lock.get("held") is None:
                continue
            arrival = record["start"] + lock["wait_start"]
            acquired = arrival + lock["wait"]
            steps.append((arrival, acquired, acquired + lock["held"], lock["mode"]))
    steps.sort()
    overtaken, by_readers, ratios, waits = [], 0, [], []
    for i, (arrival, acquired, _released, mode) in enumerate(steps):
        waits.append(acquired - arrival)
        if mode != "exclusive":
            continue
        later = [s for s in steps[i + 1 :] if s[1] < acquired]
        overtaken.append(len(later))
        by_readers += sum(1 for s in later if s[3] == "shared")
        # Fair share: the holds of those ahead in arrival order that had not released when this one arrived.
        ahead = sum(r - a for (_ar, a, r, _m) in steps[:i] if r > arrival)
        if ahead > 0:
            ratios.append((acquired - arrival) / ahead)
    waits.sort()
    return {
        "logged_on_R": len(steps),
        "exclusive_overtaken_max": max(overtaken, default=0),
        "exclusive_overtaken_median": statistics.median(overtaken) if overtaken else 0,
        "readers_ahead_of_earlier_writer": by_readers,
        "wait_p50_s": waits[len(waits) // 2] if waits else 0,
        "wait_p99_s": waits[int(len(waits) * 0.99)] if waits else 0,
        "wait_max_s": waits[-1] if waits else 0,
        "worst_wait_over_fair_share": max(ratios, default=0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--jobs", type=int, default=64)
    parser.add_argument("--hold", type=float, default=0.01)
    parser.add_argument("--fault-steps", type=int, default=500)
    parser.add_argument("--kill-every", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=12)
    args = parser.parse_args()
    env = prepare()
    when = time.strftime("%Y-%m-%d %H:%M")
    print(f"{sys.version.split()[0]} on {sys.platform}, {os.cpu_count()} CPUs, {when}")
    failed = False
    for name, steps, kill_every in (
        ("stress", args.steps, None),
        ("fault run", args.fault_steps, args.kill_every),
    ):
        if steps <= 0:
            continue
        with tempfile.TemporaryDirectory(prefix="fi_run-stress-") as tmp:
            root = Path(tmp)
            wall, killed, events, log = run(root, steps, args.jobs, args.hold, args.seed, kill_every, env)
            checked = check_intervals(events)
            fair = fairness(log)
            print(
                f"\n{name}: {steps} steps at -j{args.jobs}, hold {args.hold} s, {wall:.1f} s wall, "
                f"{killed} fi_run killed"
            )
            for key, value in {**checked, **fair}.items():
                print(f"  {key:36} {value:.3f}" if isinstance(value, float) else f"  {key:36} {value}")
            failed |= checked["overlaps"] > 0 or checked["sem_over"] > 0
    if failed:
        raise SystemExit("FAILED: overlapping holders or the semaphore exceeded")


if __name__ == "__main__":
    main()
