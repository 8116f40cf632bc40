"""Tests for fi_run.contention.catalogue: the lock-contention catalogue, checked against the corpus.

The corpus (tests/data/contention/, see its README.md) holds real error lines from public issues, each with
its source. Here every positive.tsv row whose `family` column is filled must be reported as exactly that
family, with the row's line as the evidence; every negative.tsv row must match nothing (except the kinds in
`TEXT_IDENTICAL_KINDS`, whose text is the contention text itself: tests/test_classify.py counts those
against its look-alike budget). Each row is its own test case (id: family or kind, then the line number in
the file). A missing or malformed corpus is a failure, not a skip: without it these tests would prove
nothing. (tests/test_classify.py measures recall over every positive row and checks waits.tsv.)

Platform flag: a positive line whose `os` column is "windows" is checked with windows=True (that is
where it was printed, and the code-only Windows signatures are active there); every other line is
checked with windows=False, the flag fi_run uses on Linux and macOS. Negatives must match nothing on
the platform they were printed on, and on both when their `os` is "any".
"""

from __future__ import annotations

import random
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import pytest

from fi_run.contention.catalogue import BUILTIN, NEVER_RETRY, WAIT_LINES, Signature
from fi_run.contention.recognizer import _literal_start as _scan_form
from fi_run.contention.recognizer import active_signatures, check_user_regex, classify

if TYPE_CHECKING:
    from collections.abc import Sequence

CORPUS_DIR = Path(__file__).resolve().parent / "data" / "contention"
POSITIVE_COLUMNS = ("family", "tool", "os", "line", "source", "notes")
NEGATIVE_COLUMNS = ("kind", "tool", "os", "line", "source", "notes")
WAIT_COLUMNS = ("tool", "os", "line", "source", "notes")
OS_VALUES = frozenset({"linux", "macos", "windows", "any"})
# Look-alikes whose text is word for word the contention text (conda's "already doing something" printed
# for a missing permission): no text rule can refuse them, so they are not held to "matches nothing".
TEXT_IDENTICAL_KINDS = frozenset({"misleading-lock-message"})


class Match(NamedTuple):
    """The line that decided a contention verdict, and its family."""

    family: str
    line: str


def find_contention(text: str, signatures: Sequence[Signature]) -> Match | None:
    """The recognizer's verdict on ``text`` as a (family, line) pair, None when it would not retry. The
    platform follows the signature set: only a Windows set (active_signatures(windows=True)) holds
    windows_only entries."""
    windows = any(s.windows_only for s in signatures)
    verdict = classify(text, windows=windows, signatures=tuple(signatures))
    return Match(verdict.family, verdict.line) if verdict.retry else None


ALL_POSIX = active_signatures(windows=False)
ALL_WINDOWS = active_signatures(windows=True)


@dataclass(frozen=True)
class Row:
    lineno: int  # line number in the .tsv file (the header is line 1)
    fields: dict[str, str]


def _load(name: str, columns: tuple[str, ...]) -> tuple[list[Row], str | None]:
    """The rows of one corpus file, or a message saying why they cannot be had."""
    path = CORPUS_DIR / name
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return [], f"cannot read the contention corpus file {path}: {exc}"
    lines = text.split("\n")
    if not lines or tuple(lines[0].split("\t")) != columns:
        return [], f"{path}: header is not {'<TAB>'.join(columns)}"
    rows: list[Row] = []
    for lineno, line in enumerate(lines[1:], start=2):
        if not line:
            continue
        if "\r" in line:
            return [], f"{path}:{lineno}: a carriage return (the corpus is LF-only, no CR inside a field)"
        values = line.split("\t")
        if len(values) != len(columns):
            return [], f"{path}:{lineno}: {len(values)} fields, expected {len(columns)}"
        row = Row(lineno, dict(zip(columns, values, strict=True)))
        if row.fields["os"] not in OS_VALUES:
            return [], f"{path}:{lineno}: os {row.fields['os']!r} is not one of {sorted(OS_VALUES)}"
        if not row.fields["line"].strip() or not row.fields["source"].startswith("https://"):
            return [], f"{path}:{lineno}: every row needs a line and its public source (an https:// URL)"
        rows.append(row)
    if not rows:
        return [], f"{path}: no rows"
    return rows, None


POSITIVE_ROWS, POSITIVE_ERROR = _load("positive.tsv", POSITIVE_COLUMNS)
NEGATIVE_ROWS, NEGATIVE_ERROR = _load("negative.tsv", NEGATIVE_COLUMNS)
WAIT_ROWS, WAIT_ERROR = _load("waits.tsv", WAIT_COLUMNS)
FAMILY_ROWS = [row for row in POSITIVE_ROWS if row.fields["family"]]
STRICT_NEGATIVE_ROWS = [row for row in NEGATIVE_ROWS if row.fields["kind"] not in TEXT_IDENTICAL_KINDS]


def _params(rows: list[Row], error: str | None, key: str) -> list[object]:
    if error is not None:
        # One case that fails with the reason, so a missing corpus is a red test run, never a skip.
        return [pytest.param(None, id="corpus-unavailable")]
    return [pytest.param(row, id=f"{row.fields[key]}-{row.lineno}") for row in rows]


def _require(row: Row | None, error: str | None) -> Row:
    if row is None:
        pytest.fail(error or "corpus unavailable")
    return row


def _family(text: str, *, windows: bool) -> str | None:
    found = find_contention(text, active_signatures(windows=windows))
    return None if found is None else found.family


# --- the corpus ------------------------------------------------------------------------------------


def test_corpus_is_present() -> None:
    assert POSITIVE_ERROR is None, POSITIVE_ERROR
    assert NEGATIVE_ERROR is None, NEGATIVE_ERROR
    assert WAIT_ERROR is None, WAIT_ERROR
    # The rows that name their family are the catalogue's regression set: there must be some.
    assert FAMILY_ROWS


def test_corpus_rows_are_unique() -> None:
    """One line, one row, across the three files (a line cannot be both contention and a look-alike)."""
    lines = [row.fields["line"].strip() for row in (*POSITIVE_ROWS, *NEGATIVE_ROWS, *WAIT_ROWS)]
    repeated = sorted({line for line in lines if lines.count(line) > 1})
    assert not repeated, repeated


@pytest.mark.parametrize("row", _params(FAMILY_ROWS, POSITIVE_ERROR, "family"))
def test_positive_line_matches_its_family(row: Row | None) -> None:
    fields = _require(row, POSITIVE_ERROR).fields
    windows = fields["os"] == "windows"
    found = find_contention(fields["line"], active_signatures(windows=windows))
    assert found is not None, f"no match (windows={windows}): {fields['line']!r}"
    assert found.family == fields["family"]
    assert found.line == fields["line"].rstrip()
    # Running on Windows only adds signatures; it must not change the verdict for any line.
    assert _family(fields["line"], windows=True) == fields["family"]


def _negative_platforms(fields: dict[str, str]) -> tuple[tuple[Signature, ...], ...]:
    """The signature sets a look-alike is checked with: the platform it was printed on, both for "any".
    (A Linux "Broken pipe (os error 32)" would be a sharing violation if Windows printed it.)"""
    return {"windows": (ALL_WINDOWS,), "linux": (ALL_POSIX,), "macos": (ALL_POSIX,)}.get(
        fields["os"], (ALL_POSIX, ALL_WINDOWS)
    )


@pytest.mark.parametrize("row", _params(STRICT_NEGATIVE_ROWS, NEGATIVE_ERROR, "kind"))
def test_negative_line_matches_nothing(row: Row | None) -> None:
    fields = _require(row, NEGATIVE_ERROR).fields
    for signatures in _negative_platforms(fields):
        assert find_contention(fields["line"], signatures) is None


def test_all_negatives_together_match_nothing() -> None:
    """The negatives as one output (neighbouring lines feed the context rules)."""
    if NEGATIVE_ERROR is not None:
        pytest.fail(NEGATIVE_ERROR)
    posix = "\n".join(r.fields["line"] for r in STRICT_NEGATIVE_ROWS if r.fields["os"] != "windows")
    windows = "\n".join(
        r.fields["line"] for r in STRICT_NEGATIVE_ROWS if r.fields["os"] in ("windows", "any")
    )
    assert find_contention(posix, ALL_POSIX) is None
    assert find_contention(windows, ALL_WINDOWS) is None
    assert find_contention(windows.replace("\n", "\r\n"), ALL_WINDOWS) is None


def test_corpus_families_are_the_catalogue_families() -> None:
    if POSITIVE_ERROR is not None:
        pytest.fail(POSITIVE_ERROR)
    # Every corpus family is in the catalogue (the catalogue has grown families of its own since).
    assert {row.fields["family"] for row in FAMILY_ROWS} <= {s.family for s in BUILTIN}


def test_corpus_readme_states_the_counts() -> None:
    """tests/data/contention/README.md's Counts section says how many rows each file has, per os."""
    readme = (CORPUS_DIR / "README.md").read_text(encoding="utf-8")
    for name, rows in (
        ("positive.tsv", POSITIVE_ROWS),
        ("negative.tsv", NEGATIVE_ROWS),
        ("waits.tsv", WAIT_ROWS),
    ):
        assert rows, name
        heading = f"### {name}: {len(rows)} rows,"
        assert heading in readme, heading
        per_os: dict[str, int] = {}
        for row in rows:
            per_os[row.fields["os"]] = per_os.get(row.fields["os"], 0) + 1
        section = readme.split(heading, 1)[1]
        line = "- per os: " + ", ".join(f"{k} {v}" for k, v in sorted(per_os.items()))
        assert section.splitlines()[1] == line, (name, line)


# --- the catalogue ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sig", [pytest.param(s, id=f"{s.family}-{i}") for i, s in enumerate(BUILTIN, start=1)]
)
def test_builtin_signature_is_documented_and_matches_its_example(sig: Signature) -> None:
    assert sig.description.strip()
    assert "\n" not in sig.description
    assert sig.example.strip()
    assert sig.source.startswith("https://")
    assert re.search(sig.pattern, sig.example), "the pattern does not match its own example"
    assert _family(sig.example, windows=True) == sig.family


@pytest.mark.parametrize(
    "sig",
    [pytest.param(s, id=f"{s.family}-{i}") for i, s in enumerate(WAIT_LINES + NEVER_RETRY, start=1)],
)
def test_wait_and_never_retry_lines_are_documented_and_never_match(sig: Signature) -> None:
    assert sig.description.strip()
    assert sig.source.startswith("https://")
    assert re.search(sig.pattern, sig.example)
    assert find_contention(sig.example, ALL_WINDOWS) is None
    assert find_contention(sig.example, ALL_POSIX) is None
    # Not even a user regex written to catch exactly that line.
    user = active_signatures(windows=True, extra=[re.escape(sig.example)])
    assert find_contention(sig.example, user) is None


def test_family_names_form_contiguous_groups() -> None:
    """Several Signatures may share a family, but each family is one block of the catalogue."""
    groups = [s.family for i, s in enumerate(BUILTIN) if i == 0 or BUILTIN[i - 1].family != s.family]
    assert len(groups) == len(set(groups)), groups
    patterns = [(s.family, s.pattern) for s in BUILTIN]
    assert len(patterns) == len(set(patterns))
    assert "user" not in groups


def test_windows_only_is_exactly_the_ambiguous_code_forms_and_npm_ebusy() -> None:
    windows_only = [s for s in BUILTIN if s.windows_only]
    assert {s.family for s in windows_only} == {
        "windows-lock-violation",
        "windows-sharing-violation",
        "npm-ebusy",
    }
    assert all(s.code_based for s in windows_only)
    # The English Windows texts cannot mean anything else, so they are active on every platform.
    for family in ("windows-lock-violation", "windows-sharing-violation"):
        assert any(s.family == family and not s.windows_only for s in BUILTIN)


def test_builtin_scan_forms_start_with_a_literal() -> None:
    """A pattern that starts with a literal is pre-scanned by a fast substring search (performance)."""
    for sig in BUILTIN:
        form = _scan_form(sig.pattern)
        first = form[:2] if form.startswith("\\") else form[:1]
        assert first not in {"(", "[", ".", "^", "$", "|", "?", "*", "+", "{"}, sig.pattern
        assert not re.fullmatch(r"\\[A-Za-z0-9]", first), sig.pattern
        depth = 0
        escaped = in_class = False
        for char in form:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif in_class:
                in_class = char != "]"
            elif char == "[":
                in_class = True
            elif char == "(":
                depth += 1
            elif char == ")":
                depth -= 1
            elif char == "|":
                assert depth > 0, f"top-level alternation: {sig.pattern}"


# --- platform: codes that mean something else on POSIX ---------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        "Error: Broken pipe (os error 32)",
        'Error { kind: BrokenPipe, message: "x" }: Os { code: 32, kind: BrokenPipe, message: "Broken pipe" }',
        "Numerical argument out of domain (os error 33)",
    ],
)
def test_posix_meanings_of_codes_32_and_33_do_not_match_on_posix(line: str) -> None:
    """On Linux/macOS (os error 32) is EPIPE and (os error 33) is EDOM: never contention there."""
    assert find_contention(line, ALL_POSIX) is None


def test_python_broken_pipe_matches_on_no_platform() -> None:
    assert find_contention("BrokenPipeError: [Errno 32] Broken pipe", ALL_POSIX) is None
    assert find_contention("BrokenPipeError: [Errno 32] Broken pipe", ALL_WINDOWS) is None


def test_localized_code_only_windows_messages_match_only_on_windows() -> None:
    # Chinese (zh-CN) Windows texts for codes 32 and 33, as in the corpus' musubi-tuner line.
    sharing = "error: failed to remove `C:\\t\\a.dll`: 另一个程序正在使用此文件，进程无法访问。 (os error 32)"  # noqa: RUF001
    locking = "error: 另一个程序已锁定文件的一部分，进程无法访问。 (os error 33)"  # noqa: RUF001
    assert _family(sharing, windows=True) == "windows-sharing-violation"
    assert _family(locking, windows=True) == "windows-lock-violation"
    # The code alone means EPIPE/EDOM on POSIX; Windows' own (localized) sharing-violation words do not
    # occur there, so the generic tier still knows them on any platform.
    assert _family(sharing.replace(" (os error 32)", ""), windows=False) == "windows-file-in-use"
    assert _family("error: failed to remove `/t/a.so`: Broken pipe (os error 32)", windows=False) is None
    assert _family(locking.replace(" (os error 33)", ""), windows=False) == "windows-file-in-use"
    assert _family("Numerical argument out of domain (os error 33)", windows=False) is None


@pytest.mark.parametrize("windows", [True, False])
def test_uv_2767_lock_violation_matches_on_every_platform(windows: bool) -> None:
    line = (
        "error: Could not try lock bin\\venv\\.lock: The process cannot access the file because another "
        "process has locked a portion of the file. (os error 33)"
    )
    assert find_contention(line, active_signatures(windows=windows)) == Match("windows-lock-violation", line)


@pytest.mark.parametrize("windows", [True, False])
def test_english_sharing_violation_matches_on_every_platform(windows: bool) -> None:
    line = "  The process cannot access the file because it is being used by another process. (os error 32)"
    assert _family(line, windows=windows) == "windows-sharing-violation"


def test_npm_ebusy_is_windows_only() -> None:
    """On Linux EBUSY is a busy mount point (node_modules as a Docker volume): no retry helps."""
    line = "npm ERR! EBUSY: resource busy or locked, rmdir '/usr/src/app/node_modules'"
    assert _family(line, windows=False) is None
    assert _family(line, windows=True) == "npm-ebusy"


# --- single families -----------------------------------------------------------------------------


def test_git_index_lock() -> None:
    line = "fatal: Unable to create '/x/.git/index.lock': File exists."
    assert find_contention(line, ALL_POSIX) == Match("git-index-lock", line)


def test_git_ref_lock_held_by_another_git_matches_but_ref_conflicts_do_not() -> None:
    held = (
        "error: cannot lock ref 'refs/remotes/origin/main': Unable to create "
        "'/r/.git/refs/remotes/origin/main.lock': File exists."
    )
    assert _family(held, windows=False) == "git-index-lock"
    moved = "error: cannot lock ref 'refs/heads/x': is at 0854dfa but expected eacc6aa"
    assert _family(moved, windows=False) is None


def test_lnk1104_counts_only_for_linker_outputs() -> None:
    assert _family("LINK : fatal error LNK1104: cannot open file 'out\\app.exe'", windows=True) == (
        "link-lnk1168-lnk1104"
    )
    assert _family("LINK : fatal error LNK1104: cannot open file 'kernel32.lib'", windows=True) is None
    assert _family("LINK : fatal error LNK1104: cannot open file 'x.exe.manifest'", windows=True) is None


def test_msb3021_needs_the_sharing_violation_text() -> None:
    denied = (
        'error MSB3021: Unable to copy file "obj\\a.dll" to "bin\\a.dll". Access to the path '
        "'bin\\a.dll' is denied."
    )
    assert _family(denied, windows=True) is None


@pytest.mark.parametrize("code", ["-4,132", "-4"])
def test_flexlm_seat_exhaustion_matches(code: str) -> None:
    assert _family(f"Licensing error:{code}", windows=False) == "flexlm-license"


@pytest.mark.parametrize("code", ["-1", "-15", "-40", "-42,3"])
def test_other_flexlm_errors_do_not_match(code: str) -> None:
    assert _family(f"License Manager Error {code}", windows=False) is None


@pytest.mark.parametrize(
    "line",
    [
        "-bash: fork: retry: Resource temporarily unavailable",
        "/etc/zshenv:3: fork failed: resource temporarily unavailable",
        "OpenBLAS blas_thread_init: pthread_create failed for thread 2 of 64: Resource temporarily "
        "unavailable",
        "OSError: Unable to open file (unable to lock file, errno = 38, error message = 'Function not "
        "implemented')",
    ],
)
def test_eagain_that_is_not_a_held_lock_does_not_match(line: str) -> None:
    assert find_contention(line, ALL_WINDOWS) is None


def test_blocking_io_error_from_fork_is_not_a_lock() -> None:
    traceback = (
        "Traceback (most recent call last):\n"
        '  File "/usr/lib/python3.8/subprocess.py", line 1702, in _execute_child\n'
        "    self.pid = _posixsubprocess.fork_exec(\n"
        "BlockingIOError: [Errno 11] Resource temporarily unavailable\n"
    )
    assert find_contention(traceback, ALL_POSIX) is None


def test_blocking_io_error_from_flock_is_a_lock() -> None:
    traceback = (
        "Traceback (most recent call last):\n"
        '  File "/site-packages/zc/lockfile/__init__.py", line 117, in __init__\n'
        "    _lock_file(fp)\n"
        '  File "/site-packages/zc/lockfile/__init__.py", line 60, in _lock_file\n'
        "    fcntl.flock(file.fileno(), _flags)\n"
        "BlockingIOError: [Errno 11] Resource temporarily unavailable\n"
    )
    found = find_contention(traceback, ALL_POSIX)
    assert found == Match("eagain-lock", "BlockingIOError: [Errno 11] Resource temporarily unavailable")


def test_sqlite_busy_versus_table_locked() -> None:
    assert _family('SqliteError { code: 5, message: "database is locked" }', windows=False) == "sqlite-busy"
    assert _family('SqliteError { code: 6, message: "database table is locked" }', windows=False) is None


def test_pip_stash_in_macos_temp_is_not_trusted() -> None:
    """pypa/pip#3011: one pip, no concurrency, same message; its stash is in /var/folders/…/T/."""
    line = (
        "FileNotFoundError: [Errno 2] No such file or directory: '/v/bin/pip' -> "
        "'/var/folders/gq/x/T/pip-won625up-uninstall/v/bin/pip'"
    )
    assert find_contention(line, ALL_POSIX) is None
    linux = line.replace("/var/folders/gq/x/T/", "/tmp/")
    assert _family(linux, windows=False) == "pip-uninstall-race"


# --- wait lines and context rules ------------------------------------------------------------------


def test_bazel_wait_line_does_not_match_but_exit_line_does() -> None:
    wait = "Another command (pid=51955) is running. Waiting for it to complete on the server (server_pid=1)"
    assert find_contention(wait, ALL_POSIX) is None
    exiting = "Another command (pid=51955) is running. Exiting immediately."
    assert find_contention(exiting, ALL_POSIX) == Match("bazel-lock", exiting)
    old_client = "Another command is running (pid = 4242).  Waiting for it to complete..."
    assert find_contention(old_client, ALL_POSIX) is None


def test_bazel_output_base_heading_followed_by_a_wait_is_a_wait() -> None:
    text = (
        "Another command holds the output base lock: \n"
        "pid=4242\nowner=client\ncwd=/work\n"
        "Waiting for it to complete...\n"
        "ERROR: //pkg:target failed to build\n"
    )
    assert find_contention(text, ALL_POSIX) is None


def test_bazel_output_base_heading_followed_by_exit_is_contention() -> None:
    text = (
        "Another command holds the output base lock: \n"
        "pid=4242\nowner=client\ncwd=/work\n"
        "Exiting because the output base lock is held and --noblock_for_lock was given.\n"
    )
    # The last contention line is the evidence; the heading alone (no exit line) is contention too.
    assert find_contention(text, ALL_POSIX) == Match(
        "bazel-lock", "Exiting because the output base lock is held and --noblock_for_lock was given."
    )
    heading_only = text.rsplit("Exiting", 1)[0]
    assert find_contention(heading_only, ALL_POSIX) == Match(
        "bazel-lock", "Another command holds the output base lock:"
    )


def test_uv_cache_heading_depends_on_its_cause() -> None:
    unsupported = (
        "  × Failed to download and build `deepspeed==0.18.6`\n"  # noqa: RUF001 (the multiplication sign uv prints)
        "  ├─▶ Failed to acquire lock on the distribution cache\n"
        "  ├─▶ Could not acquire lock\n"
        "  ╰─▶ failed to lock `/home/u/.cache/uv/sdists-v9/.lock`: Bad file descriptor (os error 9)\n"
    )
    assert find_contention(unsupported, ALL_POSIX) is None
    timeout = unsupported.replace(
        "failed to lock `/home/u/.cache/uv/sdists-v9/.lock`: Bad file descriptor (os error 9)",
        "Timeout (300s) when waiting for lock on `/home/u/.cache/uv/sdists-v9/x` at `x/.lock`",
    )
    assert find_contention(timeout, ALL_POSIX) == Match(
        "uv-lock",
        "  ╰─▶ Timeout (300s) when waiting for lock on `/home/u/.cache/uv/sdists-v9/x` at `x/.lock`",
    )


def test_wait_line_then_real_error_reports_the_error_line() -> None:
    error = (
        "error: Timeout (1s) when waiting for lock on `/c/` at `/c/.lock`, is another uv process running? "
        "You can set `UV_LOCK_TIMEOUT` to increase the timeout."
    )
    text = "Cache is currently in-use, waiting for other uv processes to finish (use `--force` to override)\n"
    text += error + "\n"
    assert find_contention(text, ALL_POSIX) == Match("uv-lock", error)


def test_apt_wait_line_then_apt_error_reports_the_error_line() -> None:
    wait = "Waiting for cache lock: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 7"
    error = "E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 7 (apt)"
    redraws = "\r".join([wait + "... 10s", wait + "... 20s", wait + "... 30s"])
    assert find_contention(redraws, ALL_POSIX) is None
    assert find_contention(f"{redraws}\n{error}\n", ALL_POSIX) == Match("dpkg-lock", error)


def test_cargo_waits_then_fails_for_another_reason() -> None:
    text = (
        "    Blocking waiting for file lock on package cache\n"
        "   Compiling foo v0.1.0 (/src/foo)\n"
        "error[E0425]: cannot find value `x` in this scope\n"
    )
    assert find_contention(text, ALL_WINDOWS) is None


# --- find_contention mechanics --------------------------------------------------------------------


def test_empty_inputs_give_none() -> None:
    assert find_contention("", ALL_WINDOWS) is None
    assert find_contention("\n\r\n   \n", ALL_WINDOWS) is None
    assert find_contention("database is locked", ()) is None


def test_line_near_the_end_of_unrelated_output_is_found_exactly() -> None:
    rng = random.Random(7)
    noise = [f"[{i:04}/2000] CXX obj/src/file_{rng.randrange(10**6)}.o -Wall -O2 -c" for i in range(1000)]
    line = "  = note: LINK : fatal error LNK1168: cannot open C:\\b\\out\\app.exe for writing"
    text = "\n".join([*noise, line, "ninja: build stopped: subcommand failed."])
    assert find_contention(text, ALL_WINDOWS) == Match("link-lnk1168-lnk1104", line)


def test_line_in_the_middle_of_the_output_is_not_the_last_failure() -> None:
    """Classification reads only the tail: a contention line 500 progress lines before the end is history."""
    rng = random.Random(7)
    noise = [f"[{i:04}/2000] CXX obj/src/file_{rng.randrange(10**6)}.o -Wall -O2 -c" for i in range(1000)]
    line = "  = note: LINK : fatal error LNK1168: cannot open C:\\b\\out\\app.exe for writing"
    text = "\n".join([*noise[:500], line, *noise[500:], "error: foo.c:1: expected ';'"])
    assert find_contention(text, ALL_WINDOWS) is None


def test_last_contention_line_wins_and_line_is_stripped() -> None:
    text = (
        "ok\r\n"
        "fatal: Unable to create '/x/.git/index.lock': File exists.\r\n"
        "sqlite3.OperationalError: database is locked   \r\n"
    )
    assert find_contention(text, ALL_POSIX) == Match(
        "sqlite-busy", "sqlite3.OperationalError: database is locked"
    )


def test_carriage_return_redraws_are_separate_lines() -> None:
    text = "    Blocking waiting for file lock on build directory\rerror: database is locked\r\n"
    assert find_contention(text, ALL_POSIX) == Match("sqlite-busy", "error: database is locked")


def test_user_regex_matches_with_family_user() -> None:
    signatures = active_signatures(windows=False, extra=[r"resource \w+ is held"])
    text = "building\nerror: resource printer is held by job 12\n"
    assert find_contention(text, signatures) == Match("user", "error: resource printer is held by job 12")


def test_user_regex_with_global_flag_and_anchor() -> None:
    signatures = active_signatures(windows=False, extra=["(?i)^busy:"])
    assert find_contention("a\nBUSY: try later\nb", signatures) == Match("user", "BUSY: try later")
    assert find_contention("a\nnot BUSY: try later\nb", signatures) is None


def test_within_one_failure_block_the_catalogue_speaks_for_it() -> None:
    signatures = active_signatures(windows=False, extra=["custom lock"])
    for text in ("error: database is locked\ncustom lock\n", "custom lock\nerror: database is locked\n"):
        assert find_contention(text, signatures) == Match("sqlite-busy", "error: database is locked")
    assert find_contention("x\ncustom lock\n", signatures) == Match("user", "custom lock")


def test_active_signatures_filters_for_the_platform() -> None:
    assert ALL_WINDOWS == BUILTIN
    assert [s for s in BUILTIN if not s.windows_only] == list(ALL_POSIX)
    assert len(ALL_POSIX) < len(ALL_WINDOWS)
    extra = active_signatures(windows=False, extra=["a+b", "c"])
    assert extra[: len(ALL_POSIX)] == ALL_POSIX
    assert [(s.family, s.pattern) for s in extra[len(ALL_POSIX) :]] == [("user", "a+b"), ("user", "c")]


def test_check_user_regex() -> None:
    reason = check_user_regex("(")
    assert reason
    assert check_user_regex(r"(?i)lock held by \d+") is None
    assert check_user_regex("") is not None  # would match every output: every failure retried
    assert check_user_regex("x*") is not None


def test_ten_megabytes_of_output_is_fast() -> None:
    """Measured ~0.3 s here; the bound only catches a regression to per-position alternation (~10 s)."""
    rng = random.Random(1)
    words = [
        *("gcc", "-O2", "-c", "foo.c", "-o", "foo.o", "warning:", "unused", "variable", "'x'"),
        *("[-Wunused-variable]", "note:", "expected", "'int'", "error:", "Compiling", "serde", "v1.0"),
        *("Finished", "target(s)", "LINK", ":", "cl.exe", "ERROR", "lock", "block", "clock", "remove"),
        *("2024-01-01T00:00:00Z", "/usr/include/stdio.h:27", "process", "file", "(os", "error", "2)"),
    ]
    lines: list[str] = []
    size = 0
    while size < 10_000_000:
        line = " ".join(rng.choice(words) for _ in range(12))
        lines.append(line)
        size += len(line) + 1
    text = "\n".join(lines)
    tail = "error: database is locked"
    started = time.perf_counter()
    assert find_contention(text, ALL_WINDOWS) is None
    assert find_contention(f"{text}\n{tail}\n", ALL_WINDOWS) == Match("sqlite-busy", tail)
    assert time.perf_counter() - started < 5.0
