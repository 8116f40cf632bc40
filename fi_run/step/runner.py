"""The platform runner: one attempt of the command, chosen once for the platform fi_run runs on.

``run_posix.run_once`` (posix_spawn, process groups, SIGALRM for --timeout) and ``run_windows.run_once``
(CreateProcess, a job object, taskkill) differ in everything but this contract, which is all that the
attempts loop and ``fi_run jobserver`` see.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # not typing's: saves importing typing on a step without locks (see _record.py)
if TYPE_CHECKING:
    from typing import Protocol

    from .interrupts import Interrupts
    from .outcome import Outcome

    class RunOnce(Protocol):
        def __call__(
            self,
            executable: str,
            argv: tuple[str, ...],
            *,
            env: dict[str, str],
            cwd: str | None,
            stdout: int | None,
            stderr: int | None,
            timeout: float | None,
            interrupts: Interrupts,
        ) -> Outcome:
            """Start ``executable`` with ``argv``, wait for it (at most ``timeout`` seconds, then stop
            everything it started) and return its status. ``stdout``/``stderr``: file descriptors for the
            command's streams, None to inherit fi_run's. Raises NotExecutableError if it cannot start."""
            ...


if sys.platform == "win32":  # pragma: no cover - Windows only
    from .run_windows import run_once
else:
    from .run_posix import run_once

run: RunOnce = run_once
