"""What a step's redis:// holds add to its command (issue 21): FI_RUN_FENCE_<NAME> and the cap on the hold.

Its own small module: a step under `fi-run jobserver` gets its remote holds from the coordinator and needs
only this, not remote.py with its client and script (under the coordinator a redis:// step is meant to cost
what a plain one does: benchmarks/README.md).
"""

from __future__ import annotations

import time

from ..errors import UsageError

TYPE_CHECKING = False  # not typing's: a step with a redis:// resource imports this module
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Final

    from ..records import StepSpec

CAP_VARIABLE: Final = "FI_RUN_REDIS_MAX_HOLD"
DEFAULT_CAP: Final = 4 * 3600.0  # the longest a step holds a remote resource; 0: no cap
MAX_CAP: Final = 100_000_000.0  # as --timeout (cli.MAX_SECONDS)
FENCE_PREFIX: Final = "FI_RUN_FENCE_"


def fence_variable(name: str) -> str:
    """FI_RUN_FENCE_<NAME>: the resource's NAME upper-cased, anything but letters and digits made '_'."""
    return FENCE_PREFIX + "".join(c if c.isalnum() else "_" for c in name.upper())


def seconds_from(environ: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    """A number of seconds from the environment variable ``name`` (unset or empty: ``default``)."""
    text = environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text) if "_" not in text else -1.0
    except ValueError:
        value = -1.0
    if not low <= value <= high:  # NaN fails too
        raise UsageError(f"{name} expects seconds from {low:g} to {high:g}, got {text!r}")
    return value


class RemoteHold:
    """What a step's remote holds add to its command: FI_RUN_FENCE_<NAME> for each resource, and the cap on
    the hold, which --timeout's timer enforces (the command is stopped as at a timeout, exit 124)."""

    def __init__(self, fences: dict[str, str], cap: float, names: list[str]) -> None:
        self.fences = fences
        self.cap = cap  # seconds (0: none)
        self.names = names
        self.started = time.monotonic()
        self.capped = False  # the cap, not --timeout, limits the command

    def apply(self, spec: StepSpec, env: dict[str, str]) -> tuple[StepSpec, dict[str, str]]:
        run_env = {**env, **self.fences}
        if not self.cap:
            return spec, run_env
        left = max(self.cap - (time.monotonic() - self.started), 0.001)
        if spec.timeout is not None and spec.timeout <= left:
            return spec, run_env
        self.capped = True
        fields = dict(vars(spec))
        fields["timeout"] = left
        return type(spec)(**fields), run_env

    def capped_message(self) -> str:
        return (
            f"held {', '.join(repr(n) for n in self.names)} for {self.cap:g} s, the cap on a remote hold "
            f"({CAP_VARIABLE}): stopped the command and its process group"
        )


def hold_from_grant(granted: Sequence[str], environ: Mapping[str, str]) -> RemoteHold:
    """What a step under the coordinator adds to its command. The coordinator's GRANT names, for each
    redis:// resource, its canonical name, its fence and the hold's token, three fields each
    (coordinator.py); the name's last part is the resource's NAME. The cap is the step's own setting."""
    fences: dict[str, str] = {}
    names: list[str] = []
    for i in range(0, len(granted) - 2, 3):
        fences[fence_variable(granted[i].rpartition("/")[2])] = granted[i + 1]
        names.append(granted[i])
    return RemoteHold(fences, seconds_from(environ, CAP_VARIABLE, DEFAULT_CAP, 0.0, MAX_CAP), names)
