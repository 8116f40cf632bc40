"""``fi_run trace`` (issue 5): a Chrome trace-event file of the real contended build that Perfetto and
chrome://tracing load, validated event by event: required keys and types per phase, non-negative times,
no two slices overlapping on a track (a step's waits and attempts nest inside it, one after another),
every step present, one instant event per retry, metadata naming the process and every track."""

from __future__ import annotations

import itertools
import json
import os
import random
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import pytest
from fi_run_testing import (
    TOTAL_STEPS,
    UV_2767_MESSAGE,
    Build,
    base_environ,
    failed_with_one_line,
    run_tool,
)

from fi_run.observe.logfile import Log, parse_record
from fi_run.observe.trace import assign_slots, build_trace

assert sys.platform != "win32"  # POSIX only: conftest.POSIX_ONLY keeps it from being collected on Windows

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

Event = dict[str, Any]


def trace_cli(args: Sequence[str | os.PathLike[str]], cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_tool([sys.executable, "-m", "fi_run", "trace", *args], cwd=cwd, merge_stderr=False)


# --- the validator


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0


def validate(trace: object) -> dict[int, list[Event]]:
    """Check a trace against the trace-event format as Perfetto and chrome://tracing read it, and fi_run's
    layout rules; return the X slices per track."""
    assert isinstance(trace, dict)
    assert set(trace) == {"traceEvents", "displayTimeUnit", "otherData"}
    assert trace["displayTimeUnit"] == "ms"
    events = trace["traceEvents"]
    assert isinstance(events, list)
    named_threads: set[tuple[int, int]] = set()
    named_processes: set[int] = set()
    slices: dict[int, list[Event]] = {}
    instants: list[Event] = []
    flows: dict[object, dict[str, Event]] = {}
    for event in events:
        assert isinstance(event, dict)
        assert isinstance(event.get("name"), str)
        assert event["name"], event
        assert isinstance(event.get("pid"), int)
        assert isinstance(event.get("tid"), int)
        assert isinstance(event.get("args"), dict)
        phase = event.get("ph")
        if phase == "M":
            assert set(event) == {"name", "ph", "pid", "tid", "args"}
            if event["name"] == "process_name":
                assert isinstance(event["args"]["name"], str)
                named_processes.add(event["pid"])
            elif event["name"] == "thread_name":
                assert isinstance(event["args"]["name"], str)
                named_threads.add((event["pid"], event["tid"]))
            else:
                assert event["name"] in ("process_sort_index", "thread_sort_index"), event
                assert isinstance(event["args"]["sort_index"], int)
        elif phase == "X":
            assert set(event) - {"cname"} == {"name", "cat", "ph", "ts", "dur", "pid", "tid", "args"}, event
            assert isinstance(event["cat"], str)
            assert _number(event["ts"]), event
            assert _number(event["dur"]), event
            assert event.get("cname", "terrible") in ("terrible", "bad")
            slices.setdefault(event["tid"], []).append(event)
        elif phase == "i":
            assert set(event) == {"name", "cat", "ph", "s", "ts", "pid", "tid", "args"}, event
            assert event["s"] in ("t", "p", "g")
            assert _number(event["ts"])
            instants.append(event)
        elif phase in ("s", "f"):  # a flow arrow's ends (flow events v1)
            keys = {"name", "cat", "ph", "id", "ts", "pid", "tid", "args"}
            assert set(event) == (keys if phase == "s" else keys | {"bp"}), event
            assert event.get("bp", "e") == "e", "the arrow ends in the slice around it, not the next one"
            assert _number(event["ts"])
            assert isinstance(event["id"], int)
            assert phase not in flows.setdefault(event["id"], {}), f"a second {phase!r} for one id: {event}"
            flows[event["id"]][phase] = event
        else:
            raise AssertionError(f"unexpected phase {phase!r}: {event}")
    timed = [(e["ts"], -e.get("dur", -1)) for e in events if e["ph"] != "M"]
    assert timed == sorted(timed), "events in time order, the longer slice first at one instant"
    assert all(e["ph"] == "M" for e in events[: len(events) - len(timed)]), "metadata first"
    pids = {event["pid"] for event in events}
    assert pids <= named_processes, "every process is named"
    for tid, track in slices.items():
        pid = track[0]["pid"]
        assert (pid, tid) in named_threads, f"track {tid} has no thread_name"
        steps = sorted((e for e in track if e["cat"].startswith("step")), key=lambda e: e["ts"])
        children = sorted((e for e in track if not e["cat"].startswith("step")), key=lambda e: e["ts"])
        for level in (steps, children):
            for before, after in itertools.pairwise(level):
                assert before["ts"] + before["dur"] <= after["ts"], (
                    f"overlap on track {tid}: {before} {after}"
                )
        for child in [*children, *(i for i in instants if i["tid"] == tid)]:
            end = child["ts"] + child.get("dur", 0)
            assert any(s["ts"] <= child["ts"] and end <= s["ts"] + s["dur"] for s in steps), child
    for ends in flows.values():
        assert set(ends) == {"s", "f"}, f"an arrow with one end: {ends}"
        begin, finish = ends["s"], ends["f"]
        assert (begin["name"], begin["cat"]) == (finish["name"], finish["cat"]), "one flow: one name and cat"
        assert begin["ts"] <= finish["ts"], "an arrow never goes back in time (viewers drop it)"
        for end, kind in ((begin, "step"), (finish, "lock")):
            around = [
                e
                for e in slices.get(end["tid"], [])
                if e["cat"].startswith(kind) and e["ts"] <= end["ts"] < e["ts"] + e["dur"]
            ]
            assert len(around) == 1, f"the {kind} slice an arrow's end binds to: {end}, {around}"
    return slices


def flow_arrows(trace: dict[str, Any]) -> list[tuple[Event, Event]]:
    """(start, end) of each flow arrow, by id."""
    ends: dict[int, dict[str, Event]] = {}
    for event in trace["traceEvents"]:
        if event["ph"] in ("s", "f"):
            ends.setdefault(event["id"], {})[event["ph"]] = event
    return [(pair["s"], pair["f"]) for _id, pair in sorted(ends.items())]


def slice_at(trace: dict[str, Any], event: Event, kind: str) -> Event:
    """The slice of category ``kind`` (step, lock) on ``event``'s track around its moment."""
    events: list[Event] = trace["traceEvents"]
    (found,) = (
        e
        for e in events
        if e["ph"] == "X"
        and e["tid"] == event["tid"]
        and e["cat"].startswith(kind)
        and e["ts"] <= event["ts"] < e["ts"] + e["dur"]
    )
    return found


def step_slices(trace: dict[str, Any]) -> list[Event]:
    return [e for e in trace["traceEvents"] if e["ph"] == "X" and e["cat"].startswith("step")]


# --- the real contended build


@pytest.fixture(scope="module")
def trace(build: Build) -> dict[str, Any]:
    out = build.directory / "trace.json"
    done = trace_cli([build.log, "-o", out], build.directory)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert done.stderr.startswith(f"fi_run: wrote {out} ({TOTAL_STEPS} steps on ")
    assert "https://ui.perfetto.dev" in done.stderr
    result: dict[str, Any] = json.loads(out.read_text(encoding="ascii"))
    return result


def test_the_trace_of_the_contended_build_validates(trace: dict[str, Any]) -> None:
    slices = validate(trace)
    assert 2 <= len(slices) <= 16, "ninja -j16 ran at most 16 steps at once: at most 16 tracks"
    assert trace["otherData"]["slots"] == len(slices)
    assert trace["otherData"]["steps"] == TOTAL_STEPS


def test_every_step_is_one_slice_with_its_command_and_status(build: Build, trace: dict[str, Any]) -> None:
    records = build.records()
    steps = step_slices(trace)
    assert len(steps) == TOTAL_STEPS
    assert sorted(s["name"] for s in steps) == sorted(build.stamps)
    by_pid = {r["pid"]: r for r in records}
    origin = min(r["start"] for r in records)
    for step in steps:
        record = by_pid[step["args"]["pid"]]
        assert step["args"]["argv"] == record["argv"]
        assert step["args"]["status"] == record["status"]
        assert step["ts"] == round((record["start"] - origin) * 1e6)
        assert step["dur"] == round(record["duration"] * 1e6)
        assert (step["cat"], step.get("cname")) == (
            ("step", None) if record["status"] == 0 else ("step,failed", "terrible")
        )


def test_the_tracks_are_as_many_as_steps_ever_ran_at_once(trace: dict[str, Any]) -> None:
    """Lowest-free-slot assignment in start order needs exactly the peak concurrency."""
    points = []
    for step in step_slices(trace):
        points += [(step["ts"], 1), (step["ts"] + step["dur"], -1)]
    running = peak = 0
    for _ts, change in sorted(points, key=lambda p: (p[0], p[1])):  # an end before a start at one instant
        running += change
        peak = max(peak, running)
    assert trace["otherData"]["slots"] == peak


def test_waits_and_attempts_are_slices_and_retries_are_instants_with_the_matched_line(
    build: Build, trace: dict[str, Any]
) -> None:
    records = build.records()
    events = trace["traceEvents"]
    waits = [e for e in events if e["ph"] == "X" and e["cat"] == "lock"]
    assert len(waits) == sum(len(r["locks"]) for r in records)
    resources = {e["args"]["resource"] for e in waits}
    assert resources == {os.path.realpath(build.venv_b), os.path.realpath(build.licence)}
    assert all(e["name"] == f"waiting for {e['args']['resource']}" for e in waits)

    running = [e for e in events if e["ph"] == "X" and e["cat"] == "attempt"]
    assert len(running) == sum(len(r["attempts"]) for r in records)
    assert {e["name"] for e in running} == {"running python", "running sleep", "running false"}

    retries = [e for e in events if e["ph"] == "i"]
    retried = sum(1 for r in records for a in r["attempts"][:-1] if a["family"] is not None)
    assert retried >= 1
    assert len(retries) == retried
    for event in retries:
        assert event["name"] == "retry: windows-lock-violation"
        assert (event["cat"], event["s"]) == ("retry", "t")
        assert event["args"]["line"] == UV_2767_MESSAGE
        assert event["args"]["retried"] is True


def test_waits_name_who_they_waited_behind_and_an_arrow_comes_from_the_holder_that_let_them_go(
    build: Build, trace: dict[str, Any]
) -> None:
    records = {(r["pid"]): r for r in build.records()}
    origin = trace["otherData"]["start_epoch"]
    waits = [e for e in trace["traceEvents"] if e["ph"] == "X" and e["cat"] == "lock"]
    arrows = flow_arrows(trace)
    ends = {}
    for begin, finish in arrows:
        wait = slice_at(trace, finish, "lock")
        holder = slice_at(trace, begin, "step")
        waiter = slice_at(trace, finish, "step")
        assert (begin["name"], begin["cat"]) == ("waited behind", "lock")
        assert begin["args"] == finish["args"]
        assert finish["args"]["resource"] == wait["args"]["resource"]
        assert id(wait) not in ends, "one arrow per wait"
        ends[id(wait)] = (holder, begin)
        # The holder held the resource while the waiter waited, in a mode that kept it out.
        resource = wait["args"]["resource"]
        record = records[holder["args"]["pid"]]
        assert holder["args"]["pid"] != waiter["args"]["pid"]
        (lock, *_same) = (lock for lock in record["locks"] if lock["resource"] == resource)
        got = record["start"] + lock["wait_start"] + lock["wait"]
        released = got + lock["held"]
        asked = origin + wait["ts"] / 1e6
        assert got < origin + (wait["ts"] + wait["dur"]) / 1e6 + 1e-3
        assert released > asked - 1e-3
        assert "exclusive" in (lock["mode"], wait["args"]["mode"]) or lock["mode"] == wait["args"]["mode"]
        # Its share, as the wait's args list it (when among the five listed).
        listed = {b["pid"]: b for b in wait["args"]["behind"]}
        if holder["args"]["pid"] in listed:
            assert begin["args"]["seconds"] == listed[holder["args"]["pid"]]["seconds"]
    assert arrows, "the contended build has waits behind holders"
    for wait in waits:
        if "behind" not in wait["args"]:
            continue  # a step's second lock entry on one resource: its wait is the first one's
        listed = wait["args"]["behind"]
        total = sum(b["seconds"] for b in listed) + wait["args"]["unattributed_s"]
        if len(listed) < 5:
            assert total == pytest.approx(wait["args"]["wait_s"], abs=1e-5), "every moment goes somewhere"
        held_by_someone = any(b["seconds"] > b["queued_s"] for b in listed)
        if held_by_someone or len(listed) < 5:  # else a holder may be sixth, unlisted
            assert (id(wait) in ends) == (held_by_someone and wait["dur"] > 0), wait


def test_the_trace_goes_to_stdout_without_o(build: Build) -> None:
    done = trace_cli([build.log], build.directory)
    assert (done.returncode, done.stderr) == (0, "")
    validate(json.loads(done.stdout))


# --- layout, on made-up logs


def test_slots_are_the_lowest_free_one_at_each_start() -> None:
    spans = [(0, 10), (5, 15), (10, 20), (12, 13), (16, 30), (0, 1)]
    # (0, 1) and (0, 10) start together: the shorter takes slot 1 first; (5, 15) takes slot 1 once (0, 1)
    # is over; (10, 20) takes slot 2 the instant (0, 10) frees it; (12, 13) finds both busy: slot 3;
    # (16, 30) takes slot 1 again, the lowest free one.
    assert assign_slots(spans) == [2, 1, 2, 3, 1, 1]
    assert assign_slots([]) == []


def test_slots_match_a_plain_lowest_free_slot_search_on_random_spans() -> None:
    rng = random.Random(5)
    for _ in range(200):
        spans = []
        for _ in range(rng.randrange(1, 40)):
            start = rng.randrange(0, 100)
            spans.append((start, start + rng.randrange(0, 30)))
        order = sorted(range(len(spans)), key=lambda i: (spans[i][0], spans[i][1], i))
        busy_until: list[int] = []
        expected = [0] * len(spans)
        for i in order:
            start, end = spans[i]
            slot = next((k for k, until in enumerate(busy_until) if until <= start), len(busy_until))
            if slot == len(busy_until):
                busy_until.append(end)
            else:
                busy_until[slot] = end
            expected[i] = slot + 1
        assert assign_slots(spans) == expected, spans


def _record(start: float, duration: float, **fields: Any) -> dict[str, Any]:
    record = {
        "v": 1,
        "pid": 1,
        "start": start,
        "end": start + duration,
        "duration": duration,
        "argv": ["/usr/bin/cc", "-c", "x.c"],
        "cwd": "/b",
        "command_cwd": None,
        "status": 0,
        "error": None,
        "attempts": [],
        "locks": [],
        "stamp": None,
        "env_names": [],
    }
    record.update(fields)
    return record


def _trace_of(*records: dict[str, Any]) -> dict[str, Any]:
    log = Log(files=["made-up.log"])
    log.steps = sorted(
        (parse_record(r, f"made-up.log:{i}") for i, r in enumerate(records, 1)), key=lambda s: s.start
    )
    trace = build_trace(log)
    validate(json.loads(json.dumps(trace)))
    return trace


def test_rounding_and_inconsistent_offsets_never_make_slices_overlap() -> None:
    lock = {
        "resource": "/v",
        "mode": "exclusive",
        "slots": 1,
        "wait_start": 0.0000004,
        "wait": 0.3000006,
        "held": 1,
    }
    attempts = [
        {
            "start": 0.3000001,
            "duration": 0.2000004,
            "status": 2,
            "family": "git-index-lock",
            "line": "fatal: x",
        },
        # starts before the previous one ended (a clock step) and ends after the step does
        {"start": 0.45, "duration": 0.9, "status": 0, "family": None, "line": None},
    ]
    trace = _trace_of(
        _record(1000.0000004, 1.0000004, locks=[lock], attempts=attempts, stamp="/b/gen/x.o"),
        _record(1001.0000008, 0.5),  # starts the instant the first one ends: same track
    )
    x = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    assert {e["tid"] for e in x} == {1}
    assert [e["name"] for e in x] == ["gen/x.o", "waiting for /v", "running cc", "running cc", "cc -c x.c"]
    (retry,) = (e for e in trace["traceEvents"] if e["ph"] == "i")
    assert retry["args"]["line"] == "fatal: x"


def test_a_wait_behind_a_holder_gets_an_arrow_from_the_holder_and_its_name_in_the_args() -> None:
    lock = {"resource": "/v", "mode": "exclusive", "slots": 1}
    run = [{"start": 0.02, "duration": 0.9, "status": 0, "family": None, "line": None}]
    trace = _trace_of(
        _record(
            10.0, 1.0, pid=11, stamp="/b/a", locks=[{**lock, "wait_start": 0.01, "wait": 0.0, "held": 0.95}]
        ),
        # b asks at 10.2 and gets the lock when a lets go, at 10.96
        _record(
            10.1, 1.0, pid=12, stamp="/b/b", locks=[{**lock, "wait_start": 0.1, "wait": 0.76, "held": 0.1}]
        ),
        _record(20.0, 0.5, pid=13, stamp="/b/c", attempts=run),  # no lock: no arrow
    )
    ((begin, finish),) = flow_arrows(trace)
    assert slice_at(trace, begin, "step")["name"] == "a"
    # Where a let go and b got the lock (10.96 s), less the microsecond that keeps the arrow's end inside the
    # wait slice and its start no later than its end.
    assert begin["ts"] == finish["ts"] == 959_999
    wait = slice_at(trace, finish, "lock")
    assert slice_at(trace, finish, "step")["name"] == "b"
    assert wait["ts"] < finish["ts"] < wait["ts"] + wait["dur"]
    assert wait["args"]["behind"] == [
        {"step": "a", "pid": 11, "mode": "exclusive", "seconds": 0.76, "queued_s": 0.0}
    ]
    assert wait["args"]["unattributed_s"] == 0.0
    assert begin["args"] == {"resource": "/v", "seconds": 0.76}


def test_a_step_that_gave_up_on_contention_gets_a_not_retried_instant() -> None:
    attempts = [{"start": 0.1, "duration": 0.1, "status": 1, "family": "git-index-lock", "line": "fatal: x"}]
    trace = _trace_of(_record(5.0, 0.3, attempts=attempts, status=1))
    (instant,) = (e for e in trace["traceEvents"] if e["ph"] == "i")
    assert instant["name"] == "contention, not retried: git-index-lock"
    assert instant["args"]["retried"] is False


def test_overlapping_steps_get_separate_tracks_and_fi_run_errors_their_own_slice() -> None:
    trace = _trace_of(
        _record(0.0, 2.0),
        _record(0.5, 0.5, status=127, error="command not found: 'cc'"),
        _record(1.0, 0.5),
    )
    steps = step_slices(trace)
    assert [s["tid"] for s in sorted(steps, key=lambda s: s["ts"])] == [1, 2, 2]
    (failed,) = (s for s in steps if s["args"]["status"] == 127)
    assert failed["args"]["error"] == "command not found: 'cc'"


# --- empty, broken, errors


def test_an_empty_log_gives_a_valid_trace_without_steps(tmp_path: Path) -> None:
    (tmp_path / "empty.log").write_text("")
    done = trace_cli(["empty.log", "-o", "t.json"], tmp_path)
    assert done.returncode == 0
    assert (
        done.stderr
        == "fi_run: wrote t.json (no steps logged); open it in https://ui.perfetto.dev or chrome://tracing\n"
    )
    trace = json.loads((tmp_path / "t.json").read_text())
    validate(trace)
    assert {e["ph"] for e in trace["traceEvents"]} == {"M"}


def test_broken_lines_are_skipped_counted_and_the_rest_traced(build: Build, tmp_path: Path) -> None:
    good = build.text().splitlines()[:2]
    (tmp_path / "broken.log").write_text(f"{good[0]}\n{{truncated\n{good[1]}\n{good[1][:30]}")
    done = trace_cli(["broken.log", "-o", "t.json"], tmp_path)
    assert done.returncode == 0
    lines = done.stderr.splitlines()
    assert lines[0] == "fi_run: skipped 2 unreadable lines (broken.log:2, broken.log:4)"
    assert len(step_slices(json.loads((tmp_path / "t.json").read_text()))) == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.log"], "fi_run: cannot read log 'missing.log': No such file or directory"),
        (["empty.log", "-o", "empty.log/t.json"], "fi_run: cannot write the trace to 'empty.log/t.json': "),
        (["empty.log", "-o", "."], "fi_run: cannot write the trace to '.': Is a directory"),
        (["-o", "t.json"], "fi_run: trace: the following arguments are required: LOG"),
        (["empty.log", "-o"], "fi_run: trace: argument -o/--output: expected one argument"),
    ],
    ids=["missing-log", "output-under-a-file", "output-a-directory", "no-log", "o-without-file"],
)
def test_errors_are_one_line_and_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "empty.log").write_text("")
    assert failed_with_one_line(trace_cli(args, tmp_path), 2).startswith(message)


def test_help_and_the_module_entry_point(tmp_path: Path) -> None:
    done = trace_cli(["--help"], tmp_path)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.startswith("usage: fi_run trace ")
    assert "ui.perfetto.dev" in done.stdout
    (tmp_path / "empty.log").write_text("")
    module = subprocess.run(
        [sys.executable, "-m", "fi_run.tools.trace", "empty.log"],
        cwd=tmp_path,
        env=base_environ(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert module.returncode == 0, module.stderr
    validate(json.loads(module.stdout))
