"""fi_run.step.environment: the child's environment and the executable, as pure functions of their inputs.

The Windows rules (case-insensitive names, Scripts, PATHEXT) are exercised here on any platform through
the ``windows=True`` argument; the files are real, in tmp_path.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

import pytest

from fi_run.errors import EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND, CommandNotFoundError, NotExecutableError
from fi_run.records import EnvOp
from fi_run.step.environment import build_environment, find_executable, venv_bin_dir

if TYPE_CHECKING:
    from pathlib import Path

SEP = os.pathsep

# POSIX rules (x bits, '/' paths) checked on a POSIX host; the windows=True tests run everywhere.
posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX rules need a POSIX host")


def make_file(path: Path, mode: int = 0o755) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(mode)
    return path


# --- build_environment


@posix_only
def test_operations_apply_in_order() -> None:
    ops = [
        EnvOp("set", "A", "1"),
        EnvOp("unset", "A"),
        EnvOp("set", "B", "first"),
        EnvOp("set", "B", "second"),
        EnvOp("unset", "C"),
        EnvOp("set", "C", "again"),
    ]
    env = build_environment({"C": "base", "KEEP": "k"}, ops, windows=False, start_dir="/s")
    assert env == {"B": "second", "C": "again", "KEEP": "k"}


@posix_only
def test_base_environment_is_not_modified() -> None:
    base = {"A": "1", "PATH": "/usr/bin"}
    build_environment(
        base, [EnvOp("unset", "A"), EnvOp("prepend", "PATH", "/x")], windows=False, start_dir="/s"
    )
    assert base == {"A": "1", "PATH": "/usr/bin"}


@posix_only
def test_unset_of_a_missing_variable_is_fine() -> None:
    assert build_environment({}, [EnvOp("unset", "NOPE")], windows=False, start_dir="/s") == {}


@posix_only
def test_prepend_to_unset_variable_is_the_directory_alone() -> None:
    env = build_environment({}, [EnvOp("prepend", "PYTHONPATH", "/lib")], windows=False, start_dir="/s")
    assert env == {"PYTHONPATH": "/lib"}


@posix_only
def test_prepend_to_empty_variable_adds_no_empty_entry() -> None:
    # An empty entry would mean "the current directory" to the child.
    env = build_environment(
        {"PYTHONPATH": ""}, [EnvOp("prepend", "PYTHONPATH", "/lib")], windows=False, start_dir="/s"
    )
    assert env == {"PYTHONPATH": "/lib"}


@posix_only
def test_prepend_puts_the_directory_first_and_makes_it_absolute() -> None:
    env = build_environment(
        {"PATH": f"/usr/bin{SEP}/bin"},
        [EnvOp("prepend", "PATH", "tools/bin")],
        windows=False,
        start_dir="/build/out",
    )
    assert env["PATH"].split(SEP) == ["/build/out/tools/bin", "/usr/bin", "/bin"]


@posix_only
def test_venv_sets_virtual_env_path_and_removes_pythonhome() -> None:
    env = build_environment(
        {"PATH": "/usr/bin", "PYTHONHOME": "/elsewhere", "OTHER": "o"},
        [EnvOp("venv", "../venv")],
        windows=False,
        start_dir="/build/out",
    )
    assert env == {"PATH": f"/build/venv/bin{SEP}/usr/bin", "VIRTUAL_ENV": "/build/venv", "OTHER": "o"}


@posix_only
def test_venv_without_path_in_the_base() -> None:
    env = build_environment({}, [EnvOp("venv", "/v")], windows=False, start_dir="/s")
    assert env == {"PATH": "/v/bin", "VIRTUAL_ENV": "/v"}


@posix_only
def test_set_after_venv_overrides_it() -> None:
    env = build_environment(
        {"PATH": "/usr/bin"},
        [EnvOp("venv", "/v"), EnvOp("set", "PYTHONHOME", "/h"), EnvOp("set", "VIRTUAL_ENV", "/w")],
        windows=False,
        start_dir="/s",
    )
    assert env["PYTHONHOME"] == "/h"
    assert env["VIRTUAL_ENV"] == "/w"


@posix_only
def test_posix_names_are_case_sensitive() -> None:
    env = build_environment({"PATH": "/usr/bin"}, [EnvOp("set", "Path", "x")], windows=False, start_dir="/s")
    assert env == {"PATH": "/usr/bin", "Path": "x"}


def test_windows_names_are_case_insensitive() -> None:
    env = build_environment(
        {"Path": r"C:\Windows", "SystemRoot": r"C:\Windows"},
        [EnvOp("set", "path", r"C:\tools"), EnvOp("unset", "systemroot"), EnvOp("set", "New", "n")],
        windows=True,
        start_dir=r"C:\build",
    )
    assert env == {"PATH": r"C:\tools", "NEW": "n"}


def test_windows_prepend_path_finds_path_whatever_its_spelling() -> None:
    env = build_environment(
        {"Path": "/old"}, [EnvOp("prepend", "PATH", "/new")], windows=True, start_dir="/s"
    )
    # "/new" is made absolute against start_dir: on Windows itself that is "\\new" (drive-relative).
    assert env == {"PATH": f"{os.path.normpath('/new')}{SEP}/old"}


def test_windows_venv_uses_scripts_and_removes_pythonhome_in_any_case() -> None:
    env = build_environment(
        {"Path": "/old", "PythonHome": "/h"}, [EnvOp("venv", "/v")], windows=True, start_dir="/s"
    )
    venv = os.path.normpath("/v")  # "\\v" on Windows itself
    assert env == {"PATH": f"{os.path.join(venv, 'Scripts')}{SEP}/old", "VIRTUAL_ENV": venv}


@posix_only
def test_venv_bin_dir() -> None:
    assert venv_bin_dir("/v", windows=False) == os.path.join("/v", "bin")
    assert venv_bin_dir("/v", windows=True) == os.path.join("/v", "Scripts")


# --- find_executable, POSIX


@posix_only
def test_finds_the_first_executable_on_the_path(tmp_path: Path) -> None:
    make_file(tmp_path / "a" / "tool")
    make_file(tmp_path / "b" / "tool")
    path = SEP.join([str(tmp_path / "a"), str(tmp_path / "b")])
    found = find_executable("tool", {"PATH": path}, cwd="/", windows=False)
    assert found == str(tmp_path / "a" / "tool")


@posix_only
def test_a_non_executable_file_earlier_on_path_is_skipped(tmp_path: Path) -> None:
    make_file(tmp_path / "a" / "tool", mode=0o644)
    make_file(tmp_path / "b" / "tool")
    path = SEP.join([str(tmp_path / "a"), str(tmp_path / "b")])
    assert find_executable("tool", {"PATH": path}, cwd="/", windows=False) == str(tmp_path / "b" / "tool")


@posix_only
def test_a_directory_earlier_on_path_is_skipped(tmp_path: Path) -> None:
    (tmp_path / "a" / "tool").mkdir(parents=True)
    make_file(tmp_path / "b" / "tool")
    path = SEP.join([str(tmp_path / "a"), str(tmp_path / "b")])
    assert find_executable("tool", {"PATH": path}, cwd="/", windows=False) == str(tmp_path / "b" / "tool")


@posix_only
def test_only_non_executable_files_raise_not_executable(tmp_path: Path) -> None:
    make_file(tmp_path / "a" / "tool", mode=0o644)
    with pytest.raises(NotExecutableError, match="'tool'") as info:
        find_executable("tool", {"PATH": str(tmp_path / "a")}, cwd="/", windows=False)
    assert info.value.exit_status == EXIT_NOT_EXECUTABLE
    assert str(tmp_path / "a" / "tool") in info.value.message


@posix_only
def test_missing_command_raises_not_found(tmp_path: Path) -> None:
    with pytest.raises(CommandNotFoundError, match="'tool'") as info:
        find_executable("tool", {"PATH": str(tmp_path)}, cwd="/", windows=False)
    assert info.value.exit_status == EXIT_NOT_FOUND


@posix_only
def test_the_childs_path_is_searched_not_fi_runs(tmp_path: Path) -> None:
    make_file(tmp_path / "only-here" / "fi-run-test-tool")
    with pytest.raises(CommandNotFoundError):
        find_executable("fi-run-test-tool", {"PATH": "/usr/bin"}, cwd="/", windows=False)
    found = find_executable("fi-run-test-tool", {"PATH": str(tmp_path / "only-here")}, cwd="/", windows=False)
    assert found == str(tmp_path / "only-here" / "fi-run-test-tool")


@posix_only
def test_name_with_a_directory_part_is_resolved_against_cwd_not_path(tmp_path: Path) -> None:
    make_file(tmp_path / "work" / "sub" / "tool")
    make_file(tmp_path / "onpath" / "sub" / "tool")
    found = find_executable(
        "sub/tool", {"PATH": str(tmp_path / "onpath")}, cwd=str(tmp_path / "work"), windows=False
    )
    assert os.path.normpath(found) == str(tmp_path / "work" / "sub" / "tool")


@posix_only
def test_absolute_name_ignores_cwd(tmp_path: Path) -> None:
    tool = make_file(tmp_path / "tool")
    assert os.path.normpath(find_executable(str(tool), {}, cwd="/nonexistent", windows=False)) == str(tool)


@posix_only
def test_name_with_a_directory_part_that_is_missing_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(CommandNotFoundError, match=r"'\./tool'"):
        find_executable("./tool", {"PATH": str(tmp_path)}, cwd=str(tmp_path), windows=False)


@posix_only
def test_name_with_a_directory_part_that_is_a_directory_is_not_executable(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    with pytest.raises(NotExecutableError, match="directory"):
        find_executable("./sub", {}, cwd=str(tmp_path), windows=False)


@posix_only
def test_empty_path_entry_means_the_current_directory(tmp_path: Path) -> None:
    make_file(tmp_path / "tool")
    found = find_executable("tool", {"PATH": SEP + "/nonexistent"}, cwd=str(tmp_path), windows=False)
    assert os.path.normpath(found) == str(tmp_path / "tool")


# --- find_executable, Windows rules


def test_windows_pathext_resolves_a_bare_name(tmp_path: Path) -> None:
    make_file(tmp_path / "bin" / "tool.EXE", mode=0o644)  # no x bit: Windows has none
    env = {"PATH": str(tmp_path / "bin"), "PATHEXT": ".COM;.EXE;.BAT"}
    assert find_executable("tool", env, cwd="/", windows=True) == str(tmp_path / "bin" / "tool.EXE")


def test_windows_pathext_order_decides_between_extensions(tmp_path: Path) -> None:
    make_file(tmp_path / "bin" / "tool.BAT")
    make_file(tmp_path / "bin" / "tool.EXE")
    env = {"PATH": str(tmp_path / "bin"), "PATHEXT": ".COM;.EXE;.BAT"}
    assert find_executable("tool", env, cwd="/", windows=True) == str(tmp_path / "bin" / "tool.EXE")


def test_windows_path_order_wins_over_pathext_order(tmp_path: Path) -> None:
    make_file(tmp_path / "first" / "tool.BAT")
    make_file(tmp_path / "second" / "tool.EXE")
    env = {"PATH": SEP.join([str(tmp_path / "first"), str(tmp_path / "second")]), "PATHEXT": ".EXE;.BAT"}
    assert find_executable("tool", env, cwd="/", windows=True) == str(tmp_path / "first" / "tool.BAT")


def test_windows_name_with_a_known_extension_is_taken_as_is(tmp_path: Path) -> None:
    make_file(tmp_path / "bin" / "tool.EXE")
    env = {"PATH": str(tmp_path / "bin"), "PATHEXT": ".EXE"}
    assert find_executable("tool.EXE", env, cwd="/", windows=True) == str(tmp_path / "bin" / "tool.EXE")


def test_windows_default_pathext_when_unset(tmp_path: Path) -> None:
    make_file(tmp_path / "bin" / "tool.CMD")
    assert find_executable("tool", {"PATH": str(tmp_path / "bin")}, cwd="/", windows=True) == str(
        tmp_path / "bin" / "tool.CMD"
    )


def test_windows_file_without_a_pathext_extension_is_not_found(tmp_path: Path) -> None:
    make_file(tmp_path / "bin" / "tool")
    env = {"PATH": str(tmp_path / "bin"), "PATHEXT": ".EXE"}
    with pytest.raises(CommandNotFoundError, match="'tool'"):
        find_executable("tool", env, cwd="/", windows=True)


def test_windows_path_variable_is_found_in_any_spelling(tmp_path: Path) -> None:
    # build_environment upper-cases names on Windows; find_executable then reads PATH.
    env = build_environment(
        {"Path": str(tmp_path / "bin"), "PathExt": ".EXE"}, [], windows=True, start_dir=str(tmp_path)
    )
    make_file(tmp_path / "bin" / "tool.EXE")
    assert find_executable("tool", env, cwd="/", windows=True) == str(tmp_path / "bin" / "tool.EXE")


def test_windows_venv_scripts_directory_is_searched_first(tmp_path: Path) -> None:
    make_file(tmp_path / "venv" / "Scripts" / "python.exe")
    make_file(tmp_path / "system" / "python.exe")
    env = build_environment(
        {"PATH": str(tmp_path / "system"), "PATHEXT": ".exe"},  # lower case: this filesystem is not Windows'
        [EnvOp("venv", "venv")],
        windows=True,
        start_dir=str(tmp_path),
    )
    found = find_executable("python", env, cwd=str(tmp_path), windows=True)
    assert found == str(tmp_path / "venv" / "Scripts" / "python.exe")


def test_windows_name_with_a_directory_part_uses_pathext_against_cwd(tmp_path: Path) -> None:
    make_file(tmp_path / "sub" / "tool.EXE")
    found = find_executable("sub/tool", {"PATHEXT": ".EXE"}, cwd=str(tmp_path), windows=True)
    assert os.path.normpath(found) == str(tmp_path / "sub" / "tool.EXE")


# --- what --verbose says


def test_verbose_says_what_the_environment_options_did_without_showing_env_values(tmp_path: Path) -> None:
    """-v's help promises the variables it changes: --env and --unset by name only (values hold tokens, as
    in the log), the prepended lists and the venv as the command gets them."""
    from fi_run_testing import base_environ, run_fi_run

    done = run_fi_run(
        "module",
        [
            "-v",
            "--env",
            "API_TOKEN=s3cr3t-value",
            "--unset",
            "LANG",
            "--prepend-path",
            "PYTHONPATH=lib",
            "--venv",
            "venv",
            "--",
            sys.executable,
            "-c",
            "pass",
        ],
        cwd=tmp_path,
        env=base_environ({"PYTHONPATH": None}),
    )
    assert done.status == 0, done.err
    assert "s3cr3t-value" not in done.err
    (line,) = [line for line in done.err.splitlines() if line.startswith("fi_run: environment: ")]
    venv = tmp_path / "venv"
    assert line == (
        f"fi_run: environment: set API_TOKEN; unset LANG; PYTHONPATH={tmp_path / 'lib'}; VIRTUAL_ENV={venv}; "
        f"PATH={venv_bin_dir(str(venv), windows=sys.platform == 'win32')}{SEP}{os.environ['PATH']}"
    )
    quiet = run_fi_run("module", ["--env", "A=1", "--", sys.executable, "-c", "pass"], cwd=tmp_path)
    assert quiet == (0, "", ""), "without -v nothing is said"
