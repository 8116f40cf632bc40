"""A minimal Redis client (RESP2 over TCP): what fi_run's redis:// resources need, and nothing more.

Why not redis-py: measured on this project's machine (benchmarks/README.md, "Resources shared between
machines"), ``import redis`` alone costs a step about 111 ms of a 147 ms overhead, more than the whole step
without it; this client costs a step a few ms, and fi_run runs once per build step (issue 21). It also keeps
fi_run's dependency list short (filelock, colorama). What it does not do, on purpose: TLS, Sentinel, Cluster,
RESP3, connection pools, pub/sub. Every call is a request and its reply, on one connection; a reply that does
not come within the socket's timeout, or a connection cut half-way through one, poisons the connection
(``broken``): the caller opens a new one.

Only the C module ``_socket`` is imported (``socket`` imports enum and selectors, about 13 ms).
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: a step with a redis:// resource imports this module
if TYPE_CHECKING:
    import socket as _socket
    from collections.abc import Sequence
    from typing import Final, TypeAlias

    Reply: TypeAlias = "int | bytes | str | list[Reply] | RedisError | None"
else:
    import _socket

CONNECT_SECONDS: Final = 5.0  # a server that does not accept within this is unreachable
REPLY_SECONDS: Final = 10.0  # a reply that takes longer than this (beyond a blocking command's own wait)
_CRLF: Final = b"\r\n"


class RedisError(Exception):
    """An error reply from the server (``-ERR ...``, ``-NOSCRIPT ...``, ``-WRONGPASS ...``)."""

    @property
    def code(self) -> str:
        return str(self).split(" ", 1)[0]


class ConnectionLost(OSError):
    """The server could not be reached, or the connection broke or timed out during a call."""


class ServerLoading(ConnectionLost):
    """The server answered LOADING: it has just started and is reading its data (remote.Link.refused)."""


def encode(args: Sequence[bytes | str | int | float]) -> bytes:
    """One command as a RESP array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, str):
            data = arg.encode("utf-8", "surrogateescape")
        else:
            data = str(arg).encode("ascii")
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class Connection:
    """One TCP connection to one Redis server."""

    def __init__(self, host: str, port: int, *, timeout: float = CONNECT_SECONDS) -> None:
        self.host = host
        self.port = port
        self.broken = False
        self._buffer = b""
        self._sock = _connect(host, port, timeout)

    def close(self) -> None:
        self.broken = True
        try:
            self._sock.close()
        except OSError:
            pass

    def call(self, *args: bytes | str | int | float, wait: float = 0.0) -> Reply:
        """Send one command and return its reply (an error reply is returned as a RedisError, not raised).
        ``wait``: how long the command itself may block on the server (BLPOP's timeout), on top of
        REPLY_SECONDS. Raises ConnectionLost."""
        return self.pipeline([args], wait=wait)[0]

    def pipeline(
        self, commands: Sequence[Sequence[bytes | str | int | float]], *, wait: float = 0.0
    ) -> list[Reply]:
        """Send several commands at once and return their replies, in order (one round trip)."""
        if self.broken:
            raise ConnectionLost(f"the connection to {self.host}:{self.port} was lost")
        try:
            self._sock.settimeout(REPLY_SECONDS + wait)
            self._sock.sendall(b"".join(encode(args) for args in commands))
            return [self._reply() for _ in commands]
        except ConnectionLost:
            self.close()
            raise
        except OSError as exc:  # TimeoutError included: the server no longer answers
            self.close()
            reason = "no reply in time" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
            raise ConnectionLost(f"{self.host}:{self.port}: {reason}") from None
        except BaseException:  # an interrupt half-way through a reply: the stream is out of step
            self.close()
            raise

    def _line(self) -> bytes:
        while True:
            end = self._buffer.find(_CRLF)
            if end >= 0:
                line, self._buffer = self._buffer[:end], self._buffer[end + 2 :]
                return line
            self._fill()

    def _fill(self) -> None:
        data = self._sock.recv(65536)
        if not data:
            raise ConnectionLost(f"{self.host}:{self.port} closed the connection")
        self._buffer += data

    def _reply(self) -> Reply:
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode("utf-8", "replace")
        if kind == b"-":
            return RedisError(rest.decode("utf-8", "replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            if size < 0:
                return None
            while len(self._buffer) < size + 2:
                self._fill()
            data, self._buffer = self._buffer[:size], self._buffer[size + 2 :]
            return data
        if kind == b"*":
            count = int(rest)
            return None if count < 0 else [self._reply() for _ in range(count)]
        raise ConnectionLost(f"{self.host}:{self.port} sent something that is not RESP: {line[:40]!r}")


def _connect(host: str, port: int, timeout: float) -> _socket.socket:
    try:
        # The host as bytes: a str would be encoded with the idna codec, which imports re (about 12 ms).
        addresses = _socket.getaddrinfo(host.encode("ascii", "replace"), port, 0, _socket.SOCK_STREAM)
    except OSError as exc:  # gaierror: no such host, no DNS
        raise ConnectionLost(f"{host}:{port}: {exc.strerror or exc}") from None
    last = "no address"
    for family, kind, proto, _name, address in addresses:
        sock = _socket.socket(family, kind, proto)
        try:
            sock.settimeout(timeout)
            sock.connect(address)
            sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
        except OSError as exc:
            sock.close()
            last = "no answer in time" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
            continue
        return sock
    raise ConnectionLost(f"{host}:{port}: {last}")
