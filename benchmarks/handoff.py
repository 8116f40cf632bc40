"""Benchmark 2: lock hand-off. N processes started at once on one resource, each holding it HOLD seconds.

A primer holds the resource first, until every one of the N processes is up and waiting (fi_run: its
doorbell entry exists; flock: a fixed 5 s): on 2 cores, 40 Python start-ups take longer than 40 holds of
20 ms, and without the primer the figure would measure start-up, not hand-off. Measured from the primer's
release on.

Two views, each giving efficiency = sum of the time held / (last release - first acquire) (1.0: no time lost
between holders) and the gap between one release and the next acquire (median and 90th percentile):
- the command's view: each holder's command (bash) records with $EPOCHREALTIME when it started and when it
  ended. A gap here includes starting the next command (posix_spawn of bash and bash's own start-up, about
  3.5 ms on this kind of machine), which flock(1) pays too;
- the lock's view (fi_run only): when fi_run took the lock and let it go, from its --log.
Both check correctness: no two holders overlap (the benchmark fails if they do).

The reference is flock(1) from util-linux, which blocks in the kernel and is woken by it. A third tool,
"coordinated", is fi_run under a build's lock coordinator (issue 18): the same steps, with
FI_RUN_COORDINATOR naming the coordinator of a `fi-run jobserver` that runs beside them; the primer waits
until the coordinator says all of them are in its line.

With --hogs N, N busy processes (a `while True: pass` each) run throughout, as a loaded build machine has.

Usage: python benchmarks/handoff.py [--procs 40] [--hold 0.02] [--rounds 3] [--hogs 0]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from common import prepare

Intervals = list[tuple[float, float]]


def analyse(tool: str, intervals: Intervals) -> tuple[float, list[float]]:
    """(efficiency, gaps) of non-overlapping (acquire, release) intervals; fails on an overlap."""
    intervals = sorted(intervals)
    for (_, release), (acquire, _) in itertools.pairwise(intervals):
        if acquire < release:
            overlap = (release - acquire) * 1000
            raise SystemExit(f"{tool}: two holders overlapped by {overlap:.3f} ms: the lock did not exclude")
    held = sum(release - acquire for acquire, release in intervals)
    span = intervals[-1][1] - intervals[0][0]
    gaps = [b[0] - a[1] for a, b in itertools.pairwise(intervals)]
    return held / span, gaps


def run_round(
    tool: str, procs: int, hold: float, tmp: str, env: dict[str, str]
) -> tuple[Intervals, Intervals]:
    run_dir = tempfile.mkdtemp(dir=tmp)
    log, lock_log = os.path.join(run_dir, "commands.log"), os.path.join(run_dir, "fi_run.log")
    body = f'echo "A $EPOCHREALTIME" >> {log}; sleep {hold}; echo "R $EPOCHREALTIME" >> {log}'
    go = os.path.join(run_dir, "go")
    wait_for_go = f"while [ ! -e {go} ]; do sleep 0.01; done"
    bash = shutil.which("bash") or "/bin/bash"
    locks = os.path.join(run_dir, "locks")
    server = None
    if tool == "coordinated":
        address_file, stop = os.path.join(run_dir, "address"), os.path.join(run_dir, "stop")
        keep = (
            "import os, sys, time\n"
            "open(sys.argv[1], 'w').write(os.environ['FI_RUN_COORDINATOR'])\n"
            "while not os.path.exists(sys.argv[2]): time.sleep(0.05)"
        )
        jobserver = [os.path.join(os.path.dirname(sys.executable), "fi-run"), "jobserver", "--"]
        server = subprocess.Popen([*jobserver, sys.executable, "-c", keep, address_file, stop], env=env)
        while not os.path.exists(address_file) or not open(address_file).read():  # noqa: SIM115
            time.sleep(0.01)
        env = {**env, "FI_RUN_COORDINATOR": open(address_file).read()}  # noqa: SIM115
    if tool in ("fi_run", "coordinated"):
        fi_run = [os.path.join(os.path.dirname(sys.executable), "fi-run"), "--lock-dir", locks]
        fi_run += ["--lock", os.path.join(run_dir, "resource"), "--"]
        primer_argv = [*fi_run, bash, "-c", wait_for_go]
        argv = [fi_run[0], "--log", lock_log, *fi_run[1:], bash, "-c", body]
    else:
        flock = ["flock", os.path.join(run_dir, "flock.lock")]
        primer_argv = [*flock, bash, "-c", wait_for_go]
        argv = [*flock, bash, "-c", body]
    primer = subprocess.Popen(primer_argv, env=env)
    time.sleep(0.5)  # the primer holds the resource
    children = [subprocess.Popen(argv, env=env) for _ in range(procs)]
    deadline = time.monotonic() + (5 if tool == "flock" else 60)
    while time.monotonic() < deadline:
        if tool == "fi_run" and _waiting(locks) >= procs:
            break
        if tool == "coordinated" and _in_line(env["FI_RUN_COORDINATOR"]) >= procs:
            break
        time.sleep(0.05)
    else:
        if tool != "flock":
            raise SystemExit(f"{tool}: the waiters did not all start")
    with open(go, "w"):
        pass
    if primer.wait() != 0:
        raise SystemExit(f"{tool}: the primer failed")
    for child in children:
        if child.wait() != 0:
            raise SystemExit(f"{tool}: a holder failed (exit {child.returncode})")
    if server is not None:
        open(os.path.join(run_dir, "stop"), "w").close()
        server.wait()
    starts: list[float] = []
    ends: list[float] = []
    with open(log, encoding="utf-8") as f:
        for line in f:
            kind, stamp = line.split()
            (starts if kind == "A" else ends).append(float(stamp))
    if len(starts) != procs or len(ends) != procs:
        raise SystemExit(f"{tool}: expected {procs} holders, the log has {len(starts)}")
    commands = list(zip(sorted(starts), sorted(ends), strict=True))
    lock_view: Intervals = []
    if tool in ("fi_run", "coordinated"):
        with open(lock_log, encoding="utf-8") as f:
            for line in f:
                record = json.loads(line)
                lock = record["locks"][0]
                acquired = record["start"] + lock["wait_start"] + lock["wait"]
                lock_view.append((acquired, acquired + lock["held"]))
    return commands, lock_view


def _in_line(address: str) -> int:
    """How many steps the coordinator at ``address`` has in its line (its LIST answer)."""
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(address)
        sock.sendall(b"4:LIST,")
        data = b""
        while b"END" not in data:
            data += sock.recv(65536)
    return data.count(b"\0waits\0")


def _waiting(lock_dir: str) -> int:
    if not os.path.isdir(lock_dir):
        return 0
    count = 0
    for name in os.listdir(lock_dir):
        waiters = os.path.join(lock_dir, name, "waiters")
        if os.path.isdir(waiters):
            count += len(os.listdir(waiters))
    return count


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--procs", type=int, default=40)
    parser.add_argument("--hold", type=float, default=0.02)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--hogs", type=int, default=0, help="busy processes running throughout")
    args = parser.parse_args()
    if shutil.which("flock") is None:
        print("handoff.py: flock(1) not found (util-linux)", file=sys.stderr)
        return 1
    env = prepare()
    views: dict[str, tuple[list[float], list[float]]] = {}
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.hogs)]
    try:
        measure(args, env, views)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    print(
        f"{args.procs} processes, each holding one resource {args.hold * 1000:.0f} ms, {args.rounds} rounds, "
        f"{os.cpu_count()} CPUs, {args.hogs} CPU hogs, {time.strftime('%Y-%m-%d')}; no overlap seen"
    )
    print(f"{'':29} {'efficiency (median)':>20} {'gap median ms':>14} {'gap p90 ms':>11}")
    for name, (efficiencies, gaps) in views.items():
        gaps.sort()
        p90 = gaps[int(0.9 * (len(gaps) - 1))]
        print(
            f"{name:29} {statistics.median(efficiencies):20.3f} {statistics.median(gaps) * 1000:14.2f} "
            f"{p90 * 1000:11.2f}"
        )
    return 0


def measure(
    args: argparse.Namespace, env: dict[str, str], views: dict[str, tuple[list[float], list[float]]]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            for tool in ("fi_run", "coordinated", "flock"):  # alternate, so load changes hit all
                commands, lock_view = run_round(tool, args.procs, args.hold, tmp, env)
                for name, intervals in (
                    (f"{tool}, command's view", commands),
                    (f"{tool}, lock's view", lock_view),
                ):
                    if intervals:
                        efficiency, gaps = analyse(name, intervals)
                        views.setdefault(name, ([], []))
                        views[name][0].append(efficiency)
                        views[name][1].extend(gaps)


if __name__ == "__main__":
    sys.exit(main())
