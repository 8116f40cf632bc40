"""``fi_run trace LOG... -o trace.json``: a Chrome trace-event file of a build, from fi_run's --log lines.

The trace itself; the command line is tools/trace.py. Imported only by that tool, never by a build step.

The output is the trace-event format's JSON Object Format (``{"traceEvents": [...], "displayTimeUnit":
"ms"}``) that Perfetto (https://ui.perfetto.dev, "Open trace file") and chrome://tracing load. One process,
the build; one track (tid) per concurrent slot: each step goes to the lowest-numbered slot free at its start,
as ninjatracing lays out .ninja_log, so a -j16 build has at most 16 tracks. On its track, each step is:

- a complete event ("ph": "X") for the whole step, named after its stamp (ninja's output) or its command,
  category "step" (args: argv, status, error, pid, stamp, the log line it came from);
- inside it, one after another: "waiting for <resource>" per lock (category "lock"), then "running <argv0>"
  per attempt (category "attempt");
- an instant event ("ph": "i", "s": "t") named "retry: <family>" where an attempt failed on contention and was
  run again (category "retry", the matched line in args), "contention, not retried: <family>" where fi_run
  gave up;
- "slot lent" (category "lent") where the step had given its job slot back to ``fi-run jobserver`` while it
  waited: an async slice ("ph": "b" / "e", one id per loan), shown on a track of its own under the build,
  because a loan spans lock waits without nesting in them (args: resource, or none for a retry back-off;
  credit: repaid after the command).

Who waited behind whom (observe/waits.py): a "waiting for <resource>" slice's args name the steps it waited
behind (``behind``: the five that cost it most, with their seconds; ``unattributed_s``: the rest), and a
flow arrow (category "lock", name "waited behind": a "ph": "s" event on the holder's track, a "ph": "f" with
"bp": "e" inside the waiter's wait slice, one id per arrow) goes from the step that let it go (the holder
whose release came nearest its getting the lock) to that wait slice. One arrow per wait, so a queue shows as
a chain; Perfetto draws a slice's arrows when it is selected.

Times are integer microseconds from the first step's start (its epoch time is in otherData.start_epoch).
Slices are laid out so that none overlaps another on its track except by nesting inside its step, and events
are written in time order (at one instant the enclosing slice first), as the older viewers need.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from .logfile import short_command, step_label
from .waits import analyse

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Final

    from .logfile import Log
    from .schema import Step
    from .waits import Waiter

TRACE_VERSION: Final = 1
PID: Final = 1  # the build; tids are slots, numbered from 1


def _us(seconds: float) -> int:
    return round(seconds * 1_000_000)


def assign_slots(spans: Sequence[tuple[int, int]]) -> list[int]:
    """For each (start, end), the lowest slot (1, 2, ...) that no earlier span still occupies at its start.

    Spans are taken in order of start (then end); a slot is free again at the moment its span ends, so a span
    that starts exactly when another ends may take its slot. Returns the slots in the order given.
    """
    import heapq

    order = sorted(range(len(spans)), key=lambda i: (spans[i][0], spans[i][1], i))
    busy: list[tuple[int, int]] = []  # (end, slot) of the slots in use
    free: list[int] = []  # slots free again, lowest first
    slots = [0] * len(spans)
    for index in order:
        start, end = spans[index]
        while busy and busy[0][0] <= start:
            heapq.heappush(free, heapq.heappop(busy)[1])
        slot = heapq.heappop(free) if free else len(busy) + 1
        heapq.heappush(busy, (end, slot))
        slots[index] = slot
    return slots


def _step_name(step: Step) -> str:
    return step_label(step) or short_command(step, 60)


def _argv0(step: Step) -> str:
    return os.path.basename(step.argv[0].replace("\\", "/")) if step.argv else "?"


def build_trace(log: Log) -> dict[str, Any]:
    """The trace as a JSON-ready dict."""
    steps = log.steps
    origin = min((step.start for step in steps), default=0.0)
    spans = []
    for step in steps:
        start = _us(step.start - origin)
        spans.append((start, start + max(_us(step.duration), 0)))
    slots = assign_slots(spans)
    source = ", ".join(log.files)
    events: list[dict[str, Any]] = [
        {
            "name": "process_name",
            "ph": "M",
            "pid": PID,
            "tid": 0,
            "args": {"name": f"fi_run build ({source})"},
        },
        {"name": "process_sort_index", "ph": "M", "pid": PID, "tid": 0, "args": {"sort_index": 0}},
    ]
    for slot in range(1, max(slots, default=0) + 1):
        events.append(
            {"name": "thread_name", "ph": "M", "pid": PID, "tid": slot, "args": {"name": f"slot {slot}"}}
        )
        events.append(
            {"name": "thread_sort_index", "ph": "M", "pid": PID, "tid": slot, "args": {"sort_index": slot}}
        )
    waiting: dict[int, dict[str, Waiter]] = {}
    for waits in analyse(steps).values():
        for waiter in waits.waiters:
            waiting.setdefault(waiter.claim.index, {})[waits.resource] = waiter
    timed: list[dict[str, Any]] = []
    wait_slices: dict[tuple[int, str], tuple[int, int]] = {}
    for index, (step, (start, end), slot) in enumerate(zip(steps, spans, slots, strict=True)):
        slices, placed = _step_events(step, start, end, slot, waiting.get(index, {}))
        timed += slices
        wait_slices.update(((index, resource), span) for resource, span in placed.items())
        timed += _loan_events(step, index, start, end, slot)
    timed += _flow_events(waiting, wait_slices, spans, slots, origin)
    # In time order, and at one instant the longer slice first (the enclosing step before its first child):
    # chrome://tracing nests same-start complete events in file order, and some Perfetto versions did too.
    timed.sort(key=lambda event: (event["ts"], -event.get("dur", -1)))
    return {
        "traceEvents": events + timed,
        "displayTimeUnit": "ms",
        "otherData": {
            "fi_run_trace": TRACE_VERSION,
            "files": list(log.files),
            "start_epoch": origin,
            "steps": len(steps),
            "slots": max(slots, default=0),
            "skipped_lines": log.skipped,
        },
    }


def _loan_events(step: Step, index: int, start: int, end: int, slot: int) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for number, loan in enumerate(step.lent):
        ts = min(start + _us(loan.start), end)
        # A loan the step never closed lasted until it ended.
        stop = end if loan.duration is None else min(max(start + _us(loan.start + loan.duration), ts), end)
        common = {"name": "slot lent", "cat": "lent", "id": f"lent-{index}-{number}", "pid": PID, "tid": slot}
        args = {"resource": loan.resource, "credit": loan.credit, "lost": loan.lost, "step": _step_name(step)}
        events.append({**common, "ph": "b", "ts": ts, "args": args})
        events.append({**common, "ph": "e", "ts": stop})
    return events


def _flow_events(
    waiting: Mapping[int, Mapping[str, Waiter]],
    wait_slices: Mapping[tuple[int, str], tuple[int, int]],
    spans: Sequence[tuple[int, int]],
    slots: Sequence[int],
    origin: float,
) -> list[dict[str, Any]]:
    """One "waited behind" arrow per wait, from the holder that let it go to the wait slice."""
    events: list[dict[str, Any]] = []
    for index, resources in sorted(waiting.items()):
        for resource, waiter in sorted(resources.items()):
            behind = waiter.handed_over
            if behind is None or behind.blocker.released is None or (index, resource) not in wait_slices:
                continue
            holder = behind.blocker.index
            wait_ts, wait_stop = wait_slices[index, resource]
            step_ts, step_stop = spans[holder]
            # The ends bind to the slices around them: strictly inside when the slice is long enough, the
            # arrow never going back in time (a viewer drops a flow whose end comes before its start).
            finish = max(wait_stop - 1, wait_ts)
            begin = min(max(_us(behind.blocker.released - origin), step_ts + 1), step_stop - 1, finish)
            if not (step_ts <= begin < step_stop and wait_ts <= finish <= wait_stop and wait_stop > wait_ts):
                continue  # a zero-length slice, or a holder gone before the wait began: no arrow to draw
            common = {"name": "waited behind", "cat": "lock", "id": len(events) // 2 + 1, "pid": PID}
            args = {"resource": resource, "seconds": round(behind.seconds, 6)}
            events.append({**common, "ph": "s", "ts": begin, "tid": slots[holder], "args": args})
            events.append({**common, "ph": "f", "bp": "e", "ts": finish, "tid": slots[index], "args": args})
    return events


def _behind_args(waiter: Waiter) -> dict[str, Any]:
    return {
        "behind": [
            {
                "step": _step_name(b.blocker.step),
                "pid": b.blocker.step.pid,
                "mode": b.blocker.mode,
                "seconds": round(b.seconds, 6),
                "queued_s": round(b.queued, 6),  # of which it waited itself, ahead at the gate
            }
            for b in waiter.behind[:5]
        ],
        "unattributed_s": round(waiter.unattributed, 6),
    }


def _step_events(
    step: Step, start: int, end: int, slot: int, waiting: Mapping[str, Waiter]
) -> tuple[list[dict[str, Any]], dict[str, tuple[int, int]]]:
    """The step's slices and instants, and where its first wait slice for each resource is."""
    step_args: dict[str, Any] = {
        "argv": list(step.argv),
        "status": step.status,
        "attempts": len(step.attempts),
        "pid": step.pid,
        "stamp": step.stamp,
        "cwd": step.cwd,
        "log_line": step.source,
    }
    if step.error is not None:
        step_args["error"] = step.error
    if step.command_cwd is not None:
        step_args["command_cwd"] = step.command_cwd
    whole: dict[str, Any] = {
        "name": _step_name(step),
        "cat": "step" if step.status == 0 else "step,failed",
        "ph": "X",
        "ts": start,
        "dur": end - start,
        "pid": PID,
        "tid": slot,
        "args": step_args,
    }
    if step.status != 0:
        whole["cname"] = "terrible"  # chrome://tracing's reserved red
    events = [whole]
    cursor = start

    def place(offset: float, duration: float) -> tuple[int, int]:
        """A child slice inside the step, after the previous one: rounding never makes two overlap."""
        nonlocal cursor
        ts = min(max(start + _us(offset), cursor), end)
        stop = min(max(start + _us(offset + duration), ts), end)
        cursor = stop
        return ts, stop

    placed: dict[str, tuple[int, int]] = {}
    for lock in sorted(step.locks, key=lambda lock: lock.wait_start):
        ts, stop = place(lock.wait_start, lock.wait)
        args: dict[str, Any] = {
            "resource": lock.resource,
            "mode": lock.mode,
            "slots": lock.slots,
            "wait_s": lock.wait,
            "held_s": lock.held,
        }
        if lock.resource not in placed:  # a step's locks on one resource are one wait (waits.py)
            placed[lock.resource] = (ts, stop)
            if lock.resource in waiting:
                args.update(_behind_args(waiting[lock.resource]))
        events.append(
            {
                "name": f"waiting for {lock.resource}",
                "cat": "lock",
                "ph": "X",
                "ts": ts,
                "dur": stop - ts,
                "pid": PID,
                "tid": slot,
                "args": args,
            }
        )
    attempts = sorted(step.attempts, key=lambda attempt: attempt.start)
    for number, attempt in enumerate(attempts, 1):
        ts, stop = place(attempt.start, attempt.duration)
        running: dict[str, Any] = {
            "name": f"running {_argv0(step)}",
            "cat": "attempt",
            "ph": "X",
            "ts": ts,
            "dur": stop - ts,
            "pid": PID,
            "tid": slot,
            "args": {"attempt": number, "of": len(attempts), "status": attempt.status},
        }
        if attempt.status != 0:
            running["cname"] = "bad"
        events.append(running)
        if attempt.family is not None:
            retried = number < len(attempts)
            events.append(
                {
                    "name": f"{'retry' if retried else 'contention, not retried'}: {attempt.family}",
                    "cat": "retry",
                    "ph": "i",
                    "s": "t",
                    "ts": stop,
                    "pid": PID,
                    "tid": slot,
                    "args": {
                        "family": attempt.family,
                        "line": attempt.line,
                        "attempt": number,
                        "status": attempt.status,
                        "retried": retried,
                    },
                }
            )
    return events, placed
