"""``fi-run locks [--lock-dir DIR] [--redis URL] [--json]``: why is my build stuck? Every resource of a lock
directory, who holds it (pid, command, since when) and who waits for it, in the order they will be served,
from the lock files and from the builds' coordinators alike (issue 18); and, for each --redis resource, what
its server says, every machine's steps with their host names (issue 21).

Also ``python -m fi_run.tools.locks``. The command line only; what it sees is observe/lockview.py.
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__" and not __package__:
    # Run by path: import fi_run from the directory above the package (as report.py does).
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    __package__ = "fi_run.tools"

from ..errors import EXIT_IOERR, EXIT_UNAVAILABLE, EXIT_USAGE, UsageError
from ..messages import write_result
from .scaffold import exit_statuses, parse, safe_stdout, tool_parser

TYPE_CHECKING = False  # not typing's: the whole run is meant to take less than 100 ms (issue 18)
if TYPE_CHECKING:
    from collections.abc import Sequence

# The variable the steps take their --lock-dir default from (cli.OPTIONS; a test keeps the two equal).
LOCK_DIR_VARIABLE = "FI_RUN_LOCK_DIR"


def lock_dir_to_view(given: str | None, environ: dict[str, str] | os._Environ[str], cwd: str) -> str:
    """The lock directory as a step would use it: --lock-dir, else FI_RUN_LOCK_DIR (empty: unset), else the
    default; relative paths from the current directory. Raises UsageError for an empty --lock-dir."""
    if given is not None and not given:
        raise UsageError("locks: --lock-dir expects a path, got '' (see fi_run locks --help)")
    chosen = given or environ.get(LOCK_DIR_VARIABLE) or None
    if chosen is None:
        from ..contention.lockdir import default_lock_dir

        return default_lock_dir(windows=sys.platform == "win32", environ=environ)
    return os.path.normpath(os.path.join(cwd, chosen))


def main(argv: Sequence[str]) -> int:
    """``fi_run locks ARGS``: the exit status; raises UsageError (cli.main reports it)."""
    from ..observe.lockview import COORDINATOR_BOUND, JSON_KEYS

    parser = tool_parser(
        "locks",
        "Why is my build stuck? For every resource in the lock directory: who holds it (pid, lock, since\n"
        "when, command) and who waits for it, numbered in the order they will be served. The builds that\n"
        "fi-run jobserver coordinates show their own steps (their coordinators are asked, for at most\n"
        f"{COORDINATOR_BOUND:g} s). It only looks: it takes no lock and changes nothing. See docs/how-to.md.",
        epilog=exit_statuses(EXIT_USAGE, EXIT_IOERR, EXIT_UNAVAILABLE, first="0")
        + " A lock directory that does not exist yet is not an error: nothing is locked.\n"
        "--json keys:\n" + "\n".join(f"  {key}: {meaning}" for key, meaning in JSON_KEYS.items()),
    )
    parser.add_argument(
        "--lock-dir",
        metavar="DIR",
        help=f"the lock directory to look at (default: ${LOCK_DIR_VARIABLE}, else the steps' default)",
    )
    parser.add_argument(
        "--redis",
        metavar="URL",
        action="append",
        default=[],
        help="also ask the Redis server of this redis:// resource (as the steps name it; =N is ignored) who "
        "holds it and who waits for it, on every machine (repeatable; the password from "
        "FI_RUN_REDIS_PASSWORD)",
    )
    parser.add_argument("--json", action="store_true", help="print what is seen as one JSON document")
    args = parse(parser, argv)
    if args is None:
        return 0
    lock_dir = lock_dir_to_view(args.lock_dir, os.environ, os.getcwd())
    from ..cli import lock_requests
    from ..observe.lockview import look

    try:
        view = look(lock_dir, requests_of=lock_requests)
    except OSError as exc:
        raise UsageError(
            f"locks: cannot read lock directory {lock_dir!r}: {exc.strerror or exc}; set --lock-dir"
        ) from None
    remote = []
    if args.redis:  # a bad URL or credentials: exit 2; a server that cannot be reached: exit 69
        from ..contention.remote import look as look_remote

        remote = [look_remote(url.partition("=")[0]) for url in args.redis]
    safe_stdout()
    if args.json:
        import json

        from ..observe.lockview import to_json

        return write_result(json.dumps(to_json(view, remote), indent=2) + "\n")
    import shutil

    from ..messages import colour_for, is_terminal
    from ..observe.lockview import render, render_remote

    width = shutil.get_terminal_size((120, 24)).columns if is_terminal(sys.stdout) else 120
    colour = colour_for(sys.stdout)
    return write_result(render(view, colour, width) + render_remote(remote, colour, width))


if __name__ == "__main__":
    from .scaffold import run_by_path

    run_by_path("locks")
