"""examples/ninja, the build README's Quick start runs: real ninja, fi-run from this venv, in a copy.

The example (build.ninja, run.py and the two stand-in scripts) is copied to a temporary directory, so that
no test writes into the checkout, and run once with run.py; the tests then look at that build, in order.
fi_run gets a lock directory of its own through FI_RUN_LOCK_DIR (the environment default of --lock-dir;
the example's rules name no lock directory).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import pytest
from fi_run_testing import base_environ, make_newer, ninja_binary, run_tool, under_wine

if TYPE_CHECKING:
    import subprocess

# Under Wine 8.0 this build intermittently runs every install step twice (each package ends up in
# installed.txt twice, while the second run.py build still reports no work), in about one run in three of the
# Windows stage; alone it passed every run (9 of 9). Not yet explained (not a ninja restart: build.ninja has
# no generator edge): left as an open finding in docs/windows.md.
pytestmark = pytest.mark.skipif(
    under_wine(), reason="under Wine 8.0 the example build sometimes runs its installs twice (see windows.md)"
)

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "ninja"
PACKAGES = [f"pkg{n:02d}" for n in range(1, 13)]
NO_WORK = "ninja: no work to do."


class Built(NamedTuple):
    build: Path  # the copy of examples/ninja, built
    env: dict[str, str]  # the environment it was built in
    output: str  # what run.py printed, ninja's output included


def run(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_tool(argv, cwd=cwd, env=env)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """examples/ninja copied and built with `python run.py` (which builds twice), as README says."""
    tmp = tmp_path_factory.mktemp("examples-ninja")
    build = tmp / "ninja-example"
    shutil.copytree(EXAMPLE, build, ignore=shutil.ignore_patterns("out", "__pycache__", ".ninja_*"))
    # fi-run and python from this venv first on PATH (as run.py does), and a private lock directory.
    env = base_environ({"TERM": "dumb", "NINJA_STATUS": "[%f/%t] ", "FI_RUN_LOCK_DIR": str(tmp / "locks")})
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    ran = run([sys.executable, "run.py"], build, env)
    assert ran.returncode == 0, ran.stdout
    return Built(build, env, ran.stdout)


def test_run_py_builds_everything_once_and_the_second_run_has_no_work(built: Built) -> None:
    assert "12 installs into one venv ran at -j16 with no depth-1 pool and none collided" in built.output
    assert f"Second run: {NO_WORK}" in built.output
    # No step failed, and none needed fi_run's retry: the locks kept the installs apart.
    assert "FAILED" not in built.output
    assert "lock contention" not in built.output

    out = built.build / "out"
    installed = (out / "venv" / "installed.txt").read_text().split()
    assert sorted(installed) == PACKAGES  # each installed exactly once, none lost
    assert (out / "venv-manifest.txt").read_text().split() == PACKAGES
    for pkg in PACKAGES:
        assert (out / "stamps" / f"{pkg}.installed").is_file()
        assert (out / "stamps" / f"{pkg}.imported").is_file()
        assert f"import {pkg}: ok" in built.output
    for n in range(1, 5):
        assert (out / "stamps" / f"licensed{n}").is_file()
    assert (out / "stamps" / "manifest.checked").is_file()


def test_restat_skips_the_manifest_check_when_reinstalling_changed_nothing(built: Built) -> None:
    build, env = built.build, built.env
    assert "CHECK out/venv-manifest.txt" in built.output  # the first build checked the manifest
    manifest = build / "out" / "venv-manifest.txt"
    manifest_mtime = manifest.stat().st_mtime_ns

    # A newer install script: every install reruns, and each import check after its install. The
    # manifest step reruns, finds the same packages and leaves its output alone; with restat = 1, ninja
    # then drops the check that depends on the manifest.
    script = build / "fake_install.py"
    make_newer(script, than=build / "out" / "stamps" / "pkg01.installed")
    second = run([ninja_binary(), "-j16"], build, env)
    assert second.returncode == 0, second.stdout
    for pkg in PACKAGES:
        assert f"INSTALL {pkg}" in second.stdout
        assert f"IMPORT {pkg}" in second.stdout
    assert "MANIFEST out/venv-manifest.txt" in second.stdout
    assert "CHECK out/venv-manifest.txt" not in second.stdout
    assert manifest.stat().st_mtime_ns == manifest_mtime

    assert NO_WORK in run([ninja_binary(), "-j16"], build, env).stdout
