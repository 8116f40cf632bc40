"""Create the uv example's venv, OUT_DIR/venv, with the packages' build backend (flit_core) in it.

Usage: python make_venv.py OUT_DIR

The one step of the example that may need the network, and only the first time on a machine: it asks uv
for flit_core offline first (from uv's cache) and goes to the package index only if that fails. With the
backend in the venv, the build installs with --no-build-isolation --offline and needs nothing else.
The venv's Python is the one running this script; uv is the one next to it (pip install uv), else PATH's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

BACKEND = "flit_core>=3.4"  # what the packages' pyproject.toml files require


def find_uv() -> str:
    search = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    found = shutil.which("uv", path=search)
    if found is None:
        raise SystemExit("make_venv.py: uv not found; install it with: python -m pip install uv")
    return found


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def has_backend(venv: Path) -> bool:
    python = venv_python(venv)
    if not python.exists():
        return False
    probe = subprocess.run([str(python), "-c", "import flit_core.buildapi"], capture_output=True, check=False)
    return probe.returncode == 0


def make_venv(out: Path, uv: str | None = None) -> str:
    """Make OUT/venv with flit_core in it. Returns where flit_core came from: "venv" (it was already
    there: nothing done), "cache" (uv's cache, offline) or "index" (downloaded: the first time)."""
    venv = out / "venv"
    if has_backend(venv):
        return "venv"
    uv = uv or find_uv()
    shutil.rmtree(venv, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run([uv, "venv", "--quiet", "--python", sys.executable, str(venv)], check=True)
    install = [uv, "pip", "install", "--quiet", "--python", str(venv_python(venv)), BACKEND]
    offline = subprocess.run([*install, "--offline"], capture_output=True, text=True, check=False)
    if offline.returncode == 0:
        return "cache"
    print(
        f"make_venv.py: {BACKEND} is not in uv's cache yet; fetching it from the package index "
        "(needed once: later setups and every build run offline)",
        file=sys.stderr,
    )
    subprocess.run(install, check=True)
    return "index"


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    out = Path(sys.argv[1]).resolve()
    source = make_venv(out)
    said = {"venv": "already there", "cache": "from uv's cache, offline", "index": "from the package index"}
    print(f"make_venv.py: {out / 'venv'} has {BACKEND} ({said[source]})")


if __name__ == "__main__":
    main()
