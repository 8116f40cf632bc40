"""Every snippet the pages show is run by a test, or says why not (issue 17).

The pages are README.md, docs/*.md and examples/*/README.md. Each fenced block on them has, on the line just
above its fence, an HTML comment (Markdown does not show it) that says how it is run:

    <!-- snippet: shell SCENE [cwd=DIR] -->       commands, run with `bash -e`: they must exit 0
    <!-- snippet: transcript SCENE -->            "$ command" lines, each followed by what it prints:
                                                  the commands are run and must print exactly that
    <!-- snippet: ninja uv [venv=DIR] -->         a build.ninja or its rules: built by the real ninja
    <!-- snippet: gn SCENE [module=NAME] -->      a BUILD.gn: `gn gen out` (no --args), ninja, `gn check`
    <!-- snippet: check WHAT -->                  text fi_run prints or reads, held against what it does
    <!-- snippet: not run: REASON -->             a block no test can run here, and why

The scenes (what a snippet finds around it) are the functions below, one per scene, each saying what it
sets up and what it checks besides the exit status. The snippet's text itself is never edited: a build gets
edges appended for rules that have none, nothing more. The `newcomer` scene is a new user's: a copy of
the repository with nothing installed, where the pages' `newcomer` commands run one after another in page
order (README.md, docs/, examples/), in the virtual environment the README's first command makes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from fi_run_testing import (
    NO_GN_WHEEL,
    UV_2767_MESSAGE,
    Ran,
    base_environ,
    fi_run_argv,
    py,
    run,
)

from fi_run.cli import OPTIONS
from fi_run.observe import schema

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

if sys.platform == "win32":
    pytest.skip(f"the pages' commands are POSIX shell; {NO_GN_WHEEL}", allow_module_level=True)

ROOT = Path(__file__).resolve().parent.parent
PAGES = (
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    *sorted((ROOT / "examples").glob("*/README.md")),
)
DOC_LOG = ROOT / "docs" / "data" / "contended.log"  # tests/make_doc_log.py makes it
EXAMPLE_GN = ROOT / "examples" / "gn"
NO_WORK = "ninja: no work to do."

# The kinds of snippet, the scenes each can run in, and the options a scene takes.
SCENES: dict[str, dict[str, frozenset[str]]] = {
    "shell": {"newcomer": frozenset({"cwd"}), "build": frozenset({"cwd"}), "redis": frozenset()},
    "transcript": {"repo": frozenset(), "scratch": frozenset()},
    "ninja": {"uv": frozenset({"venv"})},
    "gn": {"example": frozenset(), "uv": frozenset({"module"})},
    "check": {
        "usage": frozenset(),
        "options": frozenset(),
        "log-line": frozenset(),
        "retry-message": frozenset(),
    },
}
NOT_RUN = "not run"

_MARK = re.compile(r"<!--\s*snippet:\s*(.*?)\s*-->")
_FENCE = re.compile(r"(\s*)(`{3,}|~{3,})(.*)")
# Paths of a developer's machine, which no page may name (GUIDE: no machine paths in committed docs).
MACHINE_PATH = re.compile(r"(?<![\w.])/(?:work|root|home|Users)/|pytest-of-|/\.pyenv/")


@dataclass(frozen=True)
class Snippet:
    page: str  # relative to the repository's root
    line: int  # the opening fence's line, 1-based
    lang: str  # the fence's info string: "", "ninja", "gn", "json"
    text: str  # the block's content, each line ending in a newline
    mark: str | None  # the comment above the fence, after "snippet:"; None if there is none

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def words(self) -> list[str]:
        return (self.mark or "").split()

    @property
    def kind(self) -> str:
        if (self.mark or "").startswith(NOT_RUN + ":"):
            return NOT_RUN
        return self.words[0] if self.words else ""

    @property
    def scene(self) -> str:
        return self.words[1] if len(self.words) > 1 else ""

    @property
    def options(self) -> dict[str, str]:
        return dict(word.split("=", 1) for word in self.words[2:] if "=" in word)

    @property
    def reason(self) -> str:
        return (self.mark or "").partition(":")[2].strip() if self.kind == NOT_RUN else ""


def page_snippets(page: Path) -> list[Snippet]:
    """The fenced blocks of one page, each with the snippet mark on the line above it (or None)."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found = []
    number = 0
    while number < len(lines):
        opening = _FENCE.fullmatch(lines[number])
        if opening is None:
            number += 1
            continue
        indent, fence, lang = opening.groups()
        end = number + 1
        while end < len(lines) and lines[end].strip() != fence:
            end += 1
        assert end < len(lines), f"{page.name}:{number + 1}: a fence that is never closed"
        above = _MARK.fullmatch(lines[number - 1].strip()) if number else None
        text = "".join(line.removeprefix(indent) + "\n" for line in lines[number + 1 : end])
        rel = page.relative_to(ROOT).as_posix()
        found.append(Snippet(rel, number + 1, lang.strip(), text, above.group(1) if above else None))
        number = end + 1
    return found


def all_snippets() -> list[Snippet]:
    return [snippet for page in PAGES for snippet in page_snippets(page)]


SNIPPETS = all_snippets()


def mark_problems(snippet: Snippet) -> list[str]:
    """What is wrong with a snippet's mark: nothing, for a block that is run or says why not."""
    where = snippet.id
    if snippet.mark is None:
        return [f"{where}: no '<!-- snippet: ... -->' on the line above the fence"]
    if snippet.kind == NOT_RUN:
        return [] if len(snippet.reason.split()) >= 3 else [f"{where}: 'not run:' needs a reason"]
    scenes = SCENES.get(snippet.kind)
    if scenes is None:
        return [f"{where}: unknown kind {snippet.kind!r} (known: {', '.join(SCENES)}, 'not run: REASON')"]
    if snippet.scene not in scenes:
        return [f"{where}: {snippet.kind} has no scene {snippet.scene!r} (known: {', '.join(scenes)})"]
    if snippet.kind in ("ninja", "gn") and snippet.lang != snippet.kind:
        return [f"{where}: a {snippet.kind} snippet in a fence marked {snippet.lang!r}, not {snippet.kind!r}"]
    words = snippet.words[2:]
    problems = [f"{where}: {word!r} is not NAME=VALUE" for word in words if "=" not in word]
    unknown = set(snippet.options) - scenes[snippet.scene]
    problems += [
        f"{where}: {snippet.kind} {snippet.scene} takes no option {name!r}" for name in sorted(unknown)
    ]
    return problems


# --- the marks themselves


def test_every_fenced_block_is_run_or_says_why_not() -> None:
    assert len(SNIPPETS) > 30, "the pages' fenced blocks were not found"
    problems = [problem for snippet in SNIPPETS for problem in mark_problems(snippet)]
    assert problems == []


def test_a_snippet_mark_stands_right_above_a_fence() -> None:
    marked = {(snippet.page, snippet.line - 1) for snippet in SNIPPETS if snippet.mark is not None}
    strays = []
    for page in PAGES:
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            rel = page.relative_to(ROOT).as_posix()
            if "snippet:" in line and line.lstrip().startswith("<!--") and (rel, number) not in marked:
                strays.append(f"{rel}:{number}: {line.strip()}")
    assert strays == []


def test_the_mark_checker_finds_what_is_wrong() -> None:
    def snippet(mark: str | None) -> Snippet:
        return Snippet("page.md", 3, "", "x\n", mark)

    assert mark_problems(snippet("shell newcomer cwd=examples/gn")) == []
    assert mark_problems(snippet("not run: needs Wine and Windows")) == []
    assert mark_problems(snippet(None)) == [
        "page.md:3: no '<!-- snippet: ... -->' on the line above the fence"
    ]
    assert mark_problems(snippet("not run: no")) == ["page.md:3: 'not run:' needs a reason"]
    assert mark_problems(snippet("shel newcomer"))[0].startswith("page.md:3: unknown kind 'shel'")
    assert mark_problems(snippet("gn newcomer"))[0].startswith("page.md:3: gn has no scene 'newcomer'")
    assert mark_problems(snippet("ninja uv")) == [
        "page.md:3: a ninja snippet in a fence marked '', not 'ninja'"
    ]
    ninja = Snippet("page.md", 3, "ninja", "x\n", "ninja uv pool=1")
    assert mark_problems(ninja) == ["page.md:3: ninja uv takes no option 'pool'"]
    assert mark_problems(dataclasses.replace(ninja, mark="ninja uv venv")) == [
        "page.md:3: 'venv' is not NAME=VALUE"
    ]


def test_every_scene_is_used_by_a_snippet() -> None:
    used = {(snippet.kind, snippet.scene) for snippet in SNIPPETS}
    defined = {(kind, scene) for kind, scenes in SCENES.items() for scene in scenes}
    assert defined - used == set()


def test_the_pages_name_no_path_of_a_developer_s_machine() -> None:
    found = [
        f"{page.relative_to(ROOT).as_posix()}:{number}: {match.group()}"
        for page in (*PAGES, DOC_LOG)
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1)
        for match in [MACHINE_PATH.search(line)]
        if match
    ]
    assert found == []


# --- running them


def scene_environ(tmp_path: Path, **overrides: str) -> dict[str, str]:
    """The environment of a scene that uses this checkout's venv: its bin first on PATH (fi-run, fi_run,
    ninja, gn, uv, python3), a lock directory of the test's own, no outer venv for uv to find, UTC."""
    env = base_environ(
        {
            "TERM": "dumb",
            "NINJA_STATUS": "[%f/%t] ",
            "FI_RUN_LOCK_DIR": os.fspath(tmp_path / "locks"),
            "TZ": "UTC",
            "VIRTUAL_ENV": None,
            "CONDA_PREFIX": None,
            "UV_PYTHON_DOWNLOADS": "never",
            **overrides,
        }
    )
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    return env


def ran_ok(snippet: Snippet, done: Ran, what: str = "") -> None:
    assert done.status == 0, f"{snippet.id}{what}: exit {done.status}\n{snippet.text}\n{done.out[-6000:]}"


def bash(script: str, cwd: Path, env: dict[str, str]) -> Ran:
    """``script`` run by bash -e (the first command that fails ends it); stdout and stderr together."""
    return run(["bash", "-e", "-c", script], cwd=cwd, env=env, merge_stderr=True)


@pytest.fixture(scope="session")
def uv_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A uv cache of these tests' own. The first install that builds a package fetches its build backend
    (flit_core) from the package index into it: the one use of the network."""
    return tmp_path_factory.mktemp("uv-cache")


# The newcomer: a copy of the repository, nothing installed.

_NOT_COPIED = {
    ".git",
    "__pycache__",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    ".ninja_log",
    ".ninja_deps",
}


def copy_checkout(destination: Path) -> None:
    """The repository's files as a clone has them: no venvs, build output or caches."""

    def ignore(directory: str, names: list[str]) -> set[str]:
        skip = {
            name
            for name in names
            if name in _NOT_COPIED or name.startswith(".venv") or name.endswith(".egg-info")
        }
        if Path(directory) == ROOT:
            skip |= {"build", "dist"} & set(names)
        if Path(directory).parent == ROOT / "examples" or Path(directory) == ROOT / "benchmarks":
            skip |= {"out"} & set(names)
        return skip

    shutil.copytree(ROOT, destination, ignore=ignore, symlinks=True)


@pytest.fixture(scope="session")
def newcomer(tmp_path_factory: pytest.TempPathFactory, uv_cache: Path) -> tuple[Path, dict[str, Ran]]:
    """The pages' newcomer commands, run one after another in page order in a copy of the repository, as a
    new user would: (the copy, what each snippet came to). PATH has the copy's .venv/bin first (it exists
    once README's first command has made it) and not this checkout's venv."""
    root = tmp_path_factory.mktemp("newcomer")
    checkout = root / "fi_run"
    copy_checkout(checkout)
    ours = os.path.dirname(sys.executable)
    env = scene_environ(root, UV_CACHE_DIR=os.fspath(uv_cache))
    path = [
        entry
        for entry in env["PATH"].split(os.pathsep)
        if entry and os.path.realpath(entry) != os.path.realpath(ours)
    ]
    env["PATH"] = os.pathsep.join([os.fspath(checkout / ".venv" / "bin"), *path])
    venv_python = checkout / ".venv" / "bin" / "python"
    results: dict[str, Ran] = {}
    failed = ""
    for snippet in SNIPPETS:
        if (snippet.kind, snippet.scene) != ("shell", "newcomer"):
            continue
        if failed:  # what follows assumes what came before: a new user would stop here too
            results[snippet.id] = Ran(-1, f"not run: {failed} failed before it\n", "")
        elif results and not venv_python.exists():
            # A bare `python` would then be the machine's own, and `pip install` would change it.
            results[snippet.id] = Ran(-1, f"not run: the README's first command made no {venv_python}\n", "")
        else:
            results[snippet.id] = bash(snippet.text, checkout / snippet.options.get("cwd", "."), env)
        if results[snippet.id].status != 0:
            failed = failed or snippet.id
    return checkout, results


def scene_shell_newcomer(snippet: Snippet, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    checkout, results = request.getfixturevalue("newcomer")
    ran_ok(snippet, results[snippet.id], f" (run in {checkout}, after the newcomer snippets above it)")


@pytest.mark.network
def test_the_newcomer_s_venv_has_fi_run_from_the_copy(newcomer: tuple[Path, dict[str, Ran]]) -> None:
    checkout, _ = newcomer
    for script in ("fi-run", "fi_run"):  # README: "This gives .venv/bin/fi-run (and fi_run)"
        assert (checkout / ".venv" / "bin" / script).is_file(), script
    where = run(
        [checkout / ".venv" / "bin" / "python", "-c", "import fi_run; print(fi_run.__file__)"], cwd=checkout
    )
    assert where.status == 0, where.err
    assert Path(where.out.strip()).resolve().is_relative_to(checkout.resolve())


# A small build: two writers and three readers of one resource, in out/.

SMALL_BUILD = """\
rule write
  command = fi-run --stamp $out --lock venv -- python3 -c "import time; time.sleep(0.05)"
rule read
  command = fi-run --stamp $out --shared-lock venv -- python3 -c "import time; time.sleep(0.05)"
build stamps/w1: write
build stamps/w2: write
build stamps/r1: read
build stamps/r2: read
build stamps/r3: read
"""


def scene_shell_build(snippet: Snippet, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """The commands run beside out/ (`ninja -C out`), or in it with cwd=out; every step must have run."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "build.ninja").write_text(SMALL_BUILD, encoding="utf-8")
    done = bash(snippet.text, tmp_path / snippet.options.get("cwd", "."), scene_environ(tmp_path))
    ran_ok(snippet, done)
    assert sorted(p.name for p in (out / "stamps").iterdir()) == ["r1", "r2", "r3", "w1", "w2"], done.out


def scene_shell_redis(snippet: Snippet, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """A redis-server of the test's own that wants a password (redis_testing.py; redis-server must be
    installed, as for tests/test_remote.py). The commands run in an empty directory with LICENCE_REDIS set to
    its address (what a build machine sets to its own server's) and FI_RUN_REDIS_PASSWORD to its password,
    and with a lease of 1 s (a server grants nothing for a lease after it starts: 2 s here, not 16). They must
    exit 0 and leave no seat held or waited for."""
    from redis_testing import RedisServer

    server = RedisServer(tmp_path / "redis", password="pages-password").start()
    try:
        env = scene_environ(
            tmp_path,
            LICENCE_REDIS=f"127.0.0.1:{server.port}",
            FI_RUN_REDIS_PASSWORD=server.password,
            FI_RUN_REDIS_LEASE="1",
        )
        work = tmp_path / "work"
        work.mkdir()
        ran_ok(snippet, bash(snippet.text, work, env))
        keys = server.call("KEYS", "fi-run:*")
        assert isinstance(keys, list)
        # What stays: each resource's fence counter and the server's run_id (docs/remote.md), no seat.
        left = [k for k in keys if isinstance(k, bytes) and not k.endswith(b":seq") and k != b"fi-run:server"]
        assert left == [], keys
    finally:
        server.stop()


# Transcripts: "$ command" (a line ending in "\" continues it), then what it prints.


def transcript(text: str) -> list[tuple[str, str]]:
    """(command, expected output) pairs; the blank lines between them are not output."""
    pairs: list[tuple[str, list[str]]] = []
    lines = text.splitlines()
    number = 0
    while number < len(lines):
        line = lines[number]
        if line.startswith("$ "):
            command = [line[2:]]
            while command[-1].endswith("\\") and number + 1 < len(lines):
                number += 1
                command.append(lines[number])
            pairs.append(("\n".join(command), []))
        else:
            assert pairs, f"output before the first '$ ' command: {line!r}"
            pairs[-1][1].append(line)
        number += 1
    return [(command, "\n".join(output).strip("\n")) for command, output in pairs]


def test_a_transcript_is_split_into_commands_and_what_they_print() -> None:
    text = "$ printf a \\\n    b\nline 1\n\n$ true\n$ echo x\nx\n"
    assert transcript(text) == [("printf a \\\n    b", "line 1"), ("true", ""), ("echo x", "x")]


def check_transcript(snippet: Snippet, cwd: Path, env: dict[str, str]) -> None:
    for command, expected in transcript(snippet.text):
        done = bash(command, cwd, env)
        got = "\n".join(line.rstrip() for line in done.out.splitlines()).strip("\n")
        assert got == expected, f"{snippet.id}: `{command}` printed (exit {done.status}):\n{done.out}"


def scene_transcript_repo(snippet: Snippet, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Read-only commands, from the repository's root."""
    check_transcript(snippet, ROOT, scene_environ(tmp_path))


def scene_transcript_scratch(snippet: Snippet, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Commands in an empty directory, where they may make files."""
    check_transcript(snippet, tmp_path, scene_environ(tmp_path))


# uv: a package to install editable, and a venv to install it into.


def make_package(directory: Path, module: str) -> None:
    """A local project `module` (a dotted name: a namespace package) built with flit_core, as the uv
    example's packages are."""
    directory.mkdir(parents=True)
    (directory / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["flit_core>=3.4"]\nbuild-backend = "flit_core.buildapi"\n\n'
        f'[project]\nname = "{module}"\nversion = "1.0"\ndescription = "A package for fi_run\'s docs."\n\n'
        f'[tool.flit.module]\nname = "{module}"\n',
        encoding="utf-8",
    )
    package = directory.joinpath(*module.split("."))
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(f"NAME = {module!r}\n", encoding="utf-8")


# What `uv` on a uv scene's PATH is: the real uv, for a step that names a venv of the test's own. Without
# a venv (a rule that forgot --venv), uv would install into the first venv Python on PATH: this checkout's
# own (issue 17 saw it happen). The guard fails that step instead, and leaves this venv alone.
UV_GUARD = """\
#!/bin/sh
case "$VIRTUAL_ENV" in
  {roots}) exec {uv} "$@" ;;
esac
echo "uv (the test's guard): VIRTUAL_ENV is '$VIRTUAL_ENV', no venv of this test: the step names no venv" >&2
exit 99
"""


def real_uv(env: dict[str, str]) -> str:
    uv = shutil.which("uv", path=os.path.dirname(sys.executable) + os.pathsep + env["PATH"])
    assert uv is not None, "no uv next to this Python: pip install -e '.[test]'"
    return uv


def uv_env(tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, str]:
    """scene_environ with a uv cache of the tests' own and `uv` guarded (UV_GUARD)."""
    env = scene_environ(tmp_path, UV_CACHE_DIR=os.fspath(request.getfixturevalue("uv_cache")))
    uv = real_uv(env)
    guard = tmp_path / "uv-guard"
    guard.mkdir()
    roots = "|".join(shlex.quote(os.fspath(root)) + "/*" for root in {tmp_path, tmp_path.resolve()})
    (guard / "uv").write_text(UV_GUARD.format(roots=roots, uv=shlex.quote(uv)), encoding="utf-8")
    (guard / "uv").chmod(0o755)
    env["PATH"] = os.fspath(guard) + os.pathsep + env["PATH"]
    return env


def test_the_uv_guard_stops_an_install_that_names_no_venv(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    env = uv_env(tmp_path, request)
    env.pop("VIRTUAL_ENV", None)
    stopped = run(["uv", "pip", "install", "-e", "foo"], cwd=tmp_path, env=env, merge_stderr=True)
    assert stopped.status == 99, stopped.out
    assert "the step names no venv" in stopped.out
    env["VIRTUAL_ENV"] = os.fspath(tmp_path / "venv")
    passed = run(["uv", "--version"], cwd=tmp_path, env=env, merge_stderr=True)
    assert passed.status == 0, passed.out
    assert passed.out.startswith("uv "), passed.out


def make_venv(venv: Path, env: dict[str, str]) -> None:
    venv.parent.mkdir(parents=True, exist_ok=True)
    made = run(
        [real_uv(env), "venv", "--quiet", "--python", sys.executable, venv],
        cwd=venv.parent,
        env=env,
        merge_stderr=True,
    )
    assert made.status == 0, made.out


def installed_from(venv: Path, module: str, source: Path, env: dict[str, str]) -> None:
    """`module` imports in ``venv`` and comes from ``source`` (an editable install into THAT venv)."""
    where = run(
        [venv / "bin" / "python", "-c", f"import {module}; print({module}.__file__)"],
        cwd=venv.parent,
        env=env,
    )
    assert where.status == 0, f"{module} is not installed in {venv}: {where.err}"
    assert Path(where.out.strip()).resolve().is_relative_to(source.resolve()), where.out


_RULE = re.compile(r"^rule (\S+)\n((?:[ \t]+.*\n?)*)", re.MULTILINE)
_BUILD = re.compile(r"^build (\S+?): (\S+)", re.MULTILINE)


def edges_for_lone_rules(text: str, venv: str) -> str:
    """Build edges for the rules a snippet declares without using: an install (`pip install`) of ../foo,
    and an import check (`import $module`) of foo after every install."""
    used = {rule for _, rule in _BUILD.findall(text)}
    installs = [
        output
        for output, rule in _BUILD.findall(text)
        if "pip install" in dict(_RULE.findall(text)).get(rule, "")
    ]
    extra = []
    for rule, body in _RULE.findall(text):
        if rule in used:
            continue
        if "pip install" in body:
            installs.append(f"stamps/foo.{rule}")
            extra.append(f"build stamps/foo.{rule}: {rule}\n  venv = {venv}\n  pkg = ../foo\n")
    for rule, body in _RULE.findall(text):
        if rule in used or "pip install" in body:
            continue
        assert "import $module" in body, f"no edge for the rule {rule!r}, and the scene knows no other kind"
        extra.append(
            f"build stamps/foo.{rule}: {rule} || {' '.join(installs)}\n  venv = {venv}\n  module = foo\n"
        )
    return "".join(f"\n{edge}" for edge in extra)


def scene_ninja_uv(snippet: Snippet, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """The build directory build/, a package ../foo, a venv made by uv (build/venv, or venv=DIR). The rules
    with no edge get one; the build must succeed, install foo editable into that venv, then have no work."""
    build = tmp_path / "build"
    build.mkdir()
    make_package(tmp_path / "foo", "foo")
    env = uv_env(tmp_path, request)
    venv_name = snippet.options.get("venv", "venv")
    make_venv(build / venv_name, env)
    (build / "build.ninja").write_text(
        snippet.text + edges_for_lone_rules(snippet.text, venv_name), encoding="utf-8"
    )
    ran_ok(snippet, run(["ninja"], cwd=build, env=env, merge_stderr=True))
    installed_from(build / venv_name, "foo", tmp_path / "foo", env)
    again = run(["ninja"], cwd=build, env=env, merge_stderr=True)
    assert NO_WORK in again.out, again.out


# GN: the snippet is the tree's BUILD.gn, beside the example's .gn and build/ (fi_run.gni, the toolchain).


def gn_tree(snippet: Snippet, src: Path, *, whole_example: bool) -> None:
    if whole_example:
        shutil.copytree(EXAMPLE_GN, src, ignore=shutil.ignore_patterns("out", "__pycache__"))
    else:
        src.mkdir()
        shutil.copy(EXAMPLE_GN / ".gn", src / ".gn")
        shutil.copytree(EXAMPLE_GN / "build", src / "build", ignore=shutil.ignore_patterns("__pycache__"))
    (src / "BUILD.gn").write_text(snippet.text, encoding="utf-8")


def gn_gen(snippet: Snippet, src: Path, env: dict[str, str]) -> None:
    """`gn gen out`, no --args: the template finds this venv's fi_run (python3 is its python)."""
    ran_ok(snippet, run(["gn", "gen", "out"], cwd=src, env=env, merge_stderr=True), ": gn gen out")


def gn_build(snippet: Snippet, src: Path, env: dict[str, str]) -> None:
    ran_ok(snippet, run(["ninja", "-C", "out"], cwd=src, env=env, merge_stderr=True), ": ninja -C out")
    again = run(["ninja", "-C", "out"], cwd=src, env=env, merge_stderr=True)
    assert NO_WORK in again.out, again.out
    ran_ok(snippet, run(["gn", "check", "out"], cwd=src, env=env, merge_stderr=True), ": gn check out")


def scene_gn_example(snippet: Snippet, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """The GN example's tree (its tools, plugins, pages) with the snippet as its BUILD.gn."""
    src = tmp_path / "src"
    gn_tree(snippet, src, whole_example=True)
    env = scene_environ(tmp_path)
    gn_gen(snippet, src, env)
    gn_build(snippet, src, env)


def scene_gn_uv(snippet: Snippet, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """A tree with the example's .gn and build/, a package //MODULE (module=, default foo), and the venv
    $root_out_dir/venv made by uv after gn gen: the build must install MODULE editable into it."""
    src = tmp_path / "src"
    gn_tree(snippet, src, whole_example=False)
    module = snippet.options.get("module", "foo")
    make_package(src / module, module)
    env = uv_env(tmp_path, request)
    gn_gen(snippet, src, env)
    make_venv(src / "out" / "venv", env)
    gn_build(snippet, src, env)
    installed_from(src / "out" / "venv", module, src / module, env)


# Checks: text that fi_run prints or reads, held against what it does.


def scene_check_usage(snippet: Snippet, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """A synopsis names the program and the options of its --help's usage line, no more, no fewer."""
    synopsis = snippet.text.split("#")[0].split()
    program = synopsis[: next(i for i, w in enumerate(synopsis) if w[0] in "[-")]
    done = run([*fi_run_argv(), *program[1:], "--help"], cwd=tmp_path, env=scene_environ(tmp_path))
    ran_ok(snippet, done)
    usage = done.out.split("\n\n")[0].split()
    assert usage[0] == "usage:", done.out
    assert usage[1].replace("fi-run", "fi_run") == program[0]
    assert usage[2 : len(program) + 1] == program[1:], done.out

    def long_options(words: list[str]) -> set[str]:
        return {m for word in words for m in re.findall(r"--[a-z][a-z-]*", word)} - {"--help"}

    assert long_options(synopsis) == long_options(usage), done.out.split("\n\n")[0]


def scene_check_options(snippet: Snippet, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Each line starts with one of fi_run's options."""
    flags = {flag for option in OPTIONS for flag in option.flags}
    named = [line.split()[0] for line in snippet.text.splitlines() if line.strip()]
    assert named, snippet.text
    assert [flag for flag in named if flag not in flags] == []


def check_keys(record: dict[str, object]) -> None:
    """A log record has the keys of the schema, in its order, and so do the records in it."""
    assert tuple(record) == schema.STEP_KEYS
    for key, keys in (
        ("attempts", schema.ATTEMPT_KEYS),
        ("locks", schema.LOCK_KEYS),
        ("lent", schema.keys(schema.Loan)),
    ):
        items = record[key]
        assert isinstance(items, list)
        for item in items:
            # Sparse keys (a redis:// lock's host and fence) are written only when set.
            assert tuple(item) == tuple(k for k in keys if k in item or k not in schema.SPARSE), (key, item)


def scene_check_log_line(snippet: Snippet, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """The line is one of docs/data/contended.log's, and has today's keys."""
    line = snippet.text.strip()
    assert line in DOC_LOG.read_text(encoding="utf-8").splitlines(), "not a line of docs/data/contended.log"
    check_keys(json.loads(line))


def test_the_docs_log_has_today_s_keys_on_every_line() -> None:
    # When the schema changes, this fails: make a new log with tests/make_doc_log.py.
    lines = DOC_LOG.read_text(encoding="utf-8").splitlines()
    assert len(lines) > 40
    for line in lines:
        check_keys(json.loads(line))


def scene_check_retry_message(snippet: Snippet, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """What fi_run says when it retries: a command that fails once with uv#2767's message, then succeeds.
    The back-off (0.25 s with jitter) is the one number compared loosely."""
    flaky = py(
        """
        import pathlib, sys
        once = pathlib.Path("failed-once")
        if not once.exists():
            once.touch()
            sys.stderr.write(sys.argv[1] + "\\n")
            sys.exit(2)
        """,
        UV_2767_MESSAGE,
    )
    done = run([*fi_run_argv(), "--", *flaky], cwd=tmp_path, env=scene_environ(tmp_path))
    ran_ok(snippet, done)
    said = [line for line in done.err.splitlines() if line.startswith("fi_run:")]

    def delay_as_n(line: str) -> str:
        return re.sub(r" in \d+(?:\.\d+)? s$", " in N s", line)

    assert [delay_as_n(line) for line in said] == [delay_as_n(line) for line in snippet.text.splitlines()]


SCENE_RUNNERS: dict[tuple[str, str], Callable[[Snippet, Path, pytest.FixtureRequest], None]] = {
    ("shell", "newcomer"): scene_shell_newcomer,
    ("shell", "build"): scene_shell_build,
    ("shell", "redis"): scene_shell_redis,
    ("transcript", "repo"): scene_transcript_repo,
    ("transcript", "scratch"): scene_transcript_scratch,
    ("ninja", "uv"): scene_ninja_uv,
    ("gn", "example"): scene_gn_example,
    ("gn", "uv"): scene_gn_uv,
    ("check", "usage"): scene_check_usage,
    ("check", "options"): scene_check_options,
    ("check", "log-line"): scene_check_log_line,
    ("check", "retry-message"): scene_check_retry_message,
}
NEEDS_THE_INDEX = {("shell", "newcomer"), ("ninja", "uv"), ("gn", "uv")}  # pip or uv fetch from it once


def test_every_scene_has_a_runner() -> None:
    assert set(SCENE_RUNNERS) == {(kind, scene) for kind, scenes in SCENES.items() for scene in scenes}


def runnable() -> Iterator[object]:
    for snippet in SNIPPETS:
        if (snippet.kind, snippet.scene) in SCENE_RUNNERS:
            marks = [pytest.mark.network] if (snippet.kind, snippet.scene) in NEEDS_THE_INDEX else []
            yield pytest.param(snippet, id=snippet.id, marks=marks)


@pytest.mark.parametrize("snippet", list(runnable()))
def test_snippet(snippet: Snippet, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    SCENE_RUNNERS[(snippet.kind, snippet.scene)](snippet, tmp_path, request)
