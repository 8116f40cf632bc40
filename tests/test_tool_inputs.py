"""What `fi_run classify`, `report` and `trace` read (issue 22, items 5 and 6).

- Every number of a log record is bounded: a record with one out of range is skipped and counted like any
  unreadable line, and what the tools print stays valid JSON (no Infinity, no OverflowError).
- A source that is not a regular file with a size (a fifo or ``<(cmd)``, a device, a /proc file) is read
  like standard input, to its end; one without an end (/dev/zero, /proc/self/pagemap) stops at a documented
  limit with one line and exit 2, never a MemoryError.

Every test runs the real tool in a real process on a real source: files, fifos fed by a writer process,
/dev/zero, /proc/self/... (docs/faults.md, "Round three").
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from typing import IO, TYPE_CHECKING, Any, NamedTuple

import pytest
from fi_run_testing import HANG_TIMEOUT, TESTS_DIR, base_environ, failed_with_one_line, py, run_fi_run

from fi_run.contention.recognizer import TAIL_CHARS
from fi_run.observe import schema
from fi_run.observe.logfile import MAX_INTEGER, MAX_LINE_BYTES, MAX_LOG_BYTES, MAX_SECONDS
from fi_run.tools.classify import MAX_STREAM_BYTES

if sys.platform == "win32":
    # report and trace are tested on POSIX only (conftest.POSIX_ONLY); the sources are POSIX ones.
    pytest.skip("POSIX sources (fifos, /dev/zero, /proc) and log tools", allow_module_level=True)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from pathlib import Path

    # A tool run on a source: (path or '-', standard input, environment) -> its result.
    Run = Callable[[str, IO[bytes] | None, dict[str, str] | None], subprocess.CompletedProcess[str]]

PAGEMAP = "/proc/self/pagemap"  # 8 bytes per page of the address space: hundreds of GB, all but endless
needs_pagemap = pytest.mark.skipif(not os.path.exists(PAGEMAP), reason=f"no {PAGEMAP} on this kernel")


def tool(
    args: Sequence[str | os.PathLike[str]],
    cwd: Path,
    *,
    stdin: IO[bytes] | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """``python -m fi_run ARGS`` in ``cwd``, standard input from ``stdin`` (default: empty)."""
    return subprocess.run(
        [sys.executable, "-m", "fi_run", *(os.fspath(a) for a in args)],
        cwd=cwd,
        env=dict(env) if env is not None else base_environ(),
        stdin=stdin if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=HANG_TIMEOUT,
        check=False,
    )


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def strict_json(text: str) -> Any:
    """``text`` parsed as JSON proper: Infinity, -Infinity and NaN (which json.loads takes) are refused."""
    return json.loads(text, parse_constant=_no_constant)


def real_records(tmp_path: Path, steps: int = 1) -> list[dict[str, Any]]:
    """The log records of ``steps`` real steps, each with a lock and an attempt; a loan added to each (a
    real one needs a jobserver build: tests/test_jobserver.py), with the schema's keys."""
    log = tmp_path / "real.log"
    for _ in range(steps):
        ran = run_fi_run(
            "module",
            ["--log", log, "--lock-dir", tmp_path / "locks", "--lock", "R", "--", sys.executable, "-c", ""],
            cwd=tmp_path,
        )
        assert ran.status == 0, ran.err
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(records) == steps
    for record in records:
        assert record["attempts"], record
        assert record["locks"], record
        record["lent"] = [{"start": 0.01, "duration": 0.02, "resource": "R", "credit": False, "lost": False}]
    return records


def lines(*records: dict[str, Any]) -> str:
    return "".join(json.dumps(record) + "\n" for record in records)


# --- item 5: every number bounded

NESTED = {"attempts": schema.Attempt, "locks": schema.Lock, "lent": schema.Loan}


def number_fields() -> list[tuple[str, ...]]:
    """Every number of a record, as a path into it (('duration',), ('locks', 'wait')...), from the schema:
    a numeric field added later is covered too."""
    assert {
        n
        for n, t in schema.Step.__annotations__.items()
        if str(t).startswith("tuple[") and t != "tuple[str, ...]"
    } == set(NESTED)
    paths: list[tuple[str, ...]] = []
    for prefix, record_type in [((), schema.Step), *(((key,), kind) for key, kind in NESTED.items())]:
        for name, annotation in record_type.__annotations__.items():
            if str(annotation).removesuffix(" | None") in ("int", "float"):
                paths.append((*prefix, name))
    return paths


def is_float(path: tuple[str, ...]) -> bool:
    record_type = NESTED[path[0]] if len(path) == 2 else schema.Step
    return str(record_type.__annotations__[path[-1]]).removesuffix(" | None") == "float"


def with_value(record: dict[str, Any], path: tuple[str, ...], value: object) -> dict[str, Any]:
    changed = copy.deepcopy(record)
    if len(path) == 1:
        changed[path[0]] = value
    else:
        changed[path[0]][0][path[1]] = value
    return changed


class Read(NamedTuple):
    """What the log tools made of one log: report --json's document, report's text, trace's document."""

    report: dict[str, Any]
    text: str
    trace: dict[str, Any]


def report_and_trace(log: Path) -> Read:
    """Run report --json, report and trace -o on ``log``: each exits 0, and the JSON is JSON proper."""
    as_json = tool(["report", "--json", log], log.parent)
    assert as_json.returncode == 0, as_json
    as_text = tool(["report", log], log.parent)
    assert as_text.returncode == 0, as_text
    traced = tool(["trace", log, "-o", log.parent / "trace.json"], log.parent)
    assert traced.returncode == 0, traced
    return Read(
        strict_json(as_json.stdout), as_text.stdout, strict_json((log.parent / "trace.json").read_text())
    )


@pytest.mark.parametrize("path", number_fields(), ids=".".join)
def test_a_record_with_a_number_out_of_range_is_skipped_and_counted(
    tmp_path: Path, path: tuple[str, ...]
) -> None:
    """Before: a wait of 1.7e308 made trace exit 70 (OverflowError), two made report --json print Infinity."""
    (record,) = real_records(tmp_path)
    high, low = (1.7e308, -1.7e308) if is_float(path) else (MAX_INTEGER + 1, -MAX_INTEGER - 2)
    too_high = with_value(record, path, high)
    log = tmp_path / "steps.log"
    # Two too high: their sum is no longer finite, as in the issue.
    log.write_text(lines(record, too_high, too_high, with_value(record, path, low)))
    read = report_and_trace(log)
    assert read.report["steps"]["total"] == 1
    bad = ["steps.log:2", "steps.log:3", "steps.log:4"]
    assert (read.report["skipped_lines"], read.report["skipped_at"]) == (3, bad)
    assert f"skipped 3 unreadable lines ({', '.join(bad)})" in read.text
    assert (read.trace["otherData"]["steps"], read.trace["otherData"]["skipped_lines"]) == (1, 3)


def test_the_largest_numbers_accepted_still_give_valid_json(tmp_path: Path) -> None:
    """The bounds are safe, not just small: records with every number at its limit are read and summed."""
    (record,) = real_records(tmp_path)
    largest = record
    for path in number_fields():
        largest = with_value(largest, path, MAX_SECONDS if is_float(path) else MAX_INTEGER)
    log = tmp_path / "steps.log"
    log.write_text(lines(largest, largest, record))
    read = report_and_trace(log)
    assert (read.report["steps"]["total"], read.report["skipped_lines"]) == (3, 0)
    assert read.report["steps"]["lock_wait_seconds"] == pytest.approx(2 * MAX_SECONDS)
    assert "3 steps" in read.text
    assert "unreadable" not in read.text
    assert (read.trace["otherData"]["steps"], read.trace["otherData"]["skipped_lines"]) == (3, 0)


# --- item 6: sources that are not regular files

CONTENTION = "E: Could not get lock /var/lib/dpkg/lock. It is held by process 1 (apt)"
OUTPUT = "".join(f"compiling unit {n}\n" for n in range(2000)) + CONTENTION + "\n"


def fed_fifo(path: Path, text: str) -> subprocess.Popen[bytes]:
    """A fifo at ``path`` and a writer process that writes ``text`` into it once a reader opens it."""
    os.mkfifo(path)
    return subprocess.Popen(
        py("import sys\nwith open(sys.argv[1], 'w') as f: f.write(sys.argv[2])", str(path), text),
        stdin=subprocess.DEVNULL,
    )


def read_by(run: Run, source: str, text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run ``run(path_or_dash, stdin, env)`` with ``text`` in the kind of source named."""
    if source == "regular":
        (tmp_path / "in.txt").write_text(text)
        return run("in.txt", None, None)
    if source == "fifo":
        writer = fed_fifo(tmp_path / "in.fifo", text)
        try:
            return run("in.fifo", None, None)
        finally:
            assert writer.wait(HANG_TIMEOUT) == 0
    if source == "proc":
        # /proc/self/environ: st_size 0, read to its end by the tool; the text is the last variable's value.
        return run("/proc/self/environ", None, {"TEXT": "\n" + text})
    assert source == "stdin-pipe"
    (tmp_path / "in.txt").write_text(text)
    with subprocess.Popen(["cat", "in.txt"], cwd=tmp_path, stdout=subprocess.PIPE) as cat:
        assert cat.stdout is not None
        return run("-", cat.stdout, None)


SOURCES = ["regular", "fifo", "proc", "stdin-pipe"]


@pytest.mark.parametrize("source", SOURCES)
def test_classify_reads_a_fifo_a_proc_file_and_a_regular_file_to_their_end(
    tmp_path: Path, source: str
) -> None:
    """Before: a fifo (or <(cmd)) was refused as "File or stream is not seekable"."""

    def run(
        name: str, stdin: IO[bytes] | None, env: dict[str, str] | None
    ) -> subprocess.CompletedProcess[str]:
        return tool(["classify", name], tmp_path, stdin=stdin, env=env)

    done = read_by(run, source, OUTPUT, tmp_path)
    assert (done.returncode, done.stderr) == (0, ""), done
    assert "family: dpkg-lock" in done.stdout
    assert f"  {CONTENTION}" in done.stdout


def test_classify_reads_a_regular_file_larger_than_the_stream_limit_from_its_end(tmp_path: Path) -> None:
    """A regular file is read from near its end, whatever its size: the limit is for streams only."""
    big = tmp_path / "big.txt"
    with big.open("wb") as file:
        file.truncate(MAX_STREAM_BYTES + (1 << 20))  # sparse: costs no disk
        file.seek(0, os.SEEK_END)
        file.write(OUTPUT.encode())
    done = tool(["classify", big], tmp_path)
    assert (done.returncode, done.stderr) == (0, ""), done
    assert "family: dpkg-lock" in done.stdout


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash to make a <(cmd)")
@pytest.mark.parametrize("name", ["classify", "report"])
def test_a_process_substitution_is_read_like_standard_input(tmp_path: Path, name: str) -> None:
    """bash's <(cmd) is /dev/fd/N, a pipe. Before, classify refused it as "File or stream is not seekable"."""
    text = OUTPUT if name == "classify" else lines(*real_records(tmp_path, 2))
    (tmp_path / "in.txt").write_text(text)
    args = ["classify"] if name == "classify" else ["report", "--json"]
    done = subprocess.run(
        ["bash", "-c", '"$@" <(cat in.txt)', "bash", sys.executable, "-m", "fi_run", *args],
        cwd=tmp_path,
        env=base_environ(),
        capture_output=True,
        text=True,
        timeout=HANG_TIMEOUT,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, ""), done
    if name == "classify":
        assert "family: dpkg-lock" in done.stdout
    else:
        assert strict_json(done.stdout)["steps"]["total"] == 2


@pytest.mark.parametrize(
    "source", ["/dev/zero", "stdin:/dev/zero", pytest.param(PAGEMAP, marks=needs_pagemap)]
)
def test_classify_of_a_source_without_an_end_stops_with_one_line_and_status_2(
    tmp_path: Path, source: str
) -> None:
    """Before: it read on until a MemoryError (exit 70)."""
    if source.startswith("stdin:"):
        with open(source.removeprefix("stdin:"), "rb") as stdin:
            done = tool(["classify"], tmp_path, stdin=stdin)
        name = "standard input"
    else:
        done = tool(["classify", source], tmp_path)
        name = source
    assert failed_with_one_line(done, 2) == (
        f"fi_run: classify: cannot read {name}: more than {MAX_STREAM_BYTES >> 30} GiB, the most classify "
        "reads of a stream (give it the end of the output, e.g. tail -c 1M)"
    )


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("name", ["report", "trace"])
def test_a_log_is_read_from_a_fifo_a_proc_file_standard_input_or_a_regular_file(
    tmp_path: Path, name: str, source: str
) -> None:
    text = lines(*real_records(tmp_path, 2))

    def run(
        path: str, stdin: IO[bytes] | None, env: dict[str, str] | None
    ) -> subprocess.CompletedProcess[str]:
        args = ["report", "--json", path] if name == "report" else ["trace", path, "-o", "trace.json"]
        return tool(args, tmp_path, stdin=stdin, env=env)

    done = read_by(run, source, text, tmp_path)
    assert done.returncode == 0, done
    # /proc/self/environ: "TEXT=" before the records, the variable's closing NUL after them.
    skipped = 2 if source == "proc" else 0
    if name == "report":
        document = strict_json(done.stdout)
        assert (document["steps"]["total"], document["skipped_lines"]) == (2, skipped)
    else:
        document = strict_json((tmp_path / "trace.json").read_text())
        assert (document["otherData"]["steps"], document["otherData"]["skipped_lines"]) == (2, skipped)


@pytest.mark.parametrize(
    "source", ["/dev/zero", "stdin:/dev/zero", pytest.param(PAGEMAP, marks=needs_pagemap)]
)
@pytest.mark.parametrize("name", ["report", "trace"])
def test_a_log_without_an_end_stops_with_one_line_and_status_2(
    tmp_path: Path, name: str, source: str
) -> None:
    """Before: report and trace read on until a MemoryError (exit 70)."""
    if source.startswith("stdin:"):
        with open(source.removeprefix("stdin:"), "rb") as stdin:
            done = tool([name, "-"], tmp_path, stdin=stdin)
        where = "standard input"
    else:
        done = tool([name, source], tmp_path)
        where = repr(source)
    assert failed_with_one_line(done, 2) == (
        f"fi_run: cannot read log {where}: more than {MAX_LOG_BYTES >> 30} GiB, the most report and trace "
        "read of one log (give them the part you want, e.g. tail -c 512M LOG | fi_run report -)"
    )
    assert not (tmp_path / "trace.json").exists()


@pytest.mark.parametrize("name", ["report", "trace"])
def test_a_regular_log_over_the_limit_is_refused_before_it_is_read(tmp_path: Path, name: str) -> None:
    """Before: read whole (and parsed) whatever its size."""
    log = tmp_path / "huge.log"
    with log.open("wb") as file:
        file.truncate(MAX_LOG_BYTES + 1)  # sparse
    done = tool([name, log], tmp_path)
    line = failed_with_one_line(done, 2)
    assert line.startswith(f"fi_run: cannot read log {str(log)!r}: more than {MAX_LOG_BYTES >> 30} GiB, "), (
        line
    )


def test_a_line_longer_than_any_record_is_skipped_without_losing_the_records_around_it(
    tmp_path: Path,
) -> None:
    first, second = real_records(tmp_path, 2)
    log = tmp_path / "steps.log"
    with log.open("w") as file:
        file.write(lines(first))
        file.write("x" * (MAX_LINE_BYTES + 1) + "\n")
        file.write(lines(second))
    done = tool(["report", "--json", log], tmp_path)
    assert done.returncode == 0, done.stderr
    document = strict_json(done.stdout)
    assert document["steps"]["total"] == 2
    assert (document["skipped_lines"], document["skipped_at"]) == (1, ["steps.log:2"])


# --- the reference says what the code does


def reference_section(heading: str) -> str:
    text = (TESTS_DIR.parent / "docs" / "reference.md").read_text(encoding="utf-8")
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else None]


def test_the_reference_states_the_readers_bounds() -> None:
    section = reference_section("What the tools read")
    assert f"within ±{int(MAX_SECONDS):,} (from 1970 to the end of the year 9999)" in section
    assert MAX_INTEGER == (1 << 63) - 1
    assert "fits in 64 bits, signed" in section
    ints = {path[-1] for path in number_fields() if not is_float(path)}
    assert f"every int ({', '.join(f'`{name}`' for name in sorted(ints, key=NAMED_INTS.index))})" in section


NAMED_INTS = ["v", "pid", "status", "slots", "weight", "fence", "peak_rss"]  # in the reference's order


def test_the_reference_states_what_the_tools_read_and_their_limits() -> None:
    section = " ".join(reference_section("What the tools read").split())
    assert (
        f"its last {4 * TAIL_CHARS >> 10} KiB: the recognizer looks at the last {TAIL_CHARS >> 10} K"
        in section
    )
    assert f"at most {MAX_STREAM_BYTES >> 30} GiB of such a stream" in section
    assert f"`fi_run: classify: cannot read NAME: more than {MAX_STREAM_BYTES >> 30} GiB, ...`" in section
    assert f"at most {MAX_LOG_BYTES >> 30} GiB per log" in section
    assert f"`fi_run: cannot read log NAME: more than {MAX_LOG_BYTES >> 30} GiB, ...`" in section
    assert f"A line longer than {MAX_LINE_BYTES >> 20} MiB" in section


@pytest.mark.parametrize("tool", [["classify"], ["classify", "-"], ["report", "-"], ["trace", "-"]])
def test_a_closed_standard_input_is_one_line_and_status_2(tmp_path: Path, tool: list[str]) -> None:
    """`fi_run report - <&-`: standard input closed when Python started (sys.stdin is None) used to be an
    internal error (exit 70)."""
    done = subprocess.run(
        [sys.executable, "-m", "fi_run", *tool],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        preexec_fn=lambda: os.close(0),
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.endswith("standard input: it is closed\n")
    assert done.stderr.count("\n") == 1
