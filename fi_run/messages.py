"""fi_run's own messages: one line each on stderr, prefixed ``fi_run:``, optionally coloured.

The child's output is never touched or coloured here; only fi_run's own lines go through this module, and
``fi_run report`` takes its colours and its colour decision from here too (one palette, one rule).
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # not typing's: saves importing typing (~6 ms) per unlocked step (docs/performance.md)
if TYPE_CHECKING:
    from typing import Final, TextIO

PREFIX: Final = "fi_run:"

# Verbosity levels: --quiet shows errors only, the default adds warnings and retry notes, --verbose adds
# what fi_run does (environment changes, the command, timings).
QUIET: Final = 0
NORMAL: Final = 1
VERBOSE: Final = 2

# The palette: fi_run's own lines use RED (errors), YELLOW (warnings) and DIM (notes); the report adds BOLD
# headings and CYAN resources.
BOLD: Final = "\x1b[1m"
RED: Final = "\x1b[1;31m"
YELLOW: Final = "\x1b[1;33m"
CYAN: Final = "\x1b[36m"
DIM: Final = "\x1b[2m"
RESET: Final = "\x1b[0m"


def colour_wanted(environ: dict[str, str] | os._Environ[str], stream_is_tty: bool) -> bool:
    """Decide colour the way ninja and the informal standards do.

    NO_COLOR (no-color.org) set to anything non-empty turns colour off and wins over everything.
    CLICOLOR_FORCE (ninja honours it; bixense.com/clicolors) or FORCE_COLOR, set and not "0", turns it
    on even when stderr is a pipe: under ninja it always is, and ninja users set CLICOLOR_FORCE=1 exactly so
    that tools colour their output anyway. Otherwise: colour only on a terminal that is not TERM=dumb.
    """
    if environ.get("NO_COLOR", ""):
        return False
    for name in ("CLICOLOR_FORCE", "FORCE_COLOR"):
        value = environ.get(name)
        if value is not None and value != "0":
            return True
    return stream_is_tty and environ.get("TERM") != "dumb"


def is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no such method, or a closed stream
        return False


def colour_for(stream: TextIO) -> bool:
    """Whether to colour what goes to ``stream`` (colour_wanted, from its being a terminal); on Windows,
    also make the console understand the colours."""
    colour = colour_wanted(os.environ, is_terminal(stream))
    if colour and sys.platform == "win32":  # pragma: no cover - Windows only
        _enable_windows_ansi()
    return colour


class Reporter:
    """Writes fi_run's own lines to stderr at the chosen verbosity."""

    def __init__(self, verbosity: int = NORMAL, stream: TextIO | None = None) -> None:
        self.verbosity = verbosity
        self._stream = stream
        self._colour: bool | None = None

    @property
    def stream(self) -> TextIO:
        # Resolved late so that tests swapping sys.stderr (capsys) are honoured.
        return self._stream if self._stream is not None else sys.stderr

    def _use_colour(self) -> bool:
        if self._colour is None:
            self._colour = colour_for(self.stream)
        return self._colour

    def _emit(self, colour: str, text: str) -> None:
        # One line, always: a message with an embedded newline would read as two build-log lines.
        text = text.replace("\r", "\\r").replace("\n", "\\n")
        prefix = f"{colour}{PREFIX}{RESET}" if self._use_colour() else PREFIX
        line = f"{prefix} {text}\n"
        try:
            self.stream.write(line)
            self.stream.flush()
        except (OSError, ValueError, AttributeError):  # sys.stderr is None when 2 was closed at start
            pass  # stderr closed or broken (try/except, not contextlib.suppress: saves ~2 ms per step)

    def error(self, text: str) -> None:
        self._emit(RED, text)

    def warning(self, text: str) -> None:
        if self.verbosity >= NORMAL:
            self._emit(YELLOW, text)

    def info(self, text: str) -> None:
        if self.verbosity >= NORMAL:
            self._emit(DIM, text)

    def debug(self, text: str) -> None:
        if self.verbosity >= VERBOSE:
            self._emit(DIM, text)


def write_result(text: str) -> int:
    """Write what fi_run itself prints as its result (--version, --help, a tool's output) to stdout.

    Returns 0, or 1 if the reader went away (``fi_run report LOG | head``: not an error worth a line).
    A stdout that was closed when fi_run started (``>&-``) or that cannot take the text (``> /dev/full``,
    an I/O error) raises ResultError: one line and exit 74, not an internal error (issue 22).
    """
    from .errors import ResultError

    stream = sys.stdout
    if stream is None:  # descriptor 1 was closed when Python started
        raise ResultError("cannot write to standard output: it is closed")
    try:
        stream.write(text)
        stream.flush()
    except BrokenPipeError:
        _silence_stdout()
        return 1
    except (OSError, ValueError) as exc:  # ValueError: a closed file object
        _silence_stdout()
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ResultError(f"cannot write to standard output: {reason}") from None
    return 0


def _silence_stdout() -> None:
    """Point stdout at the null device, so that what is still buffered cannot fail again at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def _enable_windows_ansi() -> None:  # pragma: no cover - Windows only
    """Make the Windows console understand ANSI colours (colorama is imported only here)."""
    try:
        import colorama

        colorama.just_fix_windows_console()
    except Exception:  # colour is a nicety; never fail a build step over it
        pass
