"""The step spec: everything fi_run was asked to do, parsed once from argv and the environment.

The rest of fi_run sees only this frozen value, never argv or an argparse Namespace.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: saves importing typing (~6 ms) per unlocked step (docs/performance.md)
if TYPE_CHECKING:
    from dataclasses import dataclass
    from typing import Final, Literal

    from .environment import EnvOp

    LockMode = Literal["exclusive", "shared", "semaphore"]
else:
    from .._record import dataclass  # not dataclasses': saves ~10 ms (inspect, re) on an unlocked step


# MSBuild's Copy task retries a file locked by another process 10 times, 1 s apart: our default count (the
# per-wait cap in contention/backoff.py is of the same order). The one home of this default.
DEFAULT_RETRIES: Final = 10


@dataclass(frozen=True)
class LockRequest:
    resource: str  # as spelled by the user; canonicalised by the locks module
    mode: LockMode
    slots: int = 1  # --semaphore RESOURCE=N: at most N holders


@dataclass(frozen=True)
class StepSpec:
    command: tuple[str, ...]
    start_dir: str  # absolute: where fi_run started; fi_run's own relative paths are taken from here
    env_ops: tuple[EnvOp, ...] = ()
    cwd: str | None = None  # absolute
    stamp: str | None = None  # absolute
    outputs: tuple[str, ...] = ()  # absolute
    timeout: float | None = None
    quiet_on_success: bool = False
    verbosity: int = 1
    locks: tuple[LockRequest, ...] = ()
    lock_dir: str | None = None  # absolute
    lock_timeout: float | None = None
    retries: int = DEFAULT_RETRIES
    retry_on: tuple[str, ...] = ()
    log: str | None = None  # absolute
    lend_slot: str = "auto"  # --lend-slot: auto, always or never (contention/jobserver.py)
