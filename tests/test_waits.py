"""observe/waits.py (issue 18, item 5): who waited behind whom and the seats replay, pinned on small made-up
logs whose figures can be worked out by hand. tests/test_report.py and tests/test_trace.py check the same on
the real contended build's log."""

from __future__ import annotations

import itertools
import random
from typing import TYPE_CHECKING, Any

import pytest

from fi_run.observe.logfile import parse_record
from fi_run.observe.waits import Replay, ResourceWaits, analyse, enough_seats, replay

if TYPE_CHECKING:
    from fi_run.observe.schema import Step

R = "/r"
T0 = 1_000_000.0  # the build's first moment, epoch seconds


def step(
    name: str,
    mode: str,
    asked: float,
    got: float,
    released: float | None,
    *,
    slots: int = 1,
    started: float | None = None,
    resource: str = R,
    extra_modes: tuple[str, ...] = (),
) -> Step:
    """A step named ``name`` (its stamp and pid) whose lock on ``resource`` was asked for, got and released
    at these moments (seconds after T0). The step itself started at ``started`` (default: 0.01 s before it
    asked), so that the lock's offsets are relative to a start of its own, as in a real log."""
    start = T0 + (asked - 0.01 if started is None else started)
    wait_start = T0 + asked - start
    held = None if released is None else released - got
    locks = [
        {
            "resource": resource,
            "mode": m,
            "slots": slots if m == "semaphore" else 1,
            "wait_start": wait_start,
            "wait": got - asked,
            "held": held,
        }
        for m in (mode, *extra_modes)
    ]
    end = (released if released is not None else got) + 0.01
    record: dict[str, Any] = {
        "v": 1,
        "pid": 1,
        "start": start,
        "end": T0 + end,
        "duration": T0 + end - start,
        "argv": ["tool", name],
        "status": 0,
        "attempts": [],
        "locks": locks,
        "stamp": f"/b/{name}",
        "cwd": "/b",
    }
    return parse_record(record, name)


def waits_of(*steps: Step, resource: str = R) -> ResourceWaits:
    ordered = sorted(steps, key=lambda s: s.start)
    return analyse(ordered)[resource]


def behind(waits: ResourceWaits) -> dict[str, dict[str, tuple[float, float]]]:
    """waiter -> blocker -> (holding, queued), by stamp, rounded to the microsecond."""
    return {
        w.claim.step.argv[1]: {
            b.blocker.step.argv[1]: (round(b.holding, 6), round(b.queued, 6)) for b in w.behind
        }
        for w in waits.waiters
    }


def unattributed(waits: ResourceWaits) -> dict[str, float]:
    return {w.claim.step.argv[1]: round(w.unattributed, 6) for w in waits.waiters}


def test_an_exclusive_queue_waits_behind_each_holder_in_turn() -> None:
    waits = waits_of(
        step("a", "exclusive", 0.0, 0.0, 1.0),
        step("b", "exclusive", 0.1, 1.0, 2.0),
        step("c", "exclusive", 0.2, 2.0, 2.5),
    )
    assert behind(waits) == {"b": {"a": (0.9, 0.0)}, "c": {"a": (0.8, 0.0), "b": (1.0, 0.0)}}
    assert unattributed(waits) == {"b": 0.0, "c": 0.0}
    blockers = [(b.claim.step.argv[1], round(b.seconds, 6), b.waiters) for b in waits.blockers]
    assert blockers == [("a", 1.7, 2), ("b", 1.0, 1)]


def test_moments_come_from_each_record_s_own_start_plus_its_offsets() -> None:
    """The same queue, each step started at another moment (its offsets differ): the same attribution."""
    waits = waits_of(
        step("a", "exclusive", 0.0, 0.0, 1.0, started=-5.0),
        step("b", "exclusive", 0.1, 1.0, 2.0, started=0.05),
        step("c", "exclusive", 0.2, 2.0, 2.5, started=-0.3),
    )
    assert behind(waits) == {"b": {"a": (0.9, 0.0)}, "c": {"a": (0.8, 0.0), "b": (1.0, 0.0)}}


def test_a_writer_waits_behind_every_reader_holding_split_equally() -> None:
    waits = waits_of(
        step("r1", "shared", 0.0, 0.0, 1.0),
        step("r2", "shared", 0.0, 0.0, 2.0),
        step("w", "exclusive", 0.5, 2.0, 3.0),
    )
    # 0.5..1.0: two readers hold, 0.25 s each; 1.0..2.0: r2 alone.
    assert behind(waits) == {"w": {"r1": (0.25, 0.0), "r2": (1.25, 0.0)}}


def test_a_reader_waits_behind_writers_never_behind_readers() -> None:
    waits = waits_of(
        step("r1", "shared", 0.0, 0.0, 2.0),
        step("r2", "shared", 0.5, 1.0, 2.0),  # a late hand-off while only a reader held: nobody to blame
        step("w", "exclusive", 2.5, 2.5, 3.0),
        step("r3", "shared", 2.6, 3.0, 3.5),
    )
    assert behind(waits) == {"r2": {}, "r3": {"w": (0.4, 0.0)}}
    assert unattributed(waits) == {"r2": 0.5, "r3": 0.0}


def test_a_reader_that_came_after_a_waiting_writer_is_queued_behind_it() -> None:
    """The writer has the gate while it waits for the reader inside to leave; the new reader queues."""
    waits = waits_of(
        step("r1", "shared", 0.0, 0.0, 1.0),
        step("w", "exclusive", 0.2, 1.0, 2.0),
        step("r2", "shared", 0.5, 2.0, 2.5),
        step("r0", "shared", 0.1, 0.1, 0.3),  # asked before the writer: not queued behind it
    )
    assert behind(waits)["r2"] == {"w": (1.0, 0.5)}
    # 0.2..0.3: two readers hold (0.05 s each); 0.3..1.0: r1 alone.
    assert behind(waits)["w"] == {"r1": (0.75, 0.0), "r0": (0.05, 0.0)}
    modes = waits.by_mode()
    assert modes["shared"].queued == pytest.approx({"exclusive": 0.5})
    assert modes["shared"].holding == pytest.approx({"exclusive": 1.0})
    (blocker, *_others) = waits.blockers
    assert (blocker.claim.step.argv[1], round(blocker.seconds, 6), round(blocker.queued, 6)) == (
        "w",
        1.5,
        0.5,
    )


def test_a_semaphore_waiter_waits_only_while_every_seat_is_taken() -> None:
    waits = waits_of(
        step("s1", "semaphore", 0.0, 0.0, 1.0, slots=2),
        step("s2", "semaphore", 0.0, 0.0, 2.0, slots=2),
        step("s3", "semaphore", 0.5, 1.0, 3.0, slots=2),
        step("s4", "semaphore", 2.2, 2.5, 3.0, slots=2),  # one seat taken until 2.5 (by s3): not full
    )
    assert behind(waits) == {"s3": {"s1": (0.25, 0.0), "s2": (0.25, 0.0)}, "s4": {}}
    assert unattributed(waits) == {"s3": 0.0, "s4": 0.3}


def test_an_exclusive_holder_blocks_semaphore_and_shared_waiters() -> None:
    waits = waits_of(
        step("w", "exclusive", 0.0, 0.0, 1.0),
        step("s", "semaphore", 0.5, 1.0, 1.5, slots=3),
        step("both", "semaphore", 0.6, 1.0, 1.5, slots=3, extra_modes=("shared",)),
    )
    assert behind(waits) == {"s": {"w": (0.5, 0.0)}, "both": {"w": (0.4, 0.0)}}
    assert {w.claim.mode for w in waits.waiters} == {"semaphore", "semaphore+shared"}
    assert len(waits.claims) == 3, "a step's two entries on one resource are one claim"


def test_a_wait_that_never_got_the_lock_is_still_attributed() -> None:
    waits = waits_of(step("a", "exclusive", 0.0, 0.0, 5.0), step("t", "exclusive", 1.0, 3.0, None))
    assert behind(waits) == {"t": {"a": (2.0, 0.0)}}
    assert waits.replay is None


def test_handed_over_is_the_holder_whose_release_let_the_waiter_in() -> None:
    waits = waits_of(
        step("s1", "semaphore", 0.0, 0.0, 1.0, slots=2),
        step("s2", "semaphore", 0.0, 0.0, 2.0, slots=2),
        step("s3", "semaphore", 0.5, 1.0, 3.0, slots=2),
    )
    (waiter,) = waits.waiters
    let_go = waiter.handed_over
    assert let_go is not None
    assert let_go.blocker.step.argv[1] == "s1"


# --- the seats replay


def test_replay_is_first_come_first_served_on_the_given_seats() -> None:
    arrivals = [(0.0, 1.0), (0.0, 1.0), (0.0, 1.0), (2.5, 1.0)]
    assert replay(arrivals, 1) == (3.0 + 0.5, 4.0)  # waits 0, 1, 2, then 0.5 behind the third
    assert replay(arrivals, 2) == (1.0, 3.5)
    assert replay(arrivals, 3) == (0.0, 3.5)
    assert enough_seats(arrivals) == 3
    assert enough_seats([(0.0, 1.0), (1.0, 1.0)]) == 1, "a seat freed at a moment serves an arrival then"


def test_a_semaphore_that_was_short_of_seats_is_replayed_and_pays() -> None:
    waits = waits_of(
        step("s1", "semaphore", 0.0, 0.0, 1.0, slots=1),
        step("s2", "semaphore", 0.0, 1.0, 2.0, slots=1),
        step("s3", "semaphore", 0.0, 2.0, 3.0, slots=1),
    )
    assert waits.replay is not None
    assert waits.replay.seats == 1
    assert [(n, round(w, 6), round(end - T0, 6)) for n, w, end in waits.replay.waits] == [
        (1, 3.0, 3.0),
        (2, 1.0, 2.0),
        (3, 0.0, 1.0),
    ]
    assert (waits.replay.claims, waits.replay.left_out, waits.replay.enough) == (3, 0, 3)
    assert waits.replay.logged == pytest.approx(3.0)
    assert waits.replay.pays()


def test_enough_seats_never_pay() -> None:
    waits = waits_of(
        step("s1", "semaphore", 0.0, 0.0, 1.0, slots=3),
        step("s2", "semaphore", 0.0, 0.01, 1.0, slots=3),  # a logged wait: the hand-off, not a seat
        step("s3", "semaphore", 0.0, 0.0, 1.0, slots=3),
    )
    assert waits.replay is not None
    assert [round(w, 6) for _n, w, _end in waits.replay.waits] == [0.0, 0.0, 0.0]
    assert not waits.replay.pays()


def test_a_saving_too_small_to_tell_does_not_pay() -> None:
    one_more = Replay(
        seats=2, claims=9, left_out=0, logged=1.0, waits=[(2, 1.0, 9.0), (3, 0.95, 9.0)], enough=4
    )
    assert not one_more.pays(), "5 % less"
    tiny = Replay(seats=2, claims=9, left_out=0, logged=0.04, waits=[(2, 0.04, 9.0), (3, 0.0, 9.0)], enough=3)
    assert not tiny.pays(), "under 0.05 s in all"


def test_no_replay_without_one_count_of_seats_alone() -> None:
    exclusive_too = waits_of(
        step("s1", "semaphore", 0.0, 0.0, 1.0, slots=1),
        step("w", "exclusive", 0.0, 1.0, 2.0),
    )
    assert exclusive_too.replay is None
    mixed = waits_of(
        step("s1", "semaphore", 0.0, 0.0, 1.0, slots=1),
        step("s2", "semaphore", 0.0, 1.0, 2.0, slots=2),
    )
    assert mixed.replay is None
    assert waits_of(step("w", "exclusive", 0.0, 0.0, 1.0)).replay is None


def test_readers_take_no_seat_and_a_claim_that_never_held_is_left_out() -> None:
    waits = waits_of(
        step("s1", "semaphore", 0.0, 0.0, 1.0, slots=1),
        step("r", "shared", 0.0, 0.0, 5.0),
        step("timeout", "semaphore", 0.0, 0.5, None, slots=1),
        step("s2", "semaphore", 0.0, 1.0, 2.0, slots=1),
    )
    assert waits.replay is not None
    assert (waits.replay.claims, waits.replay.left_out) == (2, 1)
    assert round(waits.replay.waits[0][1], 6) == 1.0


# --- the sweep against the definition, on random logs


def brute_force(steps: list[Step]) -> tuple[dict[tuple[int, int], tuple[float, float]], dict[int, float]]:
    """The module docstring's rule applied moment by moment, without running totals: every stretch between
    two moments at which anything changed, every waiter in it. Keys are the steps' places in ``steps``."""
    claims = []  # (place, modes, slots, asked, got, released)
    for place, s in enumerate(steps):
        (lock, *_rest) = s.locks
        modes = {lock.mode for lock in s.locks}
        got = s.start + lock.wait_start + lock.wait
        released = None if lock.held is None else got + lock.held
        claims.append((place, modes, lock.slots, s.start + lock.wait_start, got, released))
    moments = sorted({t for c in claims for t in c[3:] if t is not None})
    pairs: dict[tuple[int, int], list[float]] = {}
    nobody = {c[0]: 0.0 for c in claims if c[4] > c[3]}
    for low, high in itertools.pairwise(moments):
        middle = (low + high) / 2
        holders = [c for c in claims if c[5] is not None and c[4] <= middle < c[5]]
        for waiter in (c for c in claims if c[3] <= middle < c[4]):
            if "exclusive" in waiter[1]:
                blockers = holders
            else:
                blockers = [h for h in holders if "exclusive" in h[1]]
                seated = [h for h in holders if "semaphore" in h[1]]
                if not blockers and "semaphore" in waiter[1] and len(seated) >= waiter[2]:
                    blockers = seated
            for blocker in blockers:
                pairs.setdefault((waiter[0], blocker[0]), [0.0, 0.0])[0] += (high - low) / len(blockers)
            if blockers:
                continue
            gate = [c for c in claims if "exclusive" in c[1] and c[3] <= middle < c[4]]
            first = min(gate, key=lambda c: (c[3], c[0]), default=None)
            if first is not None and first[3] < waiter[3]:
                pairs.setdefault((waiter[0], first[0]), [0.0, 0.0])[1] += high - low
            else:
                nobody[waiter[0]] += high - low
    return {key: (holding, queued) for key, (holding, queued) in pairs.items()}, nobody


def test_the_sweep_gives_what_the_rule_gives_moment_by_moment_on_random_logs() -> None:
    rng = random.Random(18)
    for _ in range(300):
        steps = []
        for number in range(rng.randrange(1, 12)):
            mode = rng.choice(["exclusive", "shared", "semaphore", "semaphore"])
            asked = rng.randrange(0, 20) / 10  # tenths: many moments coincide
            got = asked + rng.choice([0, 0, 1, 2, 5]) / 10
            released = None if rng.random() < 0.1 else got + rng.randrange(0, 10) / 10
            extra = ("shared",) if mode == "semaphore" and rng.random() < 0.2 else ()
            steps.append(
                step(f"s{number}", mode, asked, got, released, slots=rng.choice([1, 2]), extra_modes=extra)
            )
        steps.sort(key=lambda s: s.start)
        # The sweep sorts claims by when they asked; the brute force keys them by their place in ``steps``.
        place = {id(s): i for i, s in enumerate(steps)}
        pairs, nobody = brute_force(steps)
        waits = analyse(steps).get(R)
        assert waits is not None
        got_pairs = {}
        for waiter in waits.waiters:
            assert waiter.blockers <= len(steps)
            assert waiter.unattributed == pytest.approx(nobody[place[id(waiter.claim.step)]], abs=1e-9)
            for b in waiter.behind:
                got_pairs[place[id(waiter.claim.step)], place[id(b.blocker.step)]] = (b.holding, b.queued)
        kept = {
            key: value
            for key, value in pairs.items()
            if value[0] + value[1] > 1e-9
            and key in got_pairs  # at most BEHIND_KEPT a waiter, checked whole below when fewer
        }
        assert set(got_pairs) == set(kept)
        for key, value in got_pairs.items():
            assert value == pytest.approx(kept[key], abs=1e-9), key
        for waiter in waits.waiters:
            me = place[id(waiter.claim.step)]
            mine = {k: v for k, v in pairs.items() if k[0] == me and v[0] + v[1] > 1e-9}
            assert waiter.blockers == len(mine)
            if len(mine) <= 5:
                assert {k for k in got_pairs if k[0] == me} == set(mine)
        totals: dict[int, float] = {}
        for (_waiter, blocker), (holding, queued) in pairs.items():
            totals[blocker] = totals.get(blocker, 0.0) + holding + queued
        assert {place[id(b.claim.step)]: b.seconds for b in waits.blockers} == pytest.approx(
            {k: v for k, v in totals.items() if v > 1e-9}, abs=1e-9
        )
