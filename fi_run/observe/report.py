"""``fi_run report LOG...``: what held a build up, from fi_run's --log / FI_RUN_LOG lines.

The summary and its rendering; the command line is tools/report.py. Imported only by that tool, never by a
build step.

The terminal summary answers, in this order: how many steps, which failed, how often fi_run retried on
contention (by signature family) and at what cost, and which shared resource made steps wait (per resource:
steps, total and p50/p95/max wait, total held, the steps that waited longest, the steps that made them wait,
what each mode waited behind, and whether more seats would have paid: waits.py, issue 18 item 5). ``--json``
prints the same figures for machines (see JSON_KEYS below; keys are stable within a ``report_version``).

Definitions:
- wait: from asking for a lock to holding it (as fi_run measured it); held: from holding it to release.
- a retry: an attempt whose failure matched a contention signature and that fi_run ran again; its cost is
  the time from that attempt's start to the next attempt's start (the failed run plus the back-off).
- gave up: an attempt that matched a signature but was not retried (retry cap, total back-off cap, timeout).
- p50/p95: linear interpolation between closest ranks (numpy's default method).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..messages import BOLD, CYAN, DIM, RED, RESET, YELLOW
from .logfile import percentile, short_command, step_label
from .waits import analyse

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Final

    from .logfile import Log
    from .schema import Step
    from .waits import ModeWaits, Replay, ResourceWaits

REPORT_VERSION: Final = 1
DEFAULT_TOP: Final = 5

# The --json document's keys: --help lists them; tests/test_docs.py keeps docs/reference.md in step.
JSON_KEYS: Final = {
    "report_version": "1; incremented when a key changes meaning or goes away (new keys may be added)",
    "files": "the logs read, as given",
    "skipped_lines": "lines that were not step records (broken, truncated, foreign): skipped, counted",
    "skipped_at": "the first 10 of them, as file:line",
    "span": "null without steps, else {start, end (epoch seconds: first start, last end), seconds}",
    "steps": "{total, succeeded, failed, step_seconds (sum of durations), lock_wait_seconds, "
    "lock_wait_steps}",
    "failures": "[{status, steps, examples: [{command, argv, stamp, error}]}], most frequent first",
    "retries": "{retries, steps, seconds, gave_up, families: [{family, retries, steps, seconds, gave_up, "
    "line}]}, most retries first",
    "resources": "[{resource, steps, wait: {total, p50, p95, max}, held_total, modes: {exclusive|shared|"
    "semaphore: {steps, wait, held_total}}, longest: {wait, held, mode, command, argv, stamp, error, pid, "
    "start, host}, top: [the same, longest first], blockers: [{seconds, queued, waiters, mode, command, "
    "argv, stamp, error, pid, start, host}] (the steps that made others wait, most seconds caused first), "
    "behind: {MODE: {waiters, wait, holding: {MODE: seconds}, queued: {MODE: seconds}, unattributed}} (what "
    "the waiters of each mode waited behind), seats: null or {seats, steps, left_out, logged_wait, "
    "replayed: [{seats, wait, sooner}], enough, pays} (the more-seats replay of a semaphore), hosts: [{host, "
    "steps, wait_total, wait_max, held_total}] (a redis:// resource: per machine, most wait first; [] for a "
    "path; host is null for a path)}], longest total wait first",
    "lent": "[{resource (null: retry back-offs), loans, steps, seconds, credit}]: job slots given back to "
    "fi-run jobserver while steps waited; seconds lent, loans repaid after the command (credit); most "
    "seconds first",
    "memory": "[{command, steps, peak: {p50, p95, max} (bytes), mem}]: the measured peak RSS of the steps "
    "that succeeded, per command (its program, with a script's name or -c: memory_group); mem: the p95 "
    "rounded up, a value for --mem; largest p95 first",
}


def _r(value: float) -> float:
    return round(value, 6)


@dataclass
class Family:
    """Contention failures of one signature family."""

    family: str
    retries: int = 0  # attempts fi_run ran again
    seconds: float = 0.0  # their cost: from each retried attempt's start to the next attempt's start
    gave_up: int = 0  # matched, but not retried (a cap or the timeout)
    line: str | None = None  # the first matched line, as an example
    steps: set[int] = field(default_factory=set)  # indexes of the steps retried for this family


@dataclass
class Wait:
    step: Step
    wait: float
    held: float
    mode: str
    host: str | None = None  # the machine, for a redis:// resource (issue 21)


@dataclass
class Resource:
    resource: str
    waits: list[Wait] = field(default_factory=list)

    def modes(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for entry in self.waits:
            counts[entry.mode] = counts.get(entry.mode, 0) + 1
        return dict(sorted(counts.items()))

    def by_mode(self) -> list[Resource]:
        """The same figures for each mode (exclusive, shared, semaphore) the resource was taken in."""
        return [
            Resource(mode, [entry for entry in self.waits if entry.mode == mode]) for mode in self.modes()
        ]

    def wait_total(self) -> float:
        return sum(entry.wait for entry in self.waits)

    def wait_stats(self) -> dict[str, float]:
        values = [entry.wait for entry in self.waits]
        return {
            "total": _r(sum(values)),
            "p50": _r(percentile(values, 50)),
            "p95": _r(percentile(values, 95)),
            "max": _r(max(values)),
        }

    def held_total(self) -> float:
        return _r(sum(entry.held for entry in self.waits))

    def longest(self, top: int) -> list[Wait]:
        return sorted(self.waits, key=lambda entry: (-entry.wait, entry.step.start))[:top]

    def hosts(self) -> list[Host]:
        """Per machine, for a redis:// resource (its steps log their host): most wait first."""
        by_host: dict[str, Host] = {}
        for entry in self.waits:
            if entry.host is not None:
                host = by_host.setdefault(entry.host, Host(entry.host))
                host.steps += 1
                host.wait_total += entry.wait
                host.wait_max = max(host.wait_max, entry.wait)
                host.held_total += entry.held
        return sorted(by_host.values(), key=lambda h: (-h.wait_total, h.host))


@dataclass
class Host:
    """One machine's steps on a resource shared between machines."""

    host: str
    steps: int = 0
    wait_total: float = 0.0
    wait_max: float = 0.0
    held_total: float = 0.0


@dataclass
class Summary:
    log: Log
    failures: list[tuple[int, list[Step]]]  # by status, most frequent first
    families: list[Family]  # most retries first
    resources: list[Resource]  # longest total wait first
    waits: dict[str, ResourceWaits] = field(default_factory=dict)  # who waited behind whom, per resource

    @property
    def steps(self) -> list[Step]:
        return self.log.steps

    def failed(self) -> int:
        return sum(len(group) for _status, group in self.failures)

    def retried_steps(self) -> int:
        return len(set().union(*(family.steps for family in self.families)))

    def lock_wait_steps(self) -> int:
        return sum(1 for step in self.steps if step.locks)


def summarize(log: Log) -> Summary:
    by_status: dict[int, list[Step]] = {}
    families: dict[str, Family] = {}
    resources: dict[str, Resource] = {}
    for index, step in enumerate(log.steps):
        if step.status != 0:
            by_status.setdefault(step.status, []).append(step)
        for number, attempt in enumerate(step.attempts):
            if attempt.family is None:
                continue
            family = families.setdefault(attempt.family, Family(attempt.family))
            if family.line is None:
                family.line = attempt.line
            if number + 1 < len(step.attempts):
                family.retries += 1
                family.seconds += max(step.attempts[number + 1].start - attempt.start, 0.0)
                family.steps.add(index)
            else:
                family.gave_up += 1
        for lock in step.locks:
            resource = resources.setdefault(lock.resource, Resource(lock.resource))
            resource.waits.append(Wait(step, lock.wait, lock.held or 0.0, lock.mode, lock.host))
    return Summary(
        log=log,
        failures=sorted(by_status.items(), key=lambda item: (-len(item[1]), item[0])),
        families=sorted(families.values(), key=lambda f: (-f.retries, -f.gave_up, f.family)),
        resources=sorted(resources.values(), key=lambda r: (-r.wait_total(), r.resource)),
        waits=analyse(log.steps),
    )


@dataclass
class Lent:
    """The job-slot time steps lent while they waited for one resource (None: retry back-offs)."""

    resource: str | None
    loans: int = 0
    steps: int = 0
    seconds: float = 0.0
    credit: int = 0


def lent_by_resource(steps: list[Step]) -> list[Lent]:
    """Job slots lent to the jobserver, per resource waited for, most seconds first."""
    lent: dict[str | None, Lent] = {}
    for step in steps:
        seen: set[str | None] = set()
        for loan in step.lent:
            entry = lent.setdefault(loan.resource, Lent(loan.resource))
            entry.loans += 1
            # A loan the step never closed (it ended first) lasted until the step's end.
            entry.seconds += loan.duration if loan.duration is not None else step.duration - loan.start
            entry.credit += loan.credit
            if loan.resource not in seen:
                seen.add(loan.resource)
                entry.steps += 1
    return sorted(lent.values(), key=lambda e: (-e.seconds, e.resource or ""))


def _host(step: Step, resource: str) -> str | None:
    """The machine ``step`` ran on, as its lock on ``resource`` says (only a redis:// lock says)."""
    return next((lock.host for lock in step.locks if lock.resource == resource and lock.host), None)


def _on(host: str | None) -> str:
    return f" on {host}" if host else ""


# --- peak memory per command (issue 19): what a step would declare with --mem

# Programs whose steps differ by what they run: python gen.py and python check.py are two commands.
_INTERPRETERS: Final = frozenset({"python", "py", "sh", "bash", "dash", "zsh", "node", "perl", "ruby"})
# Compiler drivers: with -c a step compiles, without it links; the two need very different memory.
_DRIVERS: Final = ("cc", "c++", "gcc", "g++", "clang", "clang++", "clang-cl", "cl", "icx", "icpx", "nvcc")


def _program(argv0: str) -> str:
    name = argv0.replace("\\", "/").rsplit("/", 1)[-1]
    return name[:-4] if name.lower().endswith(".exe") else name


def memory_group(argv: tuple[str, ...]) -> str:
    """What a step's peak memory is grouped by: its program's name; an interpreter's with the script it
    runs (``python3 gen.py``, ``python3 -m build``, ``python3 -c``); a compiler driver's with ``-c`` when it
    compiles (``clang++ -c``; without, it links). Versioned and cross names count as their driver
    (``x86_64-linux-gnu-g++-12``, ``python3.12``)."""
    if not argv:
        return ""
    program = _program(argv[0])
    base = program.rstrip("0123456789.-")
    if base in _INTERPRETERS or base.startswith("python"):
        for i, arg in enumerate(argv[1:], 1):
            if arg == "-m" and i + 1 < len(argv):
                return f"{program} -m {argv[i + 1]}"
            if arg in ("-m", "-c"):
                return f"{program} {arg}"
            if not arg.startswith("-"):
                return f"{program} {_program(arg)}"
        return program
    if base.endswith(_DRIVERS) and any(arg in ("-c", "/c") for arg in argv[1:]):
        return f"{program} -c"
    return program


@dataclass
class MemoryUse:
    """The measured peaks of one command's successful steps."""

    command: str
    peaks: list[int] = field(default_factory=list)

    def stats(self) -> dict[str, int]:
        return {
            "p50": round(percentile([float(p) for p in self.peaks], 50)),
            "p95": round(percentile([float(p) for p in self.peaks], 95)),
            "max": max(self.peaks),
        }

    def mem(self) -> str:
        """The p95, rounded up: what to declare."""
        from ..memory import size_value

        return size_value(self.stats()["p95"])


def memory_by_command(steps: list[Step]) -> list[MemoryUse]:
    """Peak RSS of the steps that succeeded, per memory_group, largest p95 first (steps without a measured
    peak, from Windows or an older log, are left out)."""
    groups: dict[str, MemoryUse] = {}
    for step in steps:
        if step.status != 0 or step.peak_rss is None or not step.argv:
            continue
        command = memory_group(step.argv)
        groups.setdefault(command, MemoryUse(command)).peaks.append(step.peak_rss)
    return sorted(groups.values(), key=lambda use: (-use.stats()["p95"], use.command))


def memory_json(steps: list[Step]) -> list[dict[str, Any]]:
    return [
        {"command": use.command, "steps": len(use.peaks), "peak": use.stats(), "mem": use.mem()}
        for use in memory_by_command(steps)
    ]


MEMORY_ROWS: Final = 10  # the terminal shows the largest; --json has every command


def render_memory(steps: list[Step], style: Callable[[str, str], str], width: int) -> list[str]:
    """The terminal's "peak memory" section: [] when no step measured one."""
    from ..memory import format_size

    uses = memory_by_command(steps)
    if not uses:
        return []
    out = [
        "",
        style(BOLD, "peak memory by command")
        + style(DIM, "  (resident set of the steps that succeeded; --mem: their p95, rounded up)"),
    ]
    rows = [["steps", "p50", "p95", "max", "--mem", "command"]]
    for use in uses[:MEMORY_ROWS]:
        stats = use.stats()
        rows.append(
            [
                str(len(use.peaks)),
                format_size(stats["p50"]),
                format_size(stats["p95"]),
                format_size(stats["max"]),
                use.mem(),
                use.command,
            ]
        )
    lines = _table(rows, right={0, 1, 2, 3, 4})
    out.append(style(DIM, lines[0]))
    out += [_cut(line, width) for line in lines[1:]]
    if len(uses) > MEMORY_ROWS:
        out.append(style(DIM, f"  ... {len(uses) - MEMORY_ROWS} more commands (--json has them all)"))
    return out


def _step_json(step: Step) -> dict[str, Any]:
    return {
        "command": short_command(step, 200),
        "argv": list(step.argv),
        "stamp": step_label(step) or None,
        "error": step.error,
    }


def _wait_json(wait: Wait) -> dict[str, Any]:
    return {
        "wait": _r(wait.wait),
        "held": _r(wait.held),
        "mode": wait.mode,
        **_step_json(wait.step),
        "pid": wait.step.pid,
        "start": wait.step.start,
        "host": wait.host,
    }


def _mode_json(entry: ModeWaits) -> dict[str, Any]:
    return {
        "waiters": entry.waiters,
        "wait": _r(entry.wait),
        "holding": {mode: _r(seconds) for mode, seconds in entry.holding.items()},
        "queued": {mode: _r(seconds) for mode, seconds in entry.queued.items()},
        "unattributed": _r(entry.unattributed),
    }


def _seats_json(replay: Replay | None) -> dict[str, Any] | None:
    if replay is None:
        return None
    last = replay.waits[0][2]
    return {
        "seats": replay.seats,
        "steps": replay.claims,
        "left_out": replay.left_out,
        "logged_wait": _r(replay.logged),
        "replayed": [
            {"seats": seats, "wait": _r(wait), "sooner": _r(last - end)} for seats, wait, end in replay.waits
        ],
        "enough": replay.enough,
        "pays": replay.pays(),
    }


def _waits_json(waits: ResourceWaits, top: int) -> dict[str, Any]:
    """Who waited behind whom, and the seats replay, of one resource (waits.py)."""
    return {
        "blockers": [
            {
                "seconds": _r(b.seconds),
                "queued": _r(b.queued),
                "waiters": b.waiters,
                "mode": b.claim.mode,
                **_step_json(b.claim.step),
                "pid": b.claim.step.pid,
                "start": b.claim.step.start,
                "host": _host(b.claim.step, waits.resource),
            }
            for b in waits.blockers[:top]
        ],
        "behind": {mode: _mode_json(entry) for mode, entry in waits.by_mode().items()},
        "seats": _seats_json(waits.replay),
    }


def to_json(summary: Summary, top: int = DEFAULT_TOP) -> dict[str, Any]:
    """The --json document (keys: JSON_KEYS)."""
    steps = summary.steps
    return {
        "report_version": REPORT_VERSION,
        "files": list(summary.log.files),
        "skipped_lines": summary.log.skipped,
        "skipped_at": list(summary.log.skipped_at),
        "span": (
            {
                "start": min(s.start for s in steps),
                "end": max(s.end for s in steps),
                "seconds": _r(max(s.end for s in steps) - min(s.start for s in steps)),
            }
            if steps
            else None
        ),
        "steps": {
            "total": len(steps),
            "succeeded": len(steps) - summary.failed(),
            "failed": summary.failed(),
            "step_seconds": _r(sum(s.duration for s in steps)),
            "lock_wait_seconds": _r(sum(s.lock_wait for s in steps)),
            "lock_wait_steps": summary.lock_wait_steps(),
        },
        "failures": [
            {"status": status, "steps": len(group), "examples": [_step_json(s) for s in group[:3]]}
            for status, group in summary.failures
        ],
        "retries": {
            "retries": sum(f.retries for f in summary.families),
            "steps": summary.retried_steps(),
            "seconds": _r(sum(f.seconds for f in summary.families)),
            "gave_up": sum(f.gave_up for f in summary.families),
            "families": [
                {
                    "family": f.family,
                    "retries": f.retries,
                    "steps": len(f.steps),
                    "seconds": _r(f.seconds),
                    "gave_up": f.gave_up,
                    "line": f.line,
                }
                for f in summary.families
            ],
        },
        "resources": [
            {
                "resource": r.resource,
                "steps": len(r.waits),
                "wait": r.wait_stats(),
                "held_total": r.held_total(),
                "modes": {
                    m.resource: {"steps": len(m.waits), "wait": m.wait_stats(), "held_total": m.held_total()}
                    for m in r.by_mode()
                },
                "longest": _wait_json(r.longest(1)[0]),
                "top": [_wait_json(w) for w in r.longest(top)],
                **_waits_json(summary.waits[r.resource], top),
                "hosts": [
                    {
                        "host": h.host,
                        "steps": h.steps,
                        "wait_total": _r(h.wait_total),
                        "wait_max": _r(h.wait_max),
                        "held_total": _r(h.held_total),
                    }
                    for h in r.hosts()
                ],
            }
            for r in summary.resources
        ],
        "lent": [
            {
                "resource": e.resource,
                "loans": e.loans,
                "steps": e.steps,
                "seconds": _r(e.seconds),
                "credit": e.credit,
            }
            for e in lent_by_resource(steps)
        ],
        "memory": memory_json(steps),
    }


# --- the terminal summary


class _Style:
    def __init__(self, colour: bool) -> None:
        self.colour = colour

    def __call__(self, code: str, text: str) -> str:
        return f"{code}{text}{RESET}" if self.colour and text else text


def _table(rows: list[list[str]], right: set[int], indent: str = "  ") -> list[str]:
    """Aligned columns (widths from the plain text; callers colour whole cells afterwards)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i]) if i < len(row) - 1 else cell
            for i, cell in enumerate(row)
        ]
        lines.append(indent + "  ".join(cells).rstrip())
    return lines


def _s(seconds: float) -> str:
    return f"{seconds:.3f}"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _clock(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


def _who(step: Step) -> str:
    label = step_label(step)
    return f"{label}: {short_command(step, 200)}" if label else short_command(step, 200)


def _recolour(line: str, cell: str, code: str, style: _Style) -> str:
    """Colour the first occurrence of ``cell`` in an aligned line."""
    at = line.find(cell)
    return line if at < 0 else line[:at] + style(code, cell) + line[at + len(cell) :]


def render(summary: Summary, colour: bool, width: int = 120, top: int = DEFAULT_TOP) -> str:
    """The terminal summary: plain aligned text, with colour when ``colour``."""
    style = _Style(colour)
    log = summary.log
    steps = summary.steps
    files = log.files
    source = ", ".join(files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")
    out: list[str] = []
    title = style(BOLD, "fi_run report")
    if not steps:
        out.append(f"{title}  {source}: no steps logged")
    else:
        start = min(s.start for s in steps)
        end = max(s.end for s in steps)
        failed = summary.failed()
        head = f"{_plural(len(steps), 'step')}, " + (
            style(RED, f"{failed} failed") if failed else "all succeeded"
        )
        out.append(
            f"{title}  {source}: {head}, span {_s(end - start)} s ({_clock(start)} to {_clock(end)[11:]})"
        )
    if log.skipped:
        out.append(style(YELLOW, log.skipped_note()))
    if not steps:
        return "\n".join(out) + "\n"

    retries = sum(f.retries for f in summary.families)
    gave_up = sum(f.gave_up for f in summary.families)
    overview = [
        ["step time", f"{_s(sum(s.duration for s in steps))} s", "all steps' durations added up"],
        [
            "lock wait",
            f"{_s(sum(s.lock_wait for s in steps))} s",
            f"in {_plural(summary.lock_wait_steps(), 'step')} that took locks",
        ],
        [
            "retries",
            str(retries),
            f"in {_plural(summary.retried_steps(), 'step')}, "
            f"{_s(sum(f.seconds for f in summary.families))} s lost"
            + (f", {gave_up} gave up" if gave_up else ""),
        ],
    ]
    out += _table(overview, right=set())

    if summary.failures:
        out += ["", style(BOLD, "failures")]
        rows = [["status", "steps", "example"]]
        for status, group in summary.failures:
            example = group[0]
            error = f"  ({example.error})" if example.error else ""
            rows.append([str(status), str(len(group)), _who(example) + error])
        lines = _table(rows, right={0, 1})
        out.append(style(DIM, lines[0]))
        for line, row in zip(lines[1:], rows[1:], strict=True):
            out.append(_recolour(_cut(line, width), row[0], RED, style))

    if summary.families:
        out += ["", style(BOLD, "retries by family") + style(DIM, "  (lost: failed attempts and back-off)")]
        rows = [["family", "retries", "steps", "lost s", "gave up"]]
        for f in summary.families:
            rows.append([f.family, str(f.retries), str(len(f.steps)), _s(f.seconds), str(f.gave_up)])
        lines = _table(rows, right={1, 2, 3, 4})
        out.append(style(DIM, lines[0]))
        for line, f in zip(lines[1:], summary.families, strict=True):
            out.append(_recolour(line, f.family, YELLOW, style))
            if f.line:
                out.append(style(DIM, _cut(f"    e.g. {f.line}", width)))

    if summary.resources:
        out += ["", style(BOLD, "lock waits") + style(DIM, "  (seconds; wait: from asking to holding)")]
        rows = [["steps", "wait total", "p50", "p95", "max", "held total", "resource"]]
        kinds = []
        for r in summary.resources:
            parts = [(r, r.resource, "resource")]
            modes = r.by_mode()
            if len(modes) > 1:
                parts += [(m, f"  {m.resource}", "mode") for m in modes]
            else:
                parts[0] = (r, f"{r.resource} ({modes[0].resource})", "resource")
            for part, label, kind in parts:
                stats = part.wait_stats()
                rows.append(
                    [
                        str(len(part.waits)),
                        _s(stats["total"]),
                        _s(stats["p50"]),
                        _s(stats["p95"]),
                        _s(stats["max"]),
                        _s(part.held_total()),
                        label,
                    ]
                )
                kinds.append((kind, r.resource))
        lines = _table(rows, right={0, 1, 2, 3, 4, 5})
        out.append(style(DIM, lines[0]))
        for line, (kind, name) in zip(lines[1:], kinds, strict=True):
            out.append(_recolour(line, name, CYAN, style) if kind == "resource" else line)
        for r in summary.resources:
            # The longest wait is always named, even with --top 0.
            longest = r.longest(max(top, 1))
            several = len(r.by_mode()) > 1
            out.append(style(DIM, f"  longest waits for {r.resource}"))
            rows = [
                [_s(w.wait), _who(w.step) + (f" ({w.mode})" if several else "") + _on(w.host)]
                for w in longest
            ]
            out += [_cut(line, width) for line in _table(rows, right={0}, indent="    ")]
            out += _render_waits(summary.waits[r.resource], style, width, top)
            hosts = r.hosts()
            if hosts:  # a resource shared between machines (redis://): who waited and held where
                out.append(style(DIM, f"  by machine for {r.resource}  (seconds)"))
                rows = [["steps", "wait total", "max", "held total", "host"]]
                rows += [
                    [str(h.steps), _s(h.wait_total), _s(h.wait_max), _s(h.held_total), h.host] for h in hosts
                ]
                lines = _table(rows, right={0, 1, 2, 3}, indent="    ")
                out.append(style(DIM, lines[0]))
                out += [_cut(line, width) for line in lines[1:]]

    lent = lent_by_resource(steps)
    if lent:
        out += ["", style(BOLD, "job slots lent") + style(DIM, "  (to fi-run jobserver, while waiting)")]
        rows = [["loans", "steps", "lent s", "on credit", "while waiting for"]]
        for e in lent:
            rows.append(
                [str(e.loans), str(e.steps), _s(e.seconds), str(e.credit), e.resource or "retry back-off"]
            )
        lines = _table(rows, right={0, 1, 2, 3})
        out.append(style(DIM, lines[0]))
        out += [_cut(line, width) for line in lines[1:]]
    out += render_memory(steps, style, width)
    return "\n".join(out) + "\n"


def _render_waits(waits: ResourceWaits, style: _Style, width: int, top: int) -> list[str]:
    """Who made others wait for one resource, what each mode waited behind, and the more-seats line."""
    out: list[str] = []
    blockers = waits.blockers[:top]
    if blockers:
        out.append(style(DIM, f"  made others wait for {waits.resource}  (seconds others waited behind it)"))
        rows = [["caused", "waiters", "step"]]
        several = len({c.mode for c in waits.claims}) > 1
        for b in blockers:
            rows.append(
                [
                    _s(b.seconds),
                    str(b.waiters),
                    _who(b.claim.step)
                    + (f" ({b.claim.mode})" if several else "")
                    + _on(_host(b.claim.step, waits.resource)),
                ]
            )
        lines = _table(rows, right={0, 1}, indent="    ")
        out.append(style(DIM, lines[0]))
        out += [_cut(line, width) for line in lines[1:]]
    modes = waits.by_mode()
    if modes:
        out.append(style(DIM, f"  what the waiters for {waits.resource} waited behind  (seconds)"))
        rows = [
            ["waiters", "mode", "wait", "behind holders", "queued behind writers", "no holder in the log"]
        ]
        for mode, entry in modes.items():
            holding = sorted(entry.holding.items(), key=lambda item: (-item[1], item[0]))
            rows.append(
                [
                    str(entry.waiters),
                    mode,
                    _s(entry.wait),
                    ", ".join(f"{_s(seconds)} {by}" for by, seconds in holding) or _s(0.0),
                    _s(sum(entry.queued.values())),  # only exclusive claims queue others at the gate
                    _s(entry.unattributed),
                ]
            )
        lines = _table(rows, right={0, 2, 4, 5}, indent="    ")
        out.append(style(DIM, lines[0]))
        out += lines[1:]
    line = seats_line(waits)
    if line:
        out.append(_recolour("  " + line, waits.resource, CYAN, style))
    return out


def seats_line(waits: ResourceWaits) -> str:
    """'R: 2 seats; 3 would have cut the waits from 1.2 s to 0.4 s, ...', or '' when more seats would not
    have paid (waits.Replay.pays)."""
    replay = waits.replay
    if replay is None or not replay.pays():
        return ""
    (seats, now, last), (more, then, end), *rest = replay.waits
    line = f"{waits.resource}: {_plural(seats, 'seat')}; {more} would have cut the waits"
    line += f" from {_s(now)} s to {_s(then)} s"
    for extra, wait, later in rest:
        if wait < then:
            line += f", {extra} to {_s(wait)} s"
            then, end = wait, later
    if last - end >= 0.0005:  # shown as 0.000 otherwise
        line += f", and its last holder would have let go {_s(last - end)} s sooner"
    return line + " (replayed from this log)"


def _cut(line: str, width: int) -> str:
    """Cut a plain line (colour is added afterwards) to the terminal's width."""
    return line if len(line) <= width else line[: max(width - 3, 1)] + "..."
