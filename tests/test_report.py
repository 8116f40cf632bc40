"""``fi_run report`` (issue 5): the summary of a real contended build's log, checked against a hand
computation from its JSON lines; --json; empty and broken logs; errors; colour."""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from fi_run_testing import (
    FAILING,
    TOTAL_STEPS,
    Build,
    base_environ,
    console_script,
    failed_with_one_line,
    fi_run_argv,
    run_fi_run,
    run_ninja,
    run_tool,
    write_edges,
)

from fi_run import memory
from fi_run.observe import report
from fi_run.tools import report as report_tool

assert sys.platform != "win32"  # POSIX only: conftest.POSIX_ONLY keeps it from being collected on Windows

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

FAMILY = "windows-lock-violation"


def report_cli(
    args: Sequence[str | os.PathLike[str]],
    cwd: Path,
    env: Mapping[str, str | None] | None = None,
    via: Sequence[str] = (sys.executable, "-m", "fi_run", "report"),
) -> subprocess.CompletedProcess[str]:
    return run_tool([*via, *args], cwd=cwd, env=base_environ(env), merge_stderr=False)


def report_json(log: Path | str, cwd: Path) -> dict[str, Any]:
    done = report_cli(["--json", log], cwd)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    result: dict[str, Any] = json.loads(done.stdout)
    return result


# --- the hand computation, straight from the JSON lines


def hand_percentiles(values: list[float]) -> tuple[float, float]:
    """p50 and p95 as the README defines them (linear between closest ranks), via the standard library."""
    if len(values) == 1:
        return values[0], values[0]
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return cuts[49], cuts[94]


def hand_resources(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    waits: dict[str, list[tuple[float, float, str, dict[str, Any]]]] = {}
    for record in records:
        for lock in record["locks"]:
            waits.setdefault(lock["resource"], []).append((lock["wait"], lock["held"], lock["mode"], record))
    figures = {}
    for resource, entries in waits.items():
        values = [wait for wait, *_ in entries]
        p50, p95 = hand_percentiles(values)
        modes: dict[str, int] = {}
        for _w, _h, mode, _r in entries:
            modes[mode] = modes.get(mode, 0) + 1
        figures[resource] = {
            "steps": len(entries),
            "total": sum(values),
            "p50": p50,
            "p95": p95,
            "max": max(values),
            "held": sum(held for _w, held, *_ in entries),
            "modes": modes,
            "longest": [r["pid"] for _w, _h, _m, r in sorted(entries, key=lambda e: -e[0])[:5]],
        }
    return figures


def hand_retries(records: list[dict[str, Any]]) -> tuple[int, int, float]:
    """(retries, steps retried, seconds from each retried attempt's start to the next's)."""
    count, steps, seconds = 0, 0, 0.0
    for record in records:
        attempts = record["attempts"]
        retried = [i for i, a in enumerate(attempts[:-1]) if a["family"] is not None]
        count += len(retried)
        steps += bool(retried)
        seconds += sum(attempts[i + 1]["start"] - attempts[i]["start"] for i in retried)
    return count, steps, seconds


# --- the real contended build


def test_json_report_matches_a_hand_computation_from_the_log_lines(build: Build) -> None:
    records = build.records()
    got = report_json(build.log, build.directory)

    assert got["report_version"] == 1
    assert got["files"] == [os.fspath(build.log)]
    assert (got["skipped_lines"], got["skipped_at"]) == (0, [])
    steps = got["steps"]
    assert steps["total"] == TOTAL_STEPS == len(records)
    assert (steps["failed"], steps["succeeded"]) == (len(FAILING), TOTAL_STEPS - len(FAILING))
    assert steps["step_seconds"] == pytest.approx(sum(r["duration"] for r in records), abs=1e-5)
    assert steps["lock_wait_seconds"] == pytest.approx(
        sum(lock["wait"] for r in records for lock in r["locks"]), abs=1e-5
    )
    assert got["span"]["start"] == min(r["start"] for r in records)
    assert got["span"]["end"] == max(r["end"] for r in records)

    assert {f["status"]: f["steps"] for f in got["failures"]} == {1: 1, 127: 1}
    (missing,) = (f for f in got["failures"] if f["status"] == 127)
    assert missing["examples"][0]["stamp"] == "fail/missing"
    assert "no-such-tool-for-fi-run" in missing["examples"][0]["error"]

    count, retried_steps, seconds = hand_retries(records)
    assert count >= 1
    retries = got["retries"]
    assert (retries["retries"], retries["steps"], retries["gave_up"]) == (count, retried_steps, 0)
    assert retries["seconds"] == pytest.approx(seconds, abs=1e-5)
    (family,) = retries["families"]
    assert (family["family"], family["retries"], family["steps"]) == (FAMILY, count, retried_steps)
    assert "os error 33" in family["line"]

    hand = hand_resources(records)
    assert [r["resource"] for r in got["resources"]] == sorted(hand, key=lambda name: -hand[name]["total"])
    assert set(hand) == {os.path.realpath(build.venv_b), os.path.realpath(build.licence)}
    for resource in got["resources"]:
        want = hand[resource["resource"]]
        assert resource["steps"] == want["steps"]
        for key in ("total", "p50", "p95", "max"):
            assert resource["wait"][key] == pytest.approx(want[key], abs=2e-6), key
        assert resource["held_total"] == pytest.approx(want["held"], abs=2e-6)
        assert {mode: m["steps"] for mode, m in resource["modes"].items()} == want["modes"]
        assert [t["pid"] for t in resource["top"]] == want["longest"]
        assert [t["wait"] for t in resource["top"]] == sorted(
            (t["wait"] for t in resource["top"]), reverse=True
        )
    venv_b = hand[os.path.realpath(build.venv_b)]
    assert venv_b["modes"] == {"exclusive": 12, "shared": 12}
    assert venv_b["max"] > 0.02, "nobody waited for venv-b"


def test_text_report_shows_steps_failures_retries_and_waits_with_the_hand_computed_figures(
    build: Build,
) -> None:
    records = build.records()
    done = report_cli([build.log], build.directory)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    text = done.stdout
    print("\n" + text)
    assert "\x1b" not in text, "no colour when stdout is not a terminal"
    lines = text.splitlines()
    assert lines[0].startswith(f"fi_run report  {build.log}: {TOTAL_STEPS} steps, 2 failed, span ")

    count, retried_steps, seconds = hand_retries(records)
    assert re.search(rf"^  retries +{count} +in {retried_steps} steps?, {seconds:.3f} s lost$", text, re.M)
    assert re.search(rf"^  {FAMILY} +{count} +{retried_steps} +{seconds:.3f} +0$", text, re.M), text
    assert re.search(r"^ +127 +1  fail/missing: no-such-tool-for-fi-run  \(command not found", text, re.M)
    assert re.search(r"^ +1 +1  fail/false: false$", text, re.M)

    for resource, want in hand_resources(records).items():
        figures = " +".join(f"{want[k]:.3f}" for k in ("total", "p50", "p95", "max", "held"))
        assert re.search(rf"^ +{want['steps']} +{figures}  {re.escape(resource)}", text, re.M), resource
        assert f"  longest waits for {resource}\n" in text
    # The longest wait of all, with its step's stamp and shortened command.
    longest = max((lock["wait"], r) for r in records for lock in r["locks"])
    stamp = os.path.relpath(longest[1]["stamp"], build.directory)
    assert re.search(rf"^    {longest[0]:.3f}  {stamp}: \S", text, re.M)


def test_the_memory_table_gives_each_command_s_peaks_and_a_mem_value_from_a_hand_computation(
    build: Build,
) -> None:
    """The contended build runs two commands that succeed: the simulator (python3 contention_sim.py) and
    sleep; its failures (false, a missing tool) are left out."""
    records = build.records()
    peaks: dict[str, list[int]] = {}
    for record in records:
        if record["status"] == 0:
            program = os.path.basename(record["argv"][0])
            name = "sleep" if program == "sleep" else f"{program} {os.path.basename(record['argv'][1])}"
            peaks.setdefault(name, []).append(record["peak_rss"])
    assert sorted(len(values) for values in peaks.values()) == [20, 24]
    got = report_json(build.log, build.directory)["memory"]
    assert {entry["command"] for entry in got} == set(peaks)
    for entry in got:
        values = peaks[entry["command"]]
        p50, p95 = hand_percentiles([float(v) for v in values])
        assert entry["steps"] == len(values)
        assert entry["peak"] == {"p50": round(p50), "p95": round(p95), "max": max(values)}
        declared = memory.parse_size("--mem", entry["mem"])
        assert p95 <= declared < p95 + (1 << 20) + 1
    assert got[0]["peak"]["p95"] >= got[1]["peak"]["p95"]  # largest first
    text = report_cli([build.log], build.directory).stdout
    section = text[text.index("peak memory by command") :].splitlines()
    assert section[1].split() == ["steps", "p50", "p95", "max", "--mem", "command"]
    for entry, line in zip(got, section[2:], strict=True):
        assert line.split()[0] == str(entry["steps"])
        assert line.endswith(f"  {entry['mem']}  {entry['command']}")


@pytest.mark.parametrize(
    ("argv", "group"),
    [
        (["python3", "gen.py", "--out", "x.h"], "python3 gen.py"),
        (["/usr/bin/python3.12", "-u", "tools/check.py"], "python3.12 check.py"),
        (["python3", "-m", "build"], "python3 -m build"),
        (["python", "-c", "pass"], "python -c"),
        (["x86_64-linux-gnu-g++-12", "-c", "a.cc", "-o", "a.o"], "x86_64-linux-gnu-g++-12 -c"),
        (["clang++", "-o", "app", "a.o", "b.o"], "clang++"),
        (["C:\\VS\\bin\\cl.exe", "/c", "a.c"], "cl -c"),
        (["/usr/bin/ld.lld", "-o", "app"], "ld.lld"),
        (["uv", "pip", "install", "-e", "."], "uv"),
    ],
)
def test_memory_groups_separate_compiles_from_links_and_scripts_from_each_other(
    argv: list[str], group: str
) -> None:
    assert report.memory_group(tuple(argv)) == group


def test_a_log_without_peaks_has_no_memory_table(tmp_path: Path) -> None:
    """Windows steps, and logs from before the key, have no peak_rss: no table, an empty list."""
    record = {
        "v": 1,
        "start": 1.0,
        "end": 2.0,
        "duration": 1.0,
        "argv": ["cc", "-c", "a.c"],
        "status": 0,
        "attempts": [],
        "locks": [],
    }
    log = tmp_path / "old.log"
    log.write_text(json.dumps(record) + "\n")
    assert report_json(log, tmp_path)["memory"] == []
    assert "peak memory" not in report_cli([log], tmp_path).stdout


def test_the_report_of_a_log_split_in_two_files_is_the_report_of_the_whole(
    build: Build, tmp_path: Path
) -> None:
    lines = build.text().splitlines(keepends=True)
    first, second = tmp_path / "a.log", tmp_path / "b.log"
    first.write_text("".join(lines[::2]))
    second.write_text("".join(lines[1::2]))
    whole = report_json(build.log, tmp_path)
    done = report_cli(["--json", first, second], tmp_path)
    assert done.returncode == 0, done.stderr
    split = json.loads(done.stdout)
    assert split["files"] == [os.fspath(first), os.fspath(second)]
    del split["files"], whole["files"]
    assert split == whole


def test_the_json_keys_are_the_documented_ones(build: Build) -> None:
    got = report_json(build.log, build.directory)
    assert list(got) == list(report.JSON_KEYS)
    # A resource's keys, and those of what it holds, are named where the code and docs/reference.md say
    # what a resource is.
    reference = (Path(__file__).resolve().parent.parent / "docs" / "reference.md").read_text(encoding="utf-8")
    rows = reference.split("| `resources` |", 1)[1].split("| `lent` |", 1)[0]
    licence = next(r for r in got["resources"] if r["seats"] is not None)
    nested = [licence, licence["longest"], licence["seats"], licence["seats"]["replayed"][0]]
    for resource in got["resources"]:
        nested += resource["blockers"][:1] + list(resource["behind"].values())
    assert any("seconds" in item and "pid" in item for item in nested), "a blocker among them"
    for item in nested:
        for key in item:
            assert re.search(rf"\b{key}\b", report.JSON_KEYS["resources"]), key
            assert re.search(rf"\b{key}\b", rows), key
    help_text = report_cli(["--help"], build.directory).stdout
    for key in report.JSON_KEYS:
        assert f"  {key}: " in help_text


# --- the longest wait, who waited behind whom, and more seats (issue 18, item 5), by hand from the log lines


@dataclass(eq=False)  # one claim is one object: hashed by identity
class HandClaim:
    """One step's locks on one resource, straight from its log line."""

    key: tuple[int, float]  # (pid, start): the step
    stamp: str
    modes: frozenset[str]
    slots: int
    asked: float
    got: float
    released: float | None

    @property
    def mode(self) -> str:
        return "+".join(sorted(self.modes))


def hand_claims(records: list[dict[str, Any]]) -> dict[str, list[HandClaim]]:
    claims: dict[str, list[HandClaim]] = {}
    for record in records:
        mine: dict[str, list[dict[str, Any]]] = {}
        for lock in record["locks"]:
            mine.setdefault(lock["resource"], []).append(lock)
        for resource, locks in mine.items():
            start = record["start"]
            got = max(start + lock["wait_start"] + lock["wait"] for lock in locks)
            helds = [lock["held"] for lock in locks]
            claims.setdefault(resource, []).append(
                HandClaim(
                    key=(record["pid"], start),
                    stamp=os.path.basename(os.path.dirname(record["stamp"]))
                    + "/"
                    + os.path.basename(record["stamp"]),
                    modes=frozenset(lock["mode"] for lock in locks),
                    slots=min((lock["slots"] for lock in locks if lock["mode"] == "semaphore"), default=1),
                    asked=min(start + lock["wait_start"] for lock in locks),
                    got=got,
                    released=None if None in helds else max(got + held for held in helds),
                )
            )
    return claims


def hand_behind(
    claims: list[HandClaim],
) -> tuple[dict[tuple[HandClaim, HandClaim], list[float]], dict[HandClaim, float]]:
    """One sweep over every moment any claim of the resource changed: for each waiter, the conflicting
    holders then (split equally), else the earliest exclusive claim that asked before it and still waits
    (queued), else nobody. Returns (waiter, blocker) -> [holding, queued] and waiter -> unattributed."""
    moments = sorted({t for c in claims for t in (c.asked, c.got, c.released) if t is not None})
    pairs: dict[tuple[HandClaim, HandClaim], list[float]] = {}
    nobody: dict[HandClaim, float] = {c: 0.0 for c in claims if c.got > c.asked}
    for low, high in itertools.pairwise(moments):
        middle = (low + high) / 2
        holding = [c for c in claims if c.released is not None and c.got <= middle < c.released]
        for waiter in (c for c in claims if c.asked <= middle < c.got):
            if "exclusive" in waiter.modes:
                blockers = [h for h in holding if h is not waiter]
            else:
                blockers = [h for h in holding if "exclusive" in h.modes]
                seated = [h for h in holding if "semaphore" in h.modes]
                if not blockers and "semaphore" in waiter.modes and len(seated) >= waiter.slots:
                    blockers = seated
            for blocker in blockers:
                pairs.setdefault((waiter, blocker), [0.0, 0.0])[0] += (high - low) / len(blockers)
            ahead = [
                c
                for c in claims
                if "exclusive" in c.modes
                and c is not waiter
                and c.asked < waiter.asked
                and c.asked <= middle < c.got
            ]
            if blockers:
                continue
            if ahead:
                first = min(ahead, key=lambda c: c.asked)
                pairs.setdefault((waiter, first), [0.0, 0.0])[1] += high - low
            else:
                nobody[waiter] += high - low
    return pairs, nobody


def hand_replay(arrivals: list[tuple[float, float]], seats: int) -> tuple[float, float]:
    """(total wait, last release) with ``seats`` seats, first come first served: a list, not a heap."""
    free = [-math.inf] * seats
    total, last = 0.0, -math.inf
    for asked, held in sorted(arrivals):
        seat = min(range(seats), key=lambda k: free[k])
        begin = max(asked, free[seat])
        total += begin - asked
        free[seat] = begin + held
        last = max(last, free[seat])
    return total, last


def test_the_longest_wait_is_named_in_json_and_text_even_with_top_0(build: Build) -> None:
    records = build.records()
    waits = [(lock["wait"], lock["resource"], r) for r in records for lock in r["locks"]]
    for top in ("5", "0"):
        done = report_cli(["--json", "--top", top, build.log], build.directory)
        got = json.loads(done.stdout)
        for resource in got["resources"]:
            wait, _resource, record = max(w for w in waits if w[1] == resource["resource"])
            longest = resource["longest"]
            assert (longest["pid"], longest["start"]) == (record["pid"], record["start"])
            assert longest["wait"] == pytest.approx(wait, abs=1e-6)
            assert longest["stamp"] == os.path.relpath(record["stamp"], build.directory)
            assert longest["mode"] in {lock["mode"] for lock in record["locks"]}
            assert resource["top"] == ([longest, *resource["top"][1:]] if top == "5" else [])
        text = report_cli(["--top", top, build.log], build.directory).stdout
        for resource in got["resources"]:
            longest = resource["longest"]
            header = f"  longest waits for {resource['resource']}\n"
            assert header in text
            first = text.split(header, 1)[1].splitlines()[0]
            assert first.startswith(f"    {longest['wait']:.3f}  {longest['stamp']}: "), first


def test_who_waited_behind_whom_matches_a_hand_computation_from_the_log_lines(build: Build) -> None:
    claims = hand_claims(build.records())
    got = report_json(build.log, build.directory)
    text = report_cli([build.log], build.directory).stdout
    for resource in got["resources"]:
        name = resource["resource"]
        pairs, nobody = hand_behind(claims[name])
        # The steps that made others wait: seconds caused (queued among them), how many waiters.
        caused: dict[tuple[int, float], list[Any]] = {}
        for (waiter, blocker), (holding, queued) in pairs.items():
            entry = caused.setdefault(blocker.key, [0.0, 0.0, set(), blocker])
            entry[0] += holding + queued
            entry[1] += queued
            entry[2].add(waiter.key)
        listed = resource["blockers"]
        assert len(listed) == min(5, len(caused))
        assert [b["seconds"] for b in listed] == sorted((b["seconds"] for b in listed), reverse=True)
        for blocker in listed:
            seconds, queued, waiters, claim = caused.pop((blocker["pid"], blocker["start"]))
            assert blocker["seconds"] == pytest.approx(seconds, abs=1e-5)
            assert blocker["queued"] == pytest.approx(queued, abs=1e-5)
            assert (blocker["waiters"], blocker["mode"]) == (len(waiters), claim.mode)
            assert blocker["stamp"] == claim.stamp
            row = rf"^ +{blocker['seconds']:.3f} +{blocker['waiters']}  {re.escape(claim.stamp)}: \S"
            assert re.search(row, text, re.M), row
        assert all(rest[0] <= listed[-1]["seconds"] + 1e-5 for rest in caused.values()), "the top ones listed"
        assert f"  made others wait for {name}  (seconds others waited behind it)\n" in text

        # What the waiters of each mode waited behind.
        want: dict[str, dict[str, Any]] = {}
        for waiter, unattributed in nobody.items():
            sums = want.setdefault(
                waiter.mode, {"waiters": 0, "wait": 0.0, "holding": {}, "queued": {}, "unattributed": 0.0}
            )
            sums["waiters"] += 1
            sums["wait"] += waiter.got - waiter.asked
            sums["unattributed"] += unattributed
        for (waiter, blocker), (holding, queued) in pairs.items():
            for kind, seconds in (("holding", holding), ("queued", queued)):
                if seconds:
                    by = want[waiter.mode][kind]
                    by[blocker.mode] = by.get(blocker.mode, 0.0) + seconds
        assert set(resource["behind"]) == set(want)
        for mode, entry in resource["behind"].items():
            hand = want[mode]
            assert entry["waiters"] == hand["waiters"]
            for key in ("wait", "unattributed"):
                assert entry[key] == pytest.approx(hand[key], abs=1e-5), (mode, key)
            for kind in ("holding", "queued"):
                assert set(entry[kind]) == set(hand[kind]), (mode, kind)
                for by, seconds in entry[kind].items():
                    assert seconds == pytest.approx(hand[kind][by], abs=1e-5), (mode, kind, by)
            parts = sum(entry["holding"].values()) + sum(entry["queued"].values()) + entry["unattributed"]
            assert parts == pytest.approx(entry["wait"], abs=1e-5), "every moment of a wait goes somewhere"
            row = rf"^ +{entry['waiters']}  {mode} +{entry['wait']:.3f}  "
            assert re.search(row, text, re.M), row
        assert f"  what the waiters for {name} waited behind  (seconds)\n" in text
    venv_b = next(r for r in got["resources"] if r["resource"] == os.path.realpath(build.venv_b))
    assert venv_b["behind"]["exclusive"]["holding"]["exclusive"] > 0, "12 installs under one --lock at -j16"


SEATS_STEPS = 4  # steps on each semaphore, all started at once: one seat for all, or one seat each


@pytest.fixture(scope="module")
def seats_build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path, Path]:
    """A real build: SEATS_STEPS steps of 1 s on a --semaphore of 1 seat (scarce) and as many on one of
    SEATS_STEPS seats (plenty), all at once under ninja. Returns (build directory, log, scarce, plenty)."""
    root = tmp_path_factory.mktemp("seats")
    scarce, plenty = root / "scarce", root / "plenty"
    scarce.mkdir()
    plenty.mkdir()
    edges: list[tuple[str, list[str | os.PathLike[str]]]] = []
    for name, resource, seats in (("scarce", scarce, 1), ("plenty", plenty, SEATS_STEPS)):
        for i in range(SEATS_STEPS):
            stamp = f"{name}/{i}"
            edges.append(
                (
                    stamp,
                    [
                        *fi_run_argv(),
                        "--lock-dir",
                        root / "locks",
                        "--stamp",
                        stamp,
                        "--semaphore",
                        f"{resource}={seats}",
                        "--",
                        "sleep",
                        "1",
                    ],
                )
            )
    build = root / "build"
    write_edges(build, edges)
    log = root / "fi_run.log"
    done = run_ninja(build, f"-j{2 * SEATS_STEPS}", env={"FI_RUN_LOG": os.fspath(log)})
    assert done.returncode == 0, done.stdout
    return build, log, Path(os.path.realpath(scarce)), Path(os.path.realpath(plenty))


def test_more_seats_are_replayed_from_the_log_and_said_only_when_they_would_have_paid(
    seats_build: tuple[Path, Path, Path, Path],
) -> None:
    build, log, scarce, plenty = seats_build
    claims = hand_claims([json.loads(line) for line in log.read_text().splitlines()])
    got = {r["resource"]: r for r in report_json(log, build)["resources"]}
    text = report_cli([log], build).stdout
    print("\n" + text)
    for resource, seats in ((scarce, 1), (plenty, SEATS_STEPS)):
        arrivals = [(c.asked, (c.released or c.got) - c.got) for c in claims[os.fspath(resource)]]
        figures = got[os.fspath(resource)]["seats"]
        assert (figures["seats"], figures["steps"], figures["left_out"]) == (seats, SEATS_STEPS, 0)
        hand = [hand_replay(arrivals, n) for n in (seats, seats + 1, seats + 2)]
        assert [r["seats"] for r in figures["replayed"]] == [seats, seats + 1, seats + 2]
        for replayed, (wait, last) in zip(figures["replayed"], hand, strict=True):
            assert replayed["wait"] == pytest.approx(wait, abs=1e-5)
            assert replayed["sooner"] == pytest.approx(hand[0][1] - last, abs=1e-5)
        assert figures["enough"] == next(n for n in itertools.count(1) if hand_replay(arrivals, n)[0] == 0)
        assert figures["logged_wait"] == pytest.approx(
            sum(c.got - c.asked for c in claims[os.fspath(resource)]), abs=1e-5
        )
    # Plenty: a seat for every step, so nobody waits in the replay and nothing is said.
    plenty_seats = got[os.fspath(plenty)]["seats"]
    assert [r["wait"] for r in plenty_seats["replayed"]] == [0.0, 0.0, 0.0]
    assert plenty_seats["pays"] is False
    assert f"  {plenty}: " not in text
    # Scarce: four 1 s holds asked for at about the same moment on one seat.
    scarce_seats = got[os.fspath(scarce)]["seats"]
    now, more = scarce_seats["replayed"][0]["wait"], scarce_seats["replayed"][1]["wait"]
    assert now - more >= max(0.05, 0.1 * now), f"the steps did not overlap on the scarce seat: {scarce_seats}"
    assert scarce_seats["pays"] is True
    line = f"  {scarce}: 1 seat; 2 would have cut the waits from {now:.3f} s to {more:.3f} s"
    assert line in text
    (said,) = (text_line for text_line in text.splitlines() if text_line.startswith(line))
    assert said.endswith(" (replayed from this log)")
    # The one seat's queue: each waiter waited behind the step holding it.
    (blocker, *_rest) = got[os.fspath(scarce)]["blockers"]
    assert blocker["waiters"] >= 1
    assert got[os.fspath(scarce)]["behind"]["semaphore"]["holding"]["semaphore"] > 0


# --- empty and broken logs


def test_an_empty_log_says_no_steps_logged(tmp_path: Path) -> None:
    (tmp_path / "empty.log").write_text("")
    done = report_cli(["empty.log"], tmp_path)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == "fi_run report  empty.log: no steps logged\n"
    got = report_json("empty.log", tmp_path)
    assert got["steps"]["total"] == 0
    assert (got["span"], got["failures"], got["resources"]) == (None, [], [])
    assert got["retries"]["families"] == []


def test_broken_lines_are_skipped_and_counted_and_the_rest_is_reported(build: Build, tmp_path: Path) -> None:
    good = build.text().splitlines()[:3]
    record = json.loads(good[0])
    broken = [
        good[0],
        good[1][: len(good[1]) // 2],  # a writer killed mid-line
        "garbage from another tool",
        "[1, 2, 3]",
        json.dumps({"v": 1, "msg": "a foreign JSON line"}),
        json.dumps({**record, "status": "0"}),  # a field of the wrong type
        json.dumps({**record, "attempts": [{"start": 0}]}),  # a malformed attempt
        "",  # blank lines are not records, nor broken ones
        good[2],
    ]
    path = tmp_path / "broken.log"
    path.write_bytes(("\n".join(broken) + "\n").encode() + b"\xff\xfe not utf-8\n" + good[1][:40].encode())
    done = report_cli([path], tmp_path)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.splitlines()[0].startswith(f"fi_run report  {path}: 2 steps, ")
    where = ", ".join(f"broken.log:{n}" for n in (2, 3, 4, 5, 6, 7, 10, 11))
    assert done.stdout.splitlines()[1] == f"skipped 8 unreadable lines ({where})"
    got = report_json(path, tmp_path)
    assert (got["steps"]["total"], got["skipped_lines"]) == (2, 8)
    assert got["skipped_at"] == where.split(", ")


def test_a_log_of_only_broken_lines_says_so(tmp_path: Path) -> None:
    (tmp_path / "bad.log").write_text("not json\n")
    done = report_cli(["bad.log"], tmp_path)
    assert done.returncode == 0
    assert done.stdout == "fi_run report  bad.log: no steps logged\nskipped 1 unreadable line (bad.log:1)\n"


# --- errors: one line, exit 2, no traceback


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.log"], "fi_run: cannot read log 'missing.log': No such file or directory"),
        (["empty.log", "missing.log"], "fi_run: cannot read log 'missing.log': No such file or directory"),
        (["."], "fi_run: cannot read log '.': Is a directory"),
        (["empty.log/x.log"], "fi_run: cannot read log 'empty.log/x.log': Not a directory"),
        ([], "fi_run: report: the following arguments are required: LOG (see fi_run report --help)"),
        (["--top", "x", "empty.log"], "fi_run: report: argument --top: invalid int value: 'x'"),
        (["--top=-1", "empty.log"], "fi_run: report: --top expects a number >= 0, got -1"),
        (["--bogus", "empty.log"], "fi_run: report: unrecognized arguments: --bogus"),
    ],
    ids=[
        "missing",
        "one-of-two-missing",
        "directory",
        "under-a-file",
        "no-log",
        "bad-top",
        "negative-top",
        "bad-option",
    ],
)
def test_errors_are_one_line_and_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "empty.log").write_text("")
    assert failed_with_one_line(report_cli(args, tmp_path), 2).startswith(message)


def test_help_exits_0_and_names_the_options(tmp_path: Path) -> None:
    done = report_cli(["--help"], tmp_path)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.startswith("usage: fi_run report ")
    for option in ("--json", "--top", "LOG"):
        assert option in done.stdout


# --- every way in


def test_every_way_of_running_the_report_gives_the_same_output(build: Build) -> None:
    expected = report_cli([build.log], build.directory).stdout
    assert expected
    for via in (
        [os.fspath(console_script()), "report"],
        [sys.executable, "-m", "fi_run.tools.report"],
        [sys.executable, str(Path(report_tool.__file__))],  # by path, as a vendored tree might
    ):
        done = report_cli([build.log], build.directory, via=via)
        assert (done.returncode, done.stderr, done.stdout) == (0, "", expected), via
    inprocess = run_fi_run("inprocess", ["report", os.fspath(build.log)], cwd=build.directory)
    assert inprocess == (0, expected, "")


def test_standard_input_is_read_for_a_dash(build: Build) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "fi_run", "report", "--json", "-"],
        input=build.log.read_bytes(),
        capture_output=True,
        env=base_environ(),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["steps"]["total"] == TOTAL_STEPS


# --- colour


def test_colour_follows_the_environment_like_fi_runs_own_messages(build: Build) -> None:
    forced = report_cli([build.log], build.directory, env={"CLICOLOR_FORCE": "1"}).stdout
    assert "\x1b[1mfi_run report\x1b[0m" in forced
    assert "\x1b[1;31m2 failed\x1b[0m" in forced
    assert re.sub(r"\x1b\[[0-9;]*m", "", forced) == report_cli([build.log], build.directory).stdout
    for env in ({"CLICOLOR_FORCE": "1", "NO_COLOR": "1"}, {"FORCE_COLOR": "0"}):
        assert "\x1b" not in report_cli([build.log], build.directory, env=env).stdout
    assert "\x1b" not in report_cli(["--json", build.log], build.directory, env={"FORCE_COLOR": "1"}).stdout


def test_a_terminal_gets_colour(build: Build) -> None:
    master, slave = os.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fi_run", "report", build.log],
            cwd=build.directory,
            env=base_environ({"TERM": "xterm", "COLUMNS": "100"}),
            stdin=subprocess.DEVNULL,
            stdout=slave,
            stderr=subprocess.PIPE,
        )
    finally:
        os.close(slave)
    data = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the terminal's other end is closed
            break
        if not chunk:
            break
        data += chunk
    os.close(master)
    assert proc.wait(timeout=60) == 0
    text = data.decode()
    assert "\x1b[1mfi_run report\x1b[0m" in text
    plain = re.sub(r"\x1b\[[0-9;]*m", "", text).replace("\r\n", "\n")
    # Lines that can be arbitrarily long (commands, matched lines) are cut to the terminal's width.
    cut = [line for line in plain.splitlines() if re.match(r"    (\d+\.\d{3}  |e\.g\. )", line)]
    assert cut
    assert all(len(line) <= 100 for line in cut)
