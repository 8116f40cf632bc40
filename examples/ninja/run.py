"""Run the example build twice with real ninja and say what happened.

Usage: python examples/ninja/run.py   (from anywhere; uses the ninja and fi-run next to this Python)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def main() -> int:
    bindir = os.path.dirname(sys.executable)
    env = dict(os.environ, PATH=bindir + os.pathsep + os.environ.get("PATH", ""))
    ninja = shutil.which("ninja", path=env["PATH"])
    if ninja is None:
        print("run.py: ninja not found; install it with: python -m pip install ninja", file=sys.stderr)
        return 1
    shutil.rmtree(os.path.join(HERE, "out"), ignore_errors=True)
    for name in (".ninja_log", ".ninja_deps"):
        if os.path.exists(os.path.join(HERE, name)):
            os.unlink(os.path.join(HERE, name))

    started = time.monotonic()
    first = subprocess.run([ninja, "-C", HERE, "-j", "16"], env=env, check=False)
    elapsed = time.monotonic() - started
    if first.returncode != 0:
        print(f"\nrun.py: the build failed (ninja exit {first.returncode})", file=sys.stderr)
        return first.returncode
    with open(os.path.join(HERE, "out", "venv", "installed.txt"), encoding="utf-8") as f:
        installed = f.read().split()
    second = subprocess.run(
        [ninja, "-C", HERE, "-j", "16"], env=env, check=True, capture_output=True, text=True
    )
    print(
        f"\n{len(installed)} installs into one venv ran at -j16 with no depth-1 pool and none collided "
        f"({elapsed:.1f} s).\nSecond run: {second.stdout.strip().splitlines()[-1]}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
