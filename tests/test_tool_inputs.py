"""What `fi_run report` and `trace` read (issue 22, item 5).

- Every number of a log record is bounded: a record with one out of range is skipped and counted like any
  unreadable line, and what the tools print stays valid JSON (no Infinity, no OverflowError).

Every test runs the real tool in a real process on a real log file (docs/faults.md, "Round three").
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from typing import IO, TYPE_CHECKING, Any, NamedTuple

import pytest
from fi_run_testing import HANG_TIMEOUT, TESTS_DIR, base_environ, run_fi_run

from fi_run.observe import schema
from fi_run.observe.logfile import MAX_INTEGER, MAX_SECONDS

if sys.platform == "win32":
    # report and trace are tested on POSIX only (conftest.POSIX_ONLY); the sources are POSIX ones.
    pytest.skip("POSIX sources (fifos, /dev/zero, /proc) and log tools", allow_module_level=True)

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path


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


NAMED_INTS = ["v", "pid", "status", "slots"]  # in the reference's order
