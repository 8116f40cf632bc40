"""fi_run's own lines: one line each on stderr, coloured only when wanted, never the child's output."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from fi_run import messages
from fi_run.messages import Reporter, colour_wanted

if TYPE_CHECKING:
    from pathlib import Path


@pytest.mark.parametrize(
    ("environ", "tty", "expected"),
    [
        ({}, True, True),
        ({}, False, False),
        ({"TERM": "dumb"}, True, False),
        ({"NO_COLOR": "1"}, True, False),
        ({"NO_COLOR": ""}, True, True),  # no-color.org: only a non-empty value counts
        ({"CLICOLOR_FORCE": "1"}, False, True),  # ninja's convention: colour even into its pipe
        ({"CLICOLOR_FORCE": "0"}, False, False),
        ({"FORCE_COLOR": "1"}, False, True),
        ({"FORCE_COLOR": "0"}, False, False),
        ({"NO_COLOR": "1", "CLICOLOR_FORCE": "1"}, False, False),  # NO_COLOR wins over everything
        ({"NO_COLOR": "1", "FORCE_COLOR": "1"}, True, False),
    ],
)
def test_colour_follows_no_color_clicolor_force_and_force_color(
    environ: dict[str, str], tty: bool, expected: bool
) -> None:
    assert colour_wanted(environ, tty) is expected


def test_a_message_is_always_one_line() -> None:
    stream = io.StringIO()
    Reporter(stream=stream).error("bad value 'a\nb\rc'")
    assert stream.getvalue() == "fi_run: bad value 'a\\nb\\rc'\n"


def test_quiet_shows_errors_only_and_verbose_shows_debug() -> None:
    quiet, verbose = io.StringIO(), io.StringIO()
    for reporter in (Reporter(messages.QUIET, quiet), Reporter(messages.VERBOSE, verbose)):
        reporter.error("e")
        reporter.warning("w")
        reporter.info("i")
        reporter.debug("d")
    assert quiet.getvalue() == "fi_run: e\n"
    assert verbose.getvalue() == "fi_run: e\nfi_run: w\nfi_run: i\nfi_run: d\n"


def _run(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[bytes]:
    clean = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "CLICOLOR_FORCE", "FORCE_COLOR")}
    child = "import sys; sys.stdout.write('plain out\\n'); sys.stderr.write('plain err\\n'); sys.exit(3)"
    return subprocess.run(
        [sys.executable, "-m", "fi_run", "--env", "A=1", "--", "no-such-command-for-fi-run", child],
        env={**clean, **env},
        cwd=tmp_path,
        capture_output=True,
        check=False,
    )


def test_forced_colour_colours_only_fi_runs_own_prefix(tmp_path: Path) -> None:
    done = _run({"CLICOLOR_FORCE": "1"}, tmp_path)
    assert done.returncode == 127
    assert done.stderr.startswith(b"\x1b[1;31mfi_run:\x1b[0m command not found: 'no-such-command-for-fi-run'")
    assert done.stderr.count(b"\n") == 1


def test_no_color_beats_clicolor_force_in_a_real_run(tmp_path: Path) -> None:
    done = _run({"CLICOLOR_FORCE": "1", "NO_COLOR": "1"}, tmp_path)
    assert b"\x1b[" not in done.stderr
    assert done.stderr.startswith(b"fi_run: command not found")


def test_the_childs_output_is_never_coloured(tmp_path: Path) -> None:
    child = "import sys; sys.stdout.write('plain out\\n'); sys.stderr.write('plain err\\n'); sys.exit(3)"
    done = subprocess.run(
        [sys.executable, "-m", "fi_run", "--", sys.executable, "-c", child],
        env={**os.environ, "CLICOLOR_FORCE": "1"},
        cwd=tmp_path,
        capture_output=True,
        check=False,
    )
    assert done.returncode == 3
    newline = (
        os.linesep.encode()
    )  # the child writes text: CRLF on Windows; fi_run passes bytes on as they are
    assert done.stdout == b"plain out" + newline
    assert done.stderr == b"plain err" + newline


def test_colour_on_windows_goes_through_colorama(monkeypatch: pytest.MonkeyPatch) -> None:
    """sys.platform mocked (the edge): with colour wanted, the Windows path imports colorama and fixes the
    console; colorama's just_fix_windows_console is a no-op off Windows, so this runs for real on Linux."""
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setenv("CLICOLOR_FORCE", "1")
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delitem(sys.modules, "colorama", raising=False)
    stream = io.StringIO()
    Reporter(stream=stream).error("x")
    assert "colorama" in sys.modules
    assert stream.getvalue() == "\x1b[1;31mfi_run:\x1b[0m x\n"
