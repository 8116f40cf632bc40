"""The coordinator's wire format: what a step and ``fi-run jobserver``'s lock coordinator say to each other.

One message is a netstring (``LEN:PAYLOAD,``) whose payload is NUL-separated UTF-8 fields: a path or a
command line cannot hold a NUL, so no field needs escaping, and a reader never has to guess where a message
ends. Descriptors travel beside the bytes (SCM_RIGHTS) and belong to whichever message they arrive with.

A step says ``LOCK`` (its pid, lock directory, command line, then a resource and its modes per pair of
fields, in the global order), later ``CANCEL`` (its --lock-timeout expired) or ``DONE``. The coordinator
says ``WAIT`` (not at once: the resource, who holds it, and ``lend`` or ``keep``: whether to lend the job
slot meanwhile), ``GRANT`` (with the locked descriptors), ``CANCELLED`` (with who held it) or ``ERR`` (an
exit status and one line). ``fi-run locks`` says ``LIST`` and gets one ``STATE`` line per holder and
waiter, then ``END``.

Shared by the step's side (coordinated.py, which must stay cheap to import: no ``socket``, only the C
module) and the coordinator (coordinator.py).
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: a coordinated step imports this module
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Final

    from .lockdir import Modes

# At most this many descriptors in one message (Linux's SCM_MAX_FD is 253).
MAX_FDS: Final = 250
MAX_MESSAGE: Final = 1 << 20  # a LOCK with a few hundred long paths is far below this


def encode(fields: Sequence[str]) -> bytes:
    payload = "\0".join(fields).encode("utf-8", "surrogateescape")
    return b"%d:%s," % (len(payload), payload)


def encode_modes(modes: Modes) -> str:
    """(("semaphore", 4, 2), ("shared", 1, 1)) -> 'semaphore:4:2,shared:1:1'."""
    return ",".join(f"{mode}:{seats}:{weight}" for mode, seats, weight in modes)


def decode_modes(text: str) -> Modes:
    """The inverse of encode_modes; raises ValueError for anything else."""
    modes = []
    for part in text.split(","):
        mode, seats, weight = ([*part.split(":"), "", ""])[:3]
        numbers_ok = all(n.isdigit() and int(n) >= 1 for n in (seats, weight))
        if mode not in ("exclusive", "shared", "semaphore") or not numbers_ok:
            raise ValueError(f"bad modes {text!r}")
        modes.append((mode, int(seats), min(int(weight), int(seats))))
    return tuple(modes)


class Reader:
    """Splits what arrives on a stream into messages (lists of fields)."""

    def __init__(self) -> None:
        self.buffer = b""

    def feed(self, data: bytes) -> list[list[str]]:
        """The messages ``data`` completes; raises ValueError for bytes that are not this format."""
        self.buffer += data
        messages: list[list[str]] = []
        while True:
            colon = self.buffer.find(b":", 0, 12)
            if colon < 0:
                if len(self.buffer) >= 12 or (self.buffer and not self.buffer[:1].isdigit()):
                    raise ValueError("not a netstring")
                return messages
            length_text = self.buffer[:colon]
            if not length_text.isdigit() or int(length_text) > MAX_MESSAGE:
                raise ValueError("bad netstring length")
            end = colon + 1 + int(length_text)
            if len(self.buffer) <= end:
                return messages
            if self.buffer[end : end + 1] != b",":
                raise ValueError("netstring without its comma")
            payload = self.buffer[colon + 1 : end]
            self.buffer = self.buffer[end + 1 :]
            messages.append(payload.decode("utf-8", "surrogateescape").split("\0"))
