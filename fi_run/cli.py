"""Command line: ``fi_run [OPTIONS] -- COMMAND [ARG...]``, parsed once into a StepSpec; ``main(argv) -> int``.

The parser is a small table-driven one rather than argparse: argparse costs about as much to import as
Python takes to start, and fi_run runs once per build step. It also lets every bad invocation end in the
one line fi_run promises (``fi_run: --env expects NAME=VALUE, got 'FOO'``) instead of argparse's usage
block. argparse is still used, lazily, for what it does best: formatting --help from the same table.

Each option is one ``Option`` record: its flags, its environment default, and the converter that turns its
text into the value the StepSpec holds. The docs' option table is checked against ``OPTIONS`` by a test.
"""

from __future__ import annotations

import os
import sys

from .errors import EXIT_INTERRUPTED, EXIT_SOFTWARE, FiRunError, UsageError
from .messages import NORMAL, QUIET, VERBOSE, Reporter
from .records import DEFAULT_RETRIES, LEND_POLICIES

TYPE_CHECKING = False  # not typing's: saves importing typing (~6 ms) per unlocked step (docs/performance.md)
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping, Sequence
    from typing import Final

    from .records import EnvOp, LockRequest, StepSpec

USAGE: Final = "fi_run [OPTIONS] -- COMMAND [ARG...]"


# The longest --timeout / --lock-timeout: what setitimer accepts everywhere (BSD and macOS refuse more than
# 10**8 s; Linux overflows at 1e10), about three years. Checked while parsing, before anything is spawned:
# an error after the spawn would leave the command running without fi_run.
MAX_SECONDS: Final = 100_000_000


def _seconds(where: str, text: str) -> float | None:
    try:
        # float() and int() accept "1_0" as 10 (Python literal syntax); a mistyped number is refused.
        value = -1.0 if "_" in text else float(text)
    except ValueError:
        value = -1.0
    if not (value >= 0 and value != float("inf")):  # also rejects nan
        raise UsageError(f"{where} expects seconds (a number >= 0), got {text!r}")
    if value > MAX_SECONDS:
        raise UsageError(f"{where} expects at most {MAX_SECONDS:g} seconds (0: no limit), got {text!r}")
    return value or None  # 0 means no limit, so a flag can switch off an environment default


def _whole(where: str, text: str, minimum: int = 0) -> int:
    try:
        value = minimum - 1 if "_" in text else int(text.strip())
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise UsageError(f"{where} expects a whole number >= {minimum}, got {text!r}")
    return value


def _boolean(where: str, text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("", "0", "false", "no", "off"):
        return False
    raise UsageError(f"{where} expects 1 or 0 (true/false, yes/no, on/off), got {text!r}")


def _name_value(where: str, text: str, what: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep:
        raise UsageError(f"{where} expects {what}, got {text!r}")
    if not name:
        raise UsageError(f"{where} expects {what} with a non-empty NAME, got {text!r}")
    if "\0" in text:
        raise UsageError(f"{where} value contains a NUL character: {text!r}")
    return name, value


def _path(where: str, text: str) -> str:
    """A path option's text, checked; parse() makes it absolute against the directory fi_run started in."""
    if not text:
        raise UsageError(f"{where} expects a path, got ''")
    if "\0" in text:
        raise UsageError(f"{where} value contains a NUL character: {text!r}")
    return text


def _set_env(where: str, text: str) -> EnvOp:
    from .records import EnvOp

    name, value = _name_value(where, text, "NAME=VALUE")
    return EnvOp("set", name, value)


def _unset_env(where: str, text: str) -> EnvOp:
    from .records import EnvOp

    if not text or "=" in text or "\0" in text:
        raise UsageError(f"{where} expects a variable NAME, got {text!r}")
    return EnvOp("unset", text)


def _prepend_env(where: str, text: str) -> EnvOp:
    from .records import EnvOp

    name, directory = _name_value(where, text, "NAME=DIR")
    if not directory:
        raise UsageError(f"{where} expects NAME=DIR with a non-empty DIR, got {text!r}")
    return EnvOp("prepend", name, directory)


def _venv(where: str, text: str) -> EnvOp:
    from .records import EnvOp

    return EnvOp("venv", _path(where, text))


def _remote(where: str, text: str, *, whole: bool = True) -> None:
    """A redis:// resource (issue 21) is checked here, so that a bad one is exit 2 before anything runs, and
    a password in it is refused without being repeated. ``whole``: ``text`` is the URL alone."""
    if text[:9].lower().startswith(("redis://", "rediss://")):  # lockdir.is_remote, without importing it
        from .contention import redis_url

        if whole:
            redis_url.parse_url(text, where)
        else:
            redis_url.refuse_password(where, text)


def _exclusive(where: str, text: str) -> LockRequest:
    from .records import LockRequest

    if not text:
        raise UsageError(f"{where} expects RESOURCE (a path or a redis:// URL), got ''")
    _remote(where, text)
    return LockRequest(text, "exclusive")


def _shared(where: str, text: str) -> LockRequest:
    from .records import LockRequest

    if not text:
        raise UsageError(f"{where} expects RESOURCE (a path or a redis:// URL), got ''")
    _remote(where, text)
    return LockRequest(text, "shared")


def _semaphore(where: str, text: str) -> LockRequest:
    from .records import LockRequest

    _remote(where, text, whole=False)
    resource, sep, numbers = text.rpartition("=")
    if not sep or not resource:
        raise UsageError(f"{where} expects RESOURCE=N or RESOURCE=N:K, got {text!r}")
    count, colon, weight_text = numbers.partition(":")
    seats = _whole(where, count, 1)
    weight = _whole(where, weight_text, 1) if colon else 1
    if weight > seats:
        raise UsageError(f"{where} asks for {weight} of {seats} seats in {text!r}: K must be at most N")
    _remote(where, resource)
    return LockRequest(resource, "semaphore", seats, weight)


def _regex(where: str, text: str) -> str:
    from .contention.recognizer import check_user_regex

    problem = check_user_regex(text)
    if problem is not None:
        raise UsageError(f"{where} expects a regular expression, got {text!r}: {problem}")
    return text


def _size(where: str, text: str) -> int:
    from .memory import parse_size  # only when a size is given: a step without --mem pays nothing

    return parse_size(where, text)


def _mem(where: str, text: str) -> int:
    size = _size(where, text)
    if size <= 0:
        raise UsageError(f"{where} expects a size above 0, got {text!r}")
    return size


def _lend_slot(where: str, text: str) -> str:
    policy = text.strip().lower()
    if policy not in LEND_POLICIES:
        raise UsageError(f"{where} expects auto, always or never, got {text!r}")
    return policy


class Option:
    """One command-line option: the single source of its flags, help, default and conversion.

    A plain class with slots rather than a frozen record (_record.py): every step builds the whole table,
    and this builds an option about six times faster (about 25 us less per step). Nothing assigns to one.
    """

    __slots__ = ("convert", "env", "field", "flags", "help", "metavar", "path", "repeatable")

    def __init__(
        self,
        flags: tuple[str, ...],
        metavar: str | None,
        help: str,
        *,
        field: str = "",
        env: str = "",
        repeatable: bool = False,
        convert: Callable[[str, str], object] | None = None,
        path: bool = False,
    ) -> None:
        self.flags = flags  # the last one is canonical
        self.metavar = metavar  # None: a switch, which takes no value
        self.help = help
        self.field = field  # the StepSpec field it sets ("" for the actions: --help, --version...)
        self.env = env  # the environment variable that gives its default, if any
        self.repeatable = repeatable  # repeatable options collect their values, in order, into a tuple
        self.convert = convert  # (flag or variable, text) -> value; None: the text itself
        self.path = path  # the converted value is a path, made absolute against the start directory

    @property
    def name(self) -> str:
        return self.flags[-1]

    def __repr__(self) -> str:
        return f"Option({self.name})"


OPTIONS: Final[tuple[Option, ...]] = (
    Option(
        ("--stamp",),
        "FILE",
        "remove FILE before the command starts; write it (atomically, parent directories created) only if "
        "the command succeeds",
        field="stamp",
        convert=_path,
        path=True,
    ),
    Option(
        ("--env",),
        "NAME=VALUE",
        "set NAME in the command's environment (VALUE may be empty or hold '=')",
        field="env_ops",
        repeatable=True,
        convert=_set_env,
    ),
    Option(
        ("--unset",),
        "NAME",
        "remove NAME from the command's environment",
        field="env_ops",
        repeatable=True,
        convert=_unset_env,
    ),
    Option(
        ("--prepend-path",),
        "NAME=DIR",
        "put DIR (made absolute) first on the os.pathsep-separated list NAME (PATH, PYTHONPATH...), "
        "even if unset",
        field="env_ops",
        repeatable=True,
        convert=_prepend_env,
    ),
    Option(
        ("--venv",),
        "DIR",
        "run inside the virtual environment DIR: VIRTUAL_ENV=DIR, DIR/bin (DIR\\Scripts on Windows) first on "
        "PATH, PYTHONHOME removed",
        field="env_ops",
        convert=_venv,
    ),
    Option(
        ("--cwd",),
        "DIR",
        "run the command in DIR (fi_run's own paths stay relative to where it started)",
        field="cwd",
        convert=_path,
        path=True,
    ),
    Option(
        ("--timeout",),
        "SECONDS",
        "stop the command and everything it started after SECONDS, all attempts included (0: no limit); "
        "exit 124",
        field="timeout",
        env="FI_RUN_TIMEOUT",
        convert=_seconds,
    ),
    Option(
        ("--quiet-on-success",),
        None,
        "hold the command's output and show it only if the command fails",
        field="quiet_on_success",
        env="FI_RUN_QUIET_ON_SUCCESS",
    ),
    Option(
        ("--output",),
        "FILE",
        "after success, FILE must exist and be written by this run, or the step fails (exit 65) without a "
        "stamp",
        field="outputs",
        repeatable=True,
        convert=_path,
        path=True,
    ),
    Option(
        ("--lock",),
        "RESOURCE",
        "hold an exclusive lock on RESOURCE (a path, or redis://[user@]host[:port][/db]/NAME for one shared "
        "between machines) while the command runs",
        field="locks",
        repeatable=True,
        convert=_exclusive,
    ),
    Option(
        ("--shared-lock",),
        "RESOURCE",
        "hold a shared lock on RESOURCE: shared holders run together, never with an exclusive one",
        field="locks",
        repeatable=True,
        convert=_shared,
    ),
    Option(
        ("--semaphore",),
        "RESOURCE=N[:K]",
        "RESOURCE has N seats; this step takes K of them (default 1), all at once, first come first served",
        field="locks",
        repeatable=True,
        convert=_semaphore,
    ),
    Option(
        ("--mem",),
        "SIZE",
        "this step's peak memory (1.5G, 700M): it runs when that much of the machine's memory budget is "
        "free, first come first served; a step larger than the whole budget runs alone",
        field="mem",
        convert=_mem,
    ),
    Option(
        ("--mem-limit",),
        "SIZE",
        "the memory budget --mem steps share (default: the cgroup's limit, else the machine's memory, less a "
        "reserve; 0: that default)",
        field="mem_limit",
        env="FI_RUN_MEM_LIMIT",
        convert=_size,
    ),
    Option(
        ("--lock-dir",),
        "DIR",
        "where fi_run keeps its lock files (see docs/reference.md)",
        field="lock_dir",
        env="FI_RUN_LOCK_DIR",
        convert=_path,
        path=True,
    ),
    Option(
        ("--lock-timeout",),
        "SECONDS",
        "give up waiting for the locks after SECONDS (0: wait forever); exit 75",
        field="lock_timeout",
        env="FI_RUN_LOCK_TIMEOUT",
        convert=_seconds,
    ),
    Option(
        ("--lend-slot",),
        "WHEN",
        "give the ninja job slot back to the jobserver while waiting for a lock or backing off: auto (only "
        "to a jobserver of fi-run jobserver's), always, never (see docs/jobserver.md)",
        field="lend_slot",
        env="FI_RUN_LEND_SLOT",
        convert=_lend_slot,
    ),
    Option(
        ("--retries",),
        "N",
        f"retry a failure whose output shows lock contention up to N times (default {DEFAULT_RETRIES}; "
        "0: never)",
        field="retries",
        env="FI_RUN_RETRIES",
        convert=_whole,
    ),
    Option(
        ("--retry-on",),
        "REGEX",
        "also treat output lines matching REGEX as lock contention",
        field="retry_on",
        repeatable=True,
        convert=_regex,
    ),
    Option(("--list-signatures",), None, "list the built-in contention signatures and exit"),
    Option(
        ("--log",),
        "FILE",
        "append one JSON line describing this step (attempts, lock waits, status) to FILE",
        field="log",
        env="FI_RUN_LOG",
        convert=_path,
        path=True,
    ),
    Option(
        ("-v", "--verbose"),
        None,
        "say what fi_run does (the variables it changes, the command, lock and retry timings)",
        field="verbose",
        env="FI_RUN_VERBOSE",
    ),
    Option(("-q", "--quiet"), None, "print only fi_run's errors", field="quiet", env="FI_RUN_QUIET"),
    Option(("--version",), None, "print fi_run's version and exit"),
    Option(("-h", "--help"), None, "show this help and exit"),
)

ACTIONS: Final = {"-h": "help", "--help": "help", "--version": "version", "--list-signatures": "signatures"}


def _flag_table() -> dict[str, Option]:
    return {flag: option for option in OPTIONS for flag in option.flags}


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


def _options_and_command(argv: Sequence[str]) -> tuple[list[str], list[str] | None]:
    options, command = _split_at_separator(argv)
    if any(arg.startswith("@") for arg in options):
        from .step.rspfile import expand_response_files

        table = _flag_table()

        def takes_value(word: str) -> bool:  # '--stamp @out': '@out' is the stamp, not a response file
            option = table.get(word)
            return option is not None and option.metavar is not None

        options, command = _split_at_separator(expand_response_files(argv, takes_value=takes_value))
    return options, command


def _valued_options(words: Sequence[str]) -> Iterator[tuple[str, Option, str]]:
    """Each of fi_run's options that takes a value among ``words``, as (flag, option, value): ``--flag=value``
    or ``--flag value``, as parse() reads them. Other words are skipped; a flag without its value ends it."""
    table = _flag_table()
    i = 0
    while i < len(words):
        flag, inline, value = words[i].partition("=")
        i += 1
        option = table.get(flag)
        if option is None or option.metavar is None:
            continue
        if not inline:
            if i >= len(words):
                return
            value = words[i]
            i += 1
        yield flag, option, value


def lock_requests(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> list[LockRequest]:
    """The locks a fi_run command line asks for: its --lock, --shared-lock and --semaphore options before
    '--', read as parse() reads them, without response files or environment defaults. For `fi-run locks`,
    which reads other processes' command lines (interpreter and script words included): words that are not
    fi_run's options, and values that do not parse, are skipped. Given the process's ``environ``, its --mem
    too: the seats of the memory budget it takes, as execute asks for them (--mem-limit, else the
    environment's FI_RUN_MEM_LIMIT, else the budget this process sees: memory.memory_claim)."""
    from .records import LockRequest

    requests: list[LockRequest] = []
    sizes: dict[str, int] = {}  # mem, mem_limit
    for flag, option, value in _valued_options(_split_at_separator(argv)[0]):
        if option.field in ("locks", "mem", "mem_limit") and option.convert is not None:
            try:
                request = option.convert(flag, value)
            except UsageError:
                continue
            if isinstance(request, LockRequest):
                requests.append(request)
            elif isinstance(request, int) and environ is not None:
                sizes.setdefault(option.field, request)
    if "mem" in sizes and environ is not None:
        [limit_option] = [option for option in OPTIONS if option.field == "mem_limit"]
        limit = sizes.get("mem_limit")
        if limit is None and limit_option.env and environ.get(limit_option.env, "") != "":
            try:
                limit = _size(limit_option.env, environ[limit_option.env])
            except UsageError:
                return requests
        from .memory import memory_claim

        try:
            claim = memory_claim(sizes["mem"], limit)
        except UsageError:  # no budget this process can read
            return requests
        requests.append(LockRequest(claim.resource, "semaphore", claim.seats, claim.weight))
    return requests


def requested_action(argv: Sequence[str]) -> str | None:
    """The action asked for before '--' (help, version, signatures), which wins over everything else."""
    if not any(arg in ACTIONS or arg[:1] == "@" for arg in argv):
        return None  # the common case, decided without splitting argv (fi_run runs once per build step)
    options, _command = _options_and_command(argv)
    return next((ACTIONS[arg] for arg in options if arg in ACTIONS), None)


def parse(argv: Sequence[str], environ: Mapping[str, str], cwd: str) -> StepSpec:
    """argv (without the program name) and the environment -> a StepSpec; raises UsageError."""
    from .records import StepSpec

    options, command = _options_and_command(argv)
    table = _flag_table()
    given: dict[str, str] = {}  # single-valued options: canonical flag -> text
    switches: set[str] = set()
    values: dict[str, list[object]] = {}  # StepSpec field -> the values of its options, in order

    def absolute(path: str) -> str:
        return os.path.normpath(os.path.join(cwd, path))

    def convert(option: Option, where: str, text: str) -> object:
        value = option.convert(where, text) if option.convert else text
        return absolute(value) if option.path and isinstance(value, str) else value

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
        option = table[flag]
        if option.metavar is None:
            if has_inline:
                raise UsageError(f"{option.name} takes no value, got {arg!r}")
            switches.add(option.name)
            continue
        if has_inline:
            text = inline
        elif i < len(options):
            text = options[i]
            i += 1
        else:
            raise UsageError(f"{option.name} expects {option.metavar}, but nothing follows it")
        if not option.repeatable:
            if option.name in given:
                raise UsageError(f"{option.name} given twice ({given[option.name]!r} and {text!r})")
            given[option.name] = text
        values.setdefault(option.field, []).append(convert(option, option.name, text))

    if command is None:
        raise UsageError(f"missing '--' before the command (usage: {USAGE})")
    if not command:
        raise UsageError(f"no command after '--' (usage: {USAGE})")
    if not command[0]:
        raise UsageError("the command after '--' is an empty string")

    collected = {option.field for option in OPTIONS if option.repeatable}  # tuple fields, in given order
    fields: dict[str, object] = {}
    for option in OPTIONS:
        if not option.field or option.field in fields:
            continue
        if option.field in collected:
            fields[option.field] = tuple(values.get(option.field, ()))
        elif option.metavar is None:
            fields[option.field] = option.name in switches or (
                bool(option.env) and _boolean(option.env, environ.get(option.env, ""))
            )
        elif option.field in values:
            fields[option.field] = values[option.field][0]
        elif option.env and environ.get(option.env, "") != "":
            fields[option.field] = convert(option, option.env, environ[option.env])
    verbose, quiet = fields.pop("verbose"), fields.pop("quiet")
    if verbose and quiet:
        raise UsageError("--verbose and --quiet contradict each other (check FI_RUN_VERBOSE / FI_RUN_QUIET)")
    fields["verbosity"] = VERBOSE if verbose else QUIET if quiet else NORMAL
    return StepSpec(command=tuple(command), start_dir=cwd, **fields)  # type: ignore[arg-type]


# `fi_run report LOG` / `fi_run trace LOG -o FILE`: tools that read --log files; `fi_run classify FILE`:
# would this output be retried, and why; `fi_run jobserver -- ninja`: a build under fi_run's jobserver
# (docs/jobserver.md). A command named "report" is unaffected: commands always come after '--'. Each tool's
# main(argv) returns a status or raises FiRunError.
# name -> (module whose main(argv) runs it, what it does for --help)
TOOLS: Final = {
    "jobserver": ("fi_run.tools.jobserver", "run a build under a jobserver that steps lend slots to"),
    "classify": ("fi_run.tools.classify", "tell whether a failed step's output would be retried, and why"),
    "report": (
        "fi_run.tools.report",
        "summarize --log files: failures, retries, lock waits and holds per resource",
    ),
    "trace": ("fi_run.tools.trace", "write --log files as a Chrome trace-event JSON file"),
    "locks": ("fi_run.tools.locks", "why is my build stuck: who holds each resource, who waits, in order"),
}


def _collect_from_now_on() -> None:
    """Turn the cyclic garbage collector back on, once everything this run needs is imported.

    entrypoint() starts fi_run with it off. Start-up allocates modules, functions, the option table and the
    spec, none of them garbage, yet the collector walks them over and over while they load: measured here,
    once on a plain step and 25 times (about 2 ms) on a locked one, as filelock and what it imports load.
    Freezing what start-up made takes it out of every later collection, so a collection during a long lock
    wait or a retry looks only at what came after. Only for entrypoint(): a caller of main() in its own
    process (the tests) keeps its collector as it was.
    """
    import gc

    gc.freeze()
    gc.enable()


def _working_directory() -> str:
    """Where fi_run was started: its relative paths are taken from here, so it must still exist."""
    try:
        return os.getcwd()
    except FileNotFoundError:  # `cd x; rmdir ../x; fi-run ...` (issue 22)
        where = os.environ.get("PWD", "")
        named = f" {where!r}" if where else ""
        raise UsageError(
            f"the working directory{named} no longer exists (removed after the build entered it); "
            "run fi_run from a directory that exists"
        ) from None


def _run(args: list[str], reporter: Reporter, *, collector_paused: bool) -> int:
    if args and args[0] in TOOLS:
        import importlib

        tool: Callable[[Sequence[str]], int] = importlib.import_module(TOOLS[args[0]][0]).main
        if collector_paused:
            _collect_from_now_on()
        return tool(args[1:])
    from .step.interrupts import Interrupts

    # Installed before anything else of the step (reading a response file included), kept until its last
    # record is written: a signal at any moment ends the step the one way (exit 128 + N, one line, no
    # stamp, a log record), never as a death by signal without a word (issue 22). Only Python's own
    # start-up and fi_run's first imports come before this.
    with Interrupts() as interrupts:
        action = requested_action(args)
        if action is not None:
            from .helptext import action_text, encodable
            from .messages import write_result

            return write_result(encodable(action_text(action), getattr(sys.stdout, "encoding", None)))
        spec = parse(args, os.environ, _working_directory())
        reporter.verbosity = spec.verbosity
        from .step.execute import execute

        if collector_paused:
            if spec.locks or spec.mem:
                # The lock modules (filelock, the coordinator's client, remote.py) load before the collector.
                from .step.execute import preload_lock_modules

                preload_lock_modules(spec)
            _collect_from_now_on()
        return execute(spec, reporter, interrupts)


def named_stamps(args: Sequence[str], cwd: str | None, *, expand: bool = True) -> list[str]:
    """Every --stamp an invocation names before '--', as far as it can be told from arguments that may not
    parse: a bad value anywhere, or a response file that cannot be read, still leaves the rest readable.

    ``cwd`` None: the working directory is gone, and only absolute stamps can be found. ``expand``: read
    the response files too (never when a signal ended the step: one may be a fifo nobody writes)."""
    options: list[str] | None = None
    if expand:
        try:
            options, _command = _options_and_command(args)
        except FiRunError:
            pass
    if options is None:
        options, _command = _split_at_separator(args)
    found = []
    for _flag, option, value in _valued_options(options):
        known = cwd is not None or os.path.isabs(value)
        if option.field == "stamp" and value and "\0" not in value and known:
            found.append(os.path.normpath(os.path.join(cwd or "", value)))
    return found


def _remove_stamps(args: Sequence[str], exc: BaseException) -> None:
    """A step that fails before it starts still leaves no stamp (issue 22): a stale one from an earlier
    success would say "done" to ninja. The pipeline removes it first thing (step/stamp.prepare); this is
    for failures before the pipeline: a bad option or environment default, an unreadable response file, a
    signal while fi_run starts."""
    from .step.interrupts import Interrupted

    try:
        cwd: str | None = os.getcwd()
    except OSError:  # removed: only absolute stamps can be found
        cwd = None
    expand = not isinstance(exc, (Interrupted, KeyboardInterrupt))
    for path in named_stamps(args, cwd, expand=expand):
        try:
            if not os.path.isdir(path):
                os.unlink(path)
        except OSError:
            pass  # not there (the common case), or not ours to remove: the error line says what went wrong


def main(argv: Sequence[str] | None = None, *, collector_paused: bool = False) -> int:
    """Run fi_run with ``argv`` (default: sys.argv[1:]) and return its exit status.

    The one place where fi_run's errors become exit statuses, for the step and for its tools alike.
    ``collector_paused``: entrypoint() turned the cyclic garbage collector off; turn it back on once this
    run has imported what it needs (_collect_from_now_on).
    """
    reporter = Reporter()
    from .step.capture import reserve_closed

    reserve_closed()  # before anything is opened: see capture.CLOSED
    args = sys.argv[1:] if argv is None else list(argv)
    step = not (args and args[0] in TOOLS)
    try:
        return _run(args, reporter, collector_paused=collector_paused)
    except FiRunError as exc:
        if step:
            _remove_stamps(args, exc)
        reporter.error(exc.message)
        return exc.exit_status
    except KeyboardInterrupt as exc:
        if step:
            _remove_stamps(args, exc)
        return EXIT_INTERRUPTED
    except Exception as exc:
        # A bug in fi_run: one line, never a traceback in the build log (FI_RUN_DEBUG=1 shows it).
        if step:
            _remove_stamps(args, exc)
        if os.environ.get("FI_RUN_DEBUG"):
            raise
        reporter.error(f"internal error: {type(exc).__name__}: {exc} (set FI_RUN_DEBUG=1 for a traceback)")
        return EXIT_SOFTWARE


def os_exit_code(status: int, *, windows: bool) -> int:
    """What to hand os._exit so that the parent sees ``status``.

    Windows exit codes are unsigned 32-bit (0xC000013A, STATUS_CONTROL_C_EXIT, is 3221225786), but os._exit
    takes a C int and raises OverflowError above 2**31 - 1. The same 32 bits as a negative int are the same
    exit code to the parent, so the command's status passes through exactly (ninja reads 0xC000013A as
    "interrupted").
    """
    if windows and status > 0x7FFFFFFF:
        return (status & 0xFFFFFFFF) - (1 << 32)
    return status


def entrypoint() -> None:
    """The console scripts `fi-run` and `fi_run`, `python -m fi_run`, and `python .../__main__.py`.

    Ends with os._exit once the output is flushed: everything fi_run owns (locks, temporary files, the stamp)
    is settled by then, and skipping the interpreter's teardown saves a few ms of CPU per build step, which
    on a busy machine the next holder of a lock just handed over would otherwise have to share.

    Starts with the cyclic garbage collector off, for the same reason: see _collect_from_now_on.
    """
    import gc

    gc.disable()  # python -m fi_run and __main__.py by path have turned it off already, before any import
    status = main(collector_paused=True)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):  # AttributeError: None, closed when Python started
            pass  # a closed or broken pipe (try/except, not contextlib.suppress: saves ~2 ms per step)
    os._exit(os_exit_code(status, windows=sys.platform == "win32"))
