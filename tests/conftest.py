"""Fixtures: fi_run run three ways (in-process main(argv), python -m fi_run, the fi-run console script)."""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING

import pytest
from fi_run_testing import WAYS, Ran, Runner, run_fi_run

# The tests send SIGINT, SIGTERM and SIGHUP and expect what a build gets under ninja: default dispositions.
# A runner that starts the suite with some of them ignored (nohup, a background job of a non-interactive
# shell) would pass that on to every fi_run the tests start, and fi_run keeps an ignored signal ignored.
for _name in ("SIGINT", "SIGTERM", "SIGHUP"):
    _signum = getattr(signal, _name, None)
    if _signum is not None and signal.getsignal(_signum) == signal.SIG_IGN:
        signal.signal(_signum, signal.default_int_handler if _name == "SIGINT" else signal.SIG_DFL)

if TYPE_CHECKING:
    import os
    from collections.abc import Mapping, Sequence


@pytest.fixture(params=WAYS)
def fi_run_way(request: pytest.FixtureRequest) -> str:
    """Each way a user reaches fi_run: "inprocess" (main(argv)), "module" (-m fi_run), "script" (fi-run)."""
    way: str = request.param
    return way


@pytest.fixture
def fi_run(fi_run_way: str) -> Runner:
    """Run fi_run the way of ``fi_run_way``: fi_run(args, env=..., cwd=..., merge_stderr=...) -> Ran."""

    def run(
        args: Sequence[str],
        *,
        env: Mapping[str, str | None] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        merge_stderr: bool = False,
    ) -> Ran:
        return run_fi_run(fi_run_way, args, env=env, cwd=cwd, merge_stderr=merge_stderr)

    return run


@pytest.fixture
def fi_run_module() -> Runner:
    """fi_run as ``python -m fi_run``: for tests that need only one way."""

    def run(
        args: Sequence[str],
        *,
        env: Mapping[str, str | None] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        merge_stderr: bool = False,
    ) -> Ran:
        return run_fi_run("module", args, env=env, cwd=cwd, merge_stderr=merge_stderr)

    return run
