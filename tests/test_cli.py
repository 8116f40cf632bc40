"""The command line: a table of bad invocations (each one line, one status, no stamp), and the good forms.

Like pypa/build's test_main, every bad invocation is a row: its argv, the exit status, and a piece of
the single `fi_run: ...` line that must name what was wrong. Rows marked "parse" fail while the command
line is read, before fi_run touches the filesystem: a stale stamp from an earlier run is left exactly as
it was. Rows marked "run" fail once execution has started, and execution starts by removing the stale
stamp, so none is left.
"""

from __future__ import annotations

import itertools
import json
import os
import shlex
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from fi_run_testing import Ran, Runner, only_fi_run_line, py, run_fi_run

import fi_run
from fi_run import __version__
from fi_run.cli import ACTIONS, OPTIONS, TOOLS, parse, requested_action
from fi_run.errors import (
    EXIT_IOERR,
    EXIT_NOT_EXECUTABLE,
    EXIT_NOT_FOUND,
    EXIT_TIMEOUT,
    EXIT_USAGE,
    UsageError,
)
from fi_run.helptext import epilog
from fi_run.messages import NORMAL, QUIET, VERBOSE
from fi_run.records import DEFAULT_RETRIES, EnvOp, LockRequest

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

PASS = (sys.executable, "-c", "pass")
STALE = "stale stamp from an earlier run"


def _plain_file(tmp: Path) -> None:
    (tmp / "regular-file").write_text("not a directory")


def _stamp_dir(tmp: Path) -> None:
    (tmp / "out" / "stamp").mkdir(parents=True)


def _not_executable(tmp: Path) -> None:
    tool = tmp / "tool.sh"
    tool.write_text("#!/bin/sh\nexit 0\n")
    tool.chmod(0o644)


def _directory(tmp: Path) -> None:
    (tmp / "adir").mkdir()


def _no_shebang(tmp: Path) -> None:
    tool = tmp / "noshebang"
    tool.write_text("echo this is not a script the kernel can run\n")
    tool.chmod(0o755)


def _bad_rspfile(tmp: Path) -> None:
    (tmp / "bad.rsp").write_text("--stamp 'unterminated\n")


def _not_utf8_rspfile(tmp: Path) -> None:
    (tmp / "latin1.rsp").write_bytes(b"--env A=\xe9\n")


@dataclass(frozen=True)
class Bad:
    """One bad invocation. "{tmp}" in argv is the test's tmp_path, "{stamp}" the stamp in it."""

    id: str
    argv: tuple[str, ...]
    names: tuple[str, ...]  # each must appear in the one stderr line
    status: int = EXIT_USAGE
    env: dict[str, str] = field(default_factory=dict)
    stale_stamp: bool = True  # create a stale stamp first (not possible when the stamp path is broken)
    setup: Callable[[Path], None] | None = None


S = "{stamp}"
BAD: tuple[Bad, ...] = (
    Bad("missing-separator", ("--stamp", S, *PASS), ("missing '--'",)),
    Bad("missing-separator-bare-command", (sys.executable,), ("missing '--'",)),
    Bad("empty-command-after-separator", ("--stamp", S, "--"), ("no command after '--'",)),
    Bad("empty-string-command", ("--stamp", S, "--", ""), ("empty string",)),
    Bad("env-without-equals", ("--env", "FOO", "--stamp", S, "--", *PASS), ("--env", "'FOO'")),
    Bad("env-empty-name", ("--env", "=x", "--stamp", S, "--", *PASS), ("--env", "'=x'")),
    Bad("env-inline-without-equals", ("--env=FOO", "--stamp", S, "--", *PASS), ("--env", "'FOO'")),
    Bad("unknown-option", ("--bogus", "--stamp", S, "--", *PASS), ("unknown option", "'--bogus'")),
    Bad("misspelled-option-suggests", ("--stmp", S, "--", *PASS), ("'--stmp'", "did you mean --stamp?")),
    Bad(
        "misspelled-timeout-suggests",
        ("--timout", "5", "--stamp", S, "--", *PASS),
        ("did you mean --timeout?",),
    ),
    Bad("timeout-negative", ("--timeout", "-1", "--stamp", S, "--", *PASS), ("--timeout", "'-1'")),
    Bad("timeout-not-a-number", ("--timeout", "abc", "--stamp", S, "--", *PASS), ("--timeout", "'abc'")),
    Bad("timeout-nan", ("--timeout", "nan", "--stamp", S, "--", *PASS), ("--timeout", "'nan'")),
    Bad("timeout-inf", ("--timeout", "inf", "--stamp", S, "--", *PASS), ("--timeout", "'inf'")),
    Bad("timeout-nothing-follows", ("--stamp", S, "--timeout"), ("--timeout", "nothing follows")),
    Bad("lock-timeout-negative", ("--lock-timeout", "-5", "--stamp", S, "--", *PASS), ("'-5'",)),
    Bad("retries-negative", ("--retries", "-1", "--stamp", S, "--", *PASS), ("--retries", "'-1'")),
    Bad("retries-fraction", ("--retries", "1.5", "--stamp", S, "--", *PASS), ("--retries", "'1.5'")),
    Bad("semaphore-without-count", ("--semaphore", "R", "--stamp", S, "--", *PASS), ("--semaphore", "'R'")),
    Bad("semaphore-zero", ("--semaphore", "R=0", "--stamp", S, "--", *PASS), ("--semaphore", "'0'")),
    Bad(
        "semaphore-empty-resource", ("--semaphore", "=3", "--stamp", S, "--", *PASS), ("--semaphore", "'=3'")
    ),
    Bad("unset-empty", ("--unset", "", "--stamp", S, "--", *PASS), ("--unset", "''")),
    Bad("unset-with-value", ("--unset", "A=B", "--stamp", S, "--", *PASS), ("--unset", "'A=B'")),
    Bad("prepend-path-without-dir", ("--prepend-path", "PATH", "--stamp", S, "--", *PASS), ("'PATH'",)),
    Bad("prepend-path-empty-dir", ("--prepend-path", "PATH=", "--stamp", S, "--", *PASS), ("'PATH='",)),
    Bad("venv-empty", ("--venv", "", "--stamp", S, "--", *PASS), ("--venv", "''")),
    Bad("lock-empty", ("--lock", "", "--stamp", S, "--", *PASS), ("--lock", "''")),
    Bad("output-empty", ("--output", "", "--stamp", S, "--", *PASS), ("--output", "''")),
    Bad("cwd-empty", ("--cwd", "", "--stamp", S, "--", *PASS), ("--cwd", "''")),
    Bad("stamp-empty", ("--stamp", "", "--", *PASS), ("--stamp", "''")),
    Bad("stamp-nothing-follows", ("--stamp", "--", *PASS), ("--stamp", "nothing follows")),
    Bad("stamp-nothing-follows-at-end", ("--stamp",), ("--stamp", "nothing follows")),
    Bad("stamp-twice", ("--stamp", S, "--stamp", "{tmp}/out/other", "--", *PASS), ("given twice", "other")),
    Bad(
        "switch-with-value", ("--quiet-on-success=1", "--stamp", S, "--", *PASS), ("'--quiet-on-success=1'",)
    ),
    Bad("verbose-switch-with-value", ("--verbose=yes", "--stamp", S, "--", *PASS), ("'--verbose=yes'",)),
    Bad("verbose-and-quiet", ("--verbose", "--quiet", "--stamp", S, "--", *PASS), ("--verbose and --quiet",)),
    Bad(
        "verbose-env-and-quiet-flag",
        ("--quiet", "--stamp", S, "--", *PASS),
        ("FI_RUN_VERBOSE",),
        env={"FI_RUN_VERBOSE": "1"},
    ),
    Bad(
        "env-default-timeout-invalid",
        ("--stamp", S, "--", *PASS),
        ("FI_RUN_TIMEOUT", "'abc'"),
        env={"FI_RUN_TIMEOUT": "abc"},
    ),
    Bad(
        "env-default-switch-invalid",
        ("--stamp", S, "--", *PASS),
        ("FI_RUN_QUIET_ON_SUCCESS", "'maybe'"),
        env={"FI_RUN_QUIET_ON_SUCCESS": "maybe"},
    ),
    Bad(
        "env-default-retries-invalid",
        ("--stamp", S, "--", *PASS),
        ("FI_RUN_RETRIES", "'x'"),
        env={"FI_RUN_RETRIES": "x"},
    ),
    Bad("positional-before-separator", ("--stamp", S, "extra", "--", *PASS), ("'extra'", "before '--'")),
    Bad("lone-dash-before-separator", ("--stamp", S, "-", "--", *PASS), ("'-'",)),
    Bad("retry-on-invalid-regex", ("--retry-on", "(", "--stamp", S, "--", *PASS), ("--retry-on", "'('")),
    Bad("response-file-missing", ("@{tmp}/missing.rsp", "--stamp", S, "--", *PASS), ("missing.rsp",)),
    Bad("response-file-is-a-directory", ("@{tmp}", "--stamp", S, "--", *PASS), ("response file", "{tmp}")),
    Bad(
        "response-file-not-utf8",
        ("@{tmp}/latin1.rsp", "--stamp", S, "--", *PASS),
        ("latin1.rsp",),
        setup=_not_utf8_rspfile,
    ),
    Bad(
        "semaphore-weight-over-seats",
        ("--semaphore", "licence=2:3", "--stamp", S, "--", *PASS),
        ("--semaphore", "3 of 2 seats", "'licence=2:3'"),
    ),
    Bad("semaphore-weight-zero", ("--semaphore", "licence=2:0", "--stamp", S, "--", *PASS), ("'0'",)),
    Bad("mem-zero", ("--mem", "0", "--stamp", S, "--", *PASS), ("--mem", "above 0", "'0'")),
    Bad("mem-not-a-size", ("--mem", "lots", "--stamp", S, "--", *PASS), ("--mem", "'lots'")),
    Bad("combined-short-flags", ("-vq", "--stamp", S, "--", *PASS), ("'-vq'",)),
    Bad(
        "response-file-unterminated-quote",
        ("@{tmp}/bad.rsp", "--", *PASS),
        ("bad.rsp",),
        stale_stamp=False,
        setup=_bad_rspfile,
    ),
    Bad(
        "stamp-directory-cannot-be-created",
        ("--stamp", "{tmp}/regular-file/sub/stamp", "--", *PASS),
        ("--stamp", "regular-file/sub/stamp"),
        stale_stamp=False,
        setup=_plain_file,
    ),
    Bad(
        "stamp-is-a-directory",
        ("--stamp", S, "--", *PASS),
        ("--stamp", "is a directory"),
        stale_stamp=False,
        setup=_stamp_dir,
    ),
    Bad(
        "cwd-missing",
        ("--cwd", "{tmp}/nowhere", "--stamp", S, "--", *PASS),
        ("--cwd", "nowhere"),
    ),
    Bad(
        "command-not-found",
        ("--stamp", S, "--", "fi-run-test-no-such-command"),
        ("not found", "'fi-run-test-no-such-command'"),
        status=EXIT_NOT_FOUND,
    ),
    Bad(
        "command-path-not-found",
        ("--stamp", S, "--", "{tmp}/no-such-tool"),
        ("not found", "no-such-tool"),
        status=EXIT_NOT_FOUND,
    ),
    Bad(
        "command-not-executable",
        ("--stamp", S, "--", "{tmp}/tool.sh"),
        ("not executable", "tool.sh"),
        status=EXIT_NOT_EXECUTABLE,
        setup=_not_executable,
    ),
    Bad(
        "command-is-a-directory",
        ("--stamp", S, "--", "{tmp}/adir"),
        ("directory", "adir"),
        status=EXIT_NOT_EXECUTABLE,
        setup=_directory,
    ),
    Bad(
        "command-without-shebang",
        ("--stamp", S, "--", "{tmp}/noshebang"),
        ("cannot execute", "noshebang"),
        status=EXIT_NOT_EXECUTABLE,
        setup=_no_shebang,
    ),
)


def test_the_table_has_at_least_thirty_bad_invocations() -> None:
    assert len(BAD) >= 30
    assert len({case.id for case in BAD}) == len(BAD)


# Bad invocations that are not bad on Windows, and why.
POSIX_ONLY_BAD = {
    "response-file-unterminated-quote": "Windows command-line rules have no unterminated quote (POSIX only)",
    "command-not-executable": "Windows has no execute bits: a file is run by its extension",
    "command-without-shebang": "Windows has no #! lines: a file is run by its extension",
}


def _bad_params() -> list[Any]:
    return [
        pytest.param(
            case,
            id=case.id,
            marks=pytest.mark.skipif(
                sys.platform == "win32" and case.id in POSIX_ONLY_BAD, reason=POSIX_ONLY_BAD.get(case.id, "")
            ),
        )
        for case in BAD
    ]


@pytest.mark.parametrize("case", _bad_params())
def test_bad_invocation_prints_one_line_naming_the_value_and_writes_no_stamp(
    case: Bad, fi_run: Runner, tmp_path: Path
) -> None:
    stamp = tmp_path / "out" / "stamp"
    if case.setup is not None:
        case.setup(tmp_path)
    if case.stale_stamp:
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.write_text(STALE)
    argv = [arg.replace("{stamp}", str(stamp)).replace("{tmp}", str(tmp_path)) for arg in case.argv]

    ran = fi_run(argv, env=case.env, cwd=tmp_path)

    assert ran.status == case.status, ran
    line = only_fi_run_line(ran.err)
    if sys.platform == "win32":  # fi_run quotes paths with repr(): backslashes are doubled
        line = line.replace("\\\\", "\\")
    for expected in case.names:
        named = expected.replace("{tmp}", str(tmp_path))
        if sys.platform == "win32":
            named = named.replace("/", "\\")
        assert named in line, f"{named!r} not in {line!r}"
    assert ran.out == ""
    if any(flag == "--stamp" and value == S for flag, value in itertools.pairwise(case.argv)):
        # A failed step leaves no stamp, whenever it failed: a stale one from an earlier success would tell
        # ninja the step is done (issue 22: parse errors used to leave it in place). Nothing wrote a new one.
        assert not stamp.is_file()
    elif case.stale_stamp:
        # Never named as the stamp (--stmp, --stamp with nothing after it): fi_run does not touch it.
        assert stamp.read_text() == STALE
    if stamp.parent.is_dir():
        assert [p.name for p in stamp.parent.iterdir() if p.name != "stamp"] == []


# --- good invocations: each row an argv (and environment) and the StepSpec fields it must give


@dataclass(frozen=True)
class Good:
    id: str
    command_line: str  # fi_run's arguments, split as a shell would
    expected: dict[str, object]  # StepSpec field -> value
    environ: dict[str, str] = field(default_factory=dict)

    @property
    def argv(self) -> list[str]:
        return shlex.split(self.command_line)


START = "/build/out"  # the directory fi_run starts in (ninja's build directory)
INLINE = {
    "stamp": "/build/out/s",
    "timeout": 2.5,
    "env_ops": (EnvOp("set", "A", "b"),),
    "retries": 3,
    "locks": (LockRequest("R", "semaphore", 2),),
}

GOOD: tuple[Good, ...] = (
    Good(
        "defaults",
        "-- tool arg",
        {
            "command": ("tool", "arg"),
            "start_dir": START,
            "env_ops": (),
            "stamp": None,
            "cwd": None,
            "outputs": (),
            "timeout": None,
            "quiet_on_success": False,
            "verbosity": NORMAL,
            "locks": (),
            "retries": DEFAULT_RETRIES,
            "retry_on": (),
            "lock_dir": None,
            "lock_timeout": None,
            "log": None,
        },
    ),
    Good(
        "paths absolute against the start directory",
        "--stamp gen/x.stamp --cwd ../src --output gen/x.h --lock-dir /abs/locks --log fi_run.log -- t",
        {
            "stamp": "/build/out/gen/x.stamp",
            "cwd": "/build/src",
            "outputs": ("/build/out/gen/x.h",),
            "lock_dir": "/abs/locks",
            "log": "/build/out/fi_run.log",
        },
    ),
    Good(
        "environment operations in command-line order",
        "--env A=1 --unset B --prepend-path PATH=tools/bin --venv venv --env A=2 -- t",
        {
            "env_ops": (
                EnvOp("set", "A", "1"),
                EnvOp("unset", "B"),
                EnvOp("prepend", "PATH", "tools/bin"),
                EnvOp("venv", "venv"),
                EnvOp("set", "A", "2"),
            )
        },
    ),
    Good("empty env value", "--env A= -- t", {"env_ops": (EnvOp("set", "A", ""),)}),
    Good("env value holding =", "--env A=b=c -- t", {"env_ops": (EnvOp("set", "A", "b=c"),)}),
    Good("env value that is =", "--env A== -- t", {"env_ops": (EnvOp("set", "A", "="),)}),
    Good(
        "inline values",
        "--stamp=s --timeout=2.5 --env=A=b --retries=3 --semaphore=R=2 -- t",
        INLINE,
    ),
    Good(
        "separate values, the same as inline ones",
        "--stamp s --timeout 2.5 --env A=b --retries 3 --semaphore R=2 -- t",
        INLINE,
    ),
    Good(
        "locks in the order given",
        "--lock a --shared-lock b --semaphore c=3 --lock d -- t",
        {
            "locks": (
                LockRequest("a", "exclusive"),
                LockRequest("b", "shared"),
                LockRequest("c", "semaphore", 3),
                LockRequest("d", "exclusive"),
            )
        },
    ),
    Good("memory", "--mem 1.5G --mem-limit 8G -- t", {"mem": 3 << 29, "mem_limit": 8 << 30}),
    Good(
        "memory budget from the environment",
        "--mem 700M -- t",
        {"mem": 700 << 20, "mem_limit": 4 << 30},
        {"FI_RUN_MEM_LIMIT": "4G"},
    ),
    Good(
        "weighted seats",
        "--semaphore mem=16:4 --semaphore licence=2:2 -- t",
        {"locks": (LockRequest("mem", "semaphore", 16, 4), LockRequest("licence", "semaphore", 2, 2))},
    ),
    Good(
        "lock timeout, contention patterns, quiet on success",
        "--lock-timeout 30 --retry-on busy --retry-on 'is locked' --quiet-on-success -- t",
        {"lock_timeout": 30.0, "retry_on": ("busy", "is locked"), "quiet_on_success": True},
    ),
    Good(
        "everything after the separator is the command, options and a second separator too",
        "-- tool --stamp x -- @notexpanded.rsp --bogus",
        {"command": ("tool", "--stamp", "x", "--", "@notexpanded.rsp", "--bogus"), "stamp": None},
    ),
    Good("-v", "-v -- t", {"verbosity": VERBOSE}),
    Good("--verbose", "--verbose -- t", {"verbosity": VERBOSE}),
    Good("-q", "-q -- t", {"verbosity": QUIET}),
    Good("--quiet", "--quiet -- t", {"verbosity": QUIET}),
    Good(
        "environment defaults apply when no flag is given",
        "-- t",
        {
            "timeout": 7.0,
            "quiet_on_success": True,
            "retries": 0,
            "lock_dir": "/build/out/l",
            "lock_timeout": 3.0,
            "log": "/build/out/x.log",
            "verbosity": VERBOSE,
        },
        {
            "FI_RUN_TIMEOUT": "7",
            "FI_RUN_QUIET_ON_SUCCESS": "yes",
            "FI_RUN_RETRIES": "0",
            "FI_RUN_LOCK_DIR": "l",
            "FI_RUN_LOCK_TIMEOUT": "3",
            "FI_RUN_LOG": "x.log",
            "FI_RUN_VERBOSE": "on",
        },
    ),
    Good("FI_RUN_QUIET", "-- t", {"verbosity": QUIET}, {"FI_RUN_QUIET": "true"}),
    Good("--lend-slot", "--lend-slot never -- t", {"lend_slot": "never"}, {"FI_RUN_LEND_SLOT": "always"}),
    Good("FI_RUN_LEND_SLOT", "-- t", {"lend_slot": "always"}, {"FI_RUN_LEND_SLOT": " Always "}),
    Good("--lend-slot default", "-- t", {"lend_slot": "auto"}),
    Good(
        "flags win over environment defaults",
        "--timeout 0 --retries 2 -- t",
        {"timeout": None, "retries": 2},  # --timeout 0: no limit, overriding the environment's 0.5
        {"FI_RUN_TIMEOUT": "0.5", "FI_RUN_RETRIES": "0"},
    ),
    Good(
        "an empty environment default is unset",
        "-- t",
        {"timeout": None, "quiet_on_success": False, "verbosity": NORMAL},
        {"FI_RUN_TIMEOUT": "", "FI_RUN_QUIET_ON_SUCCESS": "", "FI_RUN_VERBOSE": ""},
    ),
)


@pytest.mark.parametrize("case", GOOD, ids=[case.id for case in GOOD])
def test_good_invocation_parses_to_its_step_spec(case: Good) -> None:
    spec = parse(case.argv, case.environ, START)
    assert {name: getattr(spec, name) for name in case.expected} == _native(case.expected)


def _native(expected: dict[str, object]) -> dict[str, object]:
    """The table's POSIX paths as fi_run makes them on this platform ("/build" is "\\build" on Windows)."""
    if sys.platform != "win32":
        return expected
    native = dict(expected)
    for name in ("stamp", "cwd", "lock_dir", "log"):
        if isinstance(native.get(name), str):
            native[name] = os.path.normpath(str(native[name]))
    outputs = native.get("outputs")
    if isinstance(outputs, tuple):
        native["outputs"] = tuple(os.path.normpath(str(path)) for path in outputs)
    return native


def test_the_good_table_uses_every_option_and_every_environment_default() -> None:
    used = {arg.partition("=")[0] for case in GOOD for arg in case.argv[: case.argv.index("--")]}
    environ = {name for case in GOOD for name in case.environ}
    actions = set(ACTIONS)  # --help, --version, --list-signatures print and exit: tested below
    assert {flag for option in OPTIONS for flag in option.flags} - actions - used == set()
    assert {option.env for option in OPTIONS if option.env} - environ == set()


def test_help_is_asked_for_by_short_and_long_flags() -> None:
    assert requested_action(["-h"]) == "help"
    assert requested_action(["--help"]) == "help"


def test_parse_errors_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="'FOO'") as info:
        parse(["--env", "FOO", "--", "t"], {}, "/b")
    assert info.value.exit_status == EXIT_USAGE


def test_empty_env_value_and_value_with_equals_reach_the_child(fi_run: Runner, tmp_path: Path) -> None:
    dump = tmp_path / "env.json"
    child = py("import json, os, sys; json.dump(dict(os.environ), open(sys.argv[1], 'w'))", str(dump))
    ran = fi_run(["--env", "EMPTY=", "--env", "EQ=b=c", "--", *child], env={"EMPTY": "was set"})
    assert ran == Ran(0, "", "")
    env = json.loads(dump.read_text())
    assert env["EMPTY"] == ""
    assert env["EQ"] == "b=c"


def test_timeout_flag_zero_overrides_environment_default(fi_run: Runner, tmp_path: Path) -> None:
    stamp = tmp_path / "stamp"
    ran = fi_run(
        ["--timeout", "0", "--stamp", str(stamp), "--", *py("import time; time.sleep(1.5)")],
        env={"FI_RUN_TIMEOUT": "0.5"},
    )
    assert ran == Ran(0, "", "")
    assert stamp.is_file()


def test_timeout_environment_default_applies_without_a_flag(fi_run_module: Runner, tmp_path: Path) -> None:
    stamp = tmp_path / "stamp"
    ran = fi_run_module(
        ["--stamp", str(stamp), "--", *py("import time; time.sleep(60)")], env={"FI_RUN_TIMEOUT": "0.5"}
    )
    assert ran.status == EXIT_TIMEOUT
    assert "timed out" in only_fi_run_line(ran.err)
    assert not stamp.exists()


def test_help_lists_every_option_and_the_examples(fi_run: Runner) -> None:
    ran = fi_run(["--help"])
    assert ran.status == 0
    assert ran.err == ""
    for option in OPTIONS:
        for flag in option.flags:
            assert flag in ran.out, flag
        if option.metavar is not None:
            assert option.metavar in ran.out
        if option.env:
            assert option.env in ran.out
    assert "examples:" in ran.out
    for line in epilog().splitlines():
        if line.startswith("  fi_run "):
            assert line.strip() in ran.out


@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_help_names_each_tool_and_each_tool_has_its_own_help(fi_run: Runner, tool: str) -> None:
    assert f"  fi_run {tool} " in fi_run(["--help"]).out
    ran = fi_run([tool, "--help"])
    assert ran.status == 0
    assert "usage:" in ran.out
    assert tool in ran.out.splitlines()[0]


def test_help_wins_over_junk_before_it(fi_run: Runner) -> None:
    ran = fi_run(["--bogus", "junk", "--timeout", "abc", "--help"])
    assert ran.status == 0
    assert ran.err == ""
    assert "usage: fi_run [OPTIONS] -- COMMAND [ARG...]" in ran.out


def test_help_after_the_separator_belongs_to_the_command(fi_run: Runner, tmp_path: Path) -> None:
    out = tmp_path / "argv.json"
    ran = fi_run(
        ["--", *py("import json, sys; json.dump(sys.argv[1:], open(sys.argv[1], 'w'))", str(out), "--help")]
    )
    assert ran == Ran(0, "", "")
    assert json.loads(out.read_text()) == [str(out), "--help"]


def test_version_prints_the_version(fi_run: Runner) -> None:
    ran = fi_run(["--version"])
    assert ran == Ran(0, f"fi_run {__version__}\n", "")


def test_both_console_scripts_are_installed_and_run_fi_run() -> None:
    bindir = os.path.dirname(sys.executable)
    for name in ("fi-run", "fi_run"):
        script = os.path.join(bindir, name + (".exe" if sys.platform == "win32" else ""))
        assert os.stat(script).st_mode & stat.S_IXUSR, script
        proc = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=60, check=False)
        assert (proc.returncode, proc.stdout, proc.stderr) == (0, f"fi_run {__version__}\n", "")


# --- run by path (GN's `script`), the package found from the script's own place

MAIN_PY = Path(fi_run.__file__).resolve().parent / "__main__.py"


def _by_path(script: Path, tmp_path: Path, flags: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    # -S: no site-packages, so the installed fi_run cannot be what runs: only the script's own tree can.
    stamp = tmp_path / "out" / "x.stamp"
    return subprocess.run(
        [
            sys.executable,
            "-S",
            *flags,
            str(script),
            "--stamp",
            str(stamp),
            "--",
            sys.executable,
            "-S",
            "-c",
            "",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.skipif(sys.platform == "win32", reason="symlinks need a privilege on Windows")
@pytest.mark.parametrize("flags", [(), ("-I",)], ids=["script dir on sys.path", "-I: none"])
@pytest.mark.parametrize(
    "how", ["the file", "a symlink to it", "a renamed symlinked tree", "a symlinked fi_run"]
)
def test_main_py_run_by_path_finds_its_own_package(tmp_path: Path, how: str, flags: tuple[str, ...]) -> None:
    package = MAIN_PY.parent
    if how == "the file":
        script = MAIN_PY
    elif how == "a symlink to it":  # uv#2767's gntools/fi_run.py
        (tmp_path / "gntools").mkdir()
        script = tmp_path / "gntools" / "fi_run.py"
        script.symlink_to(MAIN_PY)
    elif how == "a renamed symlinked tree":
        (tmp_path / "vendor").mkdir()
        (tmp_path / "vendor" / "runner").symlink_to(package, target_is_directory=True)
        script = tmp_path / "vendor" / "runner" / "__main__.py"
    else:
        (tmp_path / "third_party").mkdir()
        (tmp_path / "third_party" / "fi_run").symlink_to(package, target_is_directory=True)
        script = tmp_path / "third_party" / "fi_run" / "__main__.py"
    done = _by_path(script, tmp_path, flags)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "x.stamp").exists()


def test_a_vendored_fi_run_on_a_python_without_filelock_says_what_to_install(tmp_path: Path) -> None:
    """Issue 17: run by path with -S (no site-packages, so no filelock), a locked step ends in one line that
    names the package and exit 2, not "internal error" (70); the stale stamp is gone, nothing ran."""
    stamp = tmp_path / "x.stamp"
    stamp.write_text("")
    marker = tmp_path / "ran"
    done = subprocess.run(
        [
            *(sys.executable, "-S", str(MAIN_PY), "--stamp", str(stamp), "--lock", str(tmp_path / "R")),
            *("--", sys.executable, "-S", "-c", f"open({str(marker)!r}, 'w')"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == EXIT_USAGE, done.stderr
    line = only_fi_run_line(done.stderr)
    assert "need the filelock package" in line
    assert "install it there (pip install filelock) or vendor it beside fi_run" in line
    assert not stamp.exists()
    assert not marker.exists()


def test_the_filelock_minimum_is_the_one_pyproject_asks_for() -> None:
    from fi_run.contention.locks import FILELOCK_MINIMUM

    pyproject = (MAIN_PY.parents[1] / "pyproject.toml").read_text()
    wanted = ".".join(map(str, FILELOCK_MINIMUM))
    assert f'"filelock>={wanted}",' in pyproject


@pytest.mark.skipif(sys.platform == "win32", reason="Windows cannot remove a directory a process works in")
def test_a_working_directory_removed_under_fi_run_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """Issue 22: `cd x; rmdir ../x; fi-run -- true` was an internal error (70). Now one line naming the
    directory (from PWD, as the shell knows it) and exit 2; an absolute stale stamp is removed too."""
    gone = tmp_path / "x"
    gone.mkdir()
    stamp = tmp_path / "x.stamp"
    stamp.write_text("stale")
    child = f"import os, sys; os.rmdir({str(gone)!r}); os.execv(sys.executable, sys.argv[1:])"
    done = subprocess.run(
        [sys.executable, "-c", child, sys.executable, "-m", "fi_run", "--stamp", str(stamp), "--", "true"],
        cwd=gone,
        env={**os.environ, "PWD": str(gone)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == EXIT_USAGE, done.stderr
    assert only_fi_run_line(done.stderr) == (
        f"fi_run: the working directory {str(gone)!r} no longer exists (removed after the build entered it); "
        "run fi_run from a directory that exists"
    )
    assert not stamp.exists()


@pytest.mark.skipif(
    sys.platform == "win32" or not os.path.exists("/dev/full"),
    reason="needs /dev/full and a descriptor 1 closed before Python starts (POSIX)",
)
@pytest.mark.parametrize("stdout", ["closed", "full"])
@pytest.mark.parametrize(
    "args",
    [["--version"], ["--list-signatures"], ["--help"], ["classify", "{out}"], ["report", "{log}"]],
    ids=["version", "list-signatures", "help", "classify", "report"],
)
def test_what_fi_run_prints_to_a_closed_or_full_stdout_is_one_line_and_exit_74(
    tmp_path: Path, args: list[str], stdout: str
) -> None:
    """Issue 22: these exited 70 (internal error) when stdout was closed (>&-) or full (> /dev/full)."""
    out = tmp_path / "out.txt"
    out.write_text("error: could not lock config file .git/config: File exists\n")
    log = tmp_path / "fi_run.log"
    assert run_fi_run("module", ["--log", str(log), "--", *PASS], cwd=tmp_path).status == 0
    argv = [arg.replace("{out}", str(out)).replace("{log}", str(log)) for arg in args]
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [sys.executable, "-m", "fi_run", *argv],
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=full if stdout == "full" else None,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
            pass_fds=(),
            close_fds=True,
            preexec_fn=(lambda: os.close(1)) if stdout == "closed" else None,
        )
    assert done.returncode == EXIT_IOERR, done.stderr
    reason = "it is closed" if stdout == "closed" else "No space left on device"
    assert done.stderr == f"fi_run: cannot write to standard output: {reason}\n"
