"""uv#2767's build with real uv: twelve `uv pip install -e` into one venv at -j12, twelve import checks.

Usage:
  python examples/uv-venv/run.py                  fi_run locks, no pool; build, check, build again
  python examples/uv-venv/run.py --pool           the same build with a depth-1 pool instead of locks
  python examples/uv-venv/run.py --lend           fi_run locks under fi-run jobserver -j12 (steps lend slots)
  python examples/uv-venv/run.py --bare           neither pool nor fi_run lock: uv's own venv lock only
  python examples/uv-venv/run.py --compare 3      time every way, 3 clean builds each, and print the medians

Needs fi_run, ninja and uv installed for this Python (pip install -e . ninja uv). The first run on a
machine fetches the packages' build backend, flit_core, from the package index into uv's cache
(make_venv.py); from then on setup and build run offline. Build directories: examples/uv-venv/out/<mode>.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from configure import packages, write_build_ninja
from make_venv import make_venv

HERE = Path(__file__).resolve().parent
MODES = {
    "locks": "fi_run locks, no pool",
    "pool": "a depth-1 pool",
    "lend": "fi_run locks under fi-run jobserver",
    "bare": "uv's own lock only",
}


def find_ninja() -> str:
    search = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    found = shutil.which("ninja", path=search)
    if found is None:
        raise SystemExit("run.py: ninja not found; install it with: python -m pip install ninja")
    return found


def prepare(out: Path, mode: str, lock_dir: str | None) -> str:
    """A clean build directory with a fresh venv and its build.ninja; returns where flit_core came from."""
    shutil.rmtree(out, ignore_errors=True)
    source = make_venv(out)
    write_build_ninja(out, pool=mode == "pool", lock_dir=lock_dir, bare=mode == "bare")
    return source


def ninja(out: Path, jobs: int, *, echo: bool, jobserver: bool = False) -> tuple[int, str, float]:
    """Run ninja in ``out``: (exit status, its output, wall time in seconds). ``echo`` shows the output.
    ``jobserver``: under `fi-run jobserver -j JOBS`, ninja without -j (it would ignore the jobserver)."""
    argv = [find_ninja(), "-C", str(out), "-j", str(jobs)]
    if jobserver:
        argv = [sys.executable, "-m", "fi_run", "jobserver", "-j", str(jobs), "--", *argv[:3]]
    started = time.monotonic()
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if echo:
            print(line, end="", flush=True)
    status = proc.wait()
    return status, "".join(lines), time.monotonic() - started


def scenario(out: Path, mode: str, jobs: int, lock_dir: str | None) -> int:
    source = prepare(out, mode, lock_dir)
    names = [module for module, _ in packages()]
    said = {"venv": "already there", "cache": "from uv's cache, offline", "index": "from the package index"}
    print(
        f"Setup: {out / 'venv'} with flit_core ({said[source]}); {out / 'build.ninja'} uses {MODES[mode]}.\n"
    )

    status, output, elapsed = ninja(out, jobs, echo=True, jobserver=mode == "lend")
    if status != 0:
        print(f"\nrun.py: the build failed (ninja exit {status})", file=sys.stderr)
        return status
    missing = [n for n in names if not (out / "stamps" / f"{n}.imported").is_file()]
    if missing:
        print(f"\nrun.py: no successful import check for {', '.join(missing)}", file=sys.stderr)
        return 1
    retries = output.count("fi_run: lock contention")
    second_status, second, _ = ninja(out, jobs, echo=False, jobserver=mode == "lend")
    last = second.strip().splitlines()[-1] if second.strip() else ""
    if mode in ("locks", "lend"):
        how = "each `uv pip install -e` held an exclusive fi_run lock on the venv"
        how += ", each import check a shared one"
        if mode == "lend":
            how += ", under fi-run jobserver (waiting steps lent their job slot)"
    elif mode == "bare":
        how = "uv waited on its own venv lock, without fi_run's"
    else:
        how = "ninja's depth-1 pool ran them one at a time"
    print(
        f"\n{len(names)} packages installed editable into one venv with real uv at -j{jobs}, offline, and "
        f"{len(names)} import checks passed ({elapsed:.1f} s): {how}. Steps failed: 0; contention "
        f"retries: {retries}.\nSecond run: {last}"
    )
    return second_status


def compare(base: Path, rounds: int, jobs: int, lock_dir: str | None) -> int:
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    for n in range(rounds):
        order = list(MODES)[n % len(MODES) :] + list(MODES)[: n % len(MODES)]  # none always goes first
        for mode in order:
            out = base / f"compare-{mode}"
            prepare(out, mode, lock_dir)  # not timed: the venv is made fresh for every build
            status, output, elapsed = ninja(out, jobs, echo=False, jobserver=mode == "lend")
            if status != 0:
                print(output, file=sys.stderr)
                print(f"run.py: the {mode} build failed (ninja exit {status})", file=sys.stderr)
                return status
            times[mode].append(elapsed)
            print(f"round {n + 1}: {MODES[mode]}: {elapsed:.2f} s", flush=True)
    print(f"\nClean build of the uv example at -j{jobs} (wall time of ninja, {rounds} builds each):")
    for mode, values in times.items():
        runs = ", ".join(f"{v:.2f}" for v in values)
        print(f"  {MODES[mode]:<22} median {statistics.median(values):.2f} s  ({runs})")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    way = parser.add_mutually_exclusive_group()
    way.add_argument("--pool", action="store_true", help="use a depth-1 pool instead of fi_run locks")
    way.add_argument("--lend", action="store_true", help="fi_run locks, under fi-run jobserver")
    way.add_argument("--bare", action="store_true", help="no pool, no fi_run lock: uv's own lock only")
    parser.add_argument("--out", type=Path, default=HERE / "out", help="where build directories go")
    parser.add_argument("-j", "--jobs", type=int, default=12, help="ninja -j (default 12)")
    parser.add_argument("--lock-dir", help="fi_run's lock directory (default: fi_run's own)")
    parser.add_argument("--compare", type=int, metavar="N", help="time N clean builds of each mode")
    options = parser.parse_args()
    base: Path = options.out.resolve()
    if options.compare:
        return compare(base, options.compare, options.jobs, options.lock_dir)
    mode = "pool" if options.pool else "lend" if options.lend else "bare" if options.bare else "locks"
    return scenario(base / mode, mode, options.jobs, options.lock_dir)


if __name__ == "__main__":
    sys.exit(main())
