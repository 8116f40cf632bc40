"""Benchmark (issue 19): replace the link pool. A link-heavy build in a real memory cgroup, every way.

LINKS "links" (a Python process each that allocates and touches 300 to 700 MiB, deterministic sizes, and
holds it HOLD seconds) and SMALL small steps (20 MiB for 0.1 s), under ninja -j JOBS, inside a memory cgroup
of LIMIT MiB (no swap) made for each run (root) and removed after it. The ways, interleaved over --runs:
  (u)  unwrapped: ninja -j JOBS, nothing declared (the baseline: the kernel OOM-kills);
  (pN) the links in a ninja pool of depth N, for N in --depths (a hand-tuned link pool);
  (c)  the pool depth Chromium's build/get_concurrent_links.py would pick: the memory limit (it reads the
       cgroup) over 8 GiB per link, at least 1;
  (m)  each link `fi-run --mem SIZE` (its size plus 32 MiB for the interpreter), no pool, plain ninja: the
       budget is read from the cgroup, no number given;
  (mj) the same under `fi-run jobserver -j JOBS` (the coordinator takes the memory seats, waiting links lend
       their job slots to the small steps);
  (f)  unwrapped under `fi-run jobserver --keep-free-memory FLOOR`.
All run `ninja -k 0`, so a killed step does not stop the others. Reported per way (medians): wall time, the
outputs made, the cgroup's OOM kills and its peak usage.

Usage: sudo python benchmarks/memory_build.py [--links 24] [--small 100] [--jobs 8] [--limit 1792]
                                              [--depths 1,2,3,4] [--runs 3] [--floor 600M]
"""

from __future__ import annotations

import argparse
import os
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from common import prepare
from memory_floor import ALLOCATE, make_cgroup, peak_and_kills, remove_cgroup

CHROMIUM_GIB_PER_LINK = 8


def sizes(links: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.randrange(300, 701, 10) for _ in range(links)]


def write_build(work: str, way: str, args: argparse.Namespace, link_sizes: list[int], depth: int) -> None:
    with open(os.path.join(work, "alloc.py"), "w") as f:
        f.write(ALLOCATE)
    py = shlex.quote(sys.executable)
    fi_run = shlex.quote(os.path.join(os.path.dirname(sys.executable), "fi-run"))
    lines = [f"rule small\n  command = {py} alloc.py 20 0.1 $out\n"]
    if depth:
        lines.append(f"pool link_pool\n  depth = {depth}\n")
    link = f"{py} alloc.py $size {args.hold} $out"
    if way in ("m", "mj"):
        link = f"{fi_run} --lock-dir {shlex.quote(os.path.join(work, 'locks'))} --mem $mem -- {link}"
    lines.append(f"rule link\n  command = {link}\n" + ("  pool = link_pool\n" if depth else ""))
    for i, size in enumerate(link_sizes):
        lines.append(f"build link{i}: link\n  size = {size}\n  mem = {size + 32}M\n")
    lines += [f"build small{i}: small\n" for i in range(args.small)]
    with open(os.path.join(work, "build.ninja"), "w") as f:
        f.write("".join(lines))


def one_run(
    way: str, depth: int, args: argparse.Namespace, link_sizes: list[int], env: dict[str, str]
) -> dict[str, float]:
    work = tempfile.mkdtemp(prefix="fi_run-memory-build-")
    try:
        write_build(work, way, args, link_sizes, depth)
        ninja = os.path.join(os.path.dirname(sys.executable), "ninja")
        server = [sys.executable, "-m", "fi_run", "jobserver", "-j", str(args.jobs)]
        command = {
            "mj": [*server, "--", ninja, "-k", "0"],
            "f": [*server, "--keep-free-memory", args.floor, "--", ninja, "-k", "0"],
        }.get(way, [ninja, "-k", "0", "-j", str(args.jobs)])
        directory, version = make_cgroup(args.limit << 20)
        enter = 'echo $$ > "$0/cgroup.procs" && exec "$@"'
        run_env = {k: v for k, v in env.items() if not k.startswith("FI_RUN_")}
        started = time.monotonic()
        subprocess.run(
            ["/bin/sh", "-c", enter, directory, *command],
            cwd=work, env=run_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False,
        )  # fmt: skip
        wall = time.monotonic() - started
        peak, kills = peak_and_kills(directory, version)
        remove_cgroup(directory)
        outputs = [f"link{i}" for i in range(len(link_sizes))] + [f"small{i}" for i in range(args.small)]
        made = sum(1 for name in outputs if os.path.exists(os.path.join(work, name)))
        return {"wall": wall, "made": made, "kills": kills, "peak": (peak or 0) / (1 << 20)}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--links", type=int, default=24)
    parser.add_argument("--small", type=int, default=100)
    parser.add_argument("--hold", type=float, default=1.0)
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--limit", type=int, default=1792, help="the cgroup's limit, MiB")
    parser.add_argument("--depths", default="1,2,3,4")
    parser.add_argument("--floor", default="600M")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--ways", default="u,p,c,m,mj,f")
    parser.add_argument("--seed", type=int, default=19)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("memory_build.py: making a memory cgroup needs root")
    env = prepare()
    link_sizes = sizes(args.links, args.seed)
    chromium = max(1, args.limit // (CHROMIUM_GIB_PER_LINK << 10))
    plan: list[tuple[str, str, int]] = []  # (label, way, pool depth)
    for way in args.ways.split(","):
        if way == "p":
            plan += [(f"(p{d}) link pool depth {d}", "p", d) for d in map(int, args.depths.split(","))]
        elif way == "c":
            plan.append((f"(c) Chromium's depth ({chromium})", "c", chromium))
        else:
            label = {
                "u": "(u) unwrapped",
                "m": "(m) --mem, ninja",
                "mj": "(mj) --mem, fi-run jobserver",
                "f": f"(f) --keep-free-memory {args.floor}",
            }[way]
            plan.append((label, way, 0))
    results: dict[str, list[dict[str, float]]] = {label: [] for label, _, _ in plan}
    for _ in range(args.runs):
        for label, way, depth in plan:
            results[label].append(one_run(way, depth, args, link_sizes, env))
    total = args.links + args.small
    print(
        f"{args.links} links of {min(link_sizes)}-{max(link_sizes)} MiB held {args.hold:g} s and "
        f"{args.small} steps of 20 MiB, -j{args.jobs}, cgroup limit {args.limit} MiB; {args.runs} "
        f"interleaved runs, medians; load {os.getloadavg()[0]:.2f}, {time.strftime('%Y-%m-%d %H:%M')}"
    )
    print(f"{'way':34} {'wall s':>7} {'made':>9} {'OOM kills':>10} {'peak MiB':>9}   runs (made/kills)")
    for label, runs in results.items():
        wall = statistics.median(r["wall"] for r in runs)
        made = statistics.median(r["made"] for r in runs)
        kills = statistics.median(r["kills"] for r in runs)
        peak = statistics.median(r["peak"] for r in runs)
        detail = " ".join(f"{r['made']:.0f}/{r['kills']:.0f}" for r in runs)
        print(f"{label:34} {wall:7.2f} {made:5.0f}/{total:<3} {kills:10.0f} {peak:9.0f}   {detail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
