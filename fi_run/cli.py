"""Command line: ``fi_run [OPTIONS] -- COMMAND [ARG...]``, parsed once into a StepSpec; ``main(argv) -> int``.

The parser is a small table-driven one rather than argparse: argparse costs about as much to import as
Python takes to start, and fi_run runs once per build step. It also lets every bad invocation end in the
one line fi_run promises (``fi_run: --env expects NAME=VALUE, got 'FOO'``) instead of argparse's usage
block. argparse is still used, lazily, for what it does best: formatting --help from the same table.
"""

from __future__ import annotations

import os
import sys

from . import __version__
from .errors import EXIT_INTERRUPTED, EXIT_SOFTWARE, FiRunError, UsageError
from .messages import NORMAL, QUIET, VERBOSE, Reporter

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from typing import Final

    from .environment import EnvOp
    from .spec import LockRequest, StepSpec

USAGE: Final = "fi_run [OPTIONS] -- COMMAND [ARG...]"

# (flags, metavar or None for a switch, environment default or "", repeatable, help)
OPTIONS: Final[tuple[tuple[tuple[str, ...], str | None, str, bool, str], ...]] = (
    (
        ("--stamp",),
        "FILE",
        "",
        False,
        "remove FILE before the command starts; write it (atomically, parent directories created) only if "
        "the command succeeds",
    ),
    (
        ("--env",),
        "NAME=VALUE",
        "",
        True,
        "set NAME in the command's environment (VALUE may be empty or hold '=')",
    ),
    (("--unset",), "NAME", "", True, "remove NAME from the command's environment"),
    (
        ("--prepend-path",),
        "NAME=DIR",
        "",
        True,
        "put DIR (made absolute) first on the os.pathsep-separated list NAME (PATH, PYTHONPATH...), "
        "even if unset",
    ),
    (
        ("--venv",),
        "DIR",
        "",
        False,
        "run inside the virtual environment DIR: VIRTUAL_ENV=DIR, DIR/bin (DIR\\Scripts on Windows) first on "
        "PATH, PYTHONHOME removed",
    ),
    (
        ("--cwd",),
        "DIR",
        "",
        False,
        "run the command in DIR (fi_run's own paths stay relative to where it started)",
    ),
    (
        ("--timeout",),
        "SECONDS",
        "FI_RUN_TIMEOUT",
        False,
        "stop the command and everything it started after SECONDS, all attempts included "
        "(0: no limit); exit 124",
    ),
    (
        ("--quiet-on-success",),
        None,
        "FI_RUN_QUIET_ON_SUCCESS",
        False,
        "hold the command's output and show it only if the command fails",
    ),
    (
        ("--output",),
        "FILE",
        "",
        True,
        "after success, FILE must exist and be written by this run, or the step fails (exit 65) "
        "without a stamp",
    ),
    (("--lock",), "RESOURCE", "", True, "hold an exclusive lock on RESOURCE (a path) while the command runs"),
    (
        ("--shared-lock",),
        "RESOURCE",
        "",
        True,
        "hold a shared lock on RESOURCE: shared holders run together, never with an exclusive one",
    ),
    (("--semaphore",), "RESOURCE=N", "", True, "at most N holders of RESOURCE run at once"),
    (("--lock-dir",), "DIR", "FI_RUN_LOCK_DIR", False, "where fi_run keeps its lock files (see README)"),
    (
        ("--lock-timeout",),
        "SECONDS",
        "FI_RUN_LOCK_TIMEOUT",
        False,
        "give up waiting for the locks after SECONDS (0: wait forever); exit 75",
    ),
    (
        ("--retries",),
        "N",
        "FI_RUN_RETRIES",
        False,
        "retry a failure whose output shows lock contention up to N times (default 10; 0: never)",
    ),
    (("--retry-on",), "REGEX", "", True, "also treat output lines matching REGEX as lock contention"),
    (("--list-signatures",), None, "", False, "list the built-in contention signatures and exit"),
    (
        ("--log",),
        "FILE",
        "FI_RUN_LOG",
        False,
        "append one JSON line describing this step (attempts, lock waits, status) to FILE",
    ),
    (
        ("-v", "--verbose"),
        None,
        "FI_RUN_VERBOSE",
        False,
        "say what fi_run does (environment, command, timings)",
    ),
    (("-q", "--quiet"), None, "FI_RUN_QUIET", False, "print only fi_run's errors"),
    (("--version",), None, "", False, "print fi_run's version and exit"),
    (("-h", "--help"), None, "", False, "show this help and exit"),
)

EPILOG: Final = """\
examples:
  fi_run --stamp gen/x.stamp --venv out/venv --lock out/venv -- uv pip install -e ../pkg
  fi_run --env CC=clang --prepend-path PATH=tools/bin --quiet-on-success -- make -C lib
  fi_run --shared-lock out/venv --timeout 600 -- python -m pytest tests
  fi_run @args.rsp -- python gen.py --out gen/x.h

@FILE before '--' reads more fi_run options from FILE, quoted as GN writes response_file_contents
(POSIX shell words; on Windows, Windows command-line rules). Arguments after '--' are the command's and
are passed on exactly as they are, '@' included.

exit status: the command's own; 2 usage error; 65 a declared --output missing; 74 stamp not written;
75 lock timeout; 124 timeout; 126 not executable; 127 not found; 128+N killed by or interrupted by signal N
(130: Ctrl-C)."""

_ACTIONS: Final = {"-h": "help", "--help": "help", "--version": "version", "--list-signatures": "signatures"}


def _flag_table() -> dict[str, tuple[str, str | None, str, bool]]:
    table = {}
    for flags, metavar, env, repeatable, _help in OPTIONS:
        canonical = flags[-1]
        for flag in flags:
            table[flag] = (canonical, metavar, env, repeatable)
    return table


def _seconds(what: str, text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not (value >= 0 and value != float("inf")):  # also rejects nan
        raise UsageError(f"{what} expects seconds (a number >= 0), got {text!r}")
    return value or None  # 0 means no limit, so a flag can switch off an environment default


def _whole(what: str, text: str, minimum: int) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise UsageError(f"{what} expects a whole number >= {minimum}, got {text!r}")
    return value


def _boolean(name: str, text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("", "0", "false", "no", "off"):
        return False
    raise UsageError(f"{name} expects 1 or 0 (true/false, yes/no, on/off), got {text!r}")


def _name_value(flag: str, text: str, what: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep:
        raise UsageError(f"{flag} expects {what}, got {text!r}")
    if not name:
        raise UsageError(f"{flag} expects {what} with a non-empty NAME, got {text!r}")
    if "\0" in text:
        raise UsageError(f"{flag} value contains a NUL character: {text!r}")
    return name, value


def _unknown_option(arg: str, table: Mapping[str, object]) -> UsageError:
    import difflib  # only on this error path

    flag = arg.partition("=")[0]
    # Without the dashes, which every option shares and which would make '--bogus' look like '--lock'.
    bare = {name.lstrip("-"): name for name in table}
    close = difflib.get_close_matches(flag.lstrip("-"), list(bare), n=1, cutoff=0.7)
    hint = f" (did you mean {bare[close[0]]}?)" if close else " (see fi_run --help)"
    return UsageError(f"unknown option {flag!r}{hint}")


def _split_at_separator(argv: Sequence[str]) -> tuple[list[str], list[str] | None]:
    try:
        index = list(argv).index("--")
    except ValueError:
        return list(argv), None
    return list(argv[:index]), list(argv[index + 1 :])


def parse(argv: Sequence[str], environ: Mapping[str, str], cwd: str) -> StepSpec | str:
    """argv (without the program name) -> a StepSpec, or the name of an action: help, version, signatures."""
    from .environment import EnvOp
    from .spec import LockRequest, StepSpec

    options, command = _split_at_separator(argv)
    if any(arg.startswith("@") for arg in options):
        from .rspfile import expand_response_files

        options, command = _split_at_separator(expand_response_files(argv))
    for arg in options:
        if arg in _ACTIONS:
            return _ACTIONS[arg]

    table = _flag_table()
    single: dict[str, str] = {}
    switches: set[str] = set()
    env_ops: list[EnvOp] = []
    locks: list[LockRequest] = []
    outputs: list[str] = []
    retry_on: list[str] = []

    def absolute(path: str) -> str:
        return os.path.normpath(os.path.join(cwd, path))

    i = 0
    while i < len(options):
        arg = options[i]
        i += 1
        if not arg.startswith("-") or arg == "-":
            raise UsageError(
                f"unexpected argument {arg!r} before '--' (the command goes after '--': {USAGE})"
                if command is not None
                else f"missing '--' before the command (usage: {USAGE})"
            )
        flag, has_inline, inline = arg.partition("=")
        if flag not in table:
            raise _unknown_option(arg, table)
        canonical, metavar, _env, repeatable = table[flag]
        if metavar is None:
            if has_inline:
                raise UsageError(f"{canonical} takes no value, got {arg!r}")
            switches.add(canonical)
            continue
        if has_inline:
            value = inline
        elif i < len(options):
            value = options[i]
            i += 1
        else:
            raise UsageError(f"{canonical} expects {metavar}, but nothing follows it")
        if not repeatable:
            if canonical in single:
                raise UsageError(f"{canonical} given twice ({single[canonical]!r} and {value!r})")
            single[canonical] = value
        if canonical == "--env":
            name, val = _name_value(canonical, value, "NAME=VALUE")
            env_ops.append(EnvOp("set", name, val))
        elif canonical == "--unset":
            if not value or "=" in value or "\0" in value:
                raise UsageError(f"--unset expects a variable NAME, got {value!r}")
            env_ops.append(EnvOp("unset", value))
        elif canonical == "--prepend-path":
            name, directory = _name_value(canonical, value, "NAME=DIR")
            if not directory:
                raise UsageError(f"--prepend-path expects NAME=DIR with a non-empty DIR, got {value!r}")
            env_ops.append(EnvOp("prepend", name, directory))
        elif canonical == "--venv":
            if not value:
                raise UsageError("--venv expects DIR, got ''")
            env_ops.append(EnvOp("venv", value))
        elif canonical in ("--lock", "--shared-lock"):
            if not value:
                raise UsageError(f"{canonical} expects RESOURCE (a path), got ''")
            locks.append(LockRequest(value, "exclusive" if canonical == "--lock" else "shared"))
        elif canonical == "--semaphore":
            resource, sep, count = value.rpartition("=")
            if not sep or not resource:
                raise UsageError(f"--semaphore expects RESOURCE=N, got {value!r}")
            locks.append(LockRequest(resource, "semaphore", _whole("--semaphore", count, 1)))
        elif canonical == "--output":
            if not value:
                raise UsageError("--output expects FILE, got ''")
            outputs.append(absolute(value))
        elif canonical == "--retry-on":
            from .signatures import check_user_regex

            problem = check_user_regex(value)
            if problem is not None:
                raise UsageError(f"--retry-on expects a regular expression, got {value!r}: {problem}")
            retry_on.append(value)

    if command is None:
        raise UsageError(f"missing '--' before the command (usage: {USAGE})")
    if not command:
        raise UsageError(f"no command after '--' (usage: {USAGE})")
    if not command[0]:
        raise UsageError("the command after '--' is an empty string")

    def setting(flag: str) -> tuple[str, str] | None:
        """The flag's value, or its environment default: (where it came from, text)."""
        if flag in single:
            return flag, single[flag]
        env_name = table[flag][2]
        if env_name and environ.get(env_name, "") != "":
            return env_name, environ[env_name]
        return None

    def path_setting(flag: str) -> str | None:
        found = setting(flag)
        if found is None:
            return None
        if not found[1]:
            raise UsageError(f"{found[0]} expects a path, got ''")
        return absolute(found[1])

    def switch(flag: str) -> bool:
        if flag in switches:
            return True
        env_name = table[flag][2]
        return bool(env_name) and _boolean(env_name, environ.get(env_name, ""))

    timeout = setting("--timeout")
    lock_timeout = setting("--lock-timeout")
    retries = setting("--retries")
    verbose, quiet = switch("--verbose"), switch("--quiet")
    if verbose and quiet:
        raise UsageError("--verbose and --quiet contradict each other (check FI_RUN_VERBOSE / FI_RUN_QUIET)")
    return StepSpec(
        command=tuple(command),
        start_dir=cwd,
        env_ops=tuple(env_ops),
        cwd=path_setting("--cwd"),
        stamp=path_setting("--stamp"),
        outputs=tuple(outputs),
        timeout=_seconds(*timeout) if timeout else None,
        quiet_on_success=switch("--quiet-on-success"),
        verbosity=VERBOSE if verbose else QUIET if quiet else NORMAL,
        locks=tuple(locks),
        lock_dir=path_setting("--lock-dir"),
        lock_timeout=_seconds(*lock_timeout) if lock_timeout else None,
        retries=_whole(*retries, 0) if retries else 10,
        retry_on=tuple(retry_on),
        log=path_setting("--log"),
    )


def help_text() -> str:
    import argparse

    parser = argparse.ArgumentParser(
        prog="fi_run",
        usage=USAGE,
        description="Run one build step for Ninja or GN: set up its environment, hold per-resource locks, "
        "retry failures caused by lock contention, and write the stamp only on success.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        add_help=False,
    )
    for flags, metavar, env, repeatable, text in OPTIONS:
        extra = []
        if repeatable:
            extra.append("repeatable")
        if env:
            extra.append(f"default from ${env}")
        suffix = f" [{'; '.join(extra)}]" if extra else ""
        if metavar is None:
            parser.add_argument(*flags, action="store_true", help=text + suffix)
        else:
            parser.add_argument(*flags, metavar=metavar, help=text + suffix)
    return parser.format_help()


def signatures_text() -> str:
    from .signatures import BUILTIN

    lines = []
    for sig in BUILTIN:
        where = " (Windows only)" if sig.windows_only else ""
        lines.append(
            f"{sig.family}{where}: {sig.description}\n    e.g. {sig.example}\n    source: {sig.source}"
        )
    return "\n".join(lines) + "\n"


_TOOLS: Final = {"report": "fi_run.report", "trace": "fi_run.trace"}


def main(argv: Sequence[str] | None = None) -> int:
    """Run fi_run with ``argv`` (default: sys.argv[1:]) and return its exit status."""
    reporter = Reporter()
    args = sys.argv[1:] if argv is None else list(argv)
    if args and args[0] in _TOOLS:
        # `fi_run report LOG` / `fi_run trace LOG -o FILE`: tools that read --log files. A command named
        # "report" is unaffected: commands always come after '--'.
        import importlib

        tool: Callable[[Sequence[str]], int] = importlib.import_module(_TOOLS[args[0]]).main
        return tool(args[1:])
    try:
        parsed = parse(args, os.environ, os.getcwd())
        if isinstance(parsed, str):
            text = {
                "help": help_text,
                "version": lambda: f"fi_run {__version__}\n",
                "signatures": signatures_text,
            }
            sys.stdout.write(text[parsed]())
            sys.stdout.flush()
            return 0
        reporter.verbosity = parsed.verbosity
        from .execute import execute

        return execute(parsed, reporter)
    except FiRunError as exc:
        reporter.error(exc.message)
        return exc.exit_status
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:
        # A bug in fi_run: one line, never a traceback in the build log (FI_RUN_DEBUG=1 shows it).
        if os.environ.get("FI_RUN_DEBUG"):
            raise
        reporter.error(f"internal error: {type(exc).__name__}: {exc} (set FI_RUN_DEBUG=1 for a traceback)")
        return EXIT_SOFTWARE


def entrypoint() -> None:
    """The console scripts `fi-run` and `fi_run`, `python -m fi_run`, and `python .../__main__.py`.

    Ends with os._exit once the output is flushed: everything fi_run owns (locks, temporary files, the stamp)
    is settled by then, and skipping the interpreter's teardown saves a few ms of CPU per build step, which
    on a busy machine the next holder of a lock just handed over would otherwise have to share.
    """
    status = main()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass  # a closed or broken pipe: nothing more can be told to anyone
    os._exit(status)
