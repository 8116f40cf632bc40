"""Benchmark 2: lock hand-off. N processes started at once on one resource, each holding it HOLD seconds.

Each holder's command records, with bash's $EPOCHREALTIME (no extra process), when it got the resource and
when it let go. Reported, per tool:
- efficiency = sum of the time held / (last release - first acquire): 1.0 means no time lost between holders;
- the median gap between one release and the next acquire, and its 90th percentile.
Also checks correctness: no two holders overlap (a failure if they do).

The reference is flock(1) from util-linux, which blocks in the kernel and is woken by it.

Usage: python benchmarks/handoff.py [--procs 40] [--hold 0.02] [--rounds 3]
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

from common import prepare


def run_round(tool: str, procs: int, hold: float, tmp: str, env: dict[str, str]) -> tuple[float, list[float]]:
    log = os.path.join(tmp, f"{tool}.log")
    if os.path.exists(log):
        os.unlink(log)
    body = f'echo "A $EPOCHREALTIME" >> {log}; sleep {hold}; echo "R $EPOCHREALTIME" >> {log}'
    bash = shutil.which("bash") or "/bin/bash"
    if tool == "fi_run":
        fi_run = os.path.join(os.path.dirname(sys.executable), "fi-run")
        argv = [
            fi_run,
            "--lock-dir",
            os.path.join(tmp, "locks"),
            "--lock",
            os.path.join(tmp, "resource"),
            "--",
            bash,
            "-c",
            body,
        ]
    else:
        argv = ["flock", os.path.join(tmp, "flock.lock"), bash, "-c", body]
    children = [subprocess.Popen(argv, env=env) for _ in range(procs)]
    for child in children:
        if child.wait() != 0:
            raise SystemExit(f"{tool}: a holder failed (exit {child.returncode})")
    events: list[tuple[float, str]] = []
    with open(log, encoding="utf-8") as f:
        for line in f:
            kind, text = line.split()
            events.append((float(text), kind))
    events.sort()
    if len(events) != 2 * procs:
        raise SystemExit(f"{tool}: expected {2 * procs} events, got {len(events)}")
    held = 0.0
    gaps: list[float] = []
    inside: float | None = None
    last_release: float | None = None
    for stamp, kind in events:
        if kind == "A":
            if inside is not None:
                raise SystemExit(f"{tool}: two holders overlapped: the lock did not exclude")
            inside = stamp
            if last_release is not None:
                gaps.append(stamp - last_release)
        else:
            assert inside is not None
            held += stamp - inside
            inside = None
            last_release = stamp
    span = events[-1][0] - events[0][0]
    return held / span, gaps


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--procs", type=int, default=40)
    parser.add_argument("--hold", type=float, default=0.02)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("flock") is None:
        print("handoff.py: flock(1) not found (util-linux)", file=sys.stderr)
        return 1
    results: dict[str, tuple[list[float], list[float]]] = {"fi_run": ([], []), "flock": ([], [])}
    env = prepare()
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            for tool in results:  # alternate, so load changes hit both
                efficiency, gaps = run_round(tool, args.procs, args.hold, tmp, env)
                results[tool][0].append(efficiency)
                results[tool][1].extend(gaps)
    print(
        f"{args.procs} processes, each holding one resource {args.hold * 1000:.0f} ms, {args.rounds} rounds, "
        f"{os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d')}; no overlap seen"
    )
    print(f"{'tool':8} {'efficiency (median)':>20} {'gap median ms':>14} {'gap p90 ms':>11}")
    for tool, (efficiencies, gaps) in results.items():
        gaps.sort()
        p90 = gaps[int(0.9 * (len(gaps) - 1))]
        print(
            f"{tool:8} {statistics.median(efficiencies):20.3f} {statistics.median(gaps) * 1000:14.2f} "
            f"{p90 * 1000:11.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
