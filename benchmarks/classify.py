"""Benchmark: how long the recognizer takes to classify 4 MB of failed output, of many shapes.

A failed attempt's output is classified before fi_run decides to retry, while the step's locks are still
held: it must be fast whatever the command printed. Each shape is 4 MB (more than a step hands to
the recognizer: step/capture.py reads the last 256 KB), classified as on Windows (the largest signature set)
and on POSIX; the table gives the median and the worst of --rounds runs per shape, in milliseconds.

Usage: python benchmarks/classify.py [--rounds N] [--size BYTES]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from fi_run.contention.catalogue import BUILTIN
from fi_run.contention.recognizer import classify


def _repeat(unit: str, size: int) -> str:
    return (unit * (size // len(unit) + 1))[:size]


def shapes(size: int) -> dict[str, str]:
    """Named outputs of ``size`` characters each: ordinary, adversarial for the patterns, degenerate."""
    rng = random.Random(1)
    words = ["gcc", "-O2", "-c", "foo.c", "-o", "foo.o", "warning:", "unused", "variable", "'x'", "error:"]
    words += ["lock", "block", "clock", "process", "file"]
    noise = "\n".join(" ".join(rng.choice(words) for _ in range(12)) for _ in range(size // 60))
    minified = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz(){};=+-*/,.'\" ") for _ in range(size))
    found = {
        "compiler noise, 60-char lines": noise[:size],
        "noise ending in a contention line": noise[: size - 80]
        + "\nfatal: Unable to create '/r/.git/index.lock': File exists.\n",
        "one minified line (no newline)": minified,
        "1 MB of 'a' x 4": "a" * size,
        "all newlines": "\n" * size,
        "all carriage returns": "\r" * size,
        "lock vocabulary on every line": _repeat(
            "error: lock held by another process (pid 42): Resource temporarily unavailable, waiting\n", size
        ),
        "lock vocabulary, one line": _repeat("lock another process held by pid 1 busy in use ", size),
        "escaped \\n everywhere": _repeat("\\n A", size),
        "ANSI colour everywhere": _repeat("\x1b[1;31merror\x1b[0m ", size),
        "log prefixes stacked": _repeat("#1 0.1 [ERROR] npm ERR! │ 2024-01-01T00:00:00Z ", size),
        "box drawing / spaces": _repeat("│ ", size),
        "windows paths": _repeat("C:\\Users\\x\\AppData\\Local\\Temp\\pip-unpack-1\\a.whl ", size),
        # Non-ASCII lines are the ones searched for localized file-in-use text (issue 20): the worst case
        # for that search is a tail of long lines in another script, or Latin text garbled with "?".
        "Cyrillic text, 60-char lines": _repeat(
            "ошибка: не удалось открыть файл процессом сборки проекта\n", size
        ),
        "CJK text, one line": _repeat("编译器警告：未使用的变量，文件已被修改，进程正在运行。", size),  # noqa: RUF001
        "accented Latin garbled with '?'": _repeat(
            "b??d: nie mo?na otworzy? pliku, proces u?ywa go teraz\n", size
        ),
    }
    # Each catalogue pattern's leading literal, repeated on one line with nothing that completes it: the
    # shape that makes a lazy `[^\n]*?` between two literals scan to the end of the line at every start.
    for sig in BUILTIN:
        literal = sig.pattern.removeprefix(r"\b")
        head = ""
        for char in literal:
            if char in "\\[(.?*+{|^$":
                break
            head += char
        if len(head) >= 4:
            found[f"repeated '{head[:24]}' (no newline)"] = _repeat(head + " ", size)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--size", type=int, default=4 * 1024 * 1024)
    args = parser.parse_args()
    classify("warm-up: database is locked", windows=True)  # compile the regexes once, as a step does
    classify("warm-up: database is locked", windows=False)
    print(
        f"{platform.python_version()} on {platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, "
        f"{args.rounds} rounds, {args.size / 1024 / 1024:g} MB per shape, {time.strftime('%Y-%m-%d')}"
    )
    print(f"{'shape':58} {'median ms':>10} {'worst ms':>9}  verdict")
    worst_all = 0.0
    for name, text in shapes(args.size).items():
        times = []
        verdict = None
        for _ in range(args.rounds):
            for windows in (True, False):
                started = time.perf_counter()
                verdict = classify(text, windows=windows)
                times.append((time.perf_counter() - started) * 1000)
        assert verdict is not None
        worst_all = max(worst_all, *times)
        print(f"{name[:58]:58} {statistics.median(times):10.1f} {max(times):9.1f}  {verdict.kind}")
    print(f"worst of all shapes: {worst_all:.1f} ms")
    holder_checks(args.rounds * 4)
    return 0


def holder_checks(rounds: int) -> None:
    """The holder checks a failed attempt adds (issue 20): a line naming a lock file or a pid, checked live.
    The worst is a lock file nobody holds: /proc/locks, F_GETLK, its recorded pid, then every process's
    open descriptors (Linux). A step that succeeds runs none of this."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        stale = os.path.join(tmp, "index.lock")
        open(stale, "w").close()
        os.utime(stale, (time.time() - 3600,) * 2)
        cases = {
            "lock file nobody holds (stale)": f"fatal: Unable to create '{stale}': File exists.",
            "lock file gone": f"fatal: Unable to create '{os.path.join(tmp, 'gone.lock')}': File exists.",
            "pid gone": "error: state.lock is locked by another process (pid 999999)",
            "pid of an ancestor (self-held)": f"error: state.lock is held by pid {os.getppid()}",
            "pid alive, foreign (pid 1)": "error: state.lock is held by pid 1",
        }
        procs = len(os.listdir("/proc")) if os.path.isdir("/proc") else "no"
        print(f"\nholder checks after a failure, {rounds} runs each, {procs} /proc entries")
        for name, line in cases.items():
            times = []
            for _ in range(rounds):
                started = time.perf_counter()
                verdict = classify(line, windows=False, check_holders=True, started=time.time())
                times.append((time.perf_counter() - started) * 1000)
            print(f"{name[:58]:58} {statistics.median(times):10.1f} {max(times):9.1f}  {verdict.kind}")


if __name__ == "__main__":
    sys.exit(main())
