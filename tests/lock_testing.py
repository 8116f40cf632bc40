"""Helpers for the lock and contention tests: an overlap checker, step scripts, real ninja, process cleanup.

Everything here drives real programs: ninja, sh, git, fi_run as a child process. Nothing is mocked.

The overlap checker reads a log that every step appends to: ``enter <tag> <ns>`` when it starts using the
shared resource and ``exit <tag> <ns>`` when it stops. Each line is one ``write(2)`` on an ``O_APPEND``
descriptor (the shell's ``>>`` or ``os.open(..., O_APPEND)``), so lines never interleave and the order of
lines in the file is the order in which the writes happened. The checker measures concurrency in that
order: when step B's ``enter`` line comes before step A's ``exit`` line, B was inside while A still was.
The nanosecond stamps (``date +%s%N``, ``time.time_ns()``) come from separate processes; they are kept
for reading a log by eye and checked only for sanity (a step's exit is not before its own enter).

A tag is ``<kind>.<id>`` (``r.12`` a reader, ``w.3`` a writer): concurrency is counted per kind too.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

import pytest
from fi_run_testing import base_environ, ninja_binary

if sys.platform == "win32":  # process groups, POSIX signals, /proc, flock(1), sh
    pytest.skip("POSIX shell steps (sh, flock(1), /proc) and process groups", allow_module_level=True)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

# Only keeps a broken fi_run (a deadlock, a lost wake-up) from hanging the test run. Never a speed check.
HANG_TIMEOUT = 180.0

TESTS_DIR = Path(__file__).resolve().parent
CONTENTION_SIM = TESTS_DIR / "contention_sim.py"

# uv#2767, verbatim: what the contention simulator prints when another instance is inside the resource.
UV_2767_MESSAGE = (
    r"error: Could not try lock bin\venv\.lock: The process cannot access the file because another "
    r"process has locked a portion of the file. (os error 33)"
)

# Variables of the test runner's environment that would change what fi_run does or prints.
clean_environ = base_environ  # the lock tests' name for it


# --- the overlap checker


class LogError(AssertionError):
    """The log is not a well-formed enter/exit log."""


@dataclass
class Analysis:
    """What an enter/exit log shows about who was inside the resource together."""

    max_concurrency: int = 0  # most steps inside at once, of any kind
    max_by_kind: dict[str, int] = field(default_factory=dict)  # most steps of one kind inside at once
    violations: list[str] = field(default_factory=list)  # an exclusive-kind step was not alone
    entered: list[str] = field(default_factory=list)  # tags, in the order they entered
    unfinished: list[str] = field(default_factory=list)  # entered, never exited

    def first_index(self, tag: str) -> int:
        return self.entered.index(tag)


def kind_of(tag: str) -> str:
    return tag.partition(".")[0]


def analyse(text: str, exclusive_kinds: Iterable[str] = ()) -> Analysis:
    """Sweep an enter/exit log in file order: concurrency overall and per kind, and violations.

    A step of a kind in ``exclusive_kinds`` must be alone inside: every moment it shares with another
    step is a violation (reported once per entering step, naming who was inside).
    """
    exclusive = set(exclusive_kinds)
    inside: dict[str, int] = {}  # tag -> its enter stamp
    seen: set[str] = set()
    result = Analysis()
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 3 or parts[0] not in ("enter", "exit") or not parts[2].isdigit():
            raise LogError(f"line {number} is not 'enter|exit TAG NS': {line!r}")
        event, tag, stamp = parts[0], parts[1], int(parts[2])
        if event == "enter":
            if tag in seen:
                raise LogError(f"line {number}: {tag} entered twice")
            seen.add(tag)
            others = sorted(inside)
            if others and (kind_of(tag) in exclusive or any(kind_of(o) in exclusive for o in others)):
                result.violations.append(f"{tag} entered while {', '.join(others)} inside")
            inside[tag] = stamp
            result.entered.append(tag)
            result.max_concurrency = max(result.max_concurrency, len(inside))
            kind = kind_of(tag)
            same = sum(1 for other in inside if kind_of(other) == kind)
            result.max_by_kind[kind] = max(result.max_by_kind.get(kind, 0), same)
        else:
            if tag not in inside:
                raise LogError(f"line {number}: {tag} exits but is not inside")
            if stamp < inside.pop(tag):
                raise LogError(f"line {number}: {tag} exits before it entered (clock went backwards?)")
    result.unfinished = sorted(inside)
    return result


def read_log(path: Path) -> str:
    return path.read_text(encoding="utf-8") if path.exists() else ""


# --- step programs: cheap shell scripts (a Python start-up per step is expensive on two cores)

# step.sh LOG TAG HOLD: be inside the resource for HOLD seconds, recording enter and exit.
STEP_SH = """\
echo "enter $2 $(date +%s%N)" >> "$1"
sleep "$3"
echo "exit $2 $(date +%s%N)" >> "$1"
"""

# hold.sh LOG TAG DIR: record enter, announce readiness with this shell's pid in DIR/ready (written
# atomically), hold until DIR/release exists, record exit. The holder of the lock in the tests that need
# one to stay held for as long as the test decides.
HOLD_SH = """\
echo "enter $2 $(date +%s%N)" >> "$1"
echo $$ > "$3/ready.tmp" && mv "$3/ready.tmp" "$3/ready"
while [ ! -e "$3/release" ]; do sleep 0.02; done
echo "exit $2 $(date +%s%N)" >> "$1"
"""


@dataclass(frozen=True)
class Scripts:
    step: Path
    hold: Path


def write_scripts(directory: Path) -> Scripts:
    directory.mkdir(parents=True, exist_ok=True)
    step, hold = directory / "step.sh", directory / "hold.sh"
    step.write_text(STEP_SH, encoding="utf-8")
    hold.write_text(HOLD_SH, encoding="utf-8")
    return Scripts(step, hold)


# --- programs


def git_binary() -> str:
    found = shutil.which("git")
    assert found is not None, "git is not on PATH: these tests need the real git"
    return found


def fi_run_argv() -> list[str]:
    return [sys.executable, "-m", "fi_run"]


def git_environ(home: Path) -> dict[str, str]:
    """git isolated from this machine's configuration."""
    return clean_environ({"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, "HOME": str(home)})


def shell_join(argv: Sequence[str | os.PathLike[str]]) -> str:
    return shlex.join(os.fspath(a) for a in argv)


def ninja_escape(text: str) -> str:
    """Escape text for a ninja variable binding: '$' is ninja's only special character there."""
    assert "\n" not in text
    return text.replace("$", "$$")


def ninja_command(argv: Sequence[str | os.PathLike[str]]) -> str:
    """argv as the value of a ninja `command` (ninja runs it with /bin/sh -c)."""
    return ninja_escape(shell_join(argv))


def write_ninja(build_dir: Path, edges: Iterable[tuple[str, Sequence[str | os.PathLike[str]]]]) -> int:
    """build.ninja with one edge per (output, argv); returns the number of edges."""
    build_dir.mkdir(parents=True, exist_ok=True)
    lines = ["rule run", "  command = $cmd", "  description = $out", ""]
    count = 0
    for output, argv in edges:
        lines += [f"build {output}: run", f"  cmd = {ninja_command(argv)}", ""]
        count += 1
    (build_dir / "build.ninja").write_text("\n".join(lines), encoding="utf-8")
    return count


@dataclass(frozen=True)
class Finished:
    status: int
    out: str
    err: str
    seconds: float  # wall time: reported, never asserted


# --- processes: every child gets a session of its own, so that whatever it started can be found again
# (fi_run puts its command in another process group, but never in another session) and killed when a test
# fails or hangs.


def session_members(sid: int) -> list[int]:
    """Live processes in session ``sid`` (Linux /proc)."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        # fields[0] is the state, fields[3] the session id
        if fields and fields[0] not in ("Z", "X") and int(fields[3]) == sid:
            members.append(int(entry))
    return members


def kill_session(sid: int) -> None:
    for pid in session_members(sid):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Poll until ``predicate`` holds; fail naming ``what`` after ``timeout`` (a hang guard only)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.01)


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    cwd: Path | str,
    env: Mapping[str, str] | None = None,
    timeout: float = HANG_TIMEOUT,
    merge_stderr: bool = False,
) -> Finished:
    """Run a program to its end in a session of its own; on a hang kill everything it started and fail."""
    started = time.monotonic()
    proc = subprocess.Popen(
        [os.fspath(a) for a in argv],
        cwd=cwd,
        env=dict(env) if env is not None else clean_environ(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_session(proc.pid)
        out, err = proc.communicate()
        raise AssertionError(
            f"{shell_join(argv)} hung for {timeout:g} s; output:\n{out.decode(errors='replace')[-4000:]}"
        ) from None
    finally:
        kill_session(proc.pid)  # nothing a finished run started may outlive it
    return Finished(
        proc.returncode,
        out.decode("utf-8", errors="replace"),
        (err or b"").decode("utf-8", errors="replace"),
        time.monotonic() - started,
    )


def run_fi_run(
    args: Sequence[str | os.PathLike[str]],
    *,
    cwd: Path | str,
    env: Mapping[str, str | None] | None = None,
    timeout: float = HANG_TIMEOUT,
) -> Finished:
    return run([*fi_run_argv(), *args], cwd=cwd, env=clean_environ(env), timeout=timeout)


def run_ninja(build_dir: Path, *args: str, env: Mapping[str, str | None] | None = None) -> Finished:
    """The real ninja in ``build_dir``, stdout and stderr together as a person sees them."""
    overrides: dict[str, str | None] = {"TERM": "dumb", "NINJA_STATUS": "[%f/%t] "}
    overrides.update(env or {})
    return run([ninja_binary(), *args], cwd=build_dir, env=clean_environ(overrides), merge_stderr=True)


class Procs:
    """Background processes of one test, each in its own session; all killed (with what they started)
    when the test ends, however it ends."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[bytes]] = []

    def start(
        self,
        argv: Sequence[str | os.PathLike[str]],
        *,
        cwd: Path | str,
        env: Mapping[str, str | None] | None = None,
        stdout: int | IO[bytes] | None = subprocess.DEVNULL,
        stderr: int | IO[bytes] | None = subprocess.DEVNULL,
    ) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [os.fspath(a) for a in argv],
            cwd=cwd,
            env=clean_environ(env),
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )
        self.started.append(proc)
        return proc

    def start_fi_run(
        self,
        args: Sequence[str | os.PathLike[str]],
        *,
        cwd: Path | str,
        env: Mapping[str, str | None] | None = None,
        stdout: int | IO[bytes] | None = subprocess.DEVNULL,
        stderr: int | IO[bytes] | None = subprocess.DEVNULL,
    ) -> subprocess.Popen[bytes]:
        return self.start([*fi_run_argv(), *args], cwd=cwd, env=env, stdout=stdout, stderr=stderr)

    def close(self) -> None:
        for proc in self.started:
            kill_session(proc.pid)
            with contextlib.suppress(OSError):
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)

    def __enter__(self) -> Procs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def file_contains(path: Path, text: str) -> Callable[[], bool]:
    """A predicate for wait_until: does ``path`` exist and contain ``text``?"""

    def check() -> bool:
        try:
            return text in path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return False

    return check


def finish(proc: subprocess.Popen[bytes], timeout: float = HANG_TIMEOUT) -> int:
    """Wait for a background process; fail (it is killed at teardown) if it hangs."""
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"pid {proc.pid} ({proc.args!r}) did not finish in {timeout:g} s") from None


# --- holders: a fi_run that holds a resource until the test releases it


@dataclass
class Holder:
    """A fi_run holding a lock around hold.sh; ``child_pid`` is hold.sh's pid, read from its ready file."""

    proc: subprocess.Popen[bytes]
    control: Path  # hold.sh's DIR: ready and release files
    command: list[str]  # the command fi_run holds the lock for
    child_pid: int = 0

    def wait_ready(self) -> int:
        ready = self.control / "ready"

        def is_ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"the holder ended (status {self.proc.returncode}) before holding")
            return ready.exists()

        wait_until(is_ready, "the holder to hold its lock")
        self.child_pid = int(ready.read_text().strip())
        return self.child_pid

    def release(self) -> None:
        (self.control / "release").touch()


def start_holder(
    procs: Procs,
    scripts: Scripts,
    lock_args: Sequence[str | os.PathLike[str]],
    *,
    log: Path,
    tag: str,
    control: Path,
    cwd: Path,
    env: Mapping[str, str | None] | None = None,
) -> Holder:
    """Start ``fi_run <lock_args> -- sh hold.sh LOG TAG CONTROL`` and wait until it holds."""
    control.mkdir(parents=True, exist_ok=True)
    command = ["sh", os.fspath(scripts.hold), os.fspath(log), tag, os.fspath(control)]
    proc = procs.start_fi_run([*lock_args, "--", *command], cwd=cwd, env=env)
    holder = Holder(proc, control, command)
    holder.wait_ready()
    return holder


# --- in-process runs


@contextlib.contextmanager
def redirected_output() -> Iterator[Callable[[], str]]:
    """Point descriptors 1 and 2 at one temporary file (never a terminal, so fi_run captures a child's
    output even under `pytest -s`); yields a function returning what was written so far."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    saved_streams = sys.stdout, sys.stderr
    with tempfile.TemporaryFile() as sink:
        try:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            # fi_run's own lines go through sys.stderr, which pytest replaces with its own capture object:
            # point the Python streams at the redirected descriptors too.
            sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
            sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115

            def text() -> str:
                sys.stdout.flush()
                sys.stderr.flush()
                return os.pread(sink.fileno(), os.fstat(sink.fileno()).st_size, 0).decode(errors="replace")

            yield text
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            sys.stdout, sys.stderr = saved_streams
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def open_paths_under(directory: Path) -> list[str]:
    """Files under ``directory`` this process has open (Linux /proc/self/fd)."""
    prefix = os.fspath(directory.resolve()) + os.sep
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(prefix):
            found.append(target)
    return found


def tree_listing(root: Path) -> list[tuple[str, int, int]]:
    """Every entry under ``root`` with its size and mtime: to prove nothing was written there."""
    listing = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            path = Path(dirpath, name)
            st = path.lstat()
            listing.append((os.fspath(path.relative_to(root)), st.st_size, st.st_mtime_ns))
    return sorted(listing)


def dedent(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")
