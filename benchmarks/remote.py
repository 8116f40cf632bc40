"""redis:// resources (issue 21), measured against a real redis-server this script starts on a loopback port.

Sub-commands (each prints a table, and checks its own results: it fails on an over-grant or a broken order):

  client   --rounds 30 [--redis-py PYTHON]   the client: `import redis` and one acquire + release per process
                                              with redis-py (PYTHON has it installed) against resp.py
  overhead --rounds 30                        fi_run's cost per step: plain, a redis:// semaphore, a local
                                              lock; on its own and under `fi-run jobserver`'s coordinator
  handoff  --rounds 3 --procs 20 --hold 0.05  hand-off efficiency on 1 and 3 seats: fi_run on redis://, fi_run
                                              on the lock directory, and flock(1) on the same host
  kill     --runs 3 [--lease 15]              a SIGKILLed holder (fi_run and its command): how long until the
                                              waiter's command starts
  fifo     --runs 20 --steps 10               three "machines" (two coordinators, one without): grant order
                                              against request order, randomized
  stress   --acquires 10000 --jobs 16         a weighted semaphore (3 seats) from two machines (one under a
           [--persist]                        coordinator) with random SIGKILLs and a Redis crash and restart
                                              half-way (without its data; --persist: with an append-only
                                              file): over-grants counted

Every command's own view is what is checked: the commands append "enter"/"exit" lines to one O_APPEND file,
whose line order is the order things happened. A killed step is frozen (SIGSTOP) before the line saying so
is written and killed (SIGKILL) after, so no line of its own can follow it.

Usage: python benchmarks/remote.py SUB-COMMAND [options]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import prepare

from fi_run.contention import redis_url, remote
from fi_run.contention.resp import Connection, ConnectionLost

FI_RUN = str(Path(sys.executable).parent / "fi-run")
BASH = shutil.which("bash") or "/bin/bash"


# --- a redis-server of the benchmark's own


class Server:
    def __init__(self, directory: Path, persist: bool = False) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("remote.py: redis-server is not installed (apt-get install -y redis-server)")
        self.binary = binary
        self.directory = directory
        self.persist = persist
        directory.mkdir(parents=True, exist_ok=True)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def url(self, name: str) -> str:
        return f"redis://127.0.0.1:{self.port}/{name}"

    def start(self) -> None:
        argv = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory)]
        argv += ["--save", "", "--logfile", str(self.directory / "redis.log")]
        argv += ["--appendonly", "yes", "--appendfsync", "always"] if self.persist else ["--appendonly", "no"]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                conn = Connection("127.0.0.1", self.port, timeout=1)
                conn.call("PING")
                conn.close()
                return
            except ConnectionLost:
                time.sleep(0.02)
        raise SystemExit("remote.py: redis-server did not start")

    def settle(self, lease: float = remote.DEFAULT_LEASE) -> None:
        """Wait until fi_run first reached the server more than a lease ago: until then it grants nothing (it
        gives the holders of before a restart the time to come back; docs/remote.md)."""
        self.look("settle")
        time.sleep(lease + 1.5)

    def crash(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)

    def look(self, name: str) -> remote.View:
        return remote.look(self.url(name), {})


def wait_for(predicate: object, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise SystemExit(f"remote.py: timed out waiting for {what}")
        time.sleep(0.01)


def session_members(sid: int) -> list[int]:
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if fields and fields[0] not in ("Z", "X") and int(fields[3]) == sid:
                members.append(int(entry))
    return members


def freeze(sid: int) -> None:
    """SIGSTOP every process of the session until all of them are stopped (a process being spawned shows up
    in a later scan; a stopped parent spawns nothing more)."""
    for _ in range(1000):
        pending = []
        for pid in session_members(sid):
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
            except OSError:
                continue
            if state not in ("T", "t"):
                pending.append(pid)
                try:
                    os.kill(pid, signal.SIGSTOP)
                except ProcessLookupError:
                    pass
        if not pending:
            return
        time.sleep(0.001)


def kill_all(sid: int) -> None:
    for _ in range(1000):
        members = session_members(sid)
        if not members:
            return
        for pid in members:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.002)


def spawn(argv: list[str], env: dict[str, str], cwd: Path | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the process and its children) of one run."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        start = time.perf_counter()
        pid = os.posix_spawn(
            argv[0],
            argv,
            env,
            file_actions=[(os.POSIX_SPAWN_DUP2, devnull, 1), (os.POSIX_SPAWN_DUP2, devnull, 2)],
        )
        _, status, usage = os.wait4(pid, 0)
        wall = time.perf_counter() - start
    finally:
        os.close(devnull)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"remote.py: {argv} exited {os.waitstatus_to_exitcode(status)}")
    return wall, usage.ru_utime + usage.ru_stime


def interleaved(
    commands: dict[str, list[str]], rounds: int, env: dict[str, str]
) -> dict[str, list[tuple[float, float]]]:
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    names = list(commands)
    for _ in range(rounds):
        random.shuffle(names)
        for name in names:
            times[name].append(timed(commands[name], env))
    return times


def medians(values: list[tuple[float, float]]) -> tuple[float, float]:
    return statistics.median(v[0] for v in values) * 1000, statistics.median(v[1] for v in values) * 1000


def heading(what: str) -> None:
    load = os.getloadavg()[0]
    print(
        f"{what}: Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {load:.2f}, "
        f"redis-server {redis_version()}, {time.strftime('%Y-%m-%d %H:%M')}"
    )


def redis_version() -> str:
    done = subprocess.run(["redis-server", "--version"], capture_output=True, text=True, check=False)
    return next((w.split("=")[1] for w in done.stdout.split() if w.startswith("v=")), "?")


# --- client: redis-py against resp.py

RESP_CHILD = """
import os, sys
from fi_run.contention import redis_url, remote
target = redis_url.parse_url(sys.argv[1])
settings = remote.Settings()
link = remote.Link(target, settings)
seat = remote.Seat(target, (("semaphore", 1000, 1),), remote.who_text(os.getpid(), "bench"), settings)
reply = link.script(target, "acquire", *seat.acquire_args())
assert reply[0] == 1, reply
link.script(target, "release", seat.token)
"""

REDIS_PY_CHILD = """
import os, sys
import redis
host, port, prefix, sha = sys.argv[1:5]
r = redis.Redis(host=host, port=int(port))
run = r.info("server")["run_id"]
token = os.urandom(8).hex()
who = f"{os.uname().nodename}\\t{os.getpid()}\\t\\tbench"
wake = prefix + ":w:" + token
reply = r.evalsha(sha, 1, prefix, "acquire", 15000, run, token, 0, "c", 1000, 1, wake, 0, who)
assert reply[0] == 1, reply
r.evalsha(sha, 1, prefix, "release", 15000, run, token)
"""


def cmd_client(args: argparse.Namespace, env: dict[str, str], tmp: Path) -> None:
    server = Server(tmp / "redis")
    server.settle()
    try:
        conn = Connection("127.0.0.1", server.port)
        conn.call("SCRIPT", "LOAD", remote.SCRIPT)
        conn.close()
        url = server.url("bench")
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "resp.py: import": [sys.executable, "-c", "from fi_run.contention import remote, resp"],
            "resp.py: acquire + release": [sys.executable, "-c", RESP_CHILD, url],
        }
        if args.redis_py:
            prefix = redis_url.parse_url(url).prefix
            commands["redis-py: python -c pass"] = [args.redis_py, "-c", "pass"]
            commands["redis-py: import redis"] = [args.redis_py, "-c", "import redis"]
            commands["redis-py: acquire + release"] = [
                args.redis_py,
                "-c",
                REDIS_PY_CHILD,
                "127.0.0.1",
                str(server.port),
                prefix,
                remote.SCRIPT_SHA,
            ]
        times = interleaved(commands, args.rounds, env)
        heading(f"client, {args.rounds} interleaved rounds, medians")
        base = {"": medians(times["python -c pass"])}
        if args.redis_py:
            base["redis-py: "] = medians(times["redis-py: python -c pass"])
        print(f"{'command':34} {'wall ms':>8} {'CPU ms':>8} {'+wall ms':>9} {'+CPU ms':>8}")
        for name, values in times.items():
            wall, cpu = medians(values)
            b = base["redis-py: "] if name.startswith("redis-py") else base[""]
            print(f"{name:34} {wall:8.1f} {cpu:8.1f} {wall - b[0]:+9.1f} {cpu - b[1]:+8.1f}")
    finally:
        server.stop()


# --- overhead: per step, alone and under the coordinator

INSIDE = "_inside"  # the child run under fi-run jobserver


def step_commands(url: str, tmp: Path) -> dict[str, list[str]]:
    true = "/bin/true"
    locks = str(tmp / "locks")
    return {
        "plain step": [FI_RUN, "--", true],
        "--semaphore redis://...=1000": [FI_RUN, "--semaphore", url + "=1000", "--", true],
        "--semaphore local=1000": [
            FI_RUN,
            "--lock-dir",
            locks,
            "--semaphore",
            str(tmp / "res") + "=1000",
            "--",
            true,
        ],
    }


def cmd_inside(args: argparse.Namespace) -> None:
    env = dict(os.environ)
    env.pop("MAKEFLAGS", None)  # no slot lending: the coordinator alone is measured
    assert "FI_RUN_COORDINATOR" in env
    times = interleaved(step_commands(args.url, Path(args.tmp)), args.rounds, env)
    Path(args.out).write_text(json.dumps(times))


def cmd_overhead(args: argparse.Namespace, env: dict[str, str], tmp: Path) -> None:
    server = Server(tmp / "redis")
    server.settle()
    try:
        url = server.url("overhead")
        alone_env = {k: v for k, v in env.items() if k not in ("FI_RUN_COORDINATOR", "MAKEFLAGS")}
        alone = interleaved(step_commands(url, tmp), args.rounds, alone_env)
        out = tmp / "inside.json"
        child = [
            sys.executable,
            os.path.abspath(__file__),
            INSIDE,
            "--rounds",
            str(args.rounds),
            "--url",
            url,
        ]
        child += ["--tmp", str(tmp), "--out", str(out)]
        subprocess.run([FI_RUN, "jobserver", "-j", "2", "--", *child], env=alone_env, check=True)
        inside = json.loads(out.read_text())
        heading(f"per-step overhead, {args.rounds} interleaved rounds, medians")
        print(f"{'':44} {'wall ms':>8} {'CPU ms':>8} {'+wall ms':>9} {'+CPU ms':>8}")
        for label, times in (("alone", alone), ("under the coordinator", inside)):
            base = medians(times["plain step"])
            for name, values in times.items():
                wall, cpu = medians(values)
                print(
                    f"{label + ': ' + name:44} {wall:8.1f} {cpu:8.1f} "
                    f"{wall - base[0]:+9.1f} {cpu - base[1]:+8.1f}"
                )
    finally:
        server.stop()


# --- hand-off: efficiency on 1 and 3 seats


def handoff_round(
    tool: str, seats: int, procs: int, hold: float, tmp: Path, env: dict[str, str], server: Server
) -> list[tuple[float, float]]:
    run_dir = Path(tempfile.mkdtemp(dir=tmp))
    log, go = run_dir / "commands.log", run_dir / "go"
    body = f'echo "A $EPOCHREALTIME" >> {log}; sleep {hold}; echo "R $EPOCHREALTIME" >> {log}'
    wait_for_go = f"while [ ! -e {go} ]; do sleep 0.01; done"
    name = f"handoff-{run_dir.name}"
    if tool == "flock":
        files = [str(run_dir / f"seat-{i}.lock") for i in range(seats)]
        primer = [x for f in files for x in ("flock", f)] + [BASH, "-c", wait_for_go]
        argvs = [["flock", files[i % seats], BASH, "-c", body] for i in range(procs)]
    else:
        resource = server.url(name) if tool == "fi_run redis" else str(run_dir / "resource")
        base = [FI_RUN, "--lock-dir", str(run_dir / "locks")]
        primer = [*base, "--semaphore", f"{resource}={seats}:{seats}", "--", BASH, "-c", wait_for_go]
        argvs = [[*base, "--semaphore", f"{resource}={seats}", "--", BASH, "-c", body] for _ in range(procs)]
    first = spawn(primer, env)
    time.sleep(0.5)
    children = [spawn(argv, env) for argv in argvs]
    if tool == "flock":
        time.sleep(5)
    elif tool == "fi_run redis":
        wait_for(lambda: len(server.look(name).waiters) >= procs, "the waiters in the server's line")
    else:
        wait_for(lambda: waiting(run_dir / "locks") >= procs, "the waiters in the lock directory")
    go.touch()
    if first.wait() != 0 or any(child.wait() != 0 for child in children):
        raise SystemExit(f"remote.py: handoff: a {tool} holder failed")
    events = sorted(
        (float(stamp), kind) for kind, stamp in (line.split() for line in log.read_text().splitlines())
    )
    inside, _intervals, starts = 0, [], []
    for stamp, kind in events:
        if kind == "A":
            inside += 1
            starts.append(stamp)
            if inside > seats:
                raise SystemExit(f"remote.py: handoff: {tool} had {inside} holders on {seats} seats")
        else:
            inside -= 1
    ends = sorted(stamp for stamp, kind in events if kind == "R")
    return list(zip(sorted(starts), ends, strict=True))


def waiting(lock_dir: Path) -> int:
    if not lock_dir.is_dir():
        return 0
    return sum(len(os.listdir(d / "waiters")) for d in lock_dir.iterdir() if (d / "waiters").is_dir())


def cmd_handoff(args: argparse.Namespace, env: dict[str, str], tmp: Path) -> None:
    if shutil.which("flock") is None:
        raise SystemExit("remote.py: flock(1) not found (util-linux)")
    server = Server(tmp / "redis")
    server.settle()
    results: dict[tuple[str, int], list[float]] = {}
    try:
        for _ in range(args.rounds):
            for seats in (1, 3):
                for tool in ("fi_run redis", "fi_run local", "flock"):  # interleaved: load hits all alike
                    intervals = handoff_round(tool, seats, args.procs, args.hold, tmp, env, server)
                    held = sum(end - start for start, end in intervals)
                    span = max(end for _, end in intervals) - min(start for start, _ in intervals)
                    results.setdefault((tool, seats), []).append(held / (seats * span))
    finally:
        server.stop()
    heading(
        f"hand-off, {args.procs} processes holding {args.hold * 1000:.0f} ms each, "
        f"{args.rounds} rounds (medians)"
    )
    print(f"{'':26} {'efficiency':>10} {'x flock(1)':>11}   rounds")
    for (tool, seats), values in results.items():
        ref = statistics.median(results[("flock", seats)])
        eff = statistics.median(values)
        print(
            f"{tool + f', {seats} seat' + ('s' if seats > 1 else ''):26} {eff:10.3f} {eff / ref:10.3f}x   "
            + " ".join(f"{v:.3f}" for v in values)
        )


# --- kill: a SIGKILLed holder


def cmd_kill(args: argparse.Namespace, env: dict[str, str], tmp: Path) -> None:
    server = Server(tmp / "redis")
    server.settle(args.lease)
    env = {**env, remote.LEASE_VARIABLE: str(args.lease)}
    freed = []
    try:
        for run in range(args.runs):
            name = f"kill-{run}"
            mark = tmp / f"waiter-{run}"
            holder = spawn([FI_RUN, "--lock", server.url(name), "--", "sleep", "100000"], env)
            wait_for(lambda name=name: len(server.look(name).holders) == 1, "the holder")
            time.sleep(random.uniform(0, args.lease / 3))  # anywhere in the renewal period
            waiter = spawn(
                [FI_RUN, "--lock", server.url(name), "--", BASH, "-c", f"echo $EPOCHREALTIME > {mark}"], env
            )
            wait_for(lambda name=name: len(server.look(name).waiters) == 1, "the waiter in line")
            killed = time.time()
            freeze(holder.pid)
            kill_all(holder.pid)
            holder.wait()
            if waiter.wait() != 0:
                raise SystemExit("remote.py: kill: the waiter failed")
            freed.append(float(mark.read_text()) - killed)
    finally:
        server.stop()
    heading(f"a SIGKILLed holder, lease {args.lease:g} s, {args.runs} runs")
    print(
        "freed after (s): "
        + ", ".join(f"{f:.2f}" for f in freed)
        + f"; max {max(freed):.2f} s (lease {args.lease:g} s)"
    )
    if max(freed) > args.lease:
        print("MISSED: a holder outlived its lease")


# --- machines: coordinators of their own


class Machine:
    """A lock directory, and a coordinator (a `fi-run jobserver` serving it) unless it has none."""

    def __init__(self, name: str, tmp: Path, env: dict[str, str], coordinated: bool) -> None:
        self.name = name
        self.locks = tmp / name / "locks"
        self.env = {k: v for k, v in env.items() if k not in ("FI_RUN_COORDINATOR", "MAKEFLAGS")}
        self.proc: subprocess.Popen[bytes] | None = None
        if coordinated:
            address, stop = tmp / name / "address", tmp / name / "stop"
            address.parent.mkdir(parents=True, exist_ok=True)
            self.stop_file = stop
            serve = f'echo "$FI_RUN_COORDINATOR" > {address}; while [ ! -e {stop} ]; do sleep 0.05; done'
            self.proc = spawn([FI_RUN, "jobserver", "-j", "64", "--", BASH, "-c", serve], self.env)
            wait_for(
                lambda: address.exists() and address.read_text().strip() != "",
                f"machine {name}'s coordinator",
            )
            self.env["FI_RUN_COORDINATOR"] = address.read_text().strip()

    def argv(self, lock: list[str], command: list[str]) -> list[str]:
        return [FI_RUN, "--lock-dir", str(self.locks), *lock, "--", *command]

    def close(self) -> None:
        if self.proc is not None:
            self.stop_file.touch()
            self.proc.wait(timeout=60)


def cmd_fifo(args: argparse.Namespace, env: dict[str, str], tmp: Path) -> None:
    server = Server(tmp / "redis")
    server.settle()
    machines = [Machine("a", tmp, env, True), Machine("b", tmp, env, True), Machine("c", tmp, env, False)]
    rng = random.Random(args.seed)
    kept = 0
    try:
        for run in range(args.runs):
            name = f"fifo-{run}"
            url = server.url(name)
            log, release = tmp / f"{name}.log", tmp / f"{name}.release"
            body = f'echo "enter $0 $EPOCHREALTIME" >> {log}; echo "exit $0 $EPOCHREALTIME" >> {log}'
            first = rng.choice(machines)
            holder = spawn(
                first.argv(["--lock", url], [BASH, "-c", f"while [ ! -e {release} ]; do sleep 0.01; done"]),
                first.env,
            )
            wait_for(lambda name=name: len(server.look(name).holders) == 1, "the holder")
            asked, procs = [], []
            for number in range(args.steps):
                where = rng.choice(machines)
                mode = rng.choice(["--lock", "--semaphore"])
                lock = ["--lock", url] if mode == "--lock" else ["--semaphore", url + "=1"]
                tag = f"{where.name}{number}"
                procs.append(spawn(where.argv(lock, [BASH, "-c", body, tag]), where.env))
                wait_for(
                    lambda n=number + 1, name=name: len(server.look(name).waiters) >= n,
                    f"{tag} in the server's line",
                )
                asked.append(tag)
            release.touch()
            if holder.wait() != 0 or any(p.wait() != 0 for p in procs):
                raise SystemExit("remote.py: fifo: a step failed")
            entered = [line.split()[1] for line in log.read_text().splitlines() if line.startswith("enter")]
            kept += entered == asked
            order = "granted in that order" if entered == asked else "GRANTED " + " ".join(entered)
            print(f"run {run + 1:2}: asked {' '.join(asked)}; {order}")
    finally:
        for m in machines:
            m.close()
        server.stop()
    heading(f"FIFO across machines a, b (coordinators) and c (none), {args.runs} runs of {args.steps} steps")
    print(f"grant order = request order in {kept} of {args.runs} runs")


# --- stress: 10,000 acquires, SIGKILLs, a Redis crash half-way


def cmd_stress(args: argparse.Namespace, env: dict[str, str], tmp: Path) -> None:
    server = Server(tmp / "redis", persist=args.persist)
    server.settle(args.lease)
    env = {**env, remote.LEASE_VARIABLE: str(args.lease)}
    machines = [Machine("a", tmp, env, False), Machine("b", tmp, env, True)]
    url = server.url("stress") + f"={SEATS}"
    events = tmp / "events"
    rng = random.Random(args.seed)
    running: dict[int, tuple[subprocess.Popen[bytes], str]] = {}
    statuses: dict[int, int] = {}
    killed = restarted = 0
    entered = read_to = 0
    number = 0
    next_kill = time.monotonic() + args.kill_every
    started = time.monotonic()
    restart_at = args.acquires // 2
    try:
        while entered < args.acquires:
            while len(running) < args.jobs:
                where = rng.choice(machines)
                weight = 2 if rng.random() < 0.2 else 1
                hold = rng.uniform(0.005, 0.03)
                tag = f"{where.name}{number}"
                body = f'echo "enter $0 {weight}" >> {events}; sleep {hold:.3f}; echo "exit $0" >> {events}'
                proc = spawn(
                    where.argv(["--semaphore", f"{url}:{weight}"], [BASH, "-c", body, tag]), where.env
                )
                running[proc.pid] = (proc, tag)
                number += 1
            if time.monotonic() >= next_kill:
                next_kill = time.monotonic() + args.kill_every
                pid = rng.choice(list(running))
                proc, tag = running[pid]
                if proc.poll() is None:
                    freeze(pid)
                    with open(events, "a") as f:
                        f.write(f"killed {tag}\n")
                    kill_all(pid)
                    killed += 1
            for pid, (proc, _tag) in list(running.items()):
                status = proc.poll()
                if status is not None:
                    del running[pid]
                    statuses[status] = statuses.get(status, 0) + 1
            if events.exists():
                with open(events, encoding="utf-8") as f:
                    f.seek(read_to)
                    chunk = f.read()
                read_to += len(chunk.encode())
                entered += chunk.count("enter ")
            if not restarted and entered >= restart_at:
                restarted = 1
                with open(events, "a") as f:
                    f.write("redis crashed\n")
                server.crash()
                server.start()
                with open(events, "a") as f:
                    f.write("redis restarted\n")
            time.sleep(0.005)
        for proc, _tag in running.values():
            status = proc.wait()
            statuses[status] = statuses.get(status, 0) + 1
        wall = time.monotonic() - started
    finally:
        for m in machines:
            m.close()
        server.stop()
    inside: dict[str, int] = {}
    over, most, enters = 0, 0, 0
    for line in events.read_text().splitlines():
        words = line.split()
        if words[0] == "enter":
            enters += 1
            inside[words[1]] = int(words[2])
            used = sum(inside.values())
            most = max(most, used)
            if used > SEATS:
                over += 1
        elif words[0] in ("exit", "killed"):
            inside.pop(words[1], None)
    heading(
        f"stress, {SEATS} seats (weights 1 and 2), lease {args.lease:g} s, up to {args.jobs} steps at once"
    )
    print(
        f"{enters} acquires (commands that entered) in {wall:.0f} s from machines a (no coordinator) and b "
        f"(a coordinator); {killed} steps SIGKILLed at random (holders and waiters); redis-server crashed "
        "and "
        f"restarted {'with its append-only file' if args.persist else 'without its data'} once, after "
        f"{restart_at} acquires"
    )
    print(f"exit statuses of the steps: {dict(sorted(statuses.items()))} (-9: killed)")
    print(f"most seats in use at once: {most} of {SEATS}; over-grants: {over}")


SEATS = 3


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("client")
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--redis-py", help="a Python that has redis-py installed")
    p = sub.add_parser("overhead")
    p.add_argument("--rounds", type=int, default=30)
    p = sub.add_parser(INSIDE)
    p.add_argument("--rounds", type=int)
    p.add_argument("--url")
    p.add_argument("--tmp")
    p.add_argument("--out")
    p = sub.add_parser("handoff")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--procs", type=int, default=20)
    p.add_argument("--hold", type=float, default=0.05)
    p = sub.add_parser("kill")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--lease", type=float, default=remote.DEFAULT_LEASE)
    p = sub.add_parser("fifo")
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--seed", type=int, default=21)
    p = sub.add_parser("stress")
    p.add_argument("--acquires", type=int, default=10000)
    p.add_argument("--jobs", type=int, default=16)
    p.add_argument("--lease", type=float, default=2.0)
    p.add_argument("--kill-every", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=21)
    p.add_argument("--persist", action="store_true", help="an append-only file: the restart keeps the data")
    args = parser.parse_args()
    if args.command == INSIDE:
        cmd_inside(args)
        return 0
    env = prepare()
    for name in list(env):
        if name.startswith("FI_RUN_"):
            del env[name]
    with tempfile.TemporaryDirectory() as tmp:
        {
            "client": cmd_client,
            "overhead": cmd_overhead,
            "handoff": cmd_handoff,
            "kill": cmd_kill,
            "fifo": cmd_fifo,
            "stress": cmd_stress,
        }[args.command](args, env, Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
