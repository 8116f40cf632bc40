"""Fixtures (fi_run run three ways, background processes) and the modules that run only on POSIX."""

from __future__ import annotations

import signal
import sys
from typing import TYPE_CHECKING

import pytest
from cgroup_testing import Cgroups
from fi_run_testing import WAYS, Build, Procs, Ran, Runner, contended_build, run_fi_run

# Modules that test POSIX behaviour (process groups, POSIX signals, /proc, /bin/sh under ninja, x bits and
# #! lines, flock): not collected on Windows, which has its own runner (run_windows.py) and whose rules are
# tested on Linux through the pure functions that take windows=.
POSIX_ONLY = (
    "test_contention.py",
    "test_coordinator.py",
    "test_lock_interrupts.py",
    "test_locks.py",
    "test_locks_view.py",
    "test_log.py",
    "test_ninja.py",
    "test_remote.py",
    "test_report.py",
    "test_run.py",
    "test_signals.py",
    "test_trace.py",
)
collect_ignore = list(POSIX_ONLY) if sys.platform == "win32" else []


def pytest_report_header() -> str | None:
    if collect_ignore:
        return f"POSIX-only, not collected here: {', '.join(collect_ignore)}"
    return None


# The tests send SIGINT, SIGTERM and SIGHUP and expect what a build gets under ninja: default dispositions.
# A runner that starts the suite with some of them ignored (nohup, a background job of a non-interactive
# shell) would pass that on to every fi_run the tests start, and fi_run keeps an ignored signal ignored.
for _name in ("SIGINT", "SIGTERM", "SIGHUP"):
    _signum = getattr(signal, _name, None)
    if _signum is not None and signal.getsignal(_signum) == signal.SIG_IGN:
        signal.signal(_signum, signal.default_int_handler if _name == "SIGINT" else signal.SIG_DFL)

if TYPE_CHECKING:
    import os
    from collections.abc import Iterator, Mapping, Sequence


@pytest.fixture(params=WAYS)
def fi_run_way(request: pytest.FixtureRequest) -> str:
    """Each way a user reaches fi_run: "inprocess" (main(argv)), "module" (-m fi_run), "script" (fi-run)."""
    way: str = request.param
    return way


def _runner(way: str) -> Runner:
    def run(
        args: Sequence[str],
        *,
        env: Mapping[str, str | None] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        merge_stderr: bool = False,
    ) -> Ran:
        return run_fi_run(way, args, env=env, cwd=cwd, merge_stderr=merge_stderr)

    return run


@pytest.fixture
def fi_run(fi_run_way: str) -> Runner:
    """Run fi_run the way of ``fi_run_way``: fi_run(args, env=..., cwd=..., merge_stderr=...) -> Ran."""
    return _runner(fi_run_way)


@pytest.fixture
def fi_run_module() -> Runner:
    """fi_run as ``python -m fi_run``: for tests that need only one way."""
    return _runner("module")


@pytest.fixture
def procs() -> Iterator[Procs]:
    """Background processes of one test: killed, with everything they started, when the test ends."""
    with Procs() as started:
        yield started


@pytest.fixture(scope="session")
def build(tmp_path_factory: pytest.TempPathFactory) -> Build:
    """The contended build (fi_run_testing.contended_build), run once a session and shared by its readers."""
    return contended_build(tmp_path_factory.mktemp("contended"))


@pytest.fixture
def memory_cgroups() -> Iterator[Cgroups]:
    """Real memory cgroups of the test's own (cgroup_testing.py): ``memory_cgroups.make(limit)`` makes one,
    or skips the test with the reason; all are removed when the test ends."""
    cgroups = Cgroups()
    try:
        yield cgroups
    finally:
        cgroups.remove_all()
