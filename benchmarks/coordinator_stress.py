"""Stress under the build's lock coordinator (issue 18): real ninja under `fi-run jobserver`, with faults.

STEPS ninja edges, each fi_run on one of two resources spelled eight ways (stress.py's spellings and mix: R
--lock 40 %, R --shared-lock 40 %, S --semaphore S=4 20 %), run by `fi-run jobserver -j JOBS -- ninja -k 0`,
so every locked step asks the coordinator. Meanwhile:
- a plain fi_run outside the build (no coordinator: the lock directory) contends for R and S in a loop;
- KILL % of the steps' fi_run processes are SIGKILLed at random moments (holders and waiters alike: a killed
  holder's command keeps the resource until it ends);
- with --kill-coordinator SECONDS, the jobserver itself (and its coordinator) is SIGKILLed that long into the
  build: ninja goes on, and every step from then on takes the lock-directory path.
Every command appends "s KIND ID" / "e KIND ID" to one O_APPEND events file; stress.check_intervals walks it:
no exclusive holder with anyone, no reader with a writer, never more than 4 inside S. Hangs are caught by a
bound on the whole build. Token accounting: the jobserver's own report when the build ends; the coordinator
lends and takes back the waiting steps' slots itself, so even with steps killed every token must be back
(the run fails otherwise).

Usage: python benchmarks/coordinator_stress.py [--steps 2000] [--jobs 64] [--kill 5] [--kill-coordinator S]
"""

from __future__ import annotations

import argparse
import os
import random
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import prepare
from stress import SEM_SLOTS, check_intervals, plan, spellings

HANG_BOUND = 900.0


def write_build(root: Path, steps: int, hold: float, seed: int) -> list[str]:
    rng = random.Random(seed + 1)
    r_names, s_names = spellings(root, "R"), spellings(root, "S")
    events, locks, pids = root / "events", root / "locks", root / "pids"
    pids.mkdir()
    fi_run = str(Path(sys.executable).parent / "fi-run")
    script = f'echo "s $0 $1" >> {events}; sleep {hold}; echo "e $0 $1" >> {events}'
    lines = ["rule run\n  command = $cmd\n"]
    tags = []
    for kind, tag in plan(steps, seed):
        lock = (
            ["--lock", rng.choice(r_names)]
            if kind == "x"
            else ["--shared-lock", rng.choice(r_names)]
            if kind == "r"
            else ["--semaphore", f"{rng.choice(s_names)}={SEM_SLOTS}"]
        )
        argv = [fi_run, "--lock-dir", str(locks), *lock, "--", "sh", "-c", script, kind, tag]
        command = f"echo $$$$ > {pids / tag} && exec " + shlex.join(argv).replace("$", "$$")
        lines.append(f"build {tag}: run\n  cmd = {command}\n")
        tags.append(tag)
    (root / "build.ninja").write_text("\n".join(lines))
    return tags


def outside(root: Path, env: dict[str, str], stop: threading.Event, hold: float, counts: list[int]) -> None:
    """A plain fi_run outside the build, on the same resources, until ``stop``."""
    rng = random.Random(7)
    fi_run = str(Path(sys.executable).parent / "fi-run")
    events = root / "events"
    script = f'echo "s $0 $1" >> {events}; sleep {hold}; echo "e $0 $1" >> {events}'
    r_names, s_names = spellings(root, "R"), spellings(root, "S")
    plain = {k: v for k, v in env.items() if k != "FI_RUN_COORDINATOR"}
    i = 0
    while not stop.is_set():
        kind = rng.choice("xrs")
        lock = (
            ["--lock", rng.choice(r_names)]
            if kind == "x"
            else ["--shared-lock", rng.choice(r_names)]
            if kind == "r"
            else ["--semaphore", f"{rng.choice(s_names)}={SEM_SLOTS}"]
        )
        argv = [fi_run, "--lock-dir", str(root / "locks"), *lock, "--", "sh", "-c", script, kind, f"o{i}"]
        subprocess.run(argv, cwd=root, env=plain, stdin=subprocess.DEVNULL, check=True, timeout=HANG_BOUND)
        counts[0] += 1
        i += 1


def killer(
    root: Path, tags: list[str], share: float, stop: threading.Event, killed: list[int], seed: int
) -> None:
    """SIGKILL a random started step's fi_run now and then, until ``share`` of the steps are killed."""
    rng = random.Random(seed + 2)
    wanted = int(len(tags) * share)
    pids = root / "pids"
    while not stop.is_set() and len(killed) < wanted:
        started = list(pids.iterdir())
        if started:
            victim = rng.choice(started)
            try:
                pid = int(victim.read_text())
                # Only the step it names, still running: a finished step's pid may be another process's by
                # now (ninja's, the jobserver's), and pids come round quickly with thousands of processes.
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
                if victim.name.encode() in argv and any(b"fi-run" in arg for arg in argv):
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                victim.unlink()  # killed, or finished: not a candidate any more
            except (OSError, ValueError):
                try:
                    victim.unlink()  # no such process: finished
                except OSError:
                    pass
        time.sleep(rng.uniform(0.005, 0.05))


def run(args: argparse.Namespace, kill_coordinator: float | None, env: dict[str, str]) -> bool:
    with tempfile.TemporaryDirectory(prefix="fi_run-cstress-") as tmp:
        root = Path(tmp)
        tags = write_build(root, args.steps, args.hold, args.seed)
        server = [str(Path(sys.executable).parent / "fi-run"), "jobserver", "-j", str(args.jobs), "--"]
        ninja = [str(Path(sys.executable).parent / "ninja"), "-k", "0"]
        started = time.monotonic()
        build = subprocess.Popen(
            [*server, *ninja], cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            start_new_session=True,
        )  # fmt: skip
        stop = threading.Event()
        killed: list[int] = []
        outside_runs = [0]
        threads = [
            threading.Thread(target=outside, args=(root, env, stop, args.hold, outside_runs)),
            threading.Thread(target=killer, args=(root, tags, args.kill / 100, stop, killed, args.seed)),
        ]
        for thread in threads:
            thread.start()
        coordinator_killed = False
        try:
            if kill_coordinator is not None:
                time.sleep(kill_coordinator)
                if build.poll() is None:
                    os.kill(build.pid, signal.SIGKILL)  # the jobserver: ninja, its child, goes on
                    coordinator_killed = True
            _, err = build.communicate(timeout=HANG_BOUND)
            if coordinator_killed:  # ninja is an orphan now: wait for its steps to finish
                deadline = time.monotonic() + HANG_BOUND
                while time.monotonic() < deadline:
                    lines = (root / "events").read_text().split("\n")
                    ends = sum(line.startswith("e ") for line in lines)
                    done = {
                        line.split()[2]
                        for line in lines
                        if line.startswith("e ") and not line.split()[2].startswith("o")
                    }
                    if len(done) + len(killed) >= len(tags) and ends == sum(
                        line.startswith("s ") for line in lines
                    ):
                        break
                    time.sleep(0.2)
        finally:
            stop.set()
            for thread in threads:
                thread.join(HANG_BOUND)
            if build.poll() is None:
                os.killpg(build.pid, signal.SIGKILL)
        wall = time.monotonic() - started
        # Orphans of killed holders still finish their commands.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            lines = (root / "events").read_text().split("\n")
            if sum(line.startswith("s ") for line in lines) == sum(line.startswith("e ") for line in lines):
                break
            time.sleep(0.1)
        checked = check_intervals(root / "events")
        accounting = [line for line in err.decode(errors="replace").splitlines() if "jobserver:" in line]
        name = "coordinator killed mid-build" if coordinator_killed else "under the coordinator"
        print(
            f"\n{name}: {args.steps} steps at -j{args.jobs}, hold {args.hold} s, {wall:.1f} s wall; "
            f"{len(killed)} steps' fi_run killed; {outside_runs[0]} plain fi_run runs outside the build"
        )
        for key, value in checked.items():
            print(f"  {key:20} {value}")
        said = accounting or ["nothing: every token came back"]
        if coordinator_killed:
            said = ["nothing: it was killed before it could count its tokens"]
        print(f"  {'jobserver said':20} {'; '.join(said)}")
        tokens_ok = coordinator_killed or not accounting
        return checked["overlaps"] == 0 and checked["sem_over"] == 0 and tokens_ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--jobs", type=int, default=64)
    parser.add_argument("--hold", type=float, default=0.01)
    parser.add_argument("--kill", type=float, default=5.0, help="percent of the steps' fi_run to SIGKILL")
    parser.add_argument("--kill-coordinator", type=float, default=None, metavar="SECONDS")
    parser.add_argument("--seed", type=int, default=12)
    args = parser.parse_args()
    env = prepare()
    when = time.strftime("%Y-%m-%d %H:%M")
    print(f"{sys.version.split()[0]} on {sys.platform}, {os.cpu_count()} CPUs, {when}")
    ok = run(args, None, env)
    if args.kill_coordinator is not None:
        ok &= run(args, args.kill_coordinator, env)
    if not ok:
        raise SystemExit("FAILED: overlapping holders or the semaphore exceeded")


if __name__ == "__main__":
    main()
