"""Benchmark 3: a seed-like build, the depth-1 pool against fi_run's locks.

A generated build.ninja of 300 steps: 3 venvs, each with 10 install steps (exclusive, 0.5 s) and 20 import
steps (shared, 0.3 s; import i waits for install i % 10), plus 210 independent steps (0.6 s). The venv steps
run sim.sh, which fails like uv#2767 if it ever sees a conflicting holder, so a wrong lock is a failure, not
just a number. The ways, at -j16:
  (a) the seed's workaround: every venv step in one pool of depth 1, unwrapped;
  (b) fi_run with --lock / --shared-lock per venv, no pool; the independent steps unwrapped, as in (a);
  (b+) the same with every step wrapped in fi_run, the independent ones too (fi_run as every action's
       wrapper, as in uv#2767's build: it shows what fi_run's start-up costs on 2 cores);
  (c) as (b), under `fi-run jobserver -j16 -- ninja`: the build's lock coordinator (issue 18) takes the
      locks; a step waiting for one lends its job slot, and takes one back if there is one or runs on credit
      and repays it after (the default);
  (cn) as (c) with `fi-run jobserver --no-coordinator`: every step takes its locks through the lock
      directory (before issue 18);
  (c0) as (c), but a lock holder waits for a token before its command (FI_RUN_LEND_REPAY=0);
  (d) as (b), plus one ninja pool of depth 1 per venv (docs/jobserver.md's pattern), no jobserver;
  (d1) as (d), but only the installs in the pool: the shared import steps wait for installs in job slots;
  (u) unwrapped, no pool: steps collide (ninja -k 0, failures counted).
Reported: wall time, CPU time of all the build's processes, failures, (a)/(b), and (b) over the DAG lower
bound: the largest of total work / 16, the critical path, and per venv its serialized exclusive work plus one
shared interval (its imports cannot overlap its installs).

Usage: python benchmarks/seed_build.py [--jobs 16] [--scale 1.0] [--runs 1] [--ways a,b,b+,c,c0,cn,d,u]
(scale multiplies every duration; with --runs N the ways run interleaved N times and medians are shown)
"""

from __future__ import annotations

import argparse
import os
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from common import prepare

HERE = os.path.dirname(os.path.abspath(__file__))
VENVS = 3
INSTALLS = 10
IMPORTS = 20
INDEPENDENT = 210


def generate(way: str, build: str, scale: float) -> None:
    install_s, import_s, independent_s = 0.5 * scale, 0.3 * scale, 0.6 * scale
    fi_run = shlex.quote(os.path.join(os.path.dirname(sys.executable), "fi-run"))
    sim = shlex.quote(os.path.join(HERE, "sim.sh"))
    locks = shlex.quote(os.path.join(build, "locks"))
    lines = ["pool venv\n  depth = 1\n"] + [f"pool venv{v}\n  depth = 1\n" for v in range(VENVS)]
    wrap = f"{fi_run} --lock-dir {locks} --stamp $out"
    if way in ("b", "b+", "c", "c0", "cn", "d", "d1"):
        pool = "\n  pool = $venv_pool" if way in ("d", "d1") else ""
        import_pool = pool if way == "d" else ""
        lines.append(
            f"rule install\n  command = {wrap} --lock $venv -- {sim} exclusive $venv {install_s}{pool}\n"
        )
        lines.append(
            f"rule import\n  command = {wrap} --shared-lock $venv -- {sim} shared $venv {import_s}"
            f"{import_pool}\n"
        )
        if way == "b+":
            lines.append(f"rule work\n  command = {wrap} -- sleep {independent_s}\n")
        else:
            lines.append(f"rule work\n  command = sleep {independent_s} && touch $out\n")
    else:
        pool = "\n  pool = venv" if way == "a" else ""
        lines.append(f"rule install\n  command = {sim} exclusive $venv {install_s} && touch $out{pool}\n")
        lines.append(f"rule import\n  command = {sim} shared $venv {import_s} && touch $out{pool}\n")
        lines.append(f"rule work\n  command = sleep {independent_s} && touch $out\n")
    outs = []
    for v in range(VENVS):
        venv = os.path.join(build, f"venv{v}")
        for i in range(INSTALLS):
            out = f"out/v{v}-install{i}.stamp"
            lines.append(f"build {out}: install\n  venv = {venv}\n  venv_pool = venv{v}\n")
            outs.append(out)
        for i in range(IMPORTS):
            out = f"out/v{v}-import{i}.stamp"
            lines.append(
                f"build {out}: import || out/v{v}-install{i % INSTALLS}.stamp\n  venv = {venv}\n"
                f"  venv_pool = venv{v}\n"
            )
            outs.append(out)
    for i in range(INDEPENDENT):
        out = f"out/work{i}.stamp"
        lines.append(f"build {out}: work\n")
        outs.append(out)
    lines.append("build all: phony " + " ".join(outs) + "\ndefault all\n")
    os.makedirs(os.path.join(build, "out"), exist_ok=True)
    with open(os.path.join(build, "build.ninja"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines))


def lower_bound(jobs: int, scale: float) -> float:
    install_s, import_s, independent_s = 0.5 * scale, 0.3 * scale, 0.6 * scale
    total = VENVS * (INSTALLS * install_s + IMPORTS * import_s) + INDEPENDENT * independent_s
    critical = install_s + import_s
    per_venv = INSTALLS * install_s + import_s
    return max(total / jobs, critical, per_venv, independent_s)


def run(way: str, ninja: str, jobs: int, scale: float, env: dict[str, str]) -> tuple[float, float, int, int]:
    with tempfile.TemporaryDirectory() as build:
        generate(way, build, scale)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.monotonic()
        argv = [ninja, "-C", build, "-j", str(jobs), "-k", "0"]
        run_env = env
        if way in ("c", "c0", "cn"):  # ninja gets no -j of its own: it would ignore the jobserver
            fi_run = os.path.join(os.path.dirname(sys.executable), "fi-run")
            coordinator = ["--no-coordinator"] if way == "cn" else []
            argv = [fi_run, "jobserver", "-j", str(jobs), *coordinator, "--", ninja, "-C", build, "-k", "0"]
            run_env = {**env, "FI_RUN_LEND_REPAY": "0" if way == "c0" else "1"}
        proc = subprocess.run(argv, capture_output=True, text=True, env=run_env, check=False)
        wall = time.monotonic() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        failed = proc.stdout.count("FAILED: ")
        stamps = len([n for n in os.listdir(os.path.join(build, "out")) if n.endswith(".stamp")])
        conflicts = 0
        for v in range(VENVS):
            path = os.path.join(build, f"venv{v}", "conflicts")
            if os.path.exists(path):
                with open(path, encoding="utf-8") as f:
                    conflicts += len(f.readlines())
        if "jobserver:" in proc.stderr:
            raise SystemExit(f"way {way}: the jobserver's tokens did not add up: {proc.stderr.strip()}")
        if way != "u" and (proc.returncode != 0 or failed or conflicts or stamps != 300):
            raise SystemExit(
                f"way {way}: the build went wrong: exit {proc.returncode}, {failed} failed, "
                f"{conflicts} conflicts, {stamps} stamps\n{proc.stdout[-2000:]}"
            )
        return wall, cpu, failed, stamps


NAMES = {
    "a": "(a) depth-1 pool, unwrapped",
    "b": "(b) fi_run locks, no pool",
    "b+": "(b+) as (b), every step in fi_run",
    "c": "(c) locks, fi-run jobserver, repay",
    "c0": "(c0) as (c), token before command",
    "cn": "(cn) as (c), --no-coordinator",
    "d": "(d) locks + depth-1 pool per venv",
    "d1": "(d1) as (d), installs only in pool",
    "u": "(u) unwrapped, no pool",
}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=16)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--runs", type=int, default=1, help="interleaved runs of every way; medians shown")
    parser.add_argument("--ways", default=",".join(NAMES), help="comma-separated, from: " + " ".join(NAMES))
    args = parser.parse_args()
    ways = args.ways.split(",")
    unknown = [way for way in ways if way not in NAMES]
    if unknown:
        parser.error(f"unknown ways {unknown}")
    ninja = shutil.which(
        "ninja", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    )
    if ninja is None:
        print("seed_build.py: ninja not found (python -m pip install ninja)", file=sys.stderr)
        return 1
    env = prepare()
    samples: dict[str, list[tuple[float, float, int, int]]] = {way: [] for way in ways}
    for _ in range(args.runs):  # interleaved: a change in the machine's load hits every way alike
        for way in ways:
            samples[way].append(run(way, ninja, args.jobs, args.scale, env))
    results = {
        way: (
            statistics.median(s[0] for s in runs),
            statistics.median(s[1] for s in runs),
            max(s[2] for s in runs),
            min(s[3] for s in runs),
        )
        for way, runs in samples.items()
    }
    bound = lower_bound(args.jobs, args.scale)
    print(
        f"300 steps at -j{args.jobs}, scale {args.scale}, {os.cpu_count()} CPUs, {args.runs} interleaved "
        f"run(s), medians, {time.strftime('%Y-%m-%d')}; DAG lower bound {bound:.2f} s"
    )
    print(f"{'way':37} {'wall s':>7} {'CPU s':>7} {'failed':>7} {'stamps':>7} {'/bound':>7} {'(a)/':>7}")
    a = results["a"][0] if "a" in results else float("nan")
    for way, (wall, cpu, failed, stamps) in results.items():
        ratios = f"{wall / bound:7.2f} {a / wall:7.2f}"
        print(f"{NAMES[way]:37} {wall:7.2f} {cpu:7.2f} {failed:7d} {stamps:7d} {ratios}")
    if args.runs > 1:
        print(
            "walls per run: " + "; ".join(f"{w} " + " ".join(f"{s[0]:.2f}" for s in samples[w]) for w in ways)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
