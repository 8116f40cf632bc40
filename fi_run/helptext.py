"""What fi_run prints for --help, --version and --list-signatures: only those runs import this module.

The help is built from the same tables the parser and the docs use: ``cli.OPTIONS`` for the options,
``cli.TOOLS`` for the tools and ``errors.EXIT_STATUSES`` for the exit statuses. It lives apart from cli.py
because every step imports cli.py, and its bytecode is read and unmarshalled on every step.
"""

from __future__ import annotations

from . import __version__
from .cli import OPTIONS, TOOLS, USAGE
from .errors import EXIT_STATUSES

TYPE_CHECKING = False  # not typing's: saves importing typing (~6 ms) on --help, as everywhere in fi_run
if TYPE_CHECKING:
    from typing import Final

EXAMPLES: Final = """\
examples:
  fi_run --stamp gen/x.stamp --venv out/venv --lock out/venv -- uv pip install -e ../pkg
  fi_run --env CC=clang --prepend-path PATH=tools/bin --quiet-on-success -- make -C lib
  fi_run --shared-lock out/venv --timeout 600 -- python -m pytest tests
  fi_run @args.rsp -- python gen.py --out gen/x.h

@FILE before '--' reads more fi_run options from FILE, quoted as GN writes response_file_contents
(POSIX shell words; on Windows, Windows command-line rules). Arguments after '--' are the command's and
are passed on exactly as they are, '@' included."""


def epilog() -> str:
    """The examples and the exit statuses, the latter from errors.EXIT_STATUSES."""
    statuses = "; ".join(f"{status} {meaning}" for status, meaning in EXIT_STATUSES)
    tools = "\n".join(f"  fi_run {name:<10} {what}" for name, (_module, what) in TOOLS.items())
    return (
        f"{EXAMPLES}\n\ntools (each has its own --help):\n{tools}\n\n"
        f"exit status: the command's own; {statuses}."
    )


def help_text() -> str:
    import argparse

    parser = argparse.ArgumentParser(
        prog="fi_run",
        usage=USAGE,
        description="Run one build step for Ninja or GN: set up its environment, hold per-resource locks, "
        "retry failures caused by lock contention, and write the stamp only on success.",
        epilog=epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        add_help=False,
    )
    for option in OPTIONS:
        extra = []
        if option.repeatable:
            extra.append("repeatable")
        if option.env:
            extra.append(f"default from ${option.env}")
        suffix = f" [{'; '.join(extra)}]" if extra else ""
        if option.metavar is None:
            parser.add_argument(*option.flags, action="store_true", help=option.help + suffix)
        else:
            parser.add_argument(*option.flags, metavar=option.metavar, help=option.help + suffix)
    return parser.format_help()


def signatures_text() -> str:
    from .contention.catalogue import BUILTIN, KILLED_CHILD_LINES

    lines = []
    for sig in BUILTIN:
        where = " (Windows only)" if sig.windows_only else ""
        lines.append(
            f"{sig.family}{where}: {sig.description}\n    e.g. {sig.example}\n    source: {sig.source}"
        )
    for sig in KILLED_CHILD_LINES:  # issue 19: retried only with the kernel's count of an OOM kill
        lines.append(
            f"{sig.family} (Linux, with an OOM kill the kernel counted while the step ran): "
            f"{sig.description}\n    e.g. {sig.example}\n    source: {sig.source}"
        )
    return "\n".join(lines) + "\n"


def encodable(text: str, encoding: str | None) -> str:
    """``text`` with what ``encoding`` cannot hold as backslash escapes.

    A Windows console or pipe is often cp1252, and the signatures' examples quote CJK and Cyrillic messages:
    an escaped character is better than fi_run failing to list them.
    """
    if not encoding:
        return text
    try:
        return text.encode(encoding, "backslashreplace").decode(encoding)
    except LookupError:  # an encoding Python does not know: leave it to the stream
        return text


def action_text(action: str) -> str:
    """The text of an action that cli.requested_action() found: "help", "version" or "signatures"."""
    if action == "help":
        return help_text()
    if action == "version":
        return f"fi_run {__version__}\n"
    return signatures_text()
