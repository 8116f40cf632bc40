"""A step lending its ninja job slot to a GNU make style jobserver while it waits.

Ninja >= 1.13, GNU make >= 4.4 and cargo take one token from a jobserver for every job beyond their first
and give it back when the job ends; ``fi-run jobserver`` (tools/jobserver.py) creates such a jobserver and
marks it as fi_run's (``MARKER``). A step that must wait (for a lock that is not free at once, or during a
retry back-off) gives one token back, so that ninja can start another job meanwhile, and takes one again
when it goes on. It never holds a token while it waits for a lock: every token is then either in the pool
or held by a command that runs, so lending cannot deadlock. Which of two ways a step takes its token back
is ``REPAY_AFTER``: see there, and docs/jobserver.md for the measurements.

A step killed with SIGKILL after lending cannot take its token back: the pool then holds one token too
many (ninja still returns the step's own token when the step ends). The server reports such a surplus, and
a shortfall, when the command has exited. Under the build's lock coordinator (``fi-run jobserver`` on
POSIX) a step waiting for a lock does not lend itself: the coordinator, in the jobserver's own process,
lends and takes back for it, so a killed step leaks nothing (``Lender.lent_for_us``). A retry's back-off
still lends here.

Token I/O on POSIX is non-blocking reads and writes of one byte, with select() for the waits, in slices so
that a signal is seen within a fraction of a second. Windows: WaitForSingleObject / ReleaseSemaphore, also
in slices; those functions are kept small, type-checked with ``mypy --platform win32`` and run under Wine by
CI's Windows stage (docs/jobserver.md says what ran where). The server uses the same token I/O.
"""

from __future__ import annotations

import os
import sys
import time

TYPE_CHECKING = False  # saves nothing measurable: only a step under a jobserver imports this module
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Final

    from ..messages import Reporter
    from ..records import JSON, Signals, StepRecord


# The variable ``fi-run jobserver`` sets to its own --jobserver-auth value: this jobserver is fi_run's and
# the command does use it (a ninja given -j would not), so a step's --lend-slot auto knows it may lend.
MARKER: Final = "FI_RUN_JOBSERVER"
TOKEN: Final = b"+"  # GNU make's token byte; ninja writes back whatever byte it read

# How a step that lent its slot goes on once its locks are held (measured in benchmarks/README.md):
# - take a token before the command, waiting if the pool is empty: a lock holder then waits (up to seconds
#   on the seed build) for some other job to end, while every other step queued on its lock waits too;
# - REPAY_AFTER: take one if the pool has one; if not, run at once on credit and take the token after the
#   command, once the locks are released. At most one command per lock holder runs beyond -j, and only for
#   as long as the pool stays empty. FI_RUN_LEND_REPAY=0 selects the first way (for measurements).
REPAY_AFTER: Final = True
# Waits for a token, in seconds: after the command (repaying), and when the step was interrupted or failed.
REPAY_BOUND_SECONDS: Final = 60.0
INTERRUPTED_BOUND_SECONDS: Final = 5.0
_SLICE: Final = 0.25  # a wait for a token looks at signals this often
_RACE_PAUSE: Final = 0.01  # the least a wait for a token sleeps when the fifo was ready but empty


def jobserver_auth(makeflags: str) -> str | None:
    """The ``--jobserver-auth`` value a client would use (the last one); None if none or a dry run (-n)."""
    words = makeflags.split()
    if words and not words[0].startswith("-") and "n" in words[0]:
        return None  # make -n: GNU make's rule for clients is to stay out of it
    auth = None
    for word in words:
        if word.startswith("--jobserver-auth="):
            auth = word.removeprefix("--jobserver-auth=")
    return auth or None


def lending_auth(policy: str, environ: Mapping[str, str], *, windows: bool) -> str | None:
    """The jobserver a step lends its slot to, or None.

    auto: only one that ``fi-run jobserver`` created and marked for this very MAKEFLAGS (an outer make,
    or a make between fi-run jobserver and the step, has its own jobserver and does not know of lending).
    always: any fifo (POSIX) or semaphore (Windows) jobserver; never the pipe style ``R,W``, whose
    descriptors a step does not have.
    """
    if policy == "never":
        return None
    auth = jobserver_auth(environ.get("MAKEFLAGS", ""))
    if auth is None:
        return None
    if windows:
        if "," in auth or auth.startswith("fifo:"):
            return None
    elif not auth.startswith("fifo:"):
        return None
    if policy == "always":
        return auth
    return auth if environ.get(MARKER) == auth else None


# --- POSIX token I/O

if sys.platform != "win32":

    def _fifo_open(path: str) -> int:
        """Open the jobserver's fifo; anything that is not a fifo is refused with OSError, never written to.

        MAKEFLAGS names the path, and ``--lend-slot always`` takes any ``fifo:PATH`` in it (issue 22): a
        token written to a regular file overwrote its first byte, and /dev/null, which reads as end-of-file
        at once, made the repay loop spin for its whole bound. Ninja refuses such a path too. The type is
        checked before opening (opening a device can do something of its own) and again on the descriptor
        (the name may have been replaced in between). O_RDWR: opening never blocks and reads never see
        end-of-file, whoever else has the fifo open.
        """
        import stat  # free: os imported it already

        named = os.stat(path)
        if not stat.S_ISFIFO(named.st_mode):
            raise OSError(f"{path!r} is not a fifo ({_file_kind(named.st_mode)})")
        flags = os.O_RDWR | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(path, flags)
        try:
            opened = os.fstat(fd)
            same = (opened.st_dev, opened.st_ino) == (named.st_dev, named.st_ino)
            if not (same and stat.S_ISFIFO(opened.st_mode)):
                raise OSError(f"{path!r} is not a fifo (it was replaced while being opened)")
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _file_kind(mode: int) -> str:
        import stat

        kinds = (
            (stat.S_ISREG, "a regular file"),
            (stat.S_ISDIR, "a directory"),
            (stat.S_ISCHR, "a character device"),
            (stat.S_ISBLK, "a block device"),
            (stat.S_ISSOCK, "a socket"),
        )
        return next((kind for test, kind in kinds if test(mode)), "another kind of file")

    def _fifo_give(fd: int) -> None:
        os.write(fd, TOKEN)

    def _fifo_try_take(fd: int) -> bool:
        try:
            data = os.read(fd, 1)
        except BlockingIOError:
            return False
        if not data:  # a fifo this process holds open for writing never reads as end-of-file
            raise OSError("the jobserver's fifo reads as end-of-file")
        return True

    def _fifo_take(fd: int, seconds: float) -> bool:
        if _fifo_try_take(fd):
            return True
        if seconds > 0:
            import select

            wait = min(seconds, _SLICE)
            ready, _, _ = select.select([fd], [], [], wait)
            if _fifo_try_take(fd):
                return True
            if ready:
                # Readable, yet no token: another client took it first. Pause all the same, so that no
                # caller's loop can spin on a descriptor that is always ready (issue 22).
                time.sleep(min(wait, _RACE_PAUSE))
        return False


# --- Windows token I/O (a named semaphore); type-checked with --platform win32; run under Wine (five
# ninja.exe builds by hand, and CI's Windows stage without ninja: docs/jobserver.md)

if sys.platform == "win32":  # pragma: no cover - Windows only
    import ctypes
    from ctypes import wintypes

    _SEMAPHORE_MODIFY_STATE: Final = 0x0002
    _SYNCHRONIZE: Final = 0x00100000
    _WAIT_OBJECT_0: Final = 0
    # Lending releases a token ninja never took (from its first, implicit slot): the maximum count must
    # leave room above the initial one, or ReleaseSemaphore fails with ERROR_TOO_MANY_POSTS.
    _MAXIMUM_COUNT: Final = 0x7FFFFFFF

    def _kernel32() -> ctypes.WinDLL:
        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
        kernel32.CreateSemaphoreW.restype = wintypes.HANDLE
        kernel32.CreateSemaphoreW.argtypes = [wintypes.LPVOID, wintypes.LONG, wintypes.LONG, wintypes.LPCWSTR]
        kernel32.OpenSemaphoreW.restype = wintypes.HANDLE
        kernel32.OpenSemaphoreW.argtypes = [wintypes.DWORD, wintypes.BOOL, wintypes.LPCWSTR]
        kernel32.ReleaseSemaphore.restype = wintypes.BOOL
        kernel32.ReleaseSemaphore.argtypes = [wintypes.HANDLE, wintypes.LONG, wintypes.LPVOID]
        kernel32.WaitForSingleObject.restype = wintypes.DWORD
        kernel32.WaitForSingleObject.argtypes = [wintypes.HANDLE, wintypes.DWORD]
        kernel32.CloseHandle.argtypes = [wintypes.HANDLE]
        return kernel32

    def _semaphore_create(name: str, tokens: int) -> int:
        handle = _kernel32().CreateSemaphoreW(None, tokens, _MAXIMUM_COUNT, name)
        if not handle:
            raise OSError(ctypes.get_last_error(), f"CreateSemaphoreW({name!r}) failed")
        return int(handle)

    def _semaphore_open(name: str) -> int:
        handle = _kernel32().OpenSemaphoreW(_SEMAPHORE_MODIFY_STATE | _SYNCHRONIZE, False, name)
        if not handle:
            raise OSError(ctypes.get_last_error(), f"OpenSemaphoreW({name!r}) failed")
        return int(handle)

    def _semaphore_give(handle: int) -> None:
        if not _kernel32().ReleaseSemaphore(handle, 1, None):
            raise OSError(ctypes.get_last_error(), "ReleaseSemaphore failed")

    def _semaphore_take(handle: int, seconds: float) -> bool:
        return int(_kernel32().WaitForSingleObject(handle, int(seconds * 1000))) == _WAIT_OBJECT_0

    def _semaphore_close(handle: int) -> None:
        _kernel32().CloseHandle(handle)


class _Tokens:
    """One open handle on a jobserver: give a token, take one (waiting in slices), close."""

    def __init__(self, auth: str) -> None:
        if sys.platform == "win32":  # pragma: no cover - Windows only
            self.handle = _semaphore_open(auth)
        else:
            self.handle = _fifo_open(auth.removeprefix("fifo:"))

    def give(self) -> None:
        if sys.platform == "win32":  # pragma: no cover - Windows only
            _semaphore_give(self.handle)
        else:
            _fifo_give(self.handle)

    def take(self, seconds: float) -> bool:
        """Take one token, waiting at most ``seconds`` (0: only if one is there now)."""
        if sys.platform == "win32":  # pragma: no cover - Windows only
            return _semaphore_take(self.handle, min(seconds, _SLICE))
        else:  # noqa: RET505 - mypy skips a platform's branch only in an if/else
            return _fifo_take(self.handle, seconds)

    def close(self) -> None:
        if sys.platform == "win32":  # pragma: no cover - Windows only
            _semaphore_close(self.handle)
        else:
            os.close(self.handle)


class Lender:
    """A step's loan of its job slot: lend while it waits, take the slot back before (or repay after) the
    command. Writes each loan into the step's log record."""

    def __init__(
        self, auth: str, reporter: Reporter, record: StepRecord, interrupts: Signals, *, repay_after: bool
    ) -> None:
        self.auth = auth
        self.reporter = reporter
        self.record = record
        self.interrupts = interrupts
        self.repay_after = repay_after
        self._tokens: _Tokens | None = None
        self._loan: dict[str, JSON] | None = None  # the open loan's log entry: lent, not yet taken back
        self._credit: dict[str, JSON] | None = None  # the loan whose token is still to be repaid
        self.owed = 0  # tokens this step must still take: 1 while lent, or while running on credit
        self.broken = False

    # Token I/O and the bookkeeping that goes with it run with signals recorded, not raised (the step is
    # always idle here: waiting for a lock or backing off): a signal between writing a token and noting the
    # loan would otherwise lose track of it. The signal is raised right after, by interrupts.idle().

    def lend(self, resource: str | None = None) -> None:
        """Give one token back (once: a step holds at most one slot). A jobserver that cannot be used
        means the step simply keeps its slot (one warning)."""
        if self.owed or self.broken:
            return
        self.interrupts.spawning()
        try:
            try:
                if self._tokens is None:
                    self._tokens = _Tokens(self.auth)
                self._tokens.give()
            except OSError as exc:
                self.broken = True
                self.reporter.warning(f"cannot lend the job slot to the jobserver {self.auth!r}: {exc}")
                return
            self.owed = 1
            self._loan = self.record.add_loan(resource)
        finally:
            self.interrupts.idle()

    def lent_for_us(self, resource: str) -> None:
        """The build's coordinator lent the slot for this step (it holds the jobserver's pool itself:
        contention/coordinator.py) and takes it back: the step owes nothing; its log shows the loan."""
        if self._loan is None and not self.owed:
            self._loan = self.record.add_loan(resource)

    def back_for_us(self, *, credit: bool) -> None:
        """The coordinator's loan for this step ended: the token taken back from the pool, or (credit) to be
        taken back by the coordinator from the next job that ends, while this step's command runs."""
        if self._loan is not None and not self.owed:
            self.record.end_loan(self._loan, credit=credit)
            self._loan = None

    def take_back(self) -> None:
        """Before the command: take a token back. REPAY_AFTER: only if one is there now, else run on credit
        and repay in settle(); otherwise wait for one, at most REPAY_BOUND_SECONDS, and stop waiting at a
        signal (the locks are held: the step must end)."""
        if not self.owed or self._tokens is None or self._loan is None:
            return
        self.interrupts.spawning()
        try:
            if self.repay_after:
                self._close_loan(credit=not self._tokens.take(0))  # credit: still owed, settle() repays
                return
            deadline = time.monotonic() + REPAY_BOUND_SECONDS
            while self.interrupts.signum is None:
                if self._tokens.take(deadline - time.monotonic()):
                    self._close_loan(credit=False)
                    return
                if time.monotonic() >= deadline:
                    self._give_up(REPAY_BOUND_SECONDS)
                    return
        except OSError as exc:
            self._broken_while_owed(exc)
        finally:
            self.interrupts.idle()  # raises Interrupted if a signal came: settle() then repays, bounded

    def sleep(self, seconds: float) -> None:
        """A retry back-off: lend for its length, then take the slot back as before a command."""
        self.lend(None)
        time.sleep(seconds)
        self.take_back()

    def _close_loan(self, *, credit: bool) -> None:
        assert self._loan is not None
        self.record.end_loan(self._loan, credit=credit)
        self._credit = self._loan if credit else None
        self._loan = None
        if not credit:
            self.owed = 0

    def _give_up(self, seconds: float) -> None:
        self.reporter.warning(
            f"could not take the job slot back from the jobserver within {seconds:g} s; "
            "the build may run one job more than its -j from now on"
        )
        self._lose()

    def _broken_while_owed(self, exc: OSError) -> None:
        """The jobserver failed while a token was owed: stop using it (one warning); the token is lost."""
        self.reporter.warning(f"cannot take the job slot back from the jobserver {self.auth!r}: {exc}")
        self.broken = True
        self._lose()

    def _lose(self) -> None:
        """Note the token owed as lost and owe nothing more."""
        if self._loan is not None:
            self.record.end_loan(self._loan, credit=False, lost=True)
            self._loan = None
        elif self._credit is not None:
            self._credit["lost"] = True  # ran on credit and never repaid
        self.owed = 0

    def settle(self) -> None:
        """After the command and the locks: take what is still owed, within a bound. Never raises.

        Signals are only recorded from here on (the step is ending anyway); one that arrives shortens the
        bound to INTERRUPTED_BOUND_SECONDS: ninja, stopping too, returns its tokens within that.
        """
        try:
            if not self.owed or self._tokens is None:
                return
            interrupts = self.interrupts
            interrupts.spawning()  # record signals, do not raise: this runs in a finally block
            start = time.monotonic()
            while True:
                bound = INTERRUPTED_BOUND_SECONDS if interrupts.signum is not None else REPAY_BOUND_SECONDS
                remaining = start + bound - time.monotonic()
                if remaining <= 0:
                    self._give_up(bound)
                    return
                try:
                    if self._tokens.take(remaining):
                        break
                except OSError as exc:
                    self._broken_while_owed(exc)
                    return
            if self._loan is not None:
                self._close_loan(credit=False)
            self.owed = 0
        finally:
            if self._tokens is not None:
                self._tokens.close()
                self._tokens = None


def lender_for(
    policy: str, environ: Mapping[str, str], reporter: Reporter, record: StepRecord, interrupts: Signals
) -> Lender | None:
    """The step's lender, or None if it must not lend (see lending_auth)."""
    auth = lending_auth(policy, environ, windows=sys.platform == "win32")
    if auth is None:
        return None
    repay_after = environ.get("FI_RUN_LEND_REPAY", "1" if REPAY_AFTER else "0") != "0"
    return Lender(auth, reporter, record, interrupts, repay_after=repay_after)
