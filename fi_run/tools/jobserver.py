"""``fi-run jobserver [-j N] -- COMMAND``: run a build under a GNU make style jobserver that steps lend to.

Ninja >= 1.13, GNU make >= 4.4 and cargo take one token from a jobserver for every job beyond their first
and give it back when the job ends. This tool creates one with N-1 tokens (a fifo in a private temporary
directory on POSIX, a named semaphore on Windows), puts ``-jN --jobserver-auth=...`` into MAKEFLAGS, runs the
command, and when it has exited counts the tokens: every one handed out must have come back. It also sets
FI_RUN_JOBSERVER (contention/lending.MARKER) to the same ``--jobserver-auth`` value: the mark that says this
jobserver is fi_run's and that the command does use it (a ninja given -j would not), so a step's
``--lend-slot auto`` knows it may lend (contention/lending.py, the step's side). See docs/jobserver.md.

``--keep-free-memory SIZE`` (issue 19) puts a memory floor under the build (``MemoryFloor``): while the
memory available to the build (cgroup-aware, memory.py) is below SIZE, the server takes the tokens out of
the pool itself, so that no job starts beyond those running; it puts them back one at a time once memory
is back. Steps nobody wrapped then wait for memory instead of being OOM-killed.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import TYPE_CHECKING

from ..contention.lending import MARKER, TOKEN
from ..errors import EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND, EXIT_SIGNAL_BASE, EXIT_USAGE, UsageError
from ..memory import POLL_SECONDS, format_size
from .scaffold import exit_statuses, parse, tool_parser

if sys.platform == "win32":  # pragma: no cover - Windows only
    from ..contention.lending import (
        _semaphore_close,
        _semaphore_create,
        _semaphore_give,
        _semaphore_take,
    )
else:
    from ..contention.lending import _fifo_give, _fifo_open, _fifo_take

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Sequence
    from typing import Final, Protocol

    from ..messages import Reporter

    class _Server(Protocol):
        auth: str
        directory: str  # private to this jobserver ("" where it has none)

        def count(self) -> int: ...
        def take(self, seconds: float) -> bool: ...
        def give(self) -> None: ...
        def close(self) -> None: ...


# The variable the steps find the build's lock coordinator by (contention/coordinated.MARK: one name).
COORDINATOR: Final = "FI_RUN_COORDINATOR"
USAGE: Final = "fi-run jobserver [-j N] [--keep-free-memory SIZE] [--no-coordinator] -- COMMAND [ARG...]"
MAX_JOBS: Final = 4096  # the tokens must fit in the fifo's buffer at once (64 KiB on Linux, 16 KiB on macOS)
DESCRIPTION: Final = """\
Run COMMAND (ninja >= 1.13, GNU make >= 4.4, cargo) under a jobserver of N job slots: N-1 tokens plus the
command's own first slot. MAKEFLAGS gets -jN --jobserver-auth=...; FI_RUN_JOBSERVER marks the jobserver as
fi_run's, so that steps run with --lend-slot auto (the default) lend their slot while they wait for a lock
or back off before a retry. When COMMAND has exited, every token must have come back: a surplus or shortfall
is reported. Give ninja no -j of its own: it would ignore the jobserver.

--keep-free-memory SIZE: while less than SIZE of memory is available (Linux: MemAvailable, and the limit
minus the working set of each limited memory cgroup of the build), hold job tokens back, so that no job
starts beyond those running (the command's first job always runs); give them back one per 0.1 s once
memory is back. Steps that fi_run does not wrap then wait instead of being OOM-killed."""


def available_cpus() -> int:
    """The CPUs this process may run on, as ninja counts them (the affinity mask where there is one)."""
    if sys.platform == "linux":
        try:
            return len(os.sched_getaffinity(0))
        except OSError:
            pass
    return os.cpu_count() or 1


def ninja_default_jobs(cpus: int) -> int:
    """Ninja's own default -j (GuessParallelism in ninja's src/ninja.cc): 2, 3, then CPUs + 2."""
    if cpus <= 1:
        return 2
    if cpus == 2:
        return 3
    return cpus + 2


def is_ninja(program: str) -> bool:
    name = program.replace("\\", "/").rsplit("/", 1)[-1].lower()
    return name.removesuffix(".exe") == "ninja"


# ninja's getopt string is "d:f:j:k:l:nt:vw:C:h": these options take a value.
_NINJA_VALUE_OPTIONS: Final = frozenset("dfjkltwC")


def ninja_jobs_option(args: Sequence[str]) -> str | None:
    """The -j option in ninja's arguments (``-j4``, ``-j 4``, ``-vj4``), as written; None if there is none."""
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--" or not arg.startswith("-") or arg.startswith("--") or arg == "-":
            continue  # a target, or a long option (--version, --verbose, --quiet)
        for position, letter in enumerate(arg[1:], start=1):
            if letter not in _NINJA_VALUE_OPTIONS:
                continue
            rest = arg[position + 1 :]
            if letter == "j":
                return arg if rest or i >= len(args) else f"{arg} {args[i]}"
            if letter == "t":
                return None  # -t TOOL: the rest are the tool's arguments
            if not rest:
                i += 1  # the value is the next argument
            break
    return None


def parse_version(text: str) -> tuple[int, ...]:
    """'1.13.2.git.kitware.jobserver-pipe-1' -> (1, 13, 2); () if it does not start with numbers."""
    numbers = []
    for part in text.strip().split("."):
        if not part.isdigit():
            break
        numbers.append(int(part))
    return tuple(numbers)


def makeflags_with(existing: str, jobs: int, auth: str) -> str:
    """MAKEFLAGS for the command: the flags already there, then ``-jN --jobserver-auth=AUTH``.

    An earlier -j or jobserver option (an outer make's) is dropped: it describes another jobserver, and
    the last one would win anyway for ninja and make; tools that take the first would pick the wrong one.
    GNU make keeps command-line variables after a ``--`` word (``-k -- CC=clang``) and reads no option
    there, so ours go before it (issue 22: appended after it, make would have run serially).
    """
    kept = [
        word
        for word in existing.split()
        if not (
            word.startswith(("--jobserver-auth=", "--jobserver-fds="))
            or (word.startswith("-j") and word[2:].isdigit())
        )
    ]
    ours = [f"-j{jobs}", f"--jobserver-auth={auth}"]
    if "--" in kept:
        split = kept.index("--")
        return " ".join([*kept[:split], *ours, *kept[split:]])
    return " ".join([*kept, *ours])


def _parser() -> argparse.ArgumentParser:
    cpus = available_cpus()
    parser = tool_parser(
        "jobserver",
        DESCRIPTION,
        epilog=exit_statuses(EXIT_USAGE, EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND, EXIT_SIGNAL_BASE)
        + " See docs/jobserver.md.",
        usage=USAGE,
    )
    parser.add_argument(
        "-j",
        "--jobs",
        metavar="N",
        help=f"job slots, 1 to {MAX_JOBS} (default: ninja's own default, {ninja_default_jobs(cpus)} here)",
    )
    parser.add_argument(
        "--keep-free-memory",
        metavar="SIZE",
        help="hold job tokens back while less than SIZE of memory is available (512M, 2G; 0: off)",
    )
    parser.add_argument(
        "--no-coordinator",
        action="store_true",
        help="do not coordinate the steps' locks here: every locked step takes its own through the lock "
        "directory, as outside a jobserver (for comparisons; Windows never has a coordinator)",
    )
    return parser


class Options:
    """What fi-run jobserver was asked: parsed once (no argparse Namespace beyond parse_args)."""

    __slots__ = ("command", "coordinator", "jobs", "keep_free")

    def __init__(
        self, jobs: int | None, command: list[str], keep_free: int = 0, *, coordinator: bool = True
    ) -> None:
        self.jobs = jobs  # None: ninja's own default
        self.command = command
        self.keep_free = keep_free  # bytes; 0: no memory floor
        self.coordinator = coordinator  # run the steps' lock coordinator (POSIX)


def parse_args(argv: Sequence[str]) -> Options | None:
    """The options; None after --help (printed). Raises UsageError."""
    args = list(argv)
    if "--" not in args and not {"-h", "--help"} & set(args):
        raise UsageError(f"jobserver: missing '--' before the command (usage: {USAGE})")
    split = args.index("--") if "--" in args else len(args)
    options, command = args[:split], args[split + 1 :]
    parsed = parse(_parser(), options)
    if parsed is None:
        return None
    if not command or not command[0]:
        raise UsageError(f"jobserver: no command after '--' (usage: {USAGE})")
    jobs: int | None = None
    if parsed.jobs is not None:
        text = parsed.jobs
        try:
            jobs = int(text)
        except ValueError:
            jobs = 0
        if not 1 <= jobs <= MAX_JOBS:
            raise UsageError(f"jobserver: -j expects a whole number from 1 to {MAX_JOBS}, got {text!r}")
    keep_free = 0
    if parsed.keep_free_memory is not None:
        from ..memory import parse_size

        keep_free = parse_size("jobserver: --keep-free-memory", parsed.keep_free_memory)
    return Options(jobs, command, keep_free, coordinator=not parsed.no_coordinator)


if sys.platform != "win32":

    class _FifoServer:  # POSIX only
        """N-1 tokens in a fifo in a private (0700) temporary directory; removed by close()."""

        def __init__(self, tokens: int) -> None:
            import tempfile

            try:
                self.directory = tempfile.mkdtemp(prefix="fi_run-jobserver-")
            except OSError as exc:
                raise UsageError(f"jobserver: cannot create a temporary directory (TMPDIR): {exc}") from None
            self.path = os.path.join(self.directory, "fifo")
            self.fd = -1
            try:
                if any(c.isspace() for c in self.path):  # MAKEFLAGS is split at whitespace
                    raise UsageError(
                        f"jobserver: the temporary directory {self.directory!r} has a space in it; "
                        "set TMPDIR to one without"
                    )
                os.mkfifo(self.path, 0o600)
                self.fd = _fifo_open(self.path)
                written = os.write(self.fd, TOKEN * tokens) if tokens else 0
                if written != tokens:
                    raise UsageError(f"jobserver: the fifo holds only {written} tokens; give a smaller -j")
            except OSError as exc:
                self.close()
                raise UsageError(f"jobserver: cannot create the fifo {self.path!r}: {exc}") from None
            except BaseException:
                self.close()
                raise
            self.auth = "fifo:" + self.path

        def count(self) -> int:
            """Take every token there is and say how many."""
            count = 0
            while True:
                try:
                    data = os.read(self.fd, 4096)
                except BlockingIOError:
                    return count
                if not data:
                    return count
                count += len(data)

        def take(self, seconds: float) -> bool:
            """Take one token, waiting at most ``seconds`` for one (0: only if the pool has one now)."""
            return _fifo_take(self.fd, seconds)

        def give(self) -> None:
            _fifo_give(self.fd)

        def close(self) -> None:
            if self.fd >= 0:
                os.close(self.fd)
                self.fd = -1
            for remove, path in ((os.unlink, self.path), (os.rmdir, self.directory)):
                try:
                    remove(path)
                except OSError:
                    pass


if sys.platform == "win32":  # pragma: no cover - Windows only

    class _SemaphoreServer:
        """N-1 tokens in a named semaphore, which Windows removes with its last handle."""

        def __init__(self, tokens: int) -> None:
            self.directory = ""
            self.auth = f"fi_run_jobserver_{os.getpid()}_{os.urandom(4).hex()}"
            try:
                self.handle = _semaphore_create(self.auth, tokens)
            except OSError as exc:
                raise UsageError(f"jobserver: cannot create the semaphore {self.auth!r}: {exc}") from None

        def count(self) -> int:
            count = 0
            while _semaphore_take(self.handle, 0):
                count += 1
            return count

        def take(self, seconds: float) -> bool:
            return _semaphore_take(self.handle, seconds)

        def give(self) -> None:
            _semaphore_give(self.handle)

        def close(self) -> None:
            _semaphore_close(self.handle)


def _create_server(tokens: int) -> _Server:
    if sys.platform == "win32":  # pragma: no cover - Windows only
        return _SemaphoreServer(tokens)
    else:  # noqa: RET505 - mypy skips a platform's branch only in an if/else
        return _FifoServer(tokens)


def _ninja_version(executable: str) -> tuple[int, ...]:
    """``ninja --version`` as numbers; () if it cannot be told."""
    import subprocess

    try:
        done = subprocess.run(
            [executable, "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return ()
    return parse_version(done.stdout) if done.returncode == 0 else ()


def accounting_message(tokens: int, returned: int, *, windows: bool) -> str | None:
    """What the server says when the command has exited and ``returned`` of ``tokens`` tokens are back."""
    if returned == tokens:
        return None
    if returned < tokens:
        missing = tokens - returned
        return (
            f"jobserver: {missing} of {tokens} tokens did not come back "
            f"({'a client' if missing == 1 else 'clients'} of the jobserver ended without returning them)"
        )
    extra = returned - tokens
    # Killed without a chance to take its token back: SIGKILL on POSIX; TerminateProcess (`taskkill /F`,
    # Task Manager) on Windows, where the same surplus has no POSIX signal's name (issue 22).
    killed = "killed (TerminateProcess, taskkill /F)" if windows else "killed (SIGKILL)"
    who = (
        f"a step {killed} while lending its job slot"
        if extra == 1
        else f"steps {killed} while lending their job slots"
    )
    return (
        f"jobserver: {extra} token{'s' if extra > 1 else ''} more than were handed out came back: leaked by "
        f"{who}, so the build could run up to {extra} job{'s' if extra > 1 else ''} beyond -j"
    )


class MemoryFloor:
    """--keep-free-memory: the server holds job tokens back while available memory is below the floor.

    It looks at memory every POLL_SECONDS, in a thread of its own (the main thread waits for the command).
    Below the floor it takes every token the pool has, and between two looks it waits on the pool and takes
    each token the moment one comes back: a job that ends hands its token to the pool, and ninja looks for
    one right after, so a token must be caught at once or ninja starts the next job with it (it mostly is:
    the server is woken by the write; ninja first records the job that ended). No job then starts beyond
    those running, and the running ones end and free their memory. At or above the floor it puts one token
    back per look, so that jobs start again one at a time, each showing in the memory figures before the
    next one starts, rather than all at once into the memory that just came back. It starts that way too:
    every token is held at first and handed out one per look. The command's own first job takes no token
    and always runs. ``stop`` says how many are still held, which the server's accounting counts as
    returned.
    """

    def __init__(self, server: _Server, floor: int, available: Callable[[], int | None]) -> None:
        self.server = server
        self.floor = floor
        self.available = available
        self.withheld = 0
        self.looks = 0
        self.low = 0  # looks that found less than the floor
        self.most = 0  # the most tokens held back at once while memory was low
        self.short = False  # the last look found less than the floor
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _took(self) -> None:
        self.withheld += 1
        if self.short:
            self.most = max(self.most, self.withheld)

    def take_all(self) -> None:
        while self.server.take(0):
            self._took()

    def look(self) -> None:
        """One look at memory, and the tokens moved for it."""
        now = self.available()
        self.looks += 1
        self.short = now is not None and now < self.floor
        if self.short:
            self.low += 1
            self.most = max(self.most, self.withheld)
            self.take_all()
        elif self.withheld:
            self.server.give()
            self.withheld -= 1

    def start(self) -> None:
        """Before the command starts: hold every token, then hand them out as memory allows."""
        self.take_all()
        self.look()
        self._thread = threading.Thread(target=self._run, name="fi_run memory floor", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        next_look = time.monotonic() + POLL_SECONDS
        try:
            while not self._stop.is_set():
                left = next_look - time.monotonic()
                if left <= 0:
                    self.look()
                    next_look = time.monotonic() + POLL_SECONDS
                elif self.short:
                    if self.server.take(left):  # a token coming back: caught before ninja reuses it
                        self._took()
                else:
                    self._stop.wait(left)
        except OSError:  # the fifo went away under it (the server is closing): nothing left to hold
            pass

    def stop(self) -> int:
        """Stop looking; the tokens still held back (they count as returned)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        return self.withheld

    def summary(self) -> str | None:
        if not self.low:
            return None
        return (
            f"jobserver: less than --keep-free-memory {format_size(self.floor)} was available in {self.low} "
            f"of {self.looks} looks (every {POLL_SECONDS:g} s); up to {self.most} job "
            f"token{'s were' if self.most != 1 else ' was'} held back"
        )


def memory_floor(server: _Server, floor: int, tokens: int, reporter: Reporter) -> MemoryFloor | None:
    """The floor for --keep-free-memory FLOOR, or None (0, no tokens, or memory that cannot be read)."""
    if floor <= 0 or tokens <= 0:
        return None
    from ..memory import MemoryProbe, memory_limit

    probe = MemoryProbe()
    if probe.available() is None:
        reporter.warning(
            "jobserver: --keep-free-memory: the memory available cannot be read here (it needs Linux's "
            "/proc/meminfo): no job token is held back"
        )
        return None
    limit = memory_limit()
    if limit is not None and floor >= limit.size:
        reporter.warning(
            f"jobserver: --keep-free-memory {format_size(floor)} is not less than the memory there is "
            f"({format_size(limit.size)}, {limit.source}): the build runs one job at a time"
        )
    return MemoryFloor(server, floor, probe.available)


def main(argv: Sequence[str]) -> int:
    from ..messages import Reporter
    from ..step.attempts import platform_runner
    from ..step.environment import find_executable
    from ..step.interrupts import Interrupted, Interrupts, exit_status_for, signal_name

    options = parse_args(argv)
    if options is None:
        return 0  # --help, printed
    jobs, command = options.jobs, options.command
    if jobs is None:
        jobs = ninja_default_jobs(available_cpus())
    reporter = Reporter()
    windows = sys.platform == "win32"
    env = dict(os.environ)
    executable = find_executable(command[0], env, cwd=os.getcwd(), windows=windows)
    marked = True
    if is_ninja(command[0]):
        option = ninja_jobs_option(command[1:])
        if option is not None:
            raise UsageError(
                f"jobserver: ninja ignores a jobserver when it is given {option!r}; give the count to "
                f"fi-run jobserver instead: fi-run jobserver -j N -- ninja ..."
            )
        version = _ninja_version(executable)
        if version and version < (1, 13):
            marked = False  # the steps must not lend into a jobserver nobody reads
            reporter.warning(
                f"jobserver: ninja {'.'.join(map(str, version))} cannot use a jobserver (1.13 can): it runs "
                "its own default -j and the steps do not lend their slots; "
                "run ninja -j N without fi-run jobserver"
            )
    tokens = jobs - 1
    status = 0
    floor: MemoryFloor | None = None
    held = 0
    with Interrupts() as interrupts:
        server = _create_server(tokens)
        coordinator = None
        try:
            env["MAKEFLAGS"] = makeflags_with(env.get("MAKEFLAGS", ""), jobs, server.auth)
            if marked:
                env[MARKER] = server.auth
            else:
                env.pop(MARKER, None)
            env.pop(COORDINATOR, None)  # an outer build's is not this build's
            if options.coordinator and sys.platform != "win32":
                from ..contention import coordinator as coordinating

                # The coordinator lends its waiting steps' slots into this pool itself (coordinator.py),
                # unless nothing reads the pool (an old ninja: `marked` is False).
                pool = server if marked and isinstance(server, _FifoServer) else None
                coordinator = coordinating.start(server.directory, reporter, jobs, pool)
                if coordinator is not None:
                    env[COORDINATOR] = coordinator.path
            floor = memory_floor(server, options.keep_free, tokens, reporter)
            if floor is not None:
                floor.start()
            try:
                interrupts.idle()
                status = platform_runner()(
                    executable,
                    tuple(command),
                    env=env,
                    cwd=None,
                    stdout=None,
                    stderr=None,
                    timeout=None,
                    interrupts=interrupts,
                ).status
            except Interrupted:
                pass
            finally:
                if floor is not None:
                    held = floor.stop()
            # The coordinator first: its thread takes tokens back; what it lent and never took back is in
            # the pool and is not the command's to return.
            lent = 0 if coordinator is None else coordinator.stop()
            returned = server.count() + held - lent
        finally:
            if floor is not None:
                floor.stop()
            if coordinator is not None:
                coordinator.stop()
            server.close()
    summary = None if floor is None else floor.summary()
    if summary is not None:
        reporter.info(summary)
    message = accounting_message(tokens, returned, windows=windows)
    if message is not None:
        reporter.warning(message)
    if interrupts.signum is not None:
        reporter.error(f"jobserver: interrupted by {signal_name(interrupts.signum)}")
        return exit_status_for(interrupts.signum)
    return status
