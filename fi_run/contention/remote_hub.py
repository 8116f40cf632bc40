"""The build's redis:// resources, held by its lock coordinator (issue 21): the steps pay nothing extra.

Under `fi-run jobserver` a step asks the coordinator for its locks (coordinated.py); for a redis:// resource
the coordinator asks the server on the step's behalf, through this hub: one connection per server for the
script (a worker thread) and one that blocks in BLPOP on the hub's own wake list (a waker thread), whatever
the number of steps. Each step's request is its own ticket in the server's line, taken in the order the
steps asked the coordinator, so first come, first served holds across the machines too (the coordinator's
own line is not used for these: the server's is the one line). The hub renews every lease it holds or waits
with, every third of a lease, and takes a seat back after a restart that lost the server's data, as a step
of its own does (remote.py).

What dies:
- A step killed while its command runs: the command inherited the connection to the coordinator, which keeps
  the seat (and renews it) until the command has ended, as for a local lock.
- The coordinator killed: its steps are told each seat's token with their grant; a step that sees the
  coordinator go takes the renewal over itself (coordinated.py), so a running command keeps its seat.
- The server unreachable: a waiting step gets exit 69 once the server has been away for a lease (or, before
  the hub ever reached it, for remote.FIRST_CONTACT_SECONDS); held seats are renewed as soon as it is back.

Imported only by the coordinator, and only when one of its steps names a redis:// resource.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from typing import TYPE_CHECKING

from ..errors import FiRunError, RemoteUnavailableError, UsageError
from .redis_url import Target, parse_url
from .remote import (
    FIRST_CONTACT_SECONDS,
    Link,
    Seat,
    Settings,
    as_int,
    describe_who,
    new_token,
    unreachable,
    who_text,
)
from .resp import ConnectionLost, ServerLoading

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Final

    from ..messages import Reporter
    from .lockdir import Modes

WAKE_SECONDS: Final = 1.0  # how long the waker blocks at a time (it looks at its stop flag in between)


class Ask:
    """One step's request for one redis:// resource, as the hub serves it."""

    def __init__(
        self,
        seat: Seat,
        granted: Callable[[int, str], None],
        failed: Callable[[FiRunError], None],
        waiting: Callable[[], None],
    ) -> None:
        self.seat = seat
        self.granted = granted  # (fence, token), called on the coordinator's loop
        self.failed = failed
        self.waiting = waiting  # not free at once (the first acquire's answer)
        self.told = False
        self.state = "new"  # new, waiting, held, gone
        self.next_poll = 0.0  # monotonic: when a waiting ask next calls acquire (its lease, a lease ending)
        self.holder = ""  # who held the resource when it last looked


class _Server:
    """One server (and database, and user) of the build's redis:// resources: a worker and a waker thread."""

    def __init__(self, hub: Hub, target: Target) -> None:
        self.hub = hub
        self.target = target
        self.link = Link(target, hub.settings)
        self.waker_link = Link(target, hub.settings)
        self.asks: dict[str, Ask] = {}  # token -> ask, for every ask not gone
        self.todo: deque[tuple[str, Ask]] = deque()
        self.changed = threading.Condition()
        self.lost_at: float | None = None  # monotonic: when the server stopped answering
        self.warned = False
        self.next_renew = time.monotonic() + hub.settings.renew_every
        self.worker = threading.Thread(target=self._work, name=f"fi_run hub: {target.address}", daemon=True)
        self.waker = threading.Thread(
            target=self._wake, name=f"fi_run hub waker: {target.address}", daemon=True
        )
        self.worker.start()
        self.waker.start()

    def put(self, kind: str, ask: Ask) -> None:
        with self.changed:
            self.todo.append((kind, ask))
            self.changed.notify()

    # --- the worker: every script call

    def _work(self) -> None:
        while True:
            with self.changed:
                while not self.todo and not self.hub.stopping:
                    now = time.monotonic()
                    due = min(
                        [self.next_renew, *(a.next_poll for a in self.asks.values() if a.state == "waiting")]
                    )
                    if due <= now:
                        break
                    self.changed.wait(due - now)
                items = list(self.todo)
                self.todo.clear()
                stopping = self.hub.stopping
            for kind, ask in items:  # each on its own: one that fails must not lose the others
                try:
                    if kind == "ask":
                        self._enqueue(ask)
                    else:
                        self._forget(ask)
                except ConnectionLost:
                    pass  # an ask that could not be sent is polled (next_poll 0) once the server answers
                except FiRunError:
                    pass  # said by the poll below, which meets it again
            try:
                if stopping:
                    for ask in list(self.asks.values()):
                        self._forget(ask)
                    self.link.close()
                    return
                self._poll()
                self._renew()
            except ConnectionLost as exc:
                self._unreachable(str(exc), loading=isinstance(exc, ServerLoading))
            except FiRunError as exc:  # credentials, a server that cannot serve: every waiting step is told
                for ask in list(self.asks.values()):
                    if ask.state in ("new", "waiting"):
                        self._fail(ask, exc)
            except Exception as exc:  # a bug: the steps get exit 70 with one line, never a silent hang
                for ask in list(self.asks.values()):
                    if ask.state in ("new", "waiting"):
                        self._fail(ask, FiRunError(f"coordinator: {type(exc).__name__}: {exc}"))

    def _script(self, op: str, *args: str | int, target: Target | None = None) -> list[object]:
        reply = self.link.script(target or self.target, op, *args)
        self.lost_at = None  # it answers
        self.warned = False
        return list(reply) if isinstance(reply, list) else [reply]

    def _enqueue(self, ask: Ask) -> None:
        if ask.state != "new":
            return
        ask.state = "waiting"
        ask.next_poll = 0.0  # if the acquire below cannot be sent: at the first poll
        self.asks[ask.seat.token] = ask
        self._acquire(ask)

    def _acquire(self, ask: Ask) -> None:
        seat = ask.seat
        reply = self._script("acquire", *seat.acquire_args(), target=seat.target)
        seat.ticket = as_int(reply[1])  # type: ignore[arg-type]
        if reply[0] == 1:
            self._granted(ask, seat.ticket)
            return
        who = reply[4]
        ask.holder = describe_who(who.decode("utf-8", "replace")) if isinstance(who, bytes) and who else ""
        if not ask.told:
            ask.told = True
            self.hub.call_soon(ask.waiting)
        hint = as_int(reply[3])  # type: ignore[arg-type]
        pause = self.hub.settings.renew_every
        if hint > 0:
            pause = min(pause, hint / 1000 + 0.005)
        ask.next_poll = time.monotonic() + pause

    def _granted(self, ask: Ask, ticket: int) -> None:
        with self.changed:
            if ask.state != "waiting":
                return
            ask.state = "held"
        ask.seat.ticket = ticket
        ask.seat.held_since = time.monotonic()
        self.hub.call_soon(lambda: ask.granted(ticket, ask.seat.token))

    def _fail(self, ask: Ask, error: FiRunError) -> None:
        ask.state = "gone"
        self.asks.pop(ask.seat.token, None)
        self.hub.call_soon(lambda: ask.failed(error))

    def _forget(self, ask: Ask) -> None:
        if ask.state == "gone":
            return
        was = ask.state
        ask.state = "gone"
        self.asks.pop(ask.seat.token, None)
        if was == "new":
            return
        try:
            self._script("release", ask.seat.token, target=ask.seat.target)
        except (ConnectionLost, FiRunError):
            pass  # its lease ends on the server within one lease

    def _poll(self) -> None:
        now = time.monotonic()
        for ask in list(self.asks.values()):
            if ask.state == "waiting" and ask.next_poll <= now:
                self._acquire(ask)

    def _renew(self) -> None:
        now = time.monotonic()
        if now < self.next_renew:
            return
        self.next_renew = now + self.hub.settings.renew_every
        held = [ask for ask in self.asks.values() if ask.state == "held"]
        by_prefix: dict[str, list[Ask]] = {}
        for ask in held:
            by_prefix.setdefault(ask.seat.target.prefix, []).append(ask)
        for asks in by_prefix.values():
            target = asks[0].seat.target
            answers = self._script("renew", *(ask.seat.token for ask in asks), target=target)
            for ask, answer in zip(asks, answers, strict=False):
                if answer != 0 or ask.seat.lost:
                    continue
                # The server lost its data (a restart without it): take the seat back while it recovers.
                back = self._script("reclaim", *ask.seat.reclaim_args(), target=target)
                if back != [1]:
                    ask.seat.lost = True
                    self.hub.reporter.warning(
                        f"jobserver: lost a hold on {target.canonical!r} (fence {ask.seat.ticket}): the "
                        "server no longer knows it, and another step may hold it now"
                    )

    def _unreachable(self, reason: str, *, loading: bool = False) -> None:
        """The server does not answer: wait for it, within a lease (a restart); past that, every waiting step
        is told (exit 69). A server loading its data is waited for as long as it takes. Held seats are
        renewed as soon as it answers again."""
        now = time.monotonic()
        if self.lost_at is None or loading:
            self.lost_at = now
        bound = self.hub.settings.lease if self.link.ever_connected else FIRST_CONTACT_SECONDS
        if now - self.lost_at >= bound:
            error = unreachable(self.target, reason, f" for {now - self.lost_at:.1f} s")
            for ask in list(self.asks.values()):
                if ask.state in ("new", "waiting"):
                    self._fail(ask, error)
            if any(ask.state == "held" for ask in self.asks.values()) and not self.warned:
                self.warned = True
                self.hub.reporter.warning(
                    f"jobserver: {error.message.split('; ')[0]}: the seats its steps hold may lapse"
                )
        with self.changed:
            if not self.todo:
                self.changed.wait(0.2)

    # --- the waker: grants made by others' scripts

    def _wake(self) -> None:
        while not self.hub.stopping:
            started = time.monotonic()
            try:
                item = self.waker_link.blpop(self.hub.wake_key, WAKE_SECONDS)
            except (ConnectionLost, RemoteUnavailableError, UsageError):
                time.sleep(0.2)  # the worker reports the server; the waker only waits for it
                continue
            if item is None:
                continue
            token, _, ticket = item.decode("ascii", "replace").partition(" ")
            ask = self.asks.get(token)
            if ask is None:
                continue
            if time.monotonic() - started < self.hub.settings.lease / 2:
                self._granted(ask, int(ticket))
            else:  # woken late (the process was stopped): the worker asks whether it still holds
                ask.next_poll = 0.0
                with self.changed:
                    self.changed.notify()
        self.waker_link.close()


class Hub:
    """Every redis:// resource of one build, for its coordinator (coordinator.py)."""

    def __init__(self, call_soon: Callable[[Callable[[], None]], None], reporter: Reporter) -> None:
        self.call_soon = call_soon  # runs a function on the coordinator's loop
        self.reporter = reporter
        self.settings = Settings.from_environ(os.environ)
        self.servers: dict[tuple[str, int, int, str], _Server] = {}
        import _socket

        self.wake_key = f"fi-run:hub:{_socket.gethostname()}:{os.getpid()}:{new_token()}"
        self.stopping = False

    def ask(
        self,
        canonical: str,
        modes: Modes,
        pid: int,
        command: str,
        granted: Callable[[int, str], None],
        failed: Callable[[FiRunError], None],
        waiting: Callable[[], None],
    ) -> Ask:
        """Queue a step's request (the coordinator's loop calls this in the order its steps asked)."""
        target = parse_url(canonical)
        seat = Seat(target, modes, who_text(pid, command, os.getpid()), self.settings, wake=self.wake_key)
        ask = Ask(seat, granted, failed, waiting)
        server = self.servers.get(target.server)
        if server is None:
            server = self.servers[target.server] = _Server(self, target)
        server.put("ask", ask)
        return ask

    def forget(self, ask: Ask) -> None:
        """The step is done with it, gave up, or is gone: out of the line, or let go."""
        server = self.servers.get(ask.seat.target.server)
        if server is not None:
            server.put("forget", ask)

    def blocker(self, ask: Ask) -> str:
        return f"{ask.holder} (elsewhere)" if ask.holder else ""

    def stop(self) -> None:
        """The build has ended: let go of everything (the workers release what is still held)."""
        self.stopping = True
        for server in self.servers.values():
            with server.changed:
                server.changed.notify()
        for server in self.servers.values():
            server.worker.join(timeout=5)
            server.waker.join(timeout=WAKE_SECONDS + 1)
