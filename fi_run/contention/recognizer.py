"""The recognizer: does a failed attempt's output show lock contention? A bounded, explainable verdict.

Steps, each bounded so that no output can make classification slow (see docs/retries.md):

1. **The tail.** Only the last `TAIL_CHARS` characters and `TAIL_LINES` lines are read, and each line is
   cut to `LINE_CHARS` (its head and its end, where a path's file name and the errno sit). Whatever the
   command printed, classification handles at most 64 KB of short lines.
2. **Messages, not lines.** Each line is normalized: terminal colours, timestamps and log prefixes
   (``#14 7.381``, ``[CRITICAL]``, ``│``, ``npm error``, ``E   ``) are stripped and JSON-escaped ``\\n``
   becomes a line break. A message is a line together with the next one when that continues it (indented,
   lower-case, "Caused by:"), so that a heading is judged with its cause and a console-wrapped sentence is
   whole again.
3. **Each message is judged** by two tiers. The catalogue (catalogue.py) holds high-confidence
   signatures, each from a real source. The generic tier asks for lock vocabulary *together with* holder
   evidence ("another process", "held by", "pid 42") or a transient errno (EAGAIN, EBUSY, ETXTBSY,
   Windows 32/33), and refuses when the message says a retry cannot help (denied without a holder, no
   locks available, read-only, unsupported, out of date, disk full, deadlock detected, corrupt). A race
   with no lock word at all counts when it is ENOENT/EEXIST inside a shared cache, or a mkdir that lost a
   race. On Windows, per-command hints treat EPERM/EACCES/"Access is denied" on a rename, unlink or open
   inside a cache, virtual environment or output directory as contention, with few retries.
4. **Waits** ("Waiting for cache lock", "retrying in 5 s", "please wait", "still locked") are status
   lines: never contention themselves, and a contention heading followed by a wait was only a wait.
5. **The last failure decides.** The verdict comes from the last contention message in the tail; if the
   tool went on waiting after it, or made progress and then failed for another reason, it is not
   contention.
6. **Holder checks** (holders.py, issue 20). A file Windows itself always holds (the page file, a
   registry hive) is never contention. When the output is live, the pid or lock file the message names is
   looked at: fi_run, an ancestor, the step's command or what it started means self-held (no retry); a
   dead pid, or a lock file nobody holds that is older than the step, means a stale lock (no retry; the
   verdict names the file to remove); a lock file that is gone means its holder finished; a live foreign
   holder is contention, and the same one blocking three attempts in a row stops the retries.

User ``--retry-on`` regexes run in a separate Python process with a time limit (`USER_REGEX_SECONDS`):
Python's ``re`` backtracks, and a pattern like ``^(a+)+$`` can run for hours on one line while holding the
GIL, so no signal handler could stop it in-process. A child process can be killed.

Imported lazily, only after a failed attempt.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import TYPE_CHECKING, Final

from .catalogue import (
    BUILTIN,
    KILLED_CHILD_LINES,
    NEVER_RETRY,
    OOM_FAMILY,
    SHARING_VIOLATION_TEXTS,
    USER_FAMILY,
    WAIT_LINES,
    Signature,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = [
    "LINE_CHARS",
    "TAIL_CHARS",
    "TAIL_LINES",
    "Verdict",
    "active_signatures",
    "check_user_regex",
    "classify",
    "command_name",
    "killed_line",
    "oom_verdict",
]

TAIL_CHARS: Final = 64 * 1024  # the end of the output where tools print the error that stopped them
TAIL_LINES: Final = 200
LINE_CHARS: Final = 2048  # a longer line keeps its first and last LINE_CHARS // 2 characters
USER_REGEX_SECONDS: Final = 2.0  # the most time --retry-on regexes get on one failed attempt
HINT_RETRIES: Final = 3  # a Windows access-denied hint is weaker evidence: fewer retries
HOLDER_REPEATS: Final = 3  # the same live holder blocking this many attempts in a row: stop retrying
_NEW_MESSAGE: Final = re.compile(r"[\w.-]{1,30}(?::|\[E?\d+\]:) ")  # "error: ", "rm: ", "error[E0425]: "
_CONSOLE_WIDTHS: Final = frozenset({79, 80, 100, 119, 120, 132, 159, 160, 200})
_HEADING_WINDOW: Final = 12  # lines below a contention message where a wait turns it into a wait (bazel)
_EVIDENCE_LINES: Final = 4
_BLOCK_LINES: Final = 8  # lines above the last contention message that can belong to the same failure
_CAUSE_WINDOW: Final = 3  # lines below a contention message whose "never" cause cancels it
_BEFORE_WINDOW: Final = 4  # a traceback's raising frame is the line (or few lines) right above

TIER_CATALOGUE: Final = "catalogue"
TIER_GENERIC: Final = "generic"
TIER_HINT: Final = "windows-hint"
TIER_USER: Final = "user"
TIER_KERNEL: Final = "kernel"  # an OOM verdict: the kernel's own count decided it
SIGKILL_STATUS: Final = 137  # 128 + SIGKILL: the command killed by it, or a shell saying its command was
_TIER_RANK: Final = {TIER_CATALOGUE: 0, TIER_USER: 1, TIER_GENERIC: 2, TIER_HINT: 3}


@dataclass(frozen=True)
class Verdict:
    """What fi_run decided about one failed attempt's output, and why."""

    retry: bool
    kind: str  # contention | stale | self-held | wait | never | unrelated | none | oom | killed
    reason: str  # one sentence for a person
    tier: str = ""  # catalogue | generic | windows-hint | user | kernel ("" when nothing matched)
    family: str = ""
    lines: tuple[str, ...] = ()  # the output lines that are the evidence, as printed
    holder: int | None = None  # the pid the message names, if any
    holder_check: str = ""  # "alive, another process" | "dead" | "this process or an ancestor" | ...
    stale_file: str = ""  # the lock file to remove, for a stale lock
    max_retries: int | None = None  # a cap on retries for this kind of evidence (None: --retries)
    held_file: str = ""  # the lock file (or file Windows holds) the message names, as checked
    file_check: str = ""  # what the check of held_file found ("absent now: ...", "held by pid 42 (flock)")
    blocker: str = (
        ""  # who blocked this attempt, when known ("process 42"): the same one 3 times stops retries
    )
    oom_kills: str = ""  # an OOM verdict's kernel evidence: "1 OOM kill in the memory cgroup of ..."

    @property
    def line(self) -> str:
        return self.lines[0] if self.lines else ""


# ---------------------------------------------------------------------------------------------------
# 1-2. The bounded tail, normalized into lines.
# ---------------------------------------------------------------------------------------------------

# ESC-based colour/cursor sequences, and Windows consoles that show ESC as "←".
_ANSI = re.compile(r"(?:\x1b|\u2190)\[[0-9;?]*[ -/]*[@-~]")
# JSON- or repr-escaped line breaks inside one printed line. A Windows path may contain "\n" too
# ("C:\x\node_modules"), so only a "\n" followed by a space, a quote, an upper-case letter or the end counts.
_ESCAPED_NEWLINE = re.compile(r"\\r?\\n(?=[\s\"'A-Z]|$)")
# One prefix a log adds in front of a message; stripped repeatedly (each alternative is anchored and
# bounded, so this is linear). Levels like ERROR are kept in `raw` for the failure check.
_PREFIX = re.compile(
    r"""^(?:
        [\s│|>*`"'•·\-\u2013\u2014+\u00d7├╰╭─▶┃:]+        # quotes, bullets, dashes, box drawing, uv's tree
      | \#\d{1,6}\ \d{1,6}\.\d{1,4}\                                 # docker buildkit "#14 7.381 "
      | \d{1,4}>                                                      # msbuild node "73>"
      | \[?\d{4}[-/]\d\d[-/]\d\d(?:[T\ ]\d\d:\d\d(?::\d\d(?:[.,]\d{1,9})?)?)?
        (?:Z|\ ?[+-]\d\d:?\d\d|\ ?UTC|\ ?GMT)?\]?
      | \[?\d{1,2}[-/]\d\d[-/]\d{2,4}\ \d\d:\d\d(?::\d\d(?:[.,]\d{1,9})?)?\]?
      | \[?\d\d:\d\d:\d\d(?:[.,]\d{1,9})?\]?
      | [A-Z][a-z]{2},\ \d\d\ [A-Z][a-z]{2}\ \d{4}\ \d\d:\d\d:\d\d\ GMT
      | \[(?:CRITICAL|ERROR|ERR|WARN|WARNING|INFO|DEBUG|TRACE|FATAL|NOTICE|error|warning|info)\]:?
      | (?:npm|pnpm|yarn|lerna)\ (?:ERR!|error|WARN|warn)
      | ERR!
      | (?:E|W|ERROR|FATAL|CRITICAL|WARNING|Error|error|fatal|warning)(?::|\ \ +|!)
      | Caused\ by:
      | \[\d+(?::\d+){1,3}/\d{4,}(?:\.\d+)?:[A-Z]+:[\w.]+\(\d+\)\]  # chromium "[1:1:0214/..:ERROR:x.cc(3)]"
    )""",
    re.VERBOSE,
)


_CAMEL_EXCEPTION = re.compile(r"\b[A-Z][a-z]{1,20}(?:[A-Z][a-z]{1,20}){0,8}(?:Exception|Error)\b")
_CAMEL_WORD = re.compile(r"(?<=[a-z])(?=[A-Z])")


def _decamel(found: re.Match[str]) -> str:
    return _CAMEL_WORD.sub(" ", found.group())


@dataclass
class _Line:
    raw: str  # the line as printed (cut to LINE_CHARS), for evidence
    plain: str  # colours removed: what the catalogue's patterns (written for printed lines) search
    text: str  # prefixes stripped too
    low: str  # normalized, lower-cased: what the generic tier's word classes search


def _cut(line: str) -> str:
    if len(line) <= LINE_CHARS:
        return line
    half = LINE_CHARS // 2
    return line[:half] + " … " + line[-half:]


def _uncolour(line: str) -> str:
    return _ANSI.sub("", line) if "\x1b" in line or "\u2190" in line else line


def _normalize(line: str) -> str:
    for _ in range(8):  # a few prefixes can stack: "#14 7.381 npm ERR! ..."
        found = _PREFIX.match(line)
        if found is None or found.end() == 0:
            break
        line = line[found.end() :]
    return line.strip()


def tail_lines(text: str) -> list[_Line]:
    """The bounded tail of ``text`` as normalized lines (blank lines dropped)."""
    tail = text[-TAIL_CHARS:]
    if "\r" in tail:
        tail = tail.replace("\r\n", "\n").replace("\r", "\n")  # a "\r" redraw is a line of its own
    raw_lines = tail.split("\n")[-TAIL_LINES:]
    lines: list[_Line] = []
    for printed in raw_lines:
        raw = _cut(printed.rstrip())
        if not raw.strip():
            continue
        parts = _ESCAPED_NEWLINE.split(raw) if "\\n" in raw else [raw]
        for part in parts:
            plain = _uncolour(part).rstrip()
            text_ = _normalize(plain)
            if text_:
                low = text_.lower()
                if "exception" in low or "error" in low:
                    # ServerAlreadyBootingException -> "server already booting exception": the words of
                    # Java/.NET exception names count like any other words.
                    low = _CAMEL_EXCEPTION.sub(_decamel, text_).lower()
                lines.append(_Line(raw, plain, text_, low))
    return lines


# ---------------------------------------------------------------------------------------------------
# 3. The generic tier: word classes, each a regex run only on a line that contains its cheap keyword.
# Every pattern is a flat alternation of literals and bounded classes: linear in the line's length.
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Feature:
    keywords: tuple[str, ...]  # a line must contain one of these (lower-case) before the regex runs
    regex: str  # searched in the lower-cased normalized line


_W = r"[^\s]{1,40}"  # one word of a name ("`brew update`", "Gradle", "SwiftPM")
# catalogue.SHARING_VIOLATION_TEXTS written in plain ASCII ("von einem anderen prozess verwendet"): cheap
# substrings of the "sharing" class, searched in every line. The others need a non-ASCII line (_localized).
_ASCII_LOCALIZED: Final = tuple(text.lower() for _, text, _ in SHARING_VIOLATION_TEXTS if text.isascii())

FEATURES: Final[dict[str, _Feature]] = {
    # lock vocabulary: a lock, or a resource being in use / in progress / running. Not libuv's EBUSY text
    # "resource busy or locked", which on Linux is a busy mount point (npm/cli#2340 style Docker volumes).
    "lock": _Feature(
        (
            "lock",
            "mutex",
            "in use",
            "being used",
            "in progress",
            "running",
            "sharing violation",
            "occupied",
            "using",
            "only one",
            "instances",
        ),
        r"(?<![a-z])(?<!busy or )(?:lock(?:ed|s|ing|file|files)?|flock|lockf|mutex(?:es)?)(?![a-z])"
        r"|\bin use\b|\bbeing used\b|\bin progress\b|\brunning\b|\bsharing violation\b|\boccupied\b"
        r"|\b(?:already|is|are) using\b|\bonly one (?:copy|instance) of\b"
        r"|\bmultiple (?:\S+ )?instances cannot\b",
    ),
    # holder evidence: someone else has it
    "holder": _Feature(
        (
            "another",
            "other",
            "held",
            "locked by",
            "in use by",
            "used by",
            "owned by",
            "already",
            "pid",
            "process",
            "concurrent",
            "holds",
            "instance",
            "owner",
            "in use",
            "only one",
        ),
        rf"\b(?:another|other)\b(?: {_W}){{0,4}} (?:process|processes|instance|program|application|app"
        rf"|command"
        rf"|client|copy|build|session|transaction|operation|invocation|job|user)\b"
        rf"|\banother {_W} (?:is |may be |seems to be |appears to be )?(?:already )?(?:running|holds|has|owns"
        rf"|is using|using)\b"
        r"|\b(?:held|locked|owned|used|in use|taken|acquired|opened|open) by\b"
        r"|\balready (?:running|started|starting|booting|in progress|in use|locked|held|acquired|taken"
        r"|open|opened|being)\b"
        r"|\bpid\b ?[=:#(]? ?\d+|\bprocess(?: id)? ?[=:#(]? ?\d+|\bconcurrent(?:ly)?\b"
        r"|\bowner of (?:the )?lock\b|\block owner\b|\b(?:may|might|must) be in use\b"
        r"|\bonly one (?:copy|instance)\b"
        r"|\bmultiple (?:\S+ )?instances\b"
        # "Another installation is in progress", "another update is already running": whatever the noun,
        # another one of them is under way now (issue 20: the "in progress" family, not per tool)
        r"|\banother [a-z][\w-]{1,30}(?: [a-z][\w-]{1,30})? (?:is|are|was) (?:already |currently |still )?"
        r"(?:in progress|running|underway|under way|active)\b",
    ),
    # transient errnos: the resource is busy right now
    "transient": _Feature(
        (
            "temporarily unavailable",
            "eagain",
            "ewouldblock",
            "would block",
            "wouldblock",
            "busy",
            "etxtbsy",
            "try again",
        ),
        r"\bresource temporarily unavailable\b|\beagain\b|\bewouldblock\b|\bwould ?block\b"
        r"|\b(?:device or )?resource busy\b|\bebusy\b|\btext file busy\b|\betxtbsy\b",
    ),
    # Windows' own words for a file another process holds (ERROR_SHARING_VIOLATION / LOCK_VIOLATION)
    "sharing": _Feature(
        (
            "sharing violation",
            "being used by another",
            "locked a portion",
            "lock violation",
            "another process is using",
            "error_sharing_violation",
            "error_lock_violation",
            *_ASCII_LOCALIZED,
        ),
        r"\bsharing violation\b|\bbeing used by another process\b|\blocked a portion of\b|\block violation\b"
        r"|\banother process is using (?:it|the file|this file)\b|\berror_(?:sharing|lock)_violation\b|"
        + "|".join(re.escape(text) for text in _ASCII_LOCALIZED),
    ),
    # the errno codes that mean "held by another process" only on Windows
    "wincode": _Feature(
        ("error 32", "error 33", "winerror 32", "winerror 33", "code: 32", "code: 33"),
        r"\(os error 3[23]\)|\[winerror 3[23]\]|\[error 3[23]\]|\bos \{ code: 3[23]\b|\berror 3[23]\b",
    ),
    "ebusy": _Feature(("ebusy", "busy or locked"), r"\bebusy\b|\bresource busy or locked\b"),
    # a lock file that already exists (O_CREAT|O_EXCL lock protocol): held unless stale
    # EEXIST as the OS says it (an O_EXCL lock file, a mkdir that lost a race); not "reference already
    # exists" and the like, which are a tool's own deterministic refusals
    "exists": _Feature(
        ("exist",),
        r"\bfile exists\b|\beexist\b|\bfile already exists\b|\[errno 17\]|\[winerror 183\]",
    ),
    "already_exists": _Feature(("already exist",), r"\balready exists\b"),
    "enoent": _Feature(
        ("no such file", "enoent", "not empty", "enotempty", "errno 2]"),
        r"\bno such file or directory\b|\benoent\b|\bdirectory not empty\b|\benotempty\b|\[errno 2\]",
    ),
    # a shared cache that concurrent tools fill at once, where ENOENT/EEXIST is another writer's doing
    "cache": _Feature(
        ("cache", "pkg/mod", "pkg\\mod", "store", "_cacache", "registry"),
        r"[/\\](?:\.?cache|caches|_cacache|npm-cache|\.ccache|ccache|sccache|pkg[/\\]mod|go-build"
        r"|\.?pnpm-store|store[/\\]v\d|\.cargo[/\\]registry|\.m2[/\\]repository|\.gradle[/\\]caches"
        r"|\.nuget[/\\]packages|\.bundle[/\\]cache|yarn[/\\](?:cache[/\\])?v\d)(?:[/\\]|\b)",
    ),
    "mkdir": _Feature(
        ("mkdir", "makedirs", "create directory", "creating directory", "make directory"),
        r"\bmkdir\b|\bmakedirs\b|\bcreat(?:e|ing) directory\b|\bmake directory\b",
    ),
    # Windows: a denied rename/unlink/open is usually a file another process holds open
    "denied": _Feature(
        ("denied", "eperm", "eacces", "not permitted", "winerror 5", "os error 5", "error 5"),
        r"\baccess is denied\b|\baccess denied\b|\bis denied\b|\bpermission denied\b|\beperm\b|\beacces\b"
        r"|\boperation not permitted\b|\[winerror 5\]|\(os error 5\)|\berror 5\b",
    ),
    "operation": _Feature(
        (
            "rename",
            "unlink",
            "rmdir",
            "remov",
            "delet",
            "open",
            "move",
            "replac",
            "copy",
            "stat",
            "scandir",
            "utime",
            "chmod",
        ),
        r"\b(?:rename|unlink|rmdir|remove|removing|delete|deleting|open|opening|move|moving|replace"
        r"|copy|copying|copyfile|stat|lstat|scandir|utime|chmod)\b",
    ),
    # words that mean a retry cannot help
    "never": _Feature(
        (
            "no locks",
            "enolck",
            "read-only",
            "read only",
            "erofs",
            "not supported",
            "unsupported",
            "not implemented",
            "enosys",
            "needs to be updated",
            "out of date",
            "out-of-date",
            "not up to date",
            "not up-to-date",
            "outdated",
            "frozen",
            "--locked",
            "in sync",
            "no space",
            "enospc",
            "disk full",
            "quota",
            "deadlock",
            "corrupt",
            "reference broken",
            "bad file descriptor",
            "i/o error",
            "another computer",
            "another host",
            "another machine",
            "broken pipe",
            "poison",
            "not consistent",
            "changed significantly",
            "invalid argument",
            "address already in use",
            "conflict",
        ),
        r"\bno locks available\b|\benolck\b|\bread-only\b|\bread only file\b|\berofs\b|\bnot supported\b"
        r"|\bunsupported\b|\bnot implemented\b|\benosys\b|\bneeds? to be updated\b|\bout[ -]of[ -]date\b"
        r"|\bnot up[ -]to[ -]date\b|\boutdated\b|\bfrozen\b|--locked\b|\bin sync\b|\bno space left\b"
        r"|\benospc\b|\bdisk full\b|\bquota\b|\bdeadlock\b|\bcorrupt|\breference broken\b"
        r"|\bbad file descriptor\b|\bi/o error\b|\banother (?:computer|host|machine)\b|\bbroken pipe\b"
        r"|\bpoison|\bnot consistent\b|\bchanged significantly\b|\binvalid argument\b"
        r"|\baddress already in use\b|\bconflict\b",
    ),
    # a status line printed while waiting or before retrying: progressive forms ("waiting", "retrying in
    # 5 s") are status whatever else the line says
    "wait": _Feature(
        (
            "wait",
            "blocking",
            "sleeping",
            "retrying",
            "retry in",
            "retry after",
            "trying again in",
            "will retry",
            "still locked",
            "may take",
            "trying to acquire",
            "acquiring",
            "try again in",
            "taking a long",
            "retry",
            "attempt",
            "backing off",
            "will try again",
        ),
        r"\bwaiting\b|\bblocking\b|\bsleeping\b|\bretrying\b|\b(?:will )?retry (?:in|after) \d"
        r"|\bretry \d+(?:/\d+)? in\b|\btrying again in\b|\btry again in \d|\bstill locked\b"
        r"|\bmay take (?:a|some)\b|\btrying to acquire\b|\bacquiring\b|\btaking a long time\b"
        r"|\b(?:retry|attempt|try) #?\d+ ?(?:of|/) ?\d+\b|\bbacking off\b|\bwill (?:try again|wait)\b"
        # by structure (issue 20): a line that ends in "wait..." or names the pause it is taking
        r"|\bwait(?:ing)?\s*(?:\.{2,}|\u2026)\s*$"
        r"|\bwait(?:ing)? \d+(?:\.\d+)? ?(?:s|sec|secs|seconds|ms|min|minutes)\b",
    ),
    # "the lock ... was acquired by X": a status line that says who has the lock now, unless it failed
    "acquired": _Feature(("acquired by",), r"\b(?:was |been |is |got |now )?acquired by\b"),
    # "please wait", "wait for it": a status line only when nothing on it says it failed; in an error
    # message it is advice to the user ("Error: ... Please wait for it to finish or terminate it")
    "wait_advice": _Feature(
        ("wait", "trying again"),  # "wait" also finds "will wait"
        r"\bplease wait\b|\bwait (?:for|until)\b|\btrying again\b",
    ),
    # the wait is over and it failed: not a wait line
    "gave_up": _Feature(
        (
            "timed out",
            "timeout",
            "time out",
            "gave up",
            "giving up",
            "exceeded",
            "exhausted",
            "retry count",
            "too many",
            "failed after",
        ),
        r"\btimed out\b|\btimeout (?:waiting|\(|after|when|while|expired|reached|of)|\btime ?out waiting\b"
        r"|\bgave up\b|\bgiving up\b|\bexceeded\b|\bexhausted\b|\bretry count\b|\btoo many\b"
        r"|\bfailed after\b",
    ),
    "failure": _Feature(
        (
            "error",
            "fail",
            "fatal",
            "exception",
            "panic",
            "traceback",
            "abort",
            "cannot",
            "can't",
            "could not",
            "unable",
            "denied",
            "e: ",
        ),
        r"\berror|\bfail|\bfatal\b|exception\b|\bpanicked\b|\btraceback\b|\babort|\bcannot\b|\bcan't\b"
        r"|\bcould not\b|\bunable\b|\bdenied\b",
    ),
    "progress": _Feature(
        (
            "compiling",
            "building",
            "linking",
            "finished",
            "download",
            "install",
            "success",
            "fetching",
            "collecting",
            "running",
            "resolved",
            "prepared",
            "checking",
            "updating",
            "unpacking",
            "setting up",
            "generating",
            "copying",
            "done",
            "pass",
            "ok",
            "/",
        ),
        r"^(?:\[ *\d+ */ *\d+\]|(?:compiling|building|linking|finished|downloaded|downloading|installing"
        r"|installed|successfully|fetching|collecting|running|resolved|prepared|checking|updating|unpacking"
        r"|setting up|generating|copying|done|pass|passed|ok)\b)|\b(?:passed|ok)$",
    ),
}


@lru_cache(maxsize=1)
def _feature_regexes() -> tuple[tuple[str, tuple[str, ...], re.Pattern[str]], ...]:
    return tuple((name, f.keywords, re.compile(f.regex)) for name, f in FEATURES.items())


def _features(low: str, plain: str = "") -> frozenset[str]:
    """The word classes a normalized, lower-cased line contains. ``plain``: the line with its prefixes,
    which say whether it reports a failure ("Error: ...", "E: ...") even when the message itself does not."""
    found = []
    for name, keywords, regex in _feature_regexes():
        text = plain.lower() if name == "failure" and plain else low
        if any(k in text for k in keywords) and regex.search(text):
            found.append(name)
    # Windows' file-in-use text in another language: only a line with a non-ASCII character (or a "?" that
    # stands for one) can hold it, which keeps this search off the plain-ASCII bulk of a build log.
    if "sharing" not in found and (not low.isascii() or "?" in low) and _localized().search(low):
        found.append("sharing")
    return frozenset(found)


# The code pages Windows uses for a language (ANSI, OEM): the ones its text gets garbled through when a
# console, a log file or a tool decodes the bytes with the wrong one.
_CODE_PAGES: Final = {
    "zh-CN": ("gbk",),
    "zh-TW": ("big5",),
    "ja": ("cp932",),
    "ko": ("cp949",),
    "ru": ("cp1251", "cp866"),
    "pl": ("cp1250", "cp852"),
    "ro": ("cp1250", "cp852"),
    "tr": ("cp1254", "cp857"),
}
_SHOWN_AS: Final = ("utf-8", "cp1252", "latin-1", "cp437", "cp850")  # what the wrong decoder usually is
_ANY_LETTER: Final = (
    r"(?:[^\x00-\x7f]{1,3}|\?)?"  # one accented letter, garbled into 1-3 others or a "?" or lost
)


def _garbled(text: str, pages: tuple[str, ...]) -> set[str]:
    """``text`` as it reads after the usual mis-decodings: its bytes in UTF-8 or in the language's code
    pages, decoded as another of those or as a Western code page."""
    forms = {text}
    for true in ("utf-8", *pages):
        try:
            raw = text.encode(true)
        except UnicodeEncodeError:
            continue
        for shown in (*_SHOWN_AS, *pages):
            if shown != true:
                try:
                    forms.add(raw.decode(shown))
                except UnicodeDecodeError:
                    continue
    return forms


@lru_cache(maxsize=1)
def _localized() -> re.Pattern[str]:
    """Every fragment of catalogue.SHARING_VIOLATION_TEXTS, lower-cased, and the garbled forms of each:
    for a Latin-script fragment, each accented letter may be garbled or lost ("u?ywany", "uĹĽywany");
    a fragment in another script is listed as each of its mis-decoded byte forms (UTF-8 Cyrillic read as
    cp1251, cp866 read as cp1251, UTF-8 Chinese read as cp1252...)."""
    alternatives: set[str] = set()
    for language, fragment, _source in SHARING_VIOLATION_TEXTS:
        text = fragment.lower()
        if text in _ASCII_LOCALIZED:
            continue
        ascii_letters = sum(c.isascii() and c.isalpha() for c in text)
        if ascii_letters >= 12:  # Latin script: the ASCII letters carry it, whatever became of the rest
            alternatives.add("".join(re.escape(c) if c.isascii() else _ANY_LETTER for c in text))
            continue
        pages = _CODE_PAGES.get(language, ())
        for form in _garbled(fragment, pages):
            alternatives.add(re.escape(form.lower()))
    return re.compile("|".join(sorted(alternatives, key=len, reverse=True)))


# Per-command hints for Windows (--command, or the command's own name): where an EPERM/EACCES/"Access is
# denied" on a file operation is a file held open by another process (a second installer, an editor,
# antivirus or the search indexer scanning a fresh file), not a missing permission.
COMMAND_HINTS: Final[dict[str, str]] = {
    "pip": r"site-packages|[/\\]scripts[/\\]|[/\\]temp[/\\]pip-|[/\\]pip[/\\]cache|\.venv|[/\\]venv",
    "uv": r"[/\\]uv[/\\]cache|[/\\]cache[/\\]uv|\.venv|[/\\]venv|site-packages|[/\\]scripts[/\\]",
    "npm": r"node_modules|npm-cache|_cacache|[/\\]temp[/\\]npm-|[/\\]npm[/\\]",
    "pnpm": r"\.?pnpm-store|node_modules|[/\\]pnpm[/\\]|\.pnpm",
    "yarn": r"node_modules|[/\\]yarn[/\\]|\.yarn",
    "go": r"pkg[/\\]mod|go-build|[/\\]go[/\\]",
    "cargo": r"[/\\]target[/\\]|\.cargo|\.rustup",
    "msbuild": r"[/\\]obj[/\\]|[/\\]bin[/\\]|\.nuget|[/\\]packages[/\\]",
    "ccache": r"ccache|sccache",
}
_COMMAND_ALIASES: Final = {
    "pip3": "pip",
    "python": "pip",
    "python3": "pip",
    "py": "pip",
    "uvx": "uv",
    "npx": "npm",
    "node": "npm",
    "pnpx": "pnpm",
    "dotnet": "msbuild",
    "csc": "msbuild",
    "vbc": "msbuild",
    "devenv": "msbuild",
    "nuget": "msbuild",
    "sccache": "ccache",
    "rustc": "cargo",
}
# Directories any of these tools write to concurrently, for output whose command is unknown.
_ANY_TOOL_DIRS: Final = "|".join(COMMAND_HINTS.values()) + (
    r"|[/\\]\.?cache[/\\]|[/\\]temp[/\\]|[/\\]tmp[/\\]|[/\\]staging[/\\]|[/\\]build[/\\]|[/\\]out[/\\]"
)
# An installer replacing its own running launcher is self-held: pip cannot overwrite the pip.exe it runs
# from (astral-sh/uv and pypa/pip report this as "Access is denied" on Scripts\pip.exe).
# Windows refuses to rename onto (or away) a file any process has open: the atomic replace every
# installer and cache writer does is the operation antivirus and indexers break, wherever the file is.
# A row or table lock inside a database ("Lock wait timeout exceeded; try restarting transaction"): a
# transaction conflict the statement's own logic has to handle, not a held file or tool lock.
_DATABASE_LOCK: Final = re.compile(r"\btransaction\b|\bquery\b|\bstatement\b|\brow lock|\btable lock")
_RENAME: Final = re.compile(r"\brename\b|\bmove\b|\bmoving\b")
# Windows refuses to delete an executable image some process has loaded with ACCESS_DENIED, and MinGW/
# Cygwin tools report the sharing violation of opening a running .exe for writing as EACCES ("ld: cannot
# open output file app.exe: Permission denied"): a denied removal or rewrite of an .exe/.dll is a program
# still running. A denied copy is not: MSBuild's Copy task, which knows, does not retry those.
_IMAGE: Final = re.compile(r"\.(?:exe|dll|pyd|node|sys)\b")
_REMOVAL: Final = re.compile(
    r"\b(?:remove|removing|delete|deleting|unlink)\b|\boutput file\b|\bfor writing\b"
)
_SELF_LAUNCHER: Final = re.compile(r"[/\\]scripts[/\\](?:pip|pip3|uv|uvx)(?:[\d.]*)\.exe\b")


def command_name(argv0: str) -> str:
    """The hint key for a command (its file name without directory or .exe), "" when it has none."""
    name = argv0.replace("\\", "/").rsplit("/", 1)[-1].lower()
    for suffix in (".exe", ".cmd", ".bat", ".ps1"):
        name = name.removesuffix(suffix)
    name = re.sub(r"[\d.]+$", "", name) or name
    name = _COMMAND_ALIASES.get(name, name)
    return name if name in COMMAND_HINTS else ""


@lru_cache(maxsize=16)
def _hint_dirs(command: str) -> re.Pattern[str]:
    return re.compile(COMMAND_HINTS.get(command, _ANY_TOOL_DIRS))


# ---------------------------------------------------------------------------------------------------
# The catalogue tier, compiled once for a platform.
# ---------------------------------------------------------------------------------------------------


def active_signatures(*, windows: bool, extra: Sequence[str] = ()) -> tuple[Signature, ...]:
    """BUILTIN filtered for the platform (windows_only ones only when windows=True), plus user regexes
    from --retry-on, each as Signature(family="user", pattern=regex, ...)."""
    builtin = tuple(s for s in BUILTIN if windows or not s.windows_only)
    user = tuple(
        Signature(
            family=USER_FAMILY,
            pattern=regex,
            description="a --retry-on regex given by the user",
            example="",
            source="",
        )
        for regex in extra
    )
    return builtin + user


def check_user_regex(regex: str) -> str | None:
    """None if the regex compiles, else a short reason (e.g. the re.error message) for a usage error.

    A regex that matches an empty line is refused too: it would match every output, and so turn
    every failure into "contention" and retry it.
    """
    try:
        compiled = re.compile(regex, re.MULTILINE)
    except re.error as exc:
        return str(exc)
    except (OverflowError, RecursionError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"
    if compiled.search("") is not None:
        return "it matches an empty line, so every failure would be retried"
    return None


def _literal_start(pattern: str) -> str:
    """The form of a catalogue pattern used for the whole-tail pre-scan (a leading \\b dropped)."""
    return pattern[2:] if pattern.startswith(r"\b") else pattern


@lru_cache(maxsize=256)
def _literal_head(pattern: str) -> str:
    """The literal text a catalogue pattern's every match starts with ("" if it starts with a class)."""
    head: list[str] = []
    for char in _literal_start(pattern):
        if char in "?*{" and head:
            head.pop()  # "error:?" - the character before an optional quantifier may be absent
        if char in "\\[](){}.?*+|^$":
            break
        head.append(char)
    return "".join(head)


@lru_cache(maxsize=512)  # every catalogue pattern, its scan form and its context rule stay compiled
def _compile(pattern: str, flags: int = 0) -> re.Pattern[str]:
    return re.compile(pattern, flags)


@lru_cache(maxsize=1)
def _never() -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{s.pattern})" for s in NEVER_RETRY))


@lru_cache(maxsize=1)
def _waits() -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{s.pattern})" for s in WAIT_LINES))


# ---------------------------------------------------------------------------------------------------
# Judging one message.
# ---------------------------------------------------------------------------------------------------


@dataclass
class _Finding:
    kind: str  # contention | wait | never | failure | progress | none
    tier: str = ""
    family: str = ""
    reason: str = ""
    lines: tuple[int, ...] = ()  # indexes into the tail's lines
    max_retries: int | None = None


class _Judge:
    def __init__(self, lines: list[_Line], signatures: tuple[Signature, ...], *, windows: bool, command: str):
        self.lines = lines
        self.windows = windows
        self.command = command
        self.builtin = tuple(s for s in signatures if s.family != USER_FAMILY)
        self.features = [_features(line.low, line.plain) for line in lines]
        # Pre-scan: which lines can a catalogue pattern match at all? A pattern that starts with a literal
        # nominates the lines that contain it (a substring search; its match may go on into the next
        # line, when that continues this one); the others are searched over the joined tail, one
        # substring-led regex search each, instead of every pattern on every line.
        self.candidates: dict[int, set[int]] = {}  # line -> the catalogue entries that may match there
        joined = "\n".join(line.plain for line in lines)
        starts = [0]
        for line in lines:
            starts.append(starts[-1] + len(line.plain) + 1)
        import bisect

        for n, sig in enumerate(self.builtin):
            head = _literal_head(sig.pattern)
            if len(head) >= 3:
                if head in joined:
                    for i, line in enumerate(lines):
                        if head in line.plain:
                            self.candidates.setdefault(i, set()).add(n)
                continue
            for hit in _compile(_literal_start(sig.pattern)).finditer(joined):
                self.candidates.setdefault(bisect.bisect_right(starts, hit.start()) - 1, set()).add(n)
        self.waits = _waits()
        self.never = _never()

    def continues(self, i: int) -> bool:
        """Whether line i + 1 continues line i: its cause, its details, or the rest of a wrapped sentence."""
        if i + 1 >= len(self.lines):
            return False
        head, nxt = self.lines[i], self.lines[i + 1]
        return (
            head.plain.endswith((":", ",", "(", "[", "-", "\u2026"))
            or nxt.raw[:1].isspace()
            or (nxt.plain[:1].islower() and _NEW_MESSAGE.match(nxt.plain) is None)
            or nxt.plain.lstrip().lower().startswith(("caused by", "cause", "because", "reason", "detail"))
            or len(head.raw) in _CONSOLE_WIDTHS  # cut by a console at its width
        )

    def message(self, i: int) -> str:
        """Line i with the next one when that continues it: a heading with its cause, a wrapped sentence."""
        if self.continues(i):
            return self.lines[i].plain + " " + self.lines[i + 1].text
        return self.lines[i].plain

    def judge(self, i: int) -> _Finding:
        line = self.lines[i]
        feats = self.features[i]
        if self.waits.search(line.plain):
            return _Finding("wait", reason="a tool's status line while it waits for a lock", lines=(i,))
        if self.never.search(line.plain):
            return _Finding("never", reason="the filesystem cannot lock at all", lines=(i,))
        found = self._catalogue(i)
        if found is not None:
            return found
        advice_only = "failure" in feats or ("lock" in feats and "holder" in feats)
        if ("wait" in feats or ("wait_advice" in feats and not advice_only)) and "gave_up" not in feats:
            return _Finding("wait", reason="a status line: the tool waits or retries by itself", lines=(i,))
        if "acquired" in feats and "lock" in feats and not feats & {"failure", "gave_up", "never"}:
            return _Finding("wait", reason="a status line: it says who holds the lock now", lines=(i,))
        found = self._generic(i)
        if found is not None:
            return found
        if "failure" in feats:
            return _Finding("failure", lines=(i,))
        if "progress" in feats:
            return _Finding("progress", lines=(i,))
        return _Finding("none")

    def _catalogue(self, i: int) -> _Finding | None:
        nominated = self.candidates.get(i)
        if not nominated:
            return None
        text = self.lines[i].plain
        message = self.message(i)
        for n in sorted(nominated):
            sig = self.builtin[n]
            hit = _compile(sig.pattern).search(message)
            if hit is None or hit.start() > len(text):
                continue  # a match that starts on the next line is that line's own
            if sig.context is not None and self._dropped(sig, i):
                continue
            span = (i,) if hit.end() <= len(text) else (i, i + 1)
            return _Finding("contention", TIER_CATALOGUE, sig.family, sig.description, span)
        return None

    def _dropped(self, sig: Signature, i: int) -> bool:
        context = sig.context
        assert context is not None
        if context.before is not None:
            before = _compile(context.before)
            for j in range(max(0, i - _BEFORE_WINDOW), i):
                if before.search(self.lines[j].plain):
                    return True
        if context.heading:
            for j in range(i + 1, min(len(self.lines), i + 1 + _HEADING_WINDOW)):
                text = self.lines[j].plain
                if self.waits.search(text) or self.never.search(text):
                    return True
                if any(
                    _compile(self.builtin[n].pattern).search(text) and self.builtin[n].context is None
                    for n in self.candidates.get(j, ())
                ):
                    return False
        return False

    def _near(self, i: int, feature: str) -> bool:
        """Whether line i, or a line just above it (the traceback frame that raised it), has a feature."""
        return any(feature in self.features[j] for j in range(max(0, i - _BEFORE_WINDOW), i + 1))

    def _generic(self, i: int) -> _Finding | None:
        own = self.features[i]
        nxt = self.features[i + 1] if self.continues(i) else frozenset()
        both = own | nxt
        span = (i, i + 1) if nxt and nxt & {"lock", "holder", "transient", "sharing", "wincode"} else (i,)
        if "never" in both:
            return None
        low = self.lines[i].low
        windows = self.windows
        # Windows' own sharing/lock-violation words, in any tool's output.
        if "sharing" in own or (windows and "wincode" in own):
            return _Finding(
                "contention", TIER_GENERIC, "windows-file-in-use", "a file another process holds open", span
            )
        if windows and "ebusy" in own:
            return _Finding(
                "contention",
                TIER_GENERIC,
                "windows-file-in-use",
                "EBUSY on Windows: libuv's name for a sharing violation",
                span,
            )
        denied = "denied" in both
        if (
            "lock" in own
            and ("holder" in both or "transient" in both)
            and not (denied and "holder" not in both)
        ):
            return _Finding(
                "contention",
                TIER_GENERIC,
                "lock-held",
                "a lock or resource held by another process"
                if "holder" in both
                else "a lock attempt failed with a transient errno (EAGAIN/EBUSY)",
                span,
            )
        if "lock" in own and "gave_up" in own and not denied and not _DATABASE_LOCK.search(low):
            # The tool waited for its lock itself and gave up ("timed out waiting for the lock", "could
            # not acquire the lock after 30 attempts"): someone held it all that time.
            return _Finding(
                "contention", TIER_GENERIC, "lock-held", "the tool waited for a lock and gave up", span
            )
        if "lock" in own and "exists" in own and not denied:
            return _Finding(
                "contention", TIER_GENERIC, "lock-file-exists", "a lock file another process created", (i,)
            )
        if own & {"enoent", "exists", "already_exists"} and "cache" in own and not denied:
            return _Finding(
                "contention",
                TIER_GENERIC,
                "shared-cache-race",
                "a file in a shared cache appeared or vanished under another writer",
                (i,),
            )
        if "exists" in own and not denied and self._near(i, "mkdir"):
            return _Finding(
                "contention", TIER_GENERIC, "mkdir-race", "two processes created one directory", (i,)
            )
        if windows and denied and "holder" not in own and ("operation" in own or _IMAGE.search(low)):
            if _SELF_LAUNCHER.search(low):
                return None
            if "operation" not in own:  # a loaded image in a tool's own directory (pip's .pyd, npm's .node)
                if _hint_dirs(self.command).search(low):
                    return _Finding(
                        "contention",
                        TIER_HINT,
                        "windows-access-denied",
                        "Windows denied access to a program file another process has loaded",
                        (i,),
                        HINT_RETRIES,
                    )
                return None
            image = _IMAGE.search(low) is not None and _REMOVAL.search(low) is not None
            if image or _RENAME.search(low) or _hint_dirs(self.command).search(low):
                return _Finding(
                    "contention",
                    TIER_HINT,
                    "windows-access-denied",
                    "Windows denied a file operation inside a cache, environment or output directory: "
                    "usually a file another process (a second tool, antivirus, the indexer) holds open",
                    (i,),
                    HINT_RETRIES,
                )
        return None


# ---------------------------------------------------------------------------------------------------
# 5-6. The verdict.
# ---------------------------------------------------------------------------------------------------

_PID = re.compile(
    r"\b(?:pid|PID)\b ?[=:#(]? ?(\d{1,10})\b|\bprocess(?: id)? ?[=:#(]? ?(\d{1,10})\b|\((\d{1,10})\)[\"']"
)
_LOCK_PATH = re.compile(r"(?:[A-Za-z]:)?[\\/]?[^\s'\"`,;:()\[\]]*(?:lock|LOCK|\.pid)[^\s'\"`,;:()\[\]]*")


def holder_pid(message: str) -> int | None:
    found = _PID.search(message)
    if found is None:
        return None
    pid = int(next(g for g in found.groups() if g))
    return pid if 0 < pid < 2**31 else None  # os.kill / OpenProcess take a C int


def lock_path(message: str) -> str:
    """The lock file a message names (the longest path-like word with "lock" in it), or ""."""
    paths = [p.rstrip(".") for p in _LOCK_PATH.findall(message) if ("/" in p or "\\" in p or "." in p)]
    return max(paths, key=len) if paths else ""


def _ancestors() -> set[int]:
    """This process and its ancestors (as far as the platform tells: /proc on Linux, else the parent)."""
    pids = {os.getpid(), os.getppid()}
    pid = os.getppid()
    for _ in range(64):
        try:
            with open(f"/proc/{pid}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
            pid = int(fields[1])
        except (OSError, ValueError, IndexError):
            break
        if pid <= 1:
            break
        pids.add(pid)
    return pids


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists now (processes.alive: the one liveness check)."""
    from ..processes import alive

    return alive(pid)


@lru_cache(maxsize=1)
def _killed_child() -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{sig.pattern})" for sig in KILLED_CHILD_LINES))


# A killed-process line that something quotes is no report of a kill. benchmarks/false_oom.py found real
# compile errors retried as OOM while another process of the build's cgroup was OOM-killed: gcc's
# `#error g++: fatal error: Killed signal terminated program cc1plus`, rustc's `compile_error!("... (signal:
# 9, SIGKILL: kill)")`. A driver, linker or shell prints its own line bare; a quotation shows by what is
# around the match:
# - before it on the line: a source location (``a.c:1:2: error: #error ...``, javac's ``A.java:3: error:``),
#   a directive or macro that prints its argument, or an open double quote (a string literal, a message);
_QUOTED_BEFORE: Final = re.compile(r"\S:\d+(?::\d+)?: |#\s*error\b|compile_error!|static_assert")
# - the line is a source line as gcc >= 9 and rustc show one, behind a gutter (``    1 | #error ...``);
_SOURCE_GUTTER: Final = re.compile(r"^\s*\d*\s*\|")
# - the next line points into source (rustc's `` --> a.rs:1:1``, a caret line under clang's source line) or
#   is a Java stack frame;
_POINTS_INTO_SOURCE: Final = re.compile(r"^\s*(?:--> \S|[\^~]+\s*$|at [\w$.<>]+\()")
# - a Python traceback's frame comes just before (the raising line, or the exception's message where the
#   source is not shown), or two lines before an exception's message.
_TRACEBACK_FRAME: Final = re.compile(r'^\s*File "[^"\n]*", line \d+')
_EXCEPTION_NAME: Final = re.compile(r"^[A-Za-z_][\w.]*(?:Error|Exception|Exit|Failure|Interrupt)\b")


def _quoted(lines: Sequence[_Line], index: int, start: int) -> bool:
    """Whether the killed-process match at ``start`` of ``lines[index]`` quotes such a line (see above)."""
    plain = lines[index].plain
    before = plain[:start]
    if before.count('"') % 2 or _QUOTED_BEFORE.search(before) or _SOURCE_GUTTER.match(plain):
        return True
    if index + 1 < len(lines) and _POINTS_INTO_SOURCE.match(lines[index + 1].plain):
        return True
    if index >= 1 and _TRACEBACK_FRAME.match(lines[index - 1].plain):
        return True
    return index >= 2 and bool(
        _TRACEBACK_FRAME.match(lines[index - 2].plain) and _EXCEPTION_NAME.match(plain)
    )


def killed_line(text: str) -> str | None:
    """The last line of the output's tail (bounded as for contention) that says a process the command ran
    was killed by SIGKILL (catalogue.KILLED_CHILD_LINES), as printed and not quoted (``_quoted``); None if
    there is none."""
    pattern = _killed_child()
    lines = tail_lines(text)
    for index in range(len(lines) - 1, -1, -1):
        match = pattern.search(lines[index].plain)
        if match is not None and not _quoted(lines, index, match.start()):
            return lines[index].raw
    return None


def oom_verdict(
    text: str,
    *,
    status: int,
    kills: tuple[int, str] | None,
    pid: int | None = None,
    victims: Sequence[int] | None = None,
) -> Verdict | None:
    """Was a failed attempt killed by the kernel's OOM killer (issue 19)? None if nothing was killed.

    Something was killed when the command exited 137 (SIGKILL, or a shell saying its command got it) or
    its output says a process it ran was (``killed_line``). That alone is never retried: a person, a
    --timeout, ninja's interrupt or a watchdog sends the same SIGKILL. The kernel decides: ``kills`` is
    (OOM kills counted while the attempt ran, where) from memory.oom_kills_since, None if it cannot be read.
    Retried (kind "oom") only with at least one such kill. Without one, a command killed itself (exit 137)
    gets kind "killed": final, not retried, whatever its output says. A command that only printed that a
    process of its was killed (a test suite may kill its own children) is left to the contention verdict
    (None), as any other failure.

    ``pid``: the command's, when it died of SIGKILL itself; ``victims``: the pids the kernel's log names as
    OOM-killed since the attempt started (memory.oom_victims; None: the log cannot be read). A log that
    names at least as many victims as were counted, none of them the command, says that someone else
    killed it while the OOM killer killed another process of the build: kind "killed", not retried."""
    line = killed_line(text)
    if status != SIGKILL_STATUS and line is None:
        return None
    if line is None:
        evidence = f"exit status {status} (SIGKILL)"
        what = f"the command was killed by SIGKILL (exit {status})"
    else:
        evidence, what = line, f'a process it ran was killed ("{_short(line)}")'
    if kills is None or kills[0] <= 0:
        if status != SIGKILL_STATUS:
            return None
        if kills is None:
            reason = f"{what}, and the kernel's OOM-kill count cannot be read here (Linux only)"
        else:
            reason = f"{what}, but the kernel counted no OOM kill {kills[1]} while it ran: not the OOM killer"
        return Verdict(False, "killed", reason, lines=(evidence,))
    count, where = kills
    kernel = f"{count} OOM kill{'' if count == 1 else 's'} {where} while it ran"
    if (
        line is None
        and pid is not None
        and victims is not None
        and len(victims) >= count
        and pid not in victims
    ):
        named = ", ".join(str(victim) for victim in victims[-3:])
        reason = (
            f"{what}, and the kernel counted {kernel}, but its log names other processes as killed "
            f"(pid {named}), not the command (pid {pid}): not the OOM killer"
        )
        return Verdict(False, "killed", reason, lines=(evidence,))
    reason = f"{what}, and the kernel counted {kernel}"
    return Verdict(True, "oom", reason, TIER_KERNEL, OOM_FAMILY, (evidence,), oom_kills=kernel)


def classify(
    text: str,
    *,
    windows: bool,
    command: str = "",
    extra: Sequence[str] = (),
    signatures: Sequence[Signature] | None = None,
    check_holders: bool = False,
    user_regex_seconds: float = USER_REGEX_SECONDS,
    ancestors: Callable[[], set[int]] = _ancestors,
    alive: Callable[[int], bool] = pid_alive,
    commands: Sequence[tuple[int, int | None]] = (),
    started: float | None = None,
    cwd: str | None = None,
) -> Verdict:
    """The verdict on a failed attempt's output: retry it (lock contention) or not, and why.

    ``windows``: the platform the output comes from. ``command``: the command's name, for the Windows
    hints. ``extra``: --retry-on regexes. ``signatures``: the catalogue to use (default: the platform's).
    ``check_holders``: look at the pid or lock file the message names (only meaningful while the output
    is fresh); ``commands``: the step's commands so far as (pid, own process group or None);
    ``started``: when the step started (Unix time; a lock file nobody holds is stale only if older; None:
    now); ``cwd``: the command's directory, for relative lock paths.
    """
    if signatures is None:
        signatures = active_signatures(windows=windows, extra=extra)
    else:
        extra = (*extra, *(s.pattern for s in signatures if s.family == USER_FAMILY))
    lines = tail_lines(text)
    if not lines:
        return Verdict(False, "none", "no output to examine")
    judge = _Judge(
        lines, tuple(signatures), windows=windows, command=command_name(command) if command else ""
    )
    findings = [judge.judge(i) for i in range(len(lines))]
    note = ""
    if extra:
        try:
            matched = user_matches([line.raw for line in lines], tuple(extra), user_regex_seconds)
        except UserRegexTimeout as exc:
            matched, note = [], f"; {exc}, so they were not applied"
        for index in matched:
            if findings[index].kind not in ("wait", "never"):
                findings[index] = _Finding(
                    "contention", TIER_USER, USER_FAMILY, "a --retry-on regex matched", (index,)
                )
    last = max((i for i, f in enumerate(findings) if f.kind == "contention"), default=None)
    if last is None:
        waits = [i for i, f in enumerate(findings) if f.kind == "wait"]
        if waits:
            w = waits[-1]
            return Verdict(
                False,
                "wait",
                "only wait lines: the tool waited for a lock, its failure has another cause",
                lines=(lines[w].raw,),
            )
        return Verdict(False, "none", "no contention in the last lines of the output" + note)
    # One failure prints a block: the error, then its explanation ("Another git process seems to be
    # running...", "W: Be aware that..."). Within the last block the most specific tier speaks for it.
    block = [last]
    for j in range(last - 1, max(-1, last - _BLOCK_LINES), -1):
        if findings[j].kind in ("progress", "wait", "never"):
            break
        if findings[j].kind == "contention":
            block.append(j)
    last = min(block, key=lambda j: (_TIER_RANK[findings[j].tier], -j))
    found = findings[last]
    # The deciding line first, then the rest of its block (apt's "It is held by process N" line names the
    # holder even when another line of the block decided).
    shown = [*found.lines, *(j for j in sorted(block) for j in findings[j].lines)]
    evidence = tuple(dict.fromkeys(lines[j].raw for j in shown))[:_EVIDENCE_LINES]
    base = Verdict(
        True, "contention", found.reason, found.tier, found.family, evidence, max_retries=found.max_retries
    )
    after = findings[last + 1 :]
    # A contention heading followed by a wait: the tool waited; what failed afterwards is another story.
    for j in range(last + 1, min(len(findings), last + 1 + _HEADING_WINDOW)):
        if findings[j].kind == "wait" and j not in found.lines:
            reason = (
                f'the tool waited after it ("{_short(lines[j].raw)}"): its failure is judged by its own cause'
            )
            return replace(base, retry=False, kind="wait", reason=reason)
    # Its cause, on the next lines, says no retry can help (uv's "Failed to acquire lock" above EBADF).
    for j in range(last + 1, min(len(findings), last + 1 + _CAUSE_WINDOW)):
        never = findings[j].kind == "never" or (
            "never" in judge.features[j] and findings[j].kind != "contention"
        )
        if never and not (j in found.lines and found.tier != TIER_CATALOGUE):
            reason = f'its cause says a retry cannot help ("{_short(lines[j].raw)}")'
            return replace(base, retry=False, kind="never", reason=reason)
    # The command went on (progress) and then failed for another reason: the contention was history.
    progress = next((k for k, f in enumerate(after) if f.kind == "progress"), None)
    if progress is not None:
        failure = next((k for k, f in enumerate(after[progress + 1 :]) if f.kind == "failure"), None)
        if failure is not None:
            where = last + 1 + progress + 1 + failure
            reason = (
                f'the command went on after it and failed for another reason ("{_short(lines[where].raw)}")'
            )
            return replace(base, retry=False, kind="unrelated", reason=reason)
    message = " ".join(lines[j].text for j in dict.fromkeys(shown))
    # A file Windows itself keeps open from boot to shutdown: no neighbour will ever let go of it.
    from . import holders as _holders

    held_by_os = _holders.os_held_file(message)
    if held_by_os:
        reason = f"{held_by_os} is a file Windows itself always holds: no retry frees it"
        return replace(
            base,
            retry=False,
            kind="never",
            reason=reason,
            held_file=held_by_os,
            file_check="held by Windows itself (page/swap/hibernation file, crash dump log, registry hive)",
        )
    return _check_holders(
        base,
        message,
        check=check_holders,
        ancestors=ancestors,
        alive=alive,
        commands=tuple(commands),
        started=started,
        cwd=cwd,
    )


def _check_holders(
    base: Verdict,
    message: str,
    *,
    check: bool,
    ancestors: Callable[[], set[int]],
    alive: Callable[[int], bool],
    commands: tuple[tuple[int, int | None], ...],
    started: float | None,
    cwd: str | None,
) -> Verdict:
    """The holder checks (holders.py): a pid or a lock file the evidence names, looked at now."""
    from . import holders as _holders

    pid = holder_pid(message)
    path = lock_path(message)
    if path and _holders.is_pin_file(path):
        path = ""  # Cargo.lock, package-lock.json: a record of versions, not a lock anyone holds
    if not check:
        return replace(
            base,
            holder=pid,
            holder_check="" if pid is None else "not checked (the output is not live)",
            held_file=path,
            file_check="not checked (the output is not live)" if path else "",
        )
    resolved = _resolve(path, cwd) if path else ""
    if pid is not None:
        host = _holders.remote_host(message)
        if host:
            return replace(
                base,
                holder=pid,
                holder_check=f"on host {host}, not this machine: not checked",
                blocker=f"process {pid} on {host}",
            )
        own = _holders.own_process(pid, ancestors(), commands)
        if own:
            reason = f"the process named as the holder (pid {pid}) is {own}: the step blocks itself"
            return replace(base, retry=False, kind="self-held", reason=reason, holder=pid, holder_check=own)
        if not alive(pid):
            remove = f"; if no other process uses it, remove {path}" if path else ""
            reason = f"the holder (pid {pid}) is gone but its lock stays: a stale lock{remove}"
            return replace(
                base,
                retry=False,
                kind="stale",
                reason=reason,
                holder=pid,
                holder_check="dead",
                stale_file=path,
                held_file=resolved,
                file_check=_describe_file(resolved) if resolved else "",
            )
        if resolved:
            state = _holders.lock_file_state(resolved, alive=alive)
            if state.recorded_pid == pid and state.recorded_pid_reused:
                reason = (
                    f"pid {pid} in {path} belongs to a process that started after the file was written: "
                    f"its holder is gone, a stale lock; if no other process uses it, remove {path}"
                )
                return replace(
                    base,
                    retry=False,
                    kind="stale",
                    reason=reason,
                    holder=pid,
                    holder_check="alive, but a reused pid (started after the lock file was written)",
                    stale_file=path,
                    held_file=resolved,
                    file_check="present, its recorded pid reused",
                )
        return replace(base, holder=pid, holder_check="alive, another process", blocker=f"process {pid}")
    if not resolved:
        return base
    state = _holders.lock_file_state(resolved, alive=alive)
    if not state.exists:
        return replace(base, held_file=resolved, file_check="absent now: its holder has finished")
    mine = ancestors()
    if state.holders:
        foreign = [p for p in state.holders if not _holders.own_process(p, mine, commands)]
        if not foreign:
            first = state.holders[0]
            own = _holders.own_process(first, mine, commands)
            reason = f"{path} is held by pid {first}, {own}: the step blocks itself"
            return replace(
                base,
                retry=False,
                kind="self-held",
                reason=reason,
                holder=first,
                holder_check=own,
                held_file=resolved,
                file_check=f"present, held by pid {first} ({state.how})",
            )
        holder = foreign[0]
        return replace(
            base,
            holder=holder,
            holder_check="alive, another process",
            held_file=resolved,
            file_check=f"present, held by pid {holder} ({state.how})",
            blocker=f"process {holder}",
        )
    if state.held_by_unknown:
        return replace(
            base,
            held_file=resolved,
            file_check=f"present, held by another process ({state.how})",
            blocker=f"whoever holds {resolved}",
        )
    if _holders.is_permanent_lock_file(resolved):
        return replace(
            base, held_file=resolved, file_check="present, nobody holds it now: its holder finished"
        )
    since = started if started is not None else time.time()
    if state.mtime is not None and state.mtime < since:
        reason = (
            f"{path} is present, nobody holds it and it is older than the step: a stale lock; if no other "
            f"process uses it, remove {path}"
        )
        return replace(
            base,
            retry=False,
            kind="stale",
            reason=reason,
            stale_file=path,
            held_file=resolved,
            file_check="present, held by nobody, older than the step",
        )
    return replace(
        base,
        held_file=resolved,
        file_check="present, held by nobody, written since the step started (a holder that keeps no lock)",
    )


def _resolve(path: str, cwd: str | None) -> str:
    """A lock path from a message as this machine would open it (~ expanded, relative to the command's
    directory)."""
    path = os.path.expanduser(path)
    if not os.path.isabs(path) and cwd:
        path = os.path.join(cwd, path)
    return path


def _describe_file(path: str) -> str:
    return "present" if os.path.lexists(path) else "absent now"


def _short(line: str, limit: int = 120) -> str:
    line = line.strip()
    return line if len(line) <= limit else line[: limit - 3] + "..."


# ---------------------------------------------------------------------------------------------------
# User regexes, in a child process with a time limit.
# ---------------------------------------------------------------------------------------------------

# The child limits its own CPU time too (POSIX): should fi_run itself be killed outright (SIGKILL, or a
# SIGTERM to a `fi_run classify` without handlers), the kernel still ends a runaway search.
_USER_CHILD: Final = (
    "import json,re,sys\n"
    "try:\n"
    " import resource;s=int(sys.argv[1]);resource.setrlimit(resource.RLIMIT_CPU,(s,s))\n"
    "except (ImportError,ValueError,OSError):\n"
    " pass\n"
    "d=json.loads(sys.stdin.buffer.read())\n"
    "ps=[re.compile(p,re.M) for p in d['p']]\n"
    "sys.stdout.write(json.dumps([i for i,l in enumerate(d['l']) if any(p.search(l) for p in ps)]))\n"
)


class UserRegexTimeout(Exception):
    """The --retry-on regexes did not finish within their time limit."""


def user_matches(lines: Sequence[str], patterns: tuple[str, ...], seconds: float) -> list[int]:
    """Indexes of the lines a --retry-on regex matches, searched in a child Python with a time limit.

    A catastrophic pattern (``^(a+)+$`` on a long line of a's) would otherwise spin in the C regex engine
    with the GIL held, where neither --timeout nor SIGINT reaches it. Raises UserRegexTimeout when the
    child takes longer than ``seconds`` (it is killed); the caller decides what that means.
    """
    import json
    import subprocess
    import sys

    payload = json.dumps({"p": list(patterns), "l": list(lines)}).encode()
    # Windows has no RLIMIT_CPU: the child goes into a kill-on-close job object instead, so that it ends with
    # fi_run however fi_run ends (a TerminateProcess included), as the command itself does (winjob.py).
    job = None
    flags = 0
    if sys.platform == "win32":  # pragma: no cover - Windows only
        from ..winjob import CREATE_SUSPENDED, Job

        job = Job()
        flags = CREATE_SUSPENDED if job.handle is not None else 0
    with subprocess.Popen(
        [sys.executable, "-I", "-S", "-c", _USER_CHILD, str(int(seconds) + 2)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        creationflags=flags,
    ) as child:
        if job is not None and job.handle is not None:
            job.adopt(child.pid)  # resumes it, inside the job if it could be put there
        try:
            out, _ = child.communicate(payload, timeout=seconds)
        except subprocess.TimeoutExpired:
            child.kill()
            child.communicate()
            raise UserRegexTimeout(f"the --retry-on regexes took longer than {seconds:g} s") from None
        except BaseException:  # a signal (Interrupted, KeyboardInterrupt): the child must not outlive us
            child.kill()
            raise
        finally:
            if job is not None:
                job.close()  # kill-on-close: the child has answered or been killed by now
    try:
        found = json.loads(out)
    except ValueError:
        return []
    return [i for i in found if isinstance(i, int) and 0 <= i < len(lines)]
