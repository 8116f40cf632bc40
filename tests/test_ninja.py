"""fi_run under the real ninja from PyPI: stamps drive ninja's up-to-date checks exactly as they should."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from fi_run_testing import (
    fi_run_ninja_command,
    make_newer,
    ninja_binary,
    python_ninja_command,
    run_ninja,
    write_ninja,
)

if TYPE_CHECKING:
    from pathlib import Path

NO_WORK = "ninja: no work to do."

# The step: record that it ran, then fail if its input says so.
STEP_PY = """\
import sys

assert sys.platform != "win32"  # POSIX only: conftest.POSIX_ONLY keeps it from being collected on Windows

source, name, log = sys.argv[1:4]
with open(log, "a") as f:
    f.write(name + "\\n")
if "fail" in open(source).read():
    print(f"step {name}: {source} says fail", file=sys.stderr)
    sys.exit(1)
print(f"step {name}: ok")
"""


def build_dir(tmp_path: Path, names: tuple[str, ...] = ("a",)) -> Path:
    (tmp_path / "step.py").write_text(STEP_PY)
    for name in names:
        (tmp_path / f"{name}.txt").write_text("ok\n")
    builds = "\n".join(f"build gen/{n}.stamp: step {n}.txt\n  name = {n}" for n in names)
    return write_ninja(
        tmp_path,
        f"""\
rule step
  command = {fi_run_ninja_command()} --stamp $out -- {python_ninja_command()} step.py $in $name runs.log
  description = STEP $name

{builds}
""",
    )


def runs(build: Path) -> list[str]:
    log = build / "runs.log"
    return log.read_text().splitlines() if log.exists() else []


def edit(path: Path, text: str, newer_than: Path) -> None:
    """Rewrite an input so that ninja sees it as newer than ``newer_than`` (the step's stamp)."""
    path.write_text(text)
    make_newer(path, than=newer_than)


def test_ninja_is_the_one_from_pypi_next_to_this_python() -> None:
    assert os.path.dirname(ninja_binary()) == os.path.dirname(sys.executable)


def test_first_build_runs_the_step_and_the_second_has_no_work(tmp_path: Path) -> None:
    build = build_dir(tmp_path)

    first = run_ninja(build)
    assert first.returncode == 0, first.stdout
    assert "STEP a" in first.stdout
    assert "step a: ok" in first.stdout
    assert (build / "gen" / "a.stamp").is_file()
    assert sorted(p.name for p in (build / "gen").iterdir()) == ["a.stamp"]
    assert runs(build) == ["a"]

    second = run_ninja(build)
    assert second.returncode == 0, second.stdout
    assert NO_WORK in second.stdout
    assert runs(build) == ["a"]


def test_failing_step_leaves_no_stamp_and_is_rerun_until_fixed(tmp_path: Path) -> None:
    build = build_dir(tmp_path)
    (build / "a.txt").write_text("fail\n")
    stamp = build / "gen" / "a.stamp"

    first = run_ninja(build)
    assert first.returncode == 1, first.stdout
    failed_lines = [line for line in first.stdout.splitlines() if line.startswith("FAILED:")]
    assert len(failed_lines) == 1
    assert "gen/a.stamp" in failed_lines[0]  # "FAILED: gen/a.stamp" or, since 1.13, "FAILED: [code=1] ..."
    assert "step a: a.txt says fail" in first.stdout
    assert not stamp.exists()

    again = run_ninja(build)  # nothing changed, but the step did not succeed: ninja must run it again
    assert again.returncode == 1, again.stdout
    assert NO_WORK not in again.stdout
    assert not stamp.exists()
    assert runs(build) == ["a", "a"]

    (build / "a.txt").write_text("ok\n")
    fixed = run_ninja(build)
    assert fixed.returncode == 0, fixed.stdout
    assert stamp.is_file()
    assert runs(build) == ["a", "a", "a"]

    assert NO_WORK in run_ninja(build).stdout
    assert runs(build) == ["a", "a", "a"]


def test_a_step_that_fails_after_succeeding_loses_its_stamp(tmp_path: Path) -> None:
    build = build_dir(tmp_path)
    stamp = build / "gen" / "a.stamp"
    assert run_ninja(build).returncode == 0
    assert stamp.is_file()

    edit(build / "a.txt", "fail\n", newer_than=stamp)
    failed = run_ninja(build)
    assert failed.returncode == 1, failed.stdout
    assert not stamp.exists()  # the old success no longer says "done"
    assert runs(build) == ["a", "a"]


def test_editing_one_input_reruns_only_its_step(tmp_path: Path) -> None:
    build = build_dir(tmp_path, ("a", "b"))
    first = run_ninja(build)
    assert first.returncode == 0, first.stdout
    assert sorted(runs(build)) == ["a", "b"]
    assert NO_WORK in run_ninja(build).stdout

    edit(build / "b.txt", "ok, edited\n", newer_than=build / "gen" / "b.stamp")
    second = run_ninja(build)
    assert second.returncode == 0, second.stdout
    assert "STEP b" in second.stdout
    assert "STEP a" not in second.stdout
    assert sorted(runs(build)) == ["a", "b", "b"]

    edit(build / "a.txt", "ok, edited\n", newer_than=build / "gen" / "a.stamp")
    third = run_ninja(build)
    assert third.returncode == 0, third.stdout
    assert sorted(runs(build)) == ["a", "a", "b", "b"]
    assert NO_WORK in run_ninja(build).stdout


def test_ninja_explains_an_up_to_date_stamp(tmp_path: Path) -> None:
    # `ninja -d explain` after a success: the stamp is newer than its input, so nothing is dirty.
    build = build_dir(tmp_path)
    assert run_ninja(build).returncode == 0
    explained = run_ninja(build, "-d", "explain")
    assert explained.returncode == 0
    assert "is dirty" not in explained.stdout
    assert NO_WORK in explained.stdout


def test_quiet_on_success_keeps_a_successful_step_silent_under_ninja(tmp_path: Path) -> None:
    (tmp_path / "noisy.py").write_text(
        "import sys\nprint('noise on stdout')\nprint('noise on stderr', file=sys.stderr)\n"
        "sys.exit(1 if 'fail' in open(sys.argv[1]).read() else 0)\n"
    )
    (tmp_path / "in.txt").write_text("ok\n")
    build = write_ninja(
        tmp_path,
        f"""\
rule step
  command = {fi_run_ninja_command()} --quiet-on-success --stamp $out -- {python_ninja_command()} noisy.py $in
  description = STEP $out

build gen/out.stamp: step in.txt
""",
    )
    quiet = run_ninja(build)
    assert quiet.returncode == 0
    assert "noise" not in quiet.stdout
    assert (build / "gen" / "out.stamp").is_file()

    edit(build / "in.txt", "fail\n", newer_than=build / "gen" / "out.stamp")
    loud = run_ninja(build)
    assert loud.returncode == 1
    lines = loud.stdout.splitlines()
    assert lines.index("noise on stdout") + 1 == lines.index("noise on stderr")  # one pipe, order kept
    assert not (build / "gen" / "out.stamp").exists()
