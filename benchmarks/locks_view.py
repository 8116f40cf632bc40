"""`fi-run locks` with 100 waiters: how long the listing takes, and whether its order is the grants' order.

Issue 18's goal: "`fi-run locks` lists 100 waiters in < 100 ms, in the order in which the grants then happen,
in 20 randomized runs". Each run, in a lock directory of its own:

1. A plain fi_run holds one resource (--lock) until told to let go.
2. WAITERS steps queue for it, their modes drawn at random (exclusive 50 %, shared 25 %, --semaphore R=1
   25 %): plain fi_run processes, and BUILD_STEPS of them as the steps of a real ninja build under
   `fi-run jobserver` (its coordinator queues in the lock directory for all of them). They arrive in a
   random order: the plain ones in random order, all at once, in two batches around the build's start, cut
   at a random point.
3. Once every one of them waits (its doorbell entry is there, or the coordinator lists it), `fi-run locks
   --json` is timed twice: the whole process (`fi-run locks --json --lock-dir DIR`, wall clock, as a person
   runs it) and the tool's own run (its `main()` in this process, imports already done: what the tool adds
   to Python's start-up).
4. The holder lets go; every step enters the resource in turn and appends `enter TAG` and `exit TAG` to one
   log (O_APPEND: the file's order is the order things happened). The listed order must be that order.
   Readers and counted steps listed one after another may enter together, in any order among themselves:
   each such run is compared as a set; every exclusive step must enter exactly at its listed place. The
   same log checks that no exclusive step was ever inside with anyone. Where the build's steps were listed
   among the plain ones (first and last place, and how many plain steps between) is printed too: the
   coordinator serves its steps and the processes outside the build in the order they came.

Usage: python benchmarks/locks_view.py [--runs 20] [--waiters 100] [--build-steps 20] [--seed 18]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import resource as resource_usage
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import prepare

STEP_SH = 'echo "enter $2" >> "$1"; sleep "$3"; echo "exit $2" >> "$1"\n'
HOLD_SH = 'touch "$1/ready"; while [ ! -e "$1/release" ]; do sleep 0.01; done\n'
HANG = 300.0  # a hang guard, never a speed check


def fi_run() -> str:
    return str(Path(sys.executable).parent / "fi-run")


def ninja() -> str:
    return str(Path(sys.executable).parent / "ninja")


def wait_for(predicate, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + HANG
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.02)


def mode_options(mode: str, resource: Path) -> list[str]:
    return {
        "x": ["--lock", str(resource)],
        "r": ["--shared-lock", str(resource)],
        "c": ["--semaphore", f"{resource}=1"],
    }[mode]


def entries_of(lock_dir: Path) -> list[str]:
    return [p.name for p in lock_dir.glob("*/waiters/*")]


def coordinator_waits(lock_dir: Path) -> int:
    """How many steps the build's coordinator says wait (its LIST answer), 0 if none answers."""
    from fi_run.contention.wire import Reader, encode

    total = 0
    for entry in (lock_dir / "coordinators").glob("*"):
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(5)
                sock.connect(entry.read_text())
                sock.sendall(encode(["LIST"]))
                reader, done = Reader(), False
                while not done:
                    data = sock.recv(65536)
                    if not data:
                        break
                    for message in reader.feed(data):
                        if message[0] == "END":
                            done = True
                        elif message[3] in ("waits", "stopped"):
                            total += 1
        except OSError:
            continue
    return total


def check_order(listed: list[str], modes: dict[str, str], entered: list[str]) -> str:
    """'' if ``entered`` is ``listed``, up to the order within runs of non-exclusive steps; else the first
    difference."""
    if sorted(listed) != sorted(entered):
        return f"listed {len(listed)} steps, {len(entered)} entered"
    at = 0
    group: list[str] = []
    for tag in [*listed, None]:
        if tag is not None and modes[tag] != "x":
            group.append(tag)
            continue
        for part in ([group] if group else []) + ([[tag]] if tag is not None else []):
            got = entered[at : at + len(part)]
            if sorted(got) != sorted(part):
                return f"at place {at + 1}: listed {part}, entered {got}"
            at += len(part)
        group = []
    return ""


def overlaps(log: list[str], modes: dict[str, str]) -> int:
    inside: set[str] = set()
    bad = 0
    for line in log:
        event, tag = line.split()
        if event == "enter":
            if inside and (modes.get(tag) == "x" or any(modes.get(t) == "x" for t in inside)):
                bad += 1
            inside.add(tag)
        else:
            inside.discard(tag)
    return bad


def one_run(index: int, args: argparse.Namespace, env: dict[str, str], root: Path) -> dict[str, object]:
    rng = random.Random(args.seed * 1000 + index)
    run_dir = Path(tempfile.mkdtemp(prefix=f"run{index}-", dir=root))
    lock_dir, resource, log = run_dir / "locks", run_dir / "venv", run_dir / "order.log"
    resource.mkdir()
    (run_dir / "step.sh").write_text(STEP_SH)
    (run_dir / "hold.sh").write_text(HOLD_SH)
    ctl = run_dir / "ctl"
    ctl.mkdir()
    procs: list[subprocess.Popen[bytes]] = []

    def start(argv: list[str], cwd: Path, **kwargs: object) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, start_new_session=True, **kwargs
        )  # type: ignore[call-overload]
        procs.append(proc)
        return proc

    plain_count = args.waiters - args.build_steps
    modes: dict[str, str] = {}
    for i in range(args.waiters):
        roll = rng.random()
        tag = f"p.{i}" if i < plain_count else f"b.{i - plain_count}"
        modes[tag] = "x" if roll < 0.5 else "r" if roll < 0.75 else "c"
    plain = [t for t in modes if t.startswith("p.")]
    rng.shuffle(plain)
    cut = rng.randint(0, len(plain))
    base = [fi_run(), "--lock-dir", str(lock_dir)]
    try:
        holder = start(
            [*base, "--lock", str(resource), "--", "sh", str(run_dir / "hold.sh"), str(ctl)], run_dir
        )
        wait_for((ctl / "ready").exists, "the holder")
        step = ["sh", str(run_dir / "step.sh"), str(log)]

        def queue(tags: list[str]) -> None:
            wanted = len(entries_of(lock_dir)) + len(tags)
            for tag in tags:
                start([*base, *mode_options(modes[tag], resource), "--", *step, tag, "0"], run_dir)

            def queued() -> bool:
                ended = [(p.args[-2], p.returncode) for p in procs if p.poll() is not None]
                if ended:
                    raise SystemExit(f"steps ended before the holder let go: {ended}")
                return len(entries_of(lock_dir)) >= wanted

            wait_for(queued, f"{len(tags)} plain steps to queue")

        queue(plain[:cut])
        build = None
        if args.build_steps:
            build_dir = run_dir / "build"
            build_dir.mkdir()
            edges = ["rule run", "  command = $cmd", ""]
            for tag in (t for t in modes if t.startswith("b.")):
                argv = [*base, *mode_options(modes[tag], resource), "--", *step, tag, "0"]
                edges += [f"build {tag}: run", "  cmd = " + " ".join(argv), ""]
            (build_dir / "build.ninja").write_text("\n".join(edges))
            before = len(entries_of(lock_dir))
            build = start(
                [fi_run(), "jobserver", "-j", str(args.build_steps + 1), "--", ninja(), "-k", "0"],
                build_dir,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            wait_for(lambda: len(entries_of(lock_dir)) > before, "the build's coordinator to queue")
        queue(plain[cut:])
        wait_for(lambda: coordinator_waits(lock_dir) == args.build_steps, "every build step to queue")

        # 3. The listing: the whole process, then the tool's own run.
        before = resource_usage.getrusage(resource_usage.RUSAGE_CHILDREN)
        started = time.perf_counter()
        done = subprocess.run(
            [fi_run(), "locks", "--json", "--lock-dir", str(lock_dir)],
            env=env,
            capture_output=True,
            check=False,
        )
        process_ms = (time.perf_counter() - started) * 1000
        after = resource_usage.getrusage(resource_usage.RUSAGE_CHILDREN)  # only this child was reaped since
        cpu_ms = (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) * 1000
        if done.returncode != 0:
            raise SystemExit(f"fi-run locks failed: {done.stderr.decode()}")
        seen = json.loads(done.stdout)
        from fi_run.tools import locks as tool

        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            started = time.perf_counter()
            status = tool.main(["--json", "--lock-dir", str(lock_dir)])
            own_ms = (time.perf_counter() - started) * 1000
        assert status == 0
        [listing] = seen["resources"]
        again = json.loads(out.getvalue())["resources"][0]
        listed = [w["command"].split()[3] for w in listing["waiters"]]
        relisted = [w["command"].split()[3] for w in again["waiters"]]

        # 4. Let go, and watch the order in which they enter.
        (ctl / "release").touch()
        for proc in procs:
            proc.wait(HANG)
        lines = log.read_text().splitlines()
        entered = [line.split()[1] for line in lines if line.startswith("enter ")]
        problem = check_order(listed, modes, entered)
        if not problem and relisted != listed:
            problem = "the two listings differ"
        places = [place for place, tag in enumerate(listed, 1) if tag.startswith("b.")]
        return {
            "listed": len(listed),
            "build_places": (places[0], places[-1], places[-1] - places[0] + 1 - len(places))
            if places
            else None,
            "plain_before_build": cut,
            "own_ms": own_ms,
            "process_ms": process_ms,
            "cpu_ms": cpu_ms,
            "order": problem or "ok",
            "overlaps": overlaps(lines, modes),
            "build_status": None if build is None else build.returncode,
            "holder_status": holder.returncode,
        }
    finally:
        for proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(OSError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--waiters", type=int, default=100)
    parser.add_argument("--build-steps", type=int, default=20)
    parser.add_argument("--seed", type=int, default=18)
    args = parser.parse_args()
    env = prepare()
    env.pop("FI_RUN_LOCK_DIR", None)
    results = []
    with tempfile.TemporaryDirectory(prefix="fi_run-locks-view-") as tmp:
        from fi_run.tools import locks as tool

        with contextlib.redirect_stdout(io.StringIO()):  # the tool's own run is timed with its imports done
            tool.main(["--json", "--lock-dir", os.path.join(tmp, "none")])
        for index in range(args.runs):
            result = one_run(index, args, env, Path(tmp))
            results.append(result)
            r = result
            first = r["plain_before_build"]
            places = r["build_places"]
            among = (
                ""
                if places is None
                else f", build's steps at {places[0]}-{places[1]} ({places[2]} plain among)"
            )
            print(
                f"run {index + 1:2}: {r['listed']} listed ({first} plain before the build{among}), "
                f"tool {r['own_ms']:.1f} ms, process {r['process_ms']:.1f} ms ({r['cpu_ms']:.0f} ms CPU), "
                f"order {r['order']}, overlaps {r['overlaps']}, build exit {r['build_status']}",
                flush=True,
            )
    own = [float(r["own_ms"]) for r in results]  # type: ignore[arg-type]
    process = [float(r["process_ms"]) for r in results]  # type: ignore[arg-type]
    cpu = [float(r["cpu_ms"]) for r in results]  # type: ignore[arg-type]
    good = sum(1 for r in results if r["order"] == "ok" and r["overlaps"] == 0)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"\n{args.runs} runs, {args.waiters} waiters each ({args.waiters - args.build_steps} plain fi_run, "
        f"{args.build_steps} steps of one build under fi-run jobserver); Python {sys.version.split()[0]}, "
        f"{os.cpu_count()} CPUs, load average {load:.2f} at the end"
    )
    for label, values in (("tool's own run", own), ("whole process", process), ("its CPU time", cpu)):
        median, longest = statistics.median(values), max(values)
        print(f"fi-run locks --json, {label + ':':16} median {median:6.1f} ms, max {longest:6.1f} ms")
    print(f"listed order = grant order:           {good} of {args.runs} runs")
    return 0 if good == args.runs else 1


if __name__ == "__main__":
    sys.exit(main())
