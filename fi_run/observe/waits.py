"""Who waited behind whom for each resource, and whether more seats would have paid, from a log's locks.

For ``fi_run report`` and ``fi_run trace`` (issue 18, item 5); imported by them only, never by a build step.

**Times.** A record has its absolute ``start`` (epoch seconds: the wall clock when that fi_run started) and
offsets from it on that process's monotonic clock, so a lock was asked for at ``start + wait_start``, got at
``+ wait`` and released at ``+ held``. The steps of one build run on one machine, on one wall clock: their
moments compare to well under a millisecond. Logs written on machines whose clocks disagree do not compare.

**Claims.** A claim is one step's locks on one resource, taken as one: ``--semaphore R=N --shared-lock R``
logs two entries with one wait (locks.py takes them together), and is one claim here.

**Who waited behind whom.** Each moment a claim waited goes to the claims that held the resource at that
moment in a mode that conflicts with its own (the blockers), split equally between them:

- an exclusive waiter: every holder;
- a shared waiter: the exclusive holders;
- a semaphore waiter: the exclusive holders, and the semaphore holders when they fill its N seats.

A moment with no conflicting holder, but with an exclusive claim that asked earlier still waiting, goes to
the earliest such claim ("queued" behind it): it had the gate and was waiting for holders to leave, and
locks.py lets no new holder in meanwhile, so that writers are not starved. Any other moment is unattributed:
the hand-off itself, fi_run's own work, or a holder that wrote no log line (another build, a ``fi-run``
without ``--log``).

**More seats.** For a resource that steps took only as a counted semaphore (one N, no exclusive claim), the
logged arrivals (when each step asked) and hold times are replayed against N, N+1 and N+2 seats, first come
first served. The replay assumes that holds would have lasted as long as logged and that steps would have
asked at the same moments; the second is the weaker assumption, because with shorter waits ninja would have
started later steps earlier. It says nothing about the whole build's wall time: the one time it bounds is
when the last holder of that resource would have let go. Claims that never got a seat (a lock timeout, an
interrupt) have no hold time to replay and are left out (counted).
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Final

    from .schema import Step

# More seats "pay" when one more seat cuts the replayed waits by at least this share and this many seconds:
# less is within what the replay's own assumptions can tell apart.
PAYS_FRACTION: Final = 0.1
PAYS_SECONDS: Final = 0.05
EXTRA_SEATS: Final = 2  # replayed beyond N: N+1 .. N+EXTRA_SEATS
BEHIND_KEPT: Final = 5  # per waiter, the blockers kept by name (fi_run trace lists them on the wait)
# Shares smaller than this are the float sums' own noise (moments are epoch seconds, logged to 1 us): none.
NOISE: Final = 1e-9


@dataclass
class Claim:
    """One step's locks on one resource."""

    number: int  # its place in its resource's claims (asked order)
    index: int  # its step's place in the log (Log.steps)
    step: Step
    modes: tuple[str, ...]  # sorted: ("exclusive",), ("shared",), ("semaphore",), ("semaphore", "shared")
    slots: int  # the semaphore's N (1 without one)
    asked: float  # epoch seconds
    got: float  # asked + wait
    released: float | None  # got + held; None: never held (a lock timeout, an interrupt)

    @property
    def wait(self) -> float:
        return self.got - self.asked

    @property
    def mode(self) -> str:
        return "+".join(self.modes)

    @property
    def exclusive(self) -> bool:
        return "exclusive" in self.modes

    @property
    def semaphore(self) -> bool:
        return "semaphore" in self.modes


@dataclass(slots=True)
class Behind:
    """How long one waiter waited behind one blocker."""

    blocker: Claim
    holding: float = 0.0  # seconds while the blocker held the resource (its share, if several did)
    queued: float = 0.0  # seconds while the blocker itself waited, ahead of the waiter at the gate

    @property
    def seconds(self) -> float:
        return self.holding + self.queued


@dataclass
class Waiter:
    """One claim that waited, and behind whom."""

    claim: Claim
    behind: list[Behind]  # the BEHIND_KEPT it waited behind longest, most seconds first
    blockers: int  # how many it waited behind in all
    unattributed: float  # seconds with no conflicting holder (nor exclusive waiter ahead) in the log
    holding: dict[str, float]  # seconds behind holders, by their mode (all of them, not only those kept)
    queued: dict[str, float]  # seconds queued behind exclusive waiters ahead, by their mode
    # The blocker that let it go: of those it waited behind while they held, the one whose release came
    # nearest its getting the lock (a semaphore's other holders still held on).
    handed_over: Behind | None = None


@dataclass
class Blocker:
    """One claim that made others wait."""

    claim: Claim
    seconds: float = 0.0  # the waits it caused, in all (holding and queued)
    queued: float = 0.0  # of which while it was waiting itself, ahead at the gate
    waiters: int = 0  # how many claims it made wait


@dataclass
class Replay:
    """The seats replay of one counted resource."""

    seats: int  # N, as the steps asked
    claims: int  # claims replayed
    left_out: int  # claims that never held a seat: nothing to replay
    logged: float  # the replayed claims' waits as logged
    waits: list[
        tuple[int, float, float]
    ]  # (seats, replayed total wait, when the last holder let go), N first
    enough: int  # the fewest seats with which the replay has nobody wait

    def pays(self) -> bool:
        """Whether one more seat would have cut the replayed waits noticeably (PAYS_*)."""
        if len(self.waits) < 2:
            return False
        (_n, now, _end), (_more, then, _later) = self.waits[:2]
        saved = now - then
        return saved >= PAYS_SECONDS and saved >= PAYS_FRACTION * now


@dataclass
class ResourceWaits:
    resource: str
    claims: list[Claim]  # in the order asked
    waiters: list[Waiter]  # the claims that waited, in the order asked
    blockers: list[Blocker]  # the claims that made others wait, most seconds caused first
    replay: Replay | None  # None unless the resource was taken only as a semaphore, with one N

    def by_mode(self) -> dict[str, ModeWaits]:
        """For each mode waiters asked in: how long they waited behind holders (and queued waiters) of each
        mode, and unattributed. Sorted by mode."""
        modes: dict[str, ModeWaits] = {}
        for waiter in self.waiters:
            entry = modes.setdefault(waiter.claim.mode, ModeWaits())
            entry.waiters += 1
            entry.wait += waiter.claim.wait
            entry.unattributed += waiter.unattributed
            for into, part in ((entry.holding, waiter.holding), (entry.queued, waiter.queued)):
                for mode, seconds in part.items():
                    into[mode] = into.get(mode, 0.0) + seconds
        for entry in modes.values():
            entry.holding = dict(sorted(entry.holding.items()))
            entry.queued = dict(sorted(entry.queued.items()))
        return dict(sorted(modes.items()))


@dataclass
class ModeWaits:
    waiters: int = 0
    wait: float = 0.0
    holding: dict[str, float] = field(default_factory=dict)  # behind holders, by their mode
    queued: dict[str, float] = field(default_factory=dict)  # behind waiters ahead at the gate, by their mode
    unattributed: float = 0.0


def claims_by_resource(steps: Sequence[Step]) -> dict[str, list[Claim]]:
    """Every step's claims, per resource, each resource's in the order asked."""
    grouped: dict[str, list[Claim]] = {}
    for index, step in enumerate(steps):
        mine: dict[str, list[tuple[str, int, float, float, float | None]]] = {}
        for lock in step.locks:
            mine.setdefault(lock.resource, []).append(
                (lock.mode, lock.slots, lock.wait_start, lock.wait, lock.held)
            )
        for resource, entries in mine.items():
            semaphore = [slots for mode, slots, *_ in entries if mode == "semaphore"]
            wait_start = min(entry[2] for entry in entries)
            got = max(entry[2] + entry[3] for entry in entries)
            helds = [entry[4] for entry in entries]
            released = None if None in helds else max(got + (held or 0.0) for held in helds)
            asked = step.start + wait_start
            grouped.setdefault(resource, []).append(
                Claim(
                    number=0,
                    index=index,
                    step=step,
                    modes=tuple(sorted({entry[0] for entry in entries})),
                    slots=min(semaphore, default=1),
                    asked=asked,
                    got=step.start + got,
                    released=None if released is None else step.start + released,
                )
            )
    for claims in grouped.values():
        claims.sort(key=lambda c: (c.asked, c.got, c.index))
        for number, claim in enumerate(claims):
            claim.number = number
    return grouped


# What keeps a waiter out depends only on its kind: ("exclusive", 0), ("shared", 0) or ("semaphore", N).
Kind = tuple[str, int]


def _kind(claim: Claim) -> Kind:
    if claim.exclusive:
        return ("exclusive", 0)
    if claim.semaphore:
        return ("semaphore", claim.slots)
    return ("shared", 0)


def _may_block(kind: Kind, holder: Claim) -> bool:
    return kind[0] == "exclusive" or holder.exclusive or (kind[0] == "semaphore" and holder.semaphore)


def _blockers(kind: Kind, holders: list[Claim], exclusive: list[Claim], seated: list[Claim]) -> list[Claim]:
    """The claims that keep a waiter of ``kind`` out while ``holders`` hold the resource (``exclusive`` and
    ``seated``: those of them that hold it exclusively, and those that hold a semaphore seat)."""
    mode, slots = kind
    if mode == "exclusive":
        return holders
    if exclusive or mode == "shared":
        return exclusive
    return seated if len(seated) >= slots else []


@dataclass
class _Open:
    """A claim that is waiting: what the sweep knew when it asked."""

    kind: Kind
    started: int  # how many claims had begun to hold
    held: dict[int, tuple[Claim, float]]  # its kind's running shares of the conflicting holders then
    ahead: int  # where the exclusive waiters ahead at the gate stood (an index into their succession)
    queued: float  # its kind's running share of the one ahead then


def attribute(claims: Sequence[Claim]) -> tuple[list[Waiter], list[Blocker]]:
    """Who each claim that waited waited behind (the module's docstring says how a moment is attributed),
    and the claims that made others wait, most seconds caused first.

    One sweep over the moments at which a claim asked, got or let go: in between, who holds and who waits
    stays the same, and so does what keeps each kind of waiter out. Each kind keeps a running total per
    blocker of the seconds one of its waiters would have spent behind it; a waiter's share of a blocker is
    that total when it got the lock less the total when it asked. So the sweep costs the moments times the
    blockers, and each waiter what it waited behind: a queue of q costs q per waiter, not q times the claims.
    """
    changes: dict[float, list[tuple[bool, bool, Claim]]] = {}  # moment -> (holds?, starts?, claim)
    for claim in claims:
        if claim.got > claim.asked:
            changes.setdefault(claim.asked, []).append((False, True, claim))
            changes.setdefault(claim.got, []).append((False, False, claim))
        if claim.released is not None and claim.released > claim.got:
            changes.setdefault(claim.got, []).append((True, True, claim))
            changes.setdefault(claim.released, []).append((True, False, claim))
    holding: dict[int, Claim] = {}
    started: list[Claim] = []  # the claims in the order they began to hold
    waiting: dict[Kind, int] = {}  # how many claims of each kind wait
    # The exclusive claims waiting, earliest first: a heap, with those that stopped waiting left in it.
    gate: list[tuple[float, int, Claim]] = []
    exclusive_waiting: set[int] = set()
    aheads: list[Claim] = []  # the succession of the earliest exclusive claim waiting
    held: dict[Kind, dict[int, float]] = {}  # running shares: kind -> blocker -> seconds
    queued: dict[Kind, dict[int, float]] = {}
    opened: dict[int, _Open] = {}
    waiters: dict[int, Waiter] = {}
    caused: dict[int, Blocker] = {}
    moments = sorted(changes)
    for moment, following in itertools.zip_longest(moments, moments[1:]):
        asking: list[Claim] = []
        for holds, starts, claim in changes[moment]:
            if holds and starts:
                holding[claim.number] = claim
                started.append(claim)
            elif holds:
                del holding[claim.number]
            elif starts:
                asking.append(claim)
                waiting[_kind(claim)] = waiting.get(_kind(claim), 0) + 1
                if claim.exclusive:
                    heapq.heappush(gate, (claim.asked, claim.number, claim))
                    exclusive_waiting.add(claim.number)
            else:
                waiting[_kind(claim)] -= 1
                exclusive_waiting.discard(claim.number)
                shares = _shares(claim, opened.pop(claim.number), held, queued, started, aheads)
                waiters[claim.number] = _waiter(claim, shares)
                for behind in shares:
                    entry = caused.setdefault(behind.blocker.number, Blocker(behind.blocker))
                    entry.seconds += behind.seconds
                    entry.queued += behind.queued
                    entry.waiters += 1
        while gate and gate[0][1] not in exclusive_waiting:
            heapq.heappop(gate)
        ahead = gate[0][2] if gate else None
        if ahead is not None and (not aheads or aheads[-1] is not ahead):
            aheads.append(ahead)
        for claim in asking:
            kind = _kind(claim)
            running = held.setdefault(kind, {})
            opened[claim.number] = _Open(
                kind=kind,
                started=len(started),
                held={n: (h, running.get(n, 0.0)) for n, h in holding.items() if _may_block(kind, h)},
                ahead=len(aheads) - 1 if ahead is not None else len(aheads),
                queued=queued.get(kind, {}).get(ahead.number, 0.0) if ahead is not None else 0.0,
            )
        if following is None:
            continue
        span = following - moment
        holders = list(holding.values())
        exclusive = [h for h in holders if h.exclusive]
        seated = [h for h in holders if h.semaphore]
        for kind, count in waiting.items():
            if not count:
                continue
            blockers = _blockers(kind, holders, exclusive, seated)
            if blockers:
                running = held.setdefault(kind, {})
                share = span / len(blockers)
                for blocker in blockers:
                    running[blocker.number] = running.get(blocker.number, 0.0) + share
            elif ahead is not None:
                running = queued.setdefault(kind, {})
                running[ahead.number] = running.get(ahead.number, 0.0) + span
    return (
        [waiters[c.number] for c in claims if c.number in waiters],
        sorted(caused.values(), key=lambda b: (-b.seconds, b.claim.asked, b.claim.number)),
    )


def _shares(
    claim: Claim,
    at_ask: _Open,
    held: dict[Kind, dict[int, float]],
    queued: dict[Kind, dict[int, float]],
    started: list[Claim],
    aheads: list[Claim],
) -> list[Behind]:
    """Whom ``claim`` waited behind, as it gets the lock: its kind's running shares now, less then."""
    running = held.get(at_ask.kind, {})
    candidates = dict(at_ask.held)  # those holding when it asked, and those that began to hold since
    for holder in started[at_ask.started :]:
        if holder.number not in candidates and _may_block(at_ask.kind, holder):
            candidates[holder.number] = (holder, 0.0)
    found: dict[int, Behind] = {}
    for number, (holder, then) in candidates.items():
        seconds = running.get(number, 0.0) - then
        if seconds > NOISE:
            found[number] = Behind(holder, holding=seconds)
    running = queued.get(at_ask.kind, {})
    for place in range(max(at_ask.ahead, 0), len(aheads)):
        first = aheads[place]
        if not first.asked < claim.asked:
            continue  # it asked after this claim: not ahead of it
        seconds = running.get(first.number, 0.0) - (at_ask.queued if place == at_ask.ahead else 0.0)
        if seconds > NOISE:
            found.setdefault(first.number, Behind(first)).queued += seconds
    return sorted(found.values(), key=lambda b: (-b.seconds, b.blocker.number))


def _waiter(claim: Claim, shares: list[Behind]) -> Waiter:
    holding: dict[str, float] = {}
    queued: dict[str, float] = {}
    for behind in shares:
        mode = behind.blocker.mode
        if behind.holding:
            holding[mode] = holding.get(mode, 0.0) + behind.holding
        if behind.queued:
            queued[mode] = queued.get(mode, 0.0) + behind.queued
    let_go = min(
        (b for b in shares if b.holding > 0 and b.blocker.released is not None),
        key=lambda b: (abs((b.blocker.released or 0.0) - claim.got), -b.seconds, b.blocker.number),
        default=None,
    )
    return Waiter(
        claim=claim,
        behind=shares[:BEHIND_KEPT],
        blockers=len(shares),
        unattributed=max(claim.wait - sum(b.seconds for b in shares), 0.0),
        holding=dict(sorted(holding.items())),
        queued=dict(sorted(queued.items())),
        handed_over=let_go,
    )


def replay(arrivals: Sequence[tuple[float, float]], seats: int) -> tuple[float, float]:
    """(total wait, when the last holder lets go) of ``arrivals`` ((asked, held), any order) served first
    come first served by ``seats`` seats."""
    free = [float("-inf")] * seats  # when each seat is free again
    total = 0.0
    last = float("-inf")
    for asked, held in sorted(arrivals):
        start = max(asked, heapq.heappop(free))
        total += start - asked
        last = max(last, start + held)
        heapq.heappush(free, start + held)
    return total, last


def enough_seats(arrivals: Sequence[tuple[float, float]]) -> int:
    """The fewest seats with which nobody waits: the most holds that overlap when nobody waits."""
    moments = sorted([(asked, 1) for asked, _ in arrivals] + [(asked + held, -1) for asked, held in arrivals])
    busy = peak = 0
    for _moment, change in moments:  # at one moment a release (-1) comes before an arrival
        busy += change
        peak = max(peak, busy)
    return peak


def _replay(claims: Sequence[Claim]) -> Replay | None:
    seated = [c for c in claims if c.semaphore]
    if not seated or any(c.exclusive for c in claims):
        return None  # no seats, or exclusive holders the replay does not model (shared ones take no seat)
    if len({c.slots for c in seated}) != 1:
        return None  # steps asked for different N: no one count of seats to add to
    seats = seated[0].slots
    held = [c for c in seated if c.released is not None]
    arrivals = [(c.asked, (c.released or c.got) - c.got) for c in held]
    waits = []
    for count in range(seats, seats + EXTRA_SEATS + 1):
        total, last = replay(arrivals, count)
        waits.append((count, total, last))
    return Replay(
        seats=seats,
        claims=len(held),
        left_out=len(seated) - len(held),
        logged=sum(c.wait for c in held),
        waits=waits,
        enough=enough_seats(arrivals),
    )


def analyse(steps: Sequence[Step]) -> dict[str, ResourceWaits]:
    """Who waited behind whom, and the seats replay, for every resource the steps locked."""
    result = {}
    for resource, claims in claims_by_resource(steps).items():
        waiters, blockers = attribute(claims)
        result[resource] = ResourceWaits(resource, claims, waiters, blockers, _replay(claims))
    return result
