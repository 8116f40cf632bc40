"""The name of a resource shared between machines: ``redis://[user@]host[:port][/db]/NAME`` (issue 21).

Parsing only, with nothing of the lock machinery: lockdir.canonical_resource names a redis:// resource
through this module, and cli.py checks the spelling with it, without importing remote.py (which imports
the lock directory's modules in turn).
"""

from __future__ import annotations

from ..errors import UsageError
from .hold import fence_variable

TYPE_CHECKING = False  # not typing's: parsed for every step that names a redis:// resource
if TYPE_CHECKING:
    from typing import Final

PASSWORD_VARIABLE: Final = "FI_RUN_REDIS_PASSWORD"  # noqa: S105 - the variable's name, not a password
DEFAULT_PORT: Final = 6379
MAX_NAME: Final = 100
KEY_PREFIX: Final = "fi-run:"
_NAME_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
_HOST_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-_")


# --- the resource's name


class Target:
    """A parsed redis:// resource: which server, which database, which name."""

    __slots__ = ("db", "host", "name", "port", "user")

    def __init__(self, host: str, port: int, db: int, name: str, user: str = "") -> None:
        self.host = host
        self.port = port
        self.db = db
        self.name = name
        self.user = user

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def identity(self) -> str:
        """The resource itself, whoever asks for it: the global order and the coordinator's lines use this."""
        return f"redis://{self.address}/{self.db}/{self.name}"

    @property
    def canonical(self) -> str:
        """What fi_run calls it (messages, --log): the identity, with the URL's user if it names one."""
        return f"redis://{self.user}@{self.address}/{self.db}/{self.name}" if self.user else self.identity

    @property
    def server(self) -> tuple[str, int, int, str]:
        """One connection serves every resource with the same server, database and user."""
        return (self.host, self.port, self.db, self.user)

    @property
    def prefix(self) -> str:
        # The braces are a Redis hash tag: every key of one resource lands in the same slot.
        return f"{KEY_PREFIX}{{{self.name}}}"

    @property
    def fence_variable(self) -> str:
        return fence_variable(self.name)


def redacted(text: str) -> str:
    """The URL as messages may show it: a password someone put in it replaced by ***."""
    scheme, sep, rest = text.partition("://")
    authority, slash, path = rest.partition("/")
    userinfo, at, host = authority.rpartition("@")
    if at and ":" in userinfo:
        userinfo = userinfo.partition(":")[0] + ":***"
        return f"{scheme}{sep}{userinfo}@{host}{slash}{path}"
    return text


def refuse_password(where: str, text: str) -> None:
    """A redis:// URL with a password in it: refused, and never repeated (argv is visible to everyone on the
    machine, and build logs keep command lines)."""
    authority = text.partition("://")[2].partition("/")[0]
    userinfo, at, _host = authority.rpartition("@")
    if at and ":" in userinfo:
        raise UsageError(
            f"{where}: {redacted(text)!r} has a password in it; put it in {PASSWORD_VARIABLE} instead "
            "(fi_run never takes a password from its command line)"
        )


def parse_url(text: str, where: str = "resource") -> Target:
    """``redis://[user@]host[:port][/db]/NAME`` -> Target; UsageError (a redacted URL) if it is not one."""
    refuse_password(where, text)
    shown = redacted(text)
    scheme, sep, rest = text.partition("://")
    if scheme.lower() == "rediss":
        raise UsageError(
            f"{where}: {shown!r}: TLS (rediss://) is not supported; use redis:// on a trusted network"
        )
    if scheme != "redis" or not sep:
        raise UsageError(f"{where}: {shown!r} is not a redis:// URL")
    expected = "expected redis://[user@]host[:port][/db]/NAME"
    authority, _slash, path = rest.partition("/")
    user = ""
    if "@" in authority:
        user, _at, authority = authority.rpartition("@")
        if not user or not set(user) <= _NAME_CHARS:
            raise UsageError(f"{where}: {shown!r}: the user may hold only letters, digits, '.', '_' and '-'")
    if authority.startswith("["):  # an IPv6 address
        host, bracket, port_text = authority[1:].partition("]")
        if not bracket or (port_text and not port_text.startswith(":")) or not host:
            raise UsageError(f"{where}: {shown!r}: a bad IPv6 address ({expected})")
        port_text = port_text[1:]
        if not set(host.lower()) <= frozenset("0123456789abcdef:."):
            raise UsageError(f"{where}: {shown!r}: a bad IPv6 address ({expected})")
    else:
        host, _colon, port_text = authority.partition(":")
    host = host.lower()
    if not host or (not authority.startswith("[") and not set(host) <= _HOST_CHARS):
        raise UsageError(f"{where}: {shown!r}: no host, or a bad one ({expected})")
    port = DEFAULT_PORT
    if port_text:
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise UsageError(f"{where}: {shown!r}: the port must be a number from 1 to 65535")
        port = int(port_text)
    segments = path.split("/")
    if len(segments) == 2 and segments[0].isdigit() and len(segments[0]) <= 5:
        db, name = int(segments[0]), segments[1]
    elif len(segments) == 1:
        db, name = 0, segments[0]
    else:
        raise UsageError(f"{where}: {shown!r}: {expected} (db: a number)")
    if not name or len(name) > MAX_NAME or not set(name) <= _NAME_CHARS:
        raise UsageError(
            f"{where}: {shown!r}: NAME must be 1 to {MAX_NAME} letters, digits, '.', '_' or '-' ({expected})"
        )
    return Target(host, port, db, name, user)


def canonical_url(text: str) -> str:
    """The canonical name of a redis:// resource (lockdir.canonical_resource)."""
    return parse_url(text).canonical
