r"""Response files: ``@FILE`` before ``--`` is replaced by the arguments written in FILE.

GN passes long argument lists through ``response_file_contents`` and ``{{response_file_name}}``, and
Windows limits a command line to 32,767 characters, so fi_run reads its own options from files too.

Where expansion happens
    Every argument of fi_run that starts with ``@`` and comes before the first ``--`` names a file whose
    words are spliced in its place. Nothing after the first ``--`` is ever expanded: those are the
    command's arguments, and compilers and linkers have their own, different, ``@file`` syntax, so an
    ``@x`` there reaches the command verbatim. A file may itself contain ``--`` and the command after it
    (a whole invocation can live in one file); once a ``--`` has been seen, in argv or in any file, no
    later ``@`` word is expanded, whether it comes from the rest of that file, from an enclosing file or
    from argv. An ``@FILE`` inside a file (before its ``--``) is expanded too; its name is relative to
    fi_run's current directory (like every other path, and like the build directory GN and Ninja use),
    not to the file that names it. Nesting deeper than ``MAX_DEPTH`` files, a file that names itself
    directly or through others, a missing, unreadable or undecodable file, a directory, and an ``@`` with
    no name are usage errors reported in one line naming the file. So is an expansion that would read
    more than ``MAX_READS`` files (a file counts each time it is named) or ``MAX_BYTES`` bytes, or give
    more than ``MAX_WORDS`` words: depth and cycles alone do not bound fan-out (issue 22: eight small
    files, each naming the next ten times, gave 10**7 words), so these are checked as the files are read,
    before the words they name are expanded.

The format: exactly what GN writes, which depends on the host
    GN documents that it quotes ``response_file_contents`` "according to Unix shell rules" so that a
    script can use ``shlex.split``. That is true of GN on Linux and macOS only. GN writes each list
    element with its ``ESCAPE_NINJA_COMMAND`` escaping, which is host-dependent (``src/gn/escape.cc``),
    joins them with single spaces on one line, and Ninja writes that line to the file with no newline.
    fi_run therefore reads response files with the rules of the host it runs on, the same host GN
    and Ninja ran on; ``windows=`` overrides that (for tests, or for reading a file from another host).

    POSIX hosts (checked with the gn 2540 and ninja 1.13.2 wheels from PyPI). GN never quotes; it puts a
    backslash before every byte that is not in ``A-Z a-z 0-9 + , - . / : = @ _``, including each byte of
    a non-ASCII UTF-8 character, so the file is not valid UTF-8 when an argument is not ASCII::

        values:   C:\foo\bar baz    it's    $x;*    a=b    é
        file:     C:\\foo\\bar\ baz it\'s \$x\;\* a=b \<0xC3>\<0xA9>

    (``\<0xC3>`` stands for a backslash and the byte 0xC3). The file is read as POSIX shell words,
    without anything a shell does beyond splitting them:

    * words are separated by runs of space, tab, newline and carriage return;
    * a backslash outside quotes makes the next character literal, whatever it is; a backslash before a
      newline is a line continuation and disappears; a backslash at the very end of the file is an error;
    * ``'...'`` is literal: no escapes at all, it may span lines;
    * ``"..."`` is literal except that a backslash escapes ``\``, ``"``, ``$`` and a backquote, and
      disappears with a following newline; before any other character it stays a backslash;
    * quoted and unquoted parts join into one word: ``a'b c'd`` is the single word ``ab cd``, and
      ``''`` or ``""`` is an empty word;
    * no variable, command, tilde or ``$'...'`` expansion, no globbing, no comments: ``$``, a backquote,
      ``~``, ``*`` and ``#`` are ordinary characters. GN never writes a comment (it escapes ``#``, and
      on Windows writes it bare, so ``#`` cannot mean a comment in either format).

    So in a hand-written file on a POSIX host a Windows path must be quoted or have its backslashes
    doubled: ``'C:\foo\bar baz'`` (single quotes keep everything), ``C:\\foo\\bar`` (as GN writes it);
    a bare ``C:\foo\bar`` reads as ``C:foobar``.

    Windows hosts (from GN's source: ``EscapeStringToString_WindowsNinjaFork``). GN writes an element
    that contains no space and no ``"`` as it is, backslashes, quotes ``'``, ``#`` and non-ASCII
    included; any other element is put in double quotes, with each ``"`` written ``\"`` and the run of
    backslashes before a ``"`` or before the closing quote doubled. That is the quoting of
    ``CommandLineToArgvW`` and of the Microsoft C runtime, and this is how the file is read:

    * words are separated by runs of space, tab, newline and carriage return outside double quotes;
    * ``"`` starts or ends a quoted part, in which whitespace is literal; quoted and unquoted parts join;
    * 2n backslashes before a ``"`` give n backslashes and the ``"`` quotes; 2n+1 give n backslashes and
      a literal ``"``; backslashes before anything else are literal, so ``C:\foo\bar`` needs no quoting;
    * ``'`` is an ordinary character, and a ``""`` inside quotes is not special (GN never writes it).

    A file in the common subset of both formats reads the same everywhere: words without backslashes or
    single quotes, with double quotes around those that contain spaces, and forward slashes in paths.

Both formats
    * "One argument per line" files (``--env`` newline ``FOO=bar`` newline ...) work for arguments that
      contain no whitespace, quote or backslash; CRLF line endings are read as LF.
    * The file is UTF-8, as GN writes it, and a byte order mark at its start is ignored (Windows editors
      add one). Bytes that GN backslash-escapes one at a time are put back together before the word is
      decoded, so a word must be valid UTF-8 after unescaping; otherwise, and for a NUL
      character (which no argument can hold), the file is an error.
    * GN cannot write an empty string: it writes nothing for it, on every host, so it is lost (write
      ``''`` or ``""`` by hand for an empty argument). GN cannot write newlines or carriage returns at
      all (Ninja rejects the build file), and on Windows a tab in an element splits it in two.
    * An unterminated quote is an error, not a word that runs to the end of the file.

This module imports only ``os`` (and fi_run's errors): fi_run runs once per build step.
"""

from __future__ import annotations

import os
import sys

from ..errors import UsageError

TYPE_CHECKING = False  # not typing's: saves importing typing (~6 ms) on an unlocked step with @FILE
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = ["MAX_BYTES", "MAX_DEPTH", "MAX_READS", "MAX_WORDS", "expand_response_files", "split_response_text"]

MAX_DEPTH = 10
"""The most response files that may be open at once: ``@a`` naming ``@b`` naming ``@c`` ... is 3."""

# The limits below are far above what a build writes (GN: one response file per step) and above what any
# system will run, so that only a runaway expansion meets them; docs/reference.md states them.
MAX_READS = 1_000
"""The most response files one expansion reads, a file counted each time it is named."""
MAX_BYTES = 16 * 1024 * 1024
"""The most bytes one expansion reads from response files (16 MiB): more than twice the longest command line
any system takes (Linux 6 MiB, macOS 1 MiB, Windows 32,767 characters). Also ends ``@/dev/zero``."""
MAX_WORDS = 1_000_000
"""The most words argv may hold once expanded: Linux's exec takes fewer (each word costs its pointer and its
NUL out of at most 6 MiB: under 700,000 words)."""


_WHITESPACE = " \t\n\r"
# str.translate tables that turn every character the tokenizers stop at into NUL, so that one C-speed
# str.find on the translated text finds the end of a run of ordinary characters. NUL itself is rejected
# before tokenizing (no argument can hold one), so it cannot be confused with a stop.
_POSIX_STOPS = str.maketrans(dict.fromkeys(_WHITESPACE + "\\'\"", "\0"))
_WINDOWS_STOPS = str.maketrans(dict.fromkeys(_WHITESPACE + '\\"', "\0"))
_WHITESPACE_TO_SPACE = str.maketrans(dict.fromkeys("\t\n\r", " "))
_DQUOTE_ESCAPABLE = frozenset('\\"$`')


class _ParseError(Exception):
    """A malformed response file text; the message says what, the caller says which file."""


def split_response_text(text: str, *, windows: bool | None = None) -> list[str]:
    """Split a response file's text into words (the format GN writes; see the module docstring).

    ``windows`` selects Windows' quoting rules instead of POSIX shell words; None means the rules of the
    host, which are the ones GN used when it wrote the file. ``text`` may carry undecodable bytes as
    ``surrogateescape`` characters (as ``bytes.decode("utf-8", "surrogateescape")`` gives): GN on POSIX
    escapes each byte of a non-ASCII character separately, and the bytes are rejoined and decoded per word.
    Raises UsageError for an unterminated quote, a trailing backslash, a NUL or invalid UTF-8.
    """
    try:
        return _split(text, sys.platform == "win32" if windows is None else windows)
    except _ParseError as exc:
        raise UsageError(f"response file text: {exc}") from None


def expand_response_files(
    argv: Sequence[str], *, windows: bool | None = None, takes_value: Callable[[str], bool] | None = None
) -> list[str]:
    """Return argv with every @FILE before the first '--' replaced by the words of FILE (recursively).

    See the module docstring for the rules; ``windows`` is as for split_response_text. ``takes_value(word)``
    says whether an option word takes the next word as its value: that word is then a value, never a
    response file (``--stamp @out`` is a stamp named '@out', as ``--stamp=@out`` is). Raises UsageError.
    """
    for arg in argv:
        if arg == "--":
            return list(argv)
        if arg[:1] == "@":
            break
    else:
        return list(argv)
    out: list[str] = []
    _expand(
        argv, out, (), (), _Expansion(sys.platform == "win32" if windows is None else windows, takes_value)
    )
    return out


class _Expansion:
    """What every level of one expansion shares: the rules, and what has been read so far."""

    __slots__ = ("bytes_left", "reads", "takes_value", "value_next", "windows")

    def __init__(self, windows: bool, takes_value: Callable[[str], bool] | None) -> None:
        self.windows = windows
        self.takes_value = takes_value
        self.value_next = False  # the next word is an option's value, whichever level it comes from
        self.reads = 0
        self.bytes_left = MAX_BYTES


def _expand(
    words: Sequence[str], out: list[str], chain: tuple[str, ...], keys: tuple[str, ...], state: _Expansion
) -> bool:
    """Append ``words`` to ``out``, expanding @FILE words; True once a '--' has been appended."""
    takes_value = state.takes_value
    for index, word in enumerate(words):
        if word == "--":
            out.extend(words[index:])
            return True
        if word[:1] != "@" or state.value_next:
            out.append(word)
            state.value_next = not state.value_next and takes_value is not None and takes_value(word)
            continue
        name = word[1:]
        inside = f"response file {chain[-1]!r}: " if chain else ""
        if not name:
            raise UsageError(f"{inside}empty response file name after '@'")
        if len(chain) >= MAX_DEPTH:
            raise UsageError(
                f"{inside}response files nested more than {MAX_DEPTH} deep: "
                + " -> ".join(repr(link) for link in (*chain, name))
            )
        key = os.path.normcase(os.path.realpath(name))
        if key in keys:
            raise UsageError(
                f"response file {name!r} includes itself: "
                + " -> ".join(repr(link) for link in (*chain, name))
            )
        named_in = f" (named in {chain[-1]!r})" if chain else ""
        state.reads += 1
        if state.reads > MAX_READS:
            raise UsageError(
                f"response file {name!r}{named_in}: more than {MAX_READS:,} response files to read "
                "(a file counts each time it is named)"
            )
        words_in = _read_words(name, named_in, state)
        # Checked before any of the file's words is expanded. An @FILE among them counts as one word here
        # although it may stand for none: that costs little, since each one is also a read.
        if len(out) + len(words_in) > MAX_WORDS:
            raise UsageError(
                f"response file {name!r}{named_in}: the arguments expand to more than {MAX_WORDS:,} words"
            )
        if _expand(words_in, out, (*chain, name), (*keys, key), state):
            out.extend(words[index + 1 :])
            return True
    return False


def _read_words(name: str, named_in: str, state: _Expansion) -> list[str]:
    try:
        with open(name, "rb") as stream:
            # Bounded: a device, a fifo or a /proc file (st_size 0) may never end. A regular file is read
            # by its size, which spares a 16 MiB buffer (about 12 us) for a file of a few bytes.
            limit = state.bytes_left + 1
            size = os.fstat(stream.fileno()).st_size
            data = stream.read(min(size + 1, limit) if size else limit)
            if size and len(data) == size + 1 < limit:  # it grew meanwhile: read on, still bounded
                data += stream.read(limit - len(data))
    except OSError as exc:
        # Windows reports a directory as "Permission denied"; say what it is on every host.
        reason = "Is a directory" if os.path.isdir(name) else (exc.strerror or str(exc))
        raise UsageError(f"cannot read response file {name!r}{named_in}: {reason}") from None
    if len(data) > state.bytes_left:
        raise UsageError(
            f"response file {name!r}{named_in}: more than {MAX_BYTES // (1024 * 1024)} MiB to read from "
            "response files"
        )
    state.bytes_left -= len(data)
    windows = state.windows
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        # Maybe GN's per-byte escapes (POSIX); _split rejoins the bytes and decodes each word strictly.
        text = data.decode("utf-8", "surrogateescape")
    try:
        return _split(text, windows)
    except _ParseError as exc:
        raise UsageError(f"response file {name!r}: {exc}") from None


def _split(text: str, windows: bool) -> list[str]:
    if text[:1] == "\ufeff":
        text = text[1:]
    if "\0" in text:
        raise _ParseError("contains a NUL character, which no argument can hold")
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    specials = '\\"' if windows else "\\'\""
    if not any(char in text for char in specials):
        # The common case (paths, one argument per line): nothing but whitespace is special.
        words = [word for word in text.translate(_WHITESPACE_TO_SPACE).split(" ") if word]
    elif windows:
        words = _split_windows(text)
    else:
        words = _split_posix(text)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        words = [_decode_word(word) for word in words]
    return words


def _decode_word(word: str) -> str:
    try:
        return word.encode("utf-8", "surrogateescape").decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _ParseError(f"not valid UTF-8 (byte 0x{exc.object[exc.start]:02x})") from None
    except UnicodeEncodeError:
        raise _ParseError("not valid UTF-8 (a lone surrogate)") from None


def _line_of(text: str, index: int) -> int:
    return text.count("\n", 0, index) + 1


def _split_posix(text: str) -> list[str]:
    stops = text.translate(_POSIX_STOPS)
    end = len(text)
    words: list[str] = []
    parts: list[str] = []
    in_word = False
    i = 0
    while i < end:
        char = text[i]
        if char in _WHITESPACE:
            if in_word:
                words.append("".join(parts))
                parts.clear()
                in_word = False
            i += 1
        elif char == "\\":
            if i + 1 == end:
                raise _ParseError("ends with a backslash that escapes nothing")
            escaped = text[i + 1]
            if escaped != "\n":  # backslash-newline is a line continuation: nothing at all
                parts.append(escaped)
                in_word = True
            i += 2
        elif char == "'":
            close = text.find("'", i + 1)
            if close < 0:
                raise _ParseError(f"unterminated single quote (opened on line {_line_of(text, i)})")
            parts.append(text[i + 1 : close])
            in_word = True
            i = close + 1
        elif char == '"':
            in_word = True
            i = _double_quoted(text, stops, i, parts)
        else:
            stop = stops.find("\0", i)
            if stop < 0:
                stop = end
            parts.append(text[i:stop])
            in_word = True
            i = stop
    if in_word:
        words.append("".join(parts))
    return words


def _double_quoted(text: str, stops: str, opening: int, parts: list[str]) -> int:
    """Append the contents of the POSIX "..." starting at ``opening``; return the index after it."""
    end = len(text)
    i = opening + 1
    while True:
        stop = stops.find("\0", i)
        if stop < 0:
            raise _ParseError(f"unterminated double quote (opened on line {_line_of(text, opening)})")
        parts.append(text[i:stop])
        char = text[stop]
        if char == '"':
            return stop + 1
        if char != "\\":  # whitespace or a single quote: literal here
            parts.append(char)
            i = stop + 1
            continue
        if stop + 1 == end:
            raise _ParseError(f"unterminated double quote (opened on line {_line_of(text, opening)})")
        escaped = text[stop + 1]
        if escaped in _DQUOTE_ESCAPABLE:
            parts.append(escaped)
            i = stop + 2
        elif escaped == "\n":
            i = stop + 2
        else:
            parts.append("\\")
            i = stop + 1


def _split_windows(text: str) -> list[str]:
    stops = text.translate(_WINDOWS_STOPS)
    end = len(text)
    words: list[str] = []
    parts: list[str] = []
    in_word = False
    quoted_at = -1  # index of the opening quote while inside double quotes
    i = 0
    while i < end:
        char = text[i]
        if char in _WHITESPACE:
            if quoted_at >= 0:
                parts.append(char)
            elif in_word:
                words.append("".join(parts))
                parts.clear()
                in_word = False
            i += 1
            continue
        in_word = True
        if char == '"':
            quoted_at = -1 if quoted_at >= 0 else i
            i += 1
        elif char == "\\":
            run_end = i + 1
            while run_end < end and text[run_end] == "\\":
                run_end += 1
            count = run_end - i
            if run_end < end and text[run_end] == '"':
                parts.append("\\" * (count // 2))
                if count % 2:
                    parts.append('"')
                    run_end += 1
                # else the quote is left for the next round, where it opens or closes quoting
            else:
                parts.append("\\" * count)
            i = run_end
        else:
            stop = stops.find("\0", i)
            if stop < 0:
                stop = end
            parts.append(text[i:stop])
            i = stop
    if quoted_at >= 0:
        raise _ParseError(f"unterminated double quote (opened on line {_line_of(text, quoted_at)})")
    if in_word:
        words.append("".join(parts))
    return words
