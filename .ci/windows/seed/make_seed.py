"""Writes the seed build (uv#2767's shape) for Windows ninja.exe: N editable installs into ONE venv.

python3 make_seed.py DIR N   (run on Linux; paths written as Wine sees them, Z:\\...). Three build files:
unwrapped.ninja (uv straight from ninja, as in uv#2767), locked.ninja (fi_run --lock venv) and retry.ninja
(fi_run with its default retries only).
"""

from __future__ import annotations

import os
import shutil
import sys


def winpath(path: str) -> str:
    return "Z:" + path.replace("/", "\\")


def main() -> None:
    out, n = os.path.abspath(sys.argv[1]), int(sys.argv[2])
    ws = os.environ["WS"]
    uv = winpath(f"{ws}/uvold/uv-0.1.27.data/scripts/uv.exe")
    py = winpath(f"{ws}/venv-test/Scripts/python.exe")  # has filelock and imports fi_run from the checkout
    links = winpath(f"{ws}/wheels-old")
    here = os.path.dirname(os.path.abspath(__file__))
    for i in range(1, n + 1):
        name = f"pkg{i:02d}"
        d = os.path.join(out, "pkgs", name)
        os.makedirs(os.path.join(d, name), exist_ok=True)
        # An in-tree PEP 517/660 backend with no build requirements: nothing is installed into uv's isolated
        # build environment (under Wine 8.0 uv's cache junctions fail, so a backend from --find-links cannot be).
        with open(os.path.join(d, "pyproject.toml"), "w") as f:
            f.write(
                '[build-system]\nrequires = []\nbuild-backend = "seed_backend"\nbackend-path = ["."]\n\n'
                f'[project]\nname = "{name}"\nversion = "0.1"\ndescription = "seed package {name}"\n'
            )
        shutil.copy(os.path.join(here, "seed_backend.py"), d)
        with open(os.path.join(d, name, "__init__.py"), "w") as f:
            f.write(f'"""{name}"""\n')
    uv_args = f"pip install -e pkgs\\$pkg --offline --no-index -f {links}"
    rules = {
        "unwrapped": f"{uv} {uv_args}",
        "locked": f"{py} -m fi_run --stamp $out --log $out.jsonl --venv venv --lock venv -- {uv} {uv_args}",
        "retry": f"{py} -m fi_run --stamp $out --log $out.jsonl --venv venv -- {uv} {uv_args}",
    }
    for variant, command in rules.items():
        lines = [f"builddir = out-{variant}", f"rule uv_install\n  command = {command}\n  description = UV $pkg\n"]
        for i in range(1, n + 1):
            lines.append(f"build out-{variant}/pkg{i:02d}.stamp: uv_install\n  pkg = pkg{i:02d}\n")
        with open(os.path.join(out, f"{variant}.ninja"), "w") as f:
            f.write("\n".join(lines))


if __name__ == "__main__":
    main()
