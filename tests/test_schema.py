"""One log record schema: what steplog.py writes, logfile.py reads back as the same records."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest
from test_imports import NEVER_ON_THE_PLAIN_PATH, imported_modules

from fi_run.messages import Reporter
from fi_run.observe import logfile, schema
from fi_run.observe.steplog import append, as_step, encode
from fi_run.records import EnvOp, StepRecord, StepSpec

if TYPE_CHECKING:
    from pathlib import Path


def written_step(tmp_path: Path) -> schema.Step:
    """A record as a real step builds it: two attempts (one retried on contention) and a held lock."""
    record = StepRecord()
    record.add_attempt(0.0, 1, "git-index-lock", "fatal: Unable to create '.git/index.lock': File exists.")
    entry = record.add_lock(str(tmp_path / "venv"), "exclusive", 1, 0.0)
    entry["held"] = 0.25
    remote = record.add_lock("redis://cache:6379/0/seats", "semaphore", 4, 0.0, 2)  # issue 21
    remote.update(held=0.25, host="build-7", fence=1796561103201063)
    record.add_attempt(0.5, 0, None, None)
    spec = StepSpec(
        command=("python", "-c", "pass"),
        start_dir=str(tmp_path),
        stamp=str(tmp_path / "s"),
        env_ops=(EnvOp("set", "TOKEN", "secret"), EnvOp("venv", str(tmp_path / "venv"))),
    )
    return as_step(record, spec, 0, None)


def test_a_written_line_reads_back_as_the_same_record(tmp_path: Path) -> None:
    step = written_step(tmp_path)
    append(str(tmp_path / "log"), step, Reporter())
    log = logfile.read_logs([str(tmp_path / "log")])
    assert log.skipped == 0
    [read] = log.steps
    assert read.source == "log:1"
    assert {**vars_of(read), "source": ""} == vars_of(step)
    assert log.steps[0].retried == (step.attempts[0],)
    assert log.steps[0].env_names == ("TOKEN", "VIRTUAL_ENV")


def vars_of(step: schema.Step) -> dict[str, object]:
    return {name: getattr(step, name) for name in schema.Step.__annotations__}


def test_the_line_s_keys_are_the_schema_s_in_order(tmp_path: Path) -> None:
    line = json.loads(encode(schema.as_json(written_step(tmp_path))))
    assert list(line) == list(schema.STEP_KEYS)
    assert list(line["attempts"][0]) == list(schema.ATTEMPT_KEYS)
    # A local lock's record has no host or fence (sparse keys are written only when set); a remote one has.
    assert list(line["locks"][0]) == [key for key in schema.LOCK_KEYS if key not in schema.SPARSE]
    assert list(line["locks"][1]) == list(schema.LOCK_KEYS)
    assert (line["locks"][1]["host"], line["locks"][1]["fence"]) == ("build-7", 1796561103201063)
    assert "source" not in line
    assert line["v"] == schema.SCHEMA_VERSION


@pytest.mark.parametrize("record_type", [schema.Step, schema.Attempt, schema.Lock])
def test_the_reader_has_a_check_for_every_field_type_of_the_schema(record_type: type) -> None:
    # A field of a type the reader cannot check would make every log unreadable: fail here instead.
    for name, annotation in record_type.__annotations__.items():
        if name not in schema.NOT_LOGGED:
            assert str(annotation).removesuffix(" | None") in logfile._CHECKS, (record_type.__name__, name)


def test_older_lines_without_optional_keys_and_newer_ones_with_unknown_keys_read(tmp_path: Path) -> None:
    step = written_step(tmp_path)
    line = schema.as_json(step)
    assert isinstance(line, dict)
    older = {key: value for key, value in line.items() if key not in ("pid", "cwd", "stamp", "env_names")}
    newer = {**line, "lent_slots": 2, "attempts": [{**a, "extra": True} for a in line["attempts"]]}  # type: ignore[union-attr,dict-item]
    assert logfile.parse_record(older).env_names == ()
    assert logfile.parse_record(older).pid is None
    assert logfile.parse_record(newer).attempts == step.attempts


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"status": "0"}, "status"),
        ({"start": True}, "start"),
        ({"start": float("nan")}, "start"),
        ({"argv": ["a", 1]}, "argv"),
        ({"attempts": [{"start": 0, "duration": 1}]}, "status"),
        ({"attempts": ["x"]}, "attempts"),
        (
            {"locks": [{"resource": None, "mode": "shared", "slots": 1, "wait_start": 0, "wait": 0}]},
            "resource",
        ),
        ({"v": 0}, "v"),
        ({"error": 3}, "error"),
    ],
)
def test_a_malformed_field_is_named(tmp_path: Path, change: dict[str, object], field: str) -> None:
    line = schema.as_json(written_step(tmp_path))
    assert isinstance(line, dict)
    with pytest.raises(ValueError, match=f"missing or malformed field '{field}'"):
        logfile.parse_record({**line, **change})


def test_a_missing_required_key_is_named(tmp_path: Path) -> None:
    line = schema.as_json(written_step(tmp_path))
    assert isinstance(line, dict)
    with pytest.raises(ValueError, match="missing or malformed field 'duration'"):
        logfile.parse_record({key: value for key, value in line.items() if key != "duration"})


def test_only_a_logged_step_imports_the_schema(tmp_path: Path) -> None:
    plain = imported_modules(["--", sys.executable, "-c", ""], tmp_path)
    logged = imported_modules(["--log", str(tmp_path / "log"), "--", sys.executable, "-c", ""], tmp_path)
    assert "fi_run.observe.schema" not in plain
    assert "fi_run.observe.schema" in logged
    never = set(NEVER_ON_THE_PLAIN_PATH)
    if sys.platform == "win32":
        # Windows: every step starts its command with subprocess, and a logged one takes filelock's lock
        # around the write (observe/winappend.py), with what filelock imports.
        never -= {"subprocess", "filelock", "typing", "dataclasses", "re"}
    assert not logged & never, sorted(logged & never)


def test_the_writer_imports_no_dataclasses_or_json() -> None:
    # schema.py is on a logged step's path: it must stay as light as steplog.py.
    code = (
        "import sys\nimport fi_run.observe.steplog, fi_run.observe.schema\n"
        "print(sorted(m for m in ('dataclasses', 'json', 'typing', 're') if m in sys.modules))"
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert done.stdout == "[]\n", done.stderr


def test_a_step_pairs_the_wall_clock_with_the_monotonic_clock_around_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A preemption between the two readings (8 ms here) would shift every lock of the step in a report;
    # the anchor reads again and keeps the tight pair, paired with the midpoint of its monotonic readings.
    from fi_run import records

    monotonic = iter([100.0, 100.008, 200.0, 200.00001])
    wall = iter([5000.0, 6000.0])
    monkeypatch.setattr("fi_run.records.time.monotonic", lambda: next(monotonic))
    monkeypatch.setattr("fi_run.records.time.time", lambda: next(wall))
    step = records.StepRecord()
    assert step.started_wall == 6000.0
    assert step.started_mono == pytest.approx(200.000005)
