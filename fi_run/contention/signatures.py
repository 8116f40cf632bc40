"""The old home of the contention signatures, kept so that code written against it still imports.

The table is now catalogue.py and the matching is recognizer.py (two tiers, the bounded tail, holders,
waits). ``find_contention`` answers as the recognizer does, as a (family, line) pair.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from .catalogue import BUILTIN, NEVER_RETRY, WAIT_LINES, Signature
from .recognizer import active_signatures, check_user_regex, classify

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "BUILTIN",
    "NEVER_RETRY",
    "WAIT_LINES",
    "Match",
    "Signature",
    "active_signatures",
    "check_user_regex",
    "find_contention",
]


class Match(NamedTuple):
    """The line that decided a contention verdict, and its family."""

    family: str
    line: str


def find_contention(text: str, signatures: Sequence[Signature]) -> Match | None:
    """The recognizer's contention verdict on ``text``, None when it would not retry. The platform follows
    the signature set: only a Windows set (active_signatures(windows=True)) holds windows_only entries."""
    windows = any(s.windows_only for s in signatures)
    verdict = classify(text, windows=windows, signatures=tuple(signatures))
    return Match(verdict.family, verdict.line) if verdict.retry else None
