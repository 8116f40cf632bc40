"""Benchmark 1b: fi_run's cost per step at another revision against this tree's, interleaved.

A change that moves modules or adds a check costs tenths of a millisecond, well inside the noise of two
separate runs of overhead.py. So both trees run in the same rounds: each round runs every command once, in a
fresh random order, so machine noise hits both trees alike. It reports the median wall time and the median
CPU time (user + system, from the child's rusage, less noisy than wall time on a shared machine) of each,
and the difference between the trees, round by round (median and quartiles).

Usage: python benchmarks/compare.py REV [--rounds N]
REV is checked out into a temporary git worktree, removed at the end. By path (as GN runs it) each tree's
__main__.py finds its own package; with -m, PYTHONPATH names the tree, and the script checks that its
children import fi_run from the tree it meant.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time

from common import prepare

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(argv: list[str], env: dict[str, str], cwd: str) -> tuple[float, float]:
    """Wall and CPU seconds of one run of argv, which must succeed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=cwd, check=False
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise SystemExit(f"exit {result.returncode}: {argv}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("rev", help="the revision to compare this tree with (e.g. 3b17182)")
    parser.add_argument("--rounds", type=int, default=100)
    args = parser.parse_args()
    py = sys.executable
    env = prepare()
    with tempfile.TemporaryDirectory() as tmp:
        base = os.path.join(tmp, "base")
        subprocess.run(
            ["git", "-C", HERE, "worktree", "add", "--quiet", "--detach", base, args.rev], check=True
        )
        try:
            trees = {args.rev: base, "this tree": HERE}
            work = os.path.join(tmp, "work")
            os.mkdir(work)
            commands: dict[str, tuple[list[str], dict[str, str]]] = {
                "python -c pass": ([py, "-c", "pass"], env)
            }
            for label, tree in trees.items():
                tree_env = dict(env, PYTHONPATH=tree)
                check = subprocess.run(
                    [py, "-c", "import fi_run; print(fi_run.__file__)"],
                    env=tree_env,
                    cwd=work,
                    capture_output=True,
                    text=True,
                    check=True,
                )
                if not check.stdout.strip().startswith(tree):
                    raise SystemExit(f"{label}: fi_run came from {check.stdout.strip()}, not {tree}")
                import compileall

                compileall.compile_dir(os.path.join(tree, "fi_run"), quiet=1)
                stamp = os.path.join(work, f"{len(commands)}.stamp")
                step = ["--stamp", stamp, "--env", "K=V", "--", "true"]
                locked = ["--lock-dir", os.path.join(work, "locks"), "--lock", work, "--", "true"]
                main_py = os.path.join(tree, "fi_run", "__main__.py")
                # By path, as GN runs it: no PYTHONPATH, the script finds its own tree.
                commands[f"{label}: by path"] = ([py, main_py, *step], env)
                commands[f"{label}: by path --lock"] = ([py, main_py, *locked], env)
                commands[f"{label}: -m fi_run"] = ([py, "-m", "fi_run", *step], tree_env)
                commands[f"{label}: -m --lock"] = ([py, "-m", "fi_run", *locked], tree_env)
            names = list(commands)
            walls: dict[str, list[float]] = {name: [] for name in names}
            cpus: dict[str, list[float]] = {name: [] for name in names}
            for _ in range(args.rounds):
                random.shuffle(names)
                for name in names:
                    argv, run_env = commands[name]
                    wall, cpu = run(argv, run_env, work)
                    walls[name].append(wall)
                    cpus[name].append(cpu)
        finally:
            subprocess.run(["git", "-C", HERE, "worktree", "remove", "--force", base], check=False)
    wall_base = statistics.median(walls["python -c pass"])
    load = os.getloadavg()[0]
    print(
        f"{sys.version.split()[0]}, {args.rounds} interleaved rounds, load average {load:.2f}, "
        f"{time.strftime('%Y-%m-%d %H:%M')}"
    )
    print(f"{'command':30} {'wall ms':>8} {'x -c pass':>10} {'CPU ms':>8}")
    for name in commands:
        wall, cpu = statistics.median(walls[name]), statistics.median(cpus[name])
        print(f"{name:30} {wall * 1000:8.2f} {wall / wall_base:9.2f}x {cpu * 1000:8.2f}")
    # Paired: this tree's run minus the other tree's run of the same round, which shared the machine's state.
    print(f"\nthis tree minus {args.rev}, per round (median and quartiles, ms):")
    for kind in ("by path", "by path --lock", "-m fi_run", "-m --lock"):
        old, new = f"{args.rev}: {kind}", f"this tree: {kind}"
        cells = []
        for label, series in (("wall", walls), ("CPU", cpus)):
            deltas = [(b - a) * 1000 for a, b in zip(series[old], series[new], strict=True)]
            q1, q2, q3 = statistics.quantiles(deltas, n=4)
            cells.append(f"{label} {q2:+6.2f} [{q1:+.2f} .. {q3:+.2f}]")
        print(f"  {kind:15} " + "   ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
