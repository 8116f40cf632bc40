"""fi_run_resource (examples/gn/build/fi_run.gni): a ninja pool plus fi_run's lock, from the real gn to a
finished ninja build, and `gn check`."""

from __future__ import annotations

import itertools
import shutil
from typing import TYPE_CHECKING

from test_gn import gen_example, generate, ninja, run, tool

if TYPE_CHECKING:
    from pathlib import Path

# Writes "NAME start end" to venv.log in the build directory: the intervals prove what the pool allowed.
RECORD = """\
import sys, time
start = time.time()
time.sleep(0.2)
with open("venv.log", "a") as f:
    f.write(f"{sys.argv[1]} {start} {time.time()}\\n")
"""

RESOURCE_GN = """
venv = {
  path = "$root_out_dir/venv"
  pool = "//:venv_pool"
}

fi_run_resource("venv_pool") {
  depth = 1
}

group("venv_steps") {
  deps = [
    ":install_a",
    ":install_b",
    ":read_c",
    ":read_d",
  ]
}

foreach(_name,
        [
          "install_a",
          "install_b",
        ]) {
  fi_run_action(_name) {
    command = [
      python,
      rebase_path("tools/record.py", root_build_dir),
      target_name,
    ]
    resource = venv
  }
}

foreach(_name,
        [
          "read_c",
          "read_d",
        ]) {
  fi_run_action(_name) {
    command = [
      python,
      rebase_path("tools/record.py", root_build_dir),
      target_name,
    ]
    shared_resource = venv
  }
}
"""


def test_a_resource_gives_its_actions_the_pool_and_the_lock(tmp_path: Path) -> None:
    (tmp_path / "record.py").write_text(RECORD)
    src = generate(tmp_path, RESOURCE_GN)
    shutil.copy(tmp_path / "record.py", src / "tools" / "record.py")
    out = src / "out"
    build = (out / "build.ninja").read_text()
    assert "pool venv_pool\n  depth = 1\n" in build
    rules = (out / "toolchain.ninja").read_text()
    for name, lock in (("install_a", "--lock=venv"), ("read_c", "--shared-lock=venv")):
        edge = rules[rules.index(f"rule ___{name}___") :].split("\nrule ")[0]  # the rule and its build
        assert f"{lock} -- python3 ../tools/record.py {name}" in edge, edge
        assert "\n  pool = venv_pool" in edge, edge

    built = ninja(src, "-j8", "venv_steps")
    assert built.returncode == 0, built.stdout
    spans = sorted(
        tuple(map(float, line.split()[1:])) for line in (out / "venv.log").read_text().splitlines()
    )
    assert len(spans) == 4
    # Depth 1: ninja ran the resource's steps one after another, though -j8 would allow all four.
    assert all(earlier[1] <= later[0] for earlier, later in itertools.pairwise(spans))

    check = run(tool("gn"), "check", "out", cwd=src)
    assert check.returncode == 0, check.stdout


def test_a_resource_and_a_pool_together_are_a_gn_error(tmp_path: Path) -> None:
    _src, gen = gen_example(
        tmp_path,
        RESOURCE_GN
        + '\npool("other") {\n  depth = 2\n}\n'
        + 'fi_run_action("both") {\n  command = [ "true" ]\n  resource = venv\n  pool = ":other"\n}\n',
    )
    assert gen.returncode != 0
    assert "both: a resource gives the action its pool; drop `pool`" in gen.stdout


def test_a_resource_without_a_depth_is_a_gn_error(tmp_path: Path) -> None:
    _src, gen = gen_example(tmp_path, 'fi_run_resource("shallow") {\n}\n')
    assert gen.returncode != 0
    assert "shallow: fi_run_resource needs depth = N (N >= 1)" in gen.stdout
