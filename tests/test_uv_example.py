"""examples/uv-venv with the real uv from PyPI: uv#2767's build, twelve `uv pip install -e` into one venv at
-j12 under fi_run locks (and, for comparison, under a depth-1 pool), offline after the first setup.

The first setup needs the package index once, to put the packages' build backend (flit_core) into a uv
cache of these tests' own; that is what the `network` mark says (informational: CI has the index and
runs these tests). Everything after it, setup included, runs with every proxy variable pointing at a
closed port on this machine, so any attempt of uv to reach an index would fail the build.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import pytest
from fi_run_testing import UV_UNDER_WINE, base_environ, ninja_binary, run_tool, under_wine

if TYPE_CHECKING:
    import subprocess

pytestmark = [pytest.mark.network, pytest.mark.skipif(under_wine(), reason=UV_UNDER_WINE)]

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "uv-venv"
NATO = "alpha bravo charlie delta echo foxtrot golf hotel india juliett kilo lima"
MODULES = [f"demo_{name}" for name in NATO.split()]  # the twelve packages under packages/
NO_WORK = "ninja: no work to do."
CLOSED_PORT = "http://127.0.0.1:9"  # the discard port: nothing listens there, connections are refused


def tool(name: str) -> str:
    """The tool from PyPI installed next to this Python (preferred), else one on PATH. Fails if none."""
    search = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    found = shutil.which(name, path=search)
    assert found is not None, f"no {name} next to {sys.executable} or on PATH: pip install -e '.[test]'"
    return found


class Env(NamedTuple):
    online: dict[str, str]  # for the first setup only
    offline: dict[str, str]  # for everything else: no proxy works, so no index can be reached


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Env:
    """The example's environments, with a uv cache of its own in which the first setup put flit_core."""
    tmp = tmp_path_factory.mktemp("uv-example")
    common = base_environ({"UV_CACHE_DIR": str(tmp / "uv-cache"), "UV_PYTHON_DOWNLOADS": "never"})
    common["PATH"] = os.path.dirname(sys.executable) + os.pathsep + common.get("PATH", "")
    offline = dict(common)
    for name in ("NO_PROXY", "no_proxy"):
        offline.pop(name, None)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        offline[name] = CLOSED_PORT
    assert tool("uv")  # the uv from PyPI, found the way configure.py and make_venv.py find it

    first = run([sys.executable, str(EXAMPLE / "make_venv.py"), str(tmp / "first-setup")], common)
    assert first.returncode == 0, first.stdout
    assert "flit_core>=3.4 (from the package index)" in first.stdout
    return Env(common, offline)


def run(argv: list[str], env: dict[str, str], cwd: Path = EXAMPLE) -> subprocess.CompletedProcess[str]:
    return run_tool(argv, cwd=cwd, env=env)


def venv_python(venv: Path) -> str:
    return str(venv / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python"))


def test_setup_after_the_first_is_offline(env: Env, tmp_path: Path) -> None:
    made = run([sys.executable, str(EXAMPLE / "make_venv.py"), str(tmp_path)], env.offline)
    assert made.returncode == 0, made.stdout
    assert "flit_core>=3.4 (from uv's cache, offline)" in made.stdout
    again = run([sys.executable, str(EXAMPLE / "make_venv.py"), str(tmp_path)], env.offline)
    assert again.returncode == 0, again.stdout
    assert "(already there)" in again.stdout


def check_build(out: Path, output: str, env: Env) -> None:
    """What both modes must have done: every install and import check, none failed, none retried."""
    assert "FAILED" not in output
    assert "lock contention" not in output
    for module in MODULES:
        assert f"IMPORT {module}" in output
        assert (out / "stamps" / f"{module}.installed").is_file()
        assert (out / "stamps" / f"{module}.imported").is_file()
    # Every package imports in the venv, from its own source directory: editable installs, all twelve there.
    imported = run(
        [venv_python(out / "venv"), "-c", f"import {', '.join(MODULES)}, sys; sys.exit(0)"], env.offline
    )
    assert imported.returncode == 0, imported.stdout
    listed = run([tool("uv"), "pip", "list", "--offline", "--python", venv_python(out / "venv")], env.offline)
    assert listed.returncode == 0, listed.stdout
    for module in MODULES:
        assert module.replace("_", "-") in listed.stdout
        assert str(EXAMPLE / "packages" / module.replace("_", "-")) in listed.stdout  # editable location

    second = run([ninja_binary(), "-C", str(out), "-j12"], env.offline)
    assert second.returncode == 0, second.stdout
    assert NO_WORK in second.stdout


def test_run_py_with_fi_run_locks_at_j12(env: Env, tmp_path: Path) -> None:
    ran = run(
        [
            sys.executable,
            str(EXAMPLE / "run.py"),
            "--out",
            str(tmp_path),
            "--lock-dir",
            str(tmp_path / "fi_run-locks"),
        ],
        env.offline,
    )
    assert ran.returncode == 0, ran.stdout
    assert "12 packages installed editable into one venv with real uv at -j12, offline" in ran.stdout
    assert "Steps failed: 0; contention retries: 0." in ran.stdout
    assert f"Second run: {NO_WORK}" in ran.stdout
    assert ran.stdout.count("UV install -e ") == 12

    out = tmp_path / "locks"
    build_ninja = (out / "build.ninja").read_text()
    assert "pool " not in build_ninja  # neither a pool declaration nor a "pool = " binding
    install = "--lock $venv -- $\n      $uv pip install --quiet --offline --no-build-isolation -e $pkg"
    assert install in build_ninja
    assert "--shared-lock $venv --quiet-on-success -- $\n      python" in build_ninja
    assert "--lock-dir" in build_ninja
    # The venv's lock lives in the test's lock directory: <basename>-<hash of the real path>/.
    assert [p.name.startswith("venv-") for p in (tmp_path / "fi_run-locks").iterdir() if p.is_dir()] == [True]
    check_build(out, ran.stdout, env)


def test_run_py_with_the_depth_1_pool_at_j12(env: Env, tmp_path: Path) -> None:
    ran = run([sys.executable, str(EXAMPLE / "run.py"), "--pool", "--out", str(tmp_path)], env.offline)
    assert ran.returncode == 0, ran.stdout
    assert "ninja's depth-1 pool ran them one at a time" in ran.stdout
    assert f"Second run: {NO_WORK}" in ran.stdout

    out = tmp_path / "pool"
    build_ninja = (out / "build.ninja").read_text()
    assert "pool venv_pool\n  depth = 1" in build_ninja
    assert build_ninja.count("  pool = venv_pool") == 2
    assert "--lock" not in build_ninja
    check_build(out, ran.stdout, env)
