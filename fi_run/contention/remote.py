"""Resources shared between machines: ``redis://[user@]host[:port][/db]/NAME`` on a Redis server (issue 21).

fi_run's lock files stop at the edge of one machine; licence seats, a lab of devices or a deployment target
are shared by several. The build engineer most likely already runs Redis, so a redis:// resource is a line
of tickets on a Redis server, kept by one Lua script (``SCRIPT``: every operation is atomic on the server):

- **First come, first served.** A request takes a ticket (``INCR``) and queues by it; the head of the line
  is granted when it fits with the holders (an exclusive holder alone, shared holders together, at most N
  seats of a semaphore, K at once), and nobody behind it is granted before it. Whoever changes the line
  (a release, a newcomer, a lease that ended) grants the next ones, in the same script, and wakes them
  (``RPUSH`` on the waiter's wake list, on which it blocks in ``BLPOP``): a hand-off costs one round trip.
- **Leases.** Holders and waiters alike are leased (FI_RUN_REDIS_LEASE, default 15 s) and renew every
  third of a lease: a step holding a seat renews from a thread while its command runs. A SIGKILLed holder
  stops renewing and is dropped when its lease ends: the waiters time their wait to the earliest lease in
  the line, so they take it up then. A hold has a cap (FI_RUN_REDIS_MAX_HOLD, default 4 h): past it the
  command is stopped as by --timeout; from a lease later on, the server renews no lease (a backstop).
- **Fencing.** The ticket is the fencing number: it only grows, grants happen in ticket order, and the
  command gets it as FI_RUN_FENCE_<NAME>. It starts from the server's clock in microseconds, so it grows
  across a restart that lost the data too.
- **Restarts.** Time is the server's (``TIME``), never a client's. For one lease after fi_run first reaches
  a server whose run_id (``INFO server``) is not the one it last saw there, nothing is granted and nobody is
  dropped: holders come back first (renewing, or re-claiming a seat the server forgot), waiters keep their
  tickets. A server still loading its data (``LOADING``) counts as away. See docs/remote.md for what that
  guarantees and what it does not (failover, clock jumps, partitions).

Keys, per resource, in the URL's database: ``fi-run:{NAME}:queue`` and ``:held`` (tokens by ticket),
``:lease`` (tokens by lease end, ms), ``:seq`` (the last ticket), ``:t:TOKEN`` (a hash: mode, seats,
weight, who, since, cap) and the wake lists ``:w:TOKEN``.

The password comes only from FI_RUN_REDIS_PASSWORD: never from argv (a URL with a password is refused) and
never written anywhere. An unreachable server is exit 69 with one line, never a fall-back to a local lock.
A step imports this module only when it names a redis:// resource (and the client, resp.py, only when it
connects); under `fi-run jobserver` the coordinator holds the connections (remote_hub.py) and the steps
only ask it.
"""

from __future__ import annotations

import os
import sys
import time

from ..errors import LockTimeoutError, RemoteUnavailableError, UsageError
from .hold import CAP_VARIABLE, DEFAULT_CAP, MAX_CAP, RemoteHold, seconds_from
from .lockdir import describe_modes, is_remote
from .redis_url import PASSWORD_VARIABLE, Target, parse_url

TYPE_CHECKING = False  # not typing's: a step with a redis:// resource imports this module
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from typing import Final

    from ..messages import Reporter
    from ..records import JSON, LockRequest, StepRecord, StepSpec
    from .lockdir import Modes
    from .locks import Acquirer
    from .resp import Connection, Reply

LEASE_VARIABLE: Final = "FI_RUN_REDIS_LEASE"
DEFAULT_LEASE: Final = 15.0  # seconds: long enough for a loaded machine, short enough to free a dead holder
MIN_LEASE: Final = 0.5
MAX_LEASE: Final = 3600.0
# A server that does not answer a step's first call within this is unreachable (exit 69); one that goes away
# later is given one lease to come back (a restart), with tries this far apart at most.
FIRST_CONTACT_SECONDS: Final = 2.0
RETRY_PAUSE_MAX: Final = 0.5
WAIT_NOTICE_SECONDS: Final = 2.0  # as locks.py: a person watching is told once what the step waits for


def mode_fields(modes: Modes) -> tuple[str, int, int]:
    """What the script stores of a request: x (exclusive), s (shared), c (counted), cs (counted and shared);
    the semaphore's N and K (1 and 1 without one)."""
    if modes[0][0] == "exclusive":
        return ("x", 1, 1)
    seats, weight = next(((n, k) for mode, n, k in modes if mode == "semaphore"), (1, 1))
    shared = any(mode == "shared" for mode, _n, _k in modes)
    counted = any(mode == "semaphore" for mode, _n, _k in modes)
    return ("cs" if counted and shared else "c" if counted else "s", seats, weight)


# --- settings from the environment


class Settings:
    """The lease, the cap on a hold and the password: from the environment, the one place they come from."""

    __slots__ = ("cap", "lease", "password")

    def __init__(self, lease: float = DEFAULT_LEASE, cap: float = DEFAULT_CAP, password: str = "") -> None:
        self.lease = lease
        self.cap = cap  # 0: none
        self.password = password

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Settings:
        return cls(
            lease=seconds_from(environ, LEASE_VARIABLE, DEFAULT_LEASE, MIN_LEASE, MAX_LEASE),
            cap=seconds_from(environ, CAP_VARIABLE, DEFAULT_CAP, 0.0, MAX_CAP),
            password=environ.get(PASSWORD_VARIABLE, ""),
        )

    @property
    def lease_ms(self) -> int:
        return int(self.lease * 1000)

    @property
    def renew_every(self) -> float:
        return self.lease / 3


# --- the server's side: one script, every operation atomic

# What fi_run sends (resp.py, Link) and what the script calls: all an ACL user for fi_run needs, on the keys
# fi-run:* (docs/remote.md shows the ACL SETUSER line; tests/test_remote.py runs it).
ACL_COMMANDS: Final = (
    *("auth", "select", "info", "ping", "evalsha", "eval", "blpop"),
    *("time", "exists", "get", "set", "incr", "del", "hset", "hget", "hmget", "rpush", "pexpire"),
    *("zadd", "zrem", "zscore", "zrank", "zrange", "zrangebyscore"),
)


def acl_setuser(user: str, password: str = "PASSWORD") -> str:  # noqa: S107 - the docs' placeholder
    """The ACL SETUSER line that makes ``user`` able to do what fi_run does, and nothing else."""
    commands = " ".join(f"+{command}" for command in ACL_COMMANDS)
    return f"ACL SETUSER {user} on >{password} resetkeys ~fi-run:* resetchannels -@all {commands}"


# KEYS[1]: the resource's key prefix. ARGV[1]: the operation; ARGV[2]: the lease (ms); ARGV[3]: the
# server's run_id (INFO server, on the caller's connection): it changes when the server restarts, and when
# another server (a promoted replica) answers at the same address. Time is the server's.
SCRIPT: Final = r"""
local prefix, op = KEYS[1], ARGV[1]
local lease, run = tonumber(ARGV[2]), ARGV[3]
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local QUEUE, HELD, LEASE, SEQ = prefix .. ':queue', prefix .. ':held', prefix .. ':lease', prefix .. ':seq'
-- For one lease after fi_run first reaches a server that started (or lost fi_run's keys, or took over from
-- another) since it last did, holders come back before anything is granted or dropped: counted from that
-- first call, not from the start, so that the time the server took to load its data does not eat it up.
local SERVER = 'fi-run:server'
local known = redis.call('HMGET', SERVER, 'run', 'since')
local since = tonumber(known[2] or '0')
if known[1] ~= run then
  since = now
  redis.call('HSET', SERVER, 'run', run, 'since', now)
end
local recover_until = since + lease + 1000
local recovering = now < recover_until

local function entry(token) return prefix .. ':t:' .. token end

local function forget(token)
  redis.call('ZREM', QUEUE, token)
  redis.call('ZREM', HELD, token)
  redis.call('ZREM', LEASE, token)
  redis.call('DEL', entry(token), prefix .. ':w:' .. token)  -- and its own wake list (a hub's is shared)
end

local function reap()
  if recovering then return end
  for _, token in ipairs(redis.call('ZRANGEBYSCORE', LEASE, '-inf', now)) do forget(token) end
end

local function raise_seq(ticket)
  local last = tonumber(redis.call('GET', SEQ) or '0')
  if last < ticket then redis.call('SET', SEQ, string.format('%.0f', ticket)) end
end

local function next_ticket()
  if redis.call('EXISTS', SEQ) == 0 then
    -- First use, or the server lost its data: start above every ticket it gave (microseconds since 1970).
    redis.call('SET', SEQ, string.format('%.0f', tonumber(clock[1]) * 1000000 + tonumber(clock[2])))
  end
  return redis.call('INCR', SEQ)
end

local function holding()
  local state = {count = 0, exclusive = false, used = 0}
  for _, token in ipairs(redis.call('ZRANGE', HELD, 0, -1)) do
    local fields = redis.call('HMGET', entry(token), 'mode', 'weight')
    state.count = state.count + 1
    if fields[1] == 'x' then state.exclusive = true end
    if fields[1] == 'c' or fields[1] == 'cs' then state.used = state.used + tonumber(fields[2] or '0') end
  end
  return state
end

local function fits(mode, seats, weight, state)
  if state.exclusive then return false end
  if mode == 'x' then return state.count == 0 end
  if mode == 'c' or mode == 'cs' then return state.used + weight <= seats end
  return true
end

-- Grant from the head of the line while the head fits; nobody is granted past a waiter that does not.
local function grant(caller)
  if recovering then return end
  local state = holding()
  while true do
    local head = redis.call('ZRANGE', QUEUE, 0, 0, 'WITHSCORES')
    if #head == 0 then return end
    local token, ticket = head[1], head[2]
    local key = entry(token)
    local f = redis.call('HMGET', key, 'mode', 'seats', 'weight', 'wake', 'cap')
    if not f[1] then
      forget(token)
    else
      local seats, weight, cap = tonumber(f[2]), tonumber(f[3]), tonumber(f[5])
      if not fits(f[1], seats, weight, state) then return end
      redis.call('ZREM', QUEUE, token)
      redis.call('ZADD', HELD, ticket, token)
      redis.call('ZADD', LEASE, now + lease, token)
      -- The step stops its command at the cap; the server refuses to renew a lease from a lease later on.
      redis.call('HSET', key, 'since', now, 'until', cap > 0 and now + cap + lease or 0)
      state.count = state.count + 1
      if f[1] == 'x' then state.exclusive = true end
      if f[1] == 'c' or f[1] == 'cs' then state.used = state.used + weight end
      if token ~= caller and f[4] and f[4] ~= '' then
        redis.call('RPUSH', f[4], token .. ' ' .. ticket)
        redis.call('PEXPIRE', f[4], 2 * lease)
      end
    end
  end
end

-- How long a waiter may sleep before the line can change without anyone waking it: a lease ending.
local function hint()
  if recovering then return recover_until - now end
  local first = redis.call('ZRANGE', LEASE, 0, 0, 'WITHSCORES')
  if #first == 0 then return -1 end
  return math.max(tonumber(first[2]) - now, 1)
end

local function first_holder()
  local h = redis.call('ZRANGE', HELD, 0, 0)
  if #h == 0 then return '' end
  return redis.call('HGET', entry(h[1]), 'who') or ''
end

if op == 'acquire' then
  -- ARGV[4] token, [5] the ticket it had (0: none), [6] mode, [7] seats, [8] weight, [9] wake list,
  -- [10] cap (ms, 0: none), [11] who. Returns {held 1|0, ticket, place in line, hint ms, first holder}.
  local token = ARGV[4]
  reap()
  local ticket = redis.call('ZSCORE', HELD, token)
  if ticket then
    redis.call('ZADD', LEASE, now + lease, token)
    return {1, ticket, 0, 0, ''}
  end
  ticket = redis.call('ZSCORE', QUEUE, token)
  if not ticket then
    -- New; or dropped (its lease ended: stopped, cut off) or forgotten (the server lost its data). It keeps
    -- its ticket only while the server recovers.
    local old = tonumber(ARGV[5])
    if old > 0 and recovering then
      ticket = old
      raise_seq(old)
    else
      ticket = next_ticket()
    end
    redis.call('ZADD', QUEUE, ticket, token)
    redis.call('HSET', entry(token), 'mode', ARGV[6], 'seats', ARGV[7], 'weight', ARGV[8], 'wake', ARGV[9],
      'cap', ARGV[10], 'who', ARGV[11], 'since', now, 'until', 0)
  end
  redis.call('ZADD', LEASE, now + lease, token)
  grant(token)
  if redis.call('ZSCORE', HELD, token) then
    redis.call('DEL', prefix .. ':w:' .. token)  -- a wake-up that crossed this call
    return {1, ticket, 0, 0, ''}
  end
  return {0, ticket, redis.call('ZRANK', QUEUE, token) or 0, hint(), first_holder()}
elseif op == 'renew' then
  -- ARGV[4...]: tokens. Each: 1 held (renewed), 2 waiting (renewed), 0 not known, -1 held past its cap.
  local out = {}
  for i = 4, #ARGV do
    local token, answer = ARGV[i], 0
    if redis.call('ZSCORE', HELD, token) then
      local cap_end = tonumber(redis.call('HGET', entry(token), 'until') or '0')
      if cap_end > 0 and now > cap_end then
        answer = -1
      else
        answer = 1
        redis.call('ZADD', LEASE, now + lease, token)
      end
    elseif redis.call('ZSCORE', QUEUE, token) then
      answer = 2
      redis.call('ZADD', LEASE, now + lease, token)
    end
    out[#out + 1] = answer
  end
  return out
elseif op == 'reclaim' then
  -- A holder the server does not know (it lost its data): its seat back, while the server recovers.
  -- ARGV[4] token, [5] ticket, [6] mode, [7] seats, [8] weight, [9] cap left (ms, 0: none), [10] who.
  local token, ticket = ARGV[4], tonumber(ARGV[5])
  if redis.call('ZSCORE', HELD, token) then return 1 end
  if not recovering then return 0 end
  redis.call('ZREM', QUEUE, token)
  redis.call('ZADD', HELD, ARGV[5], token)
  redis.call('ZADD', LEASE, now + lease, token)
  local cap = tonumber(ARGV[9])
  redis.call('HSET', entry(token), 'mode', ARGV[6], 'seats', ARGV[7], 'weight', ARGV[8], 'wake', '',
    'cap', ARGV[9], 'who', ARGV[10], 'since', now, 'until', cap > 0 and now + cap + lease or 0)
  raise_seq(ticket)
  return 1
elseif op == 'release' then
  -- ARGV[4] token ('': none): out of the line or the holders; then the next in line are granted.
  local token, was = ARGV[4], 0
  if token ~= '' then
    if redis.call('ZSCORE', HELD, token) then was = 1 end
    forget(token)
  end
  reap()
  grant('')
  return {was, hint()}
elseif op == 'look' then
  -- {ms the server still recovers, then per holder and waiter (holders first, each by ticket):
  --  {1 held | 0 waits, ticket, mode, seats, weight, who, ms since, ms of lease left}}
  local out = {recovering and recover_until - now or 0}
  for _, part in ipairs({{1, HELD}, {0, QUEUE}}) do
    local tokens = redis.call('ZRANGE', part[2], 0, -1, 'WITHSCORES')
    for i = 1, #tokens, 2 do
      local f = redis.call('HMGET', entry(tokens[i]), 'mode', 'seats', 'weight', 'who', 'since')
      local ends = tonumber(redis.call('ZSCORE', LEASE, tokens[i]) or now)
      out[#out + 1] = {part[1], tokens[i + 1], f[1] or '', tonumber(f[2] or '1'), tonumber(f[3] or '1'),
        f[4] or '', now - tonumber(f[5] or now), ends - now}
    end
  end
  return out
end
return redis.error_reply('fi_run: unknown operation ' .. tostring(op))
"""
# sha1(SCRIPT): EVALSHA sends 40 bytes instead of the script; tests/test_remote.py keeps it equal.
SCRIPT_SHA: Final = "9cc7a0b9ffbd864cf2e6c64127db266b1b3845f0"


# --- one connection, ready for the script


def new_token() -> str:
    return os.urandom(8).hex()


def who_text(pid: int, command: str, build: int = 0) -> str:
    """Who asks, as the server keeps it for people (`fi-run locks`, messages): host, pid, build, command."""
    import _socket

    return f"{_socket.gethostname()}\t{pid}\t{build or ''}\t{command[:300]}"


def describe_who(who: str) -> str:
    """'pid 12 on host-a: make seats' from who_text's record."""
    host, _, rest = who.partition("\t")
    pid, _, rest = rest.partition("\t")
    build, _, command = rest.partition("\t")
    text = f"pid {pid} on {host}" if pid else host
    if build:
        text += f" (in the build of pid {build})"
    return f"{text}: {command}" if command else text


class Link:
    """One connection to the server of a redis:// resource, ready for fi_run's script: authenticated, its
    database selected, the server's start time known."""

    def __init__(self, target: Target, settings: Settings) -> None:
        self.target = target
        self.settings = settings
        self.conn: Connection | None = None
        self.run_id = ""  # the server's (INFO server): it changes with every start
        self.ever_connected = False

    @property
    def connected(self) -> bool:
        return self.conn is not None and not self.conn.broken

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def open(self, timeout: float | None = None) -> Connection:
        """The connection, opened (again) if needed. Raises resp.ConnectionLost, UsageError (credentials),
        RemoteUnavailableError (a server that cannot serve fi_run)."""
        if self.conn is not None and not self.conn.broken:
            return self.conn
        from .resp import CONNECT_SECONDS, Connection, RedisError

        target = self.target
        conn = Connection(target.host, target.port, timeout=CONNECT_SECONDS if timeout is None else timeout)
        commands: list[list[str | int]] = []
        password = self.settings.password
        if password or target.user:
            commands.append(["AUTH", *([target.user] if target.user else []), password])
        if target.db:
            commands.append(["SELECT", target.db])
        commands.append(["INFO", "server"])
        replies = conn.pipeline(commands)
        for reply in replies:
            if isinstance(reply, RedisError) and "without any password configured" not in str(reply):
                conn.close()
                raise self.refused(reply)
        info = replies[-1]
        fields = dict(
            line.partition(":")[::2]
            for line in (info if isinstance(info, bytes) else b"").decode().splitlines()
        )
        try:
            major = int(fields.get("redis_version", "0").split(".")[0])
            run_id = fields["run_id"].strip()
        except (KeyError, ValueError):
            conn.close()
            raise RemoteUnavailableError(
                f"the server at {target.address} ({target.canonical}) does not answer INFO as Redis does "
                "(redis_version, run_id): fi_run's remote locks need Redis 7.0 or later"
            ) from None
        if major < 7:
            conn.close()
            raise RemoteUnavailableError(
                f"the server at {target.address} runs Redis {fields.get('redis_version')}: fi_run's remote "
                "locks need Redis 7.0 or later"
            )
        self.run_id = run_id
        self.conn = conn
        self.ever_connected = True
        return conn

    def refused(self, error: Exception) -> Exception:
        """An error reply as fi_run's error: credentials are the user's to fix (exit 2), anything else means
        the server cannot serve the lock now (exit 69: a read-only replica, no memory, no persistence)."""
        text = str(error)
        where = f"the Redis server at {self.target.address} ({self.target.canonical})"
        if text.startswith("LOADING"):  # it started and reads its data: not gone, not ready either
            from .resp import ServerLoading

            return ServerLoading(f"{self.target.address}: the server is loading its data")
        if text.split(" ", 1)[0] in ("WRONGPASS", "NOAUTH", "NOPERM") or "invalid password" in text:
            return UsageError(
                f"{where} refused fi_run's credentials ({text}); set {PASSWORD_VARIABLE} (and the URL's "
                "user) to what it expects"
            )
        return RemoteUnavailableError(f"{where} cannot serve the lock: {text}")

    def script(self, target: Target, op: str, *args: str | int) -> Reply:
        """Run the script's ``op`` on ``target``'s keys. Raises resp.ConnectionLost and what open() raises."""
        from .resp import RedisError

        conn = self.open()
        base = (target.prefix, op, self.settings.lease_ms, self.run_id, *args)
        reply = conn.call("EVALSHA", SCRIPT_SHA, 1, *base)
        if isinstance(reply, RedisError) and reply.code == "NOSCRIPT":
            reply = conn.call("EVAL", SCRIPT, 1, *base)
        if isinstance(reply, RedisError):
            raise self.refused(reply)
        return reply

    def blpop(self, key: str, seconds: float) -> bytes | None:
        """Wait at most ``seconds`` for an item on the list ``key`` (a wake-up)."""
        reply = self.open().call("BLPOP", key, f"{max(seconds, 0.01):.3f}", wait=seconds)
        if isinstance(reply, list) and len(reply) == 2 and isinstance(reply[1], bytes):
            return reply[1]
        if isinstance(reply, Exception):
            raise self.refused(reply)
        return None


def unreachable(target: Target, reason: str, what: str) -> RemoteUnavailableError:
    return RemoteUnavailableError(
        f"cannot reach the Redis server of {target.canonical!r} ({reason}){what}; no local lock stands in "
        "for it"
    )


def as_int(value: Reply) -> int:
    """A ticket or a count, as the script returns it (an integer, or a score as text)."""
    if isinstance(value, int):
        return value
    if isinstance(value, bytes):
        return int(float(value))
    raise ValueError(f"not a number: {value!r}")


class Seat:
    """One claim on one redis:// resource: its token in the server's line, then its hold."""

    def __init__(
        self, target: Target, modes: Modes, who: str, settings: Settings, *, wake: str | None = None
    ) -> None:
        self.target = target
        self.modes = modes
        self.mode, self.seats, self.weight = mode_fields(modes)
        self.token = new_token()
        self.wake = wake if wake is not None else f"{target.prefix}:w:{self.token}"
        self.who = who
        self.settings = settings
        self.ticket = 0  # once held: the fencing number
        self.held_since = 0.0  # monotonic, once held
        self.lost = False  # the server dropped it while it was held (its lease ended)

    def describe(self) -> str:
        return describe_modes(self.target.canonical, self.modes)

    def acquire_args(self) -> tuple[str | int, ...]:
        cap_ms = int(self.settings.cap * 1000)
        return (self.token, self.ticket, self.mode, self.seats, self.weight, self.wake, cap_ms, self.who)

    def reclaim_args(self) -> tuple[str | int, ...]:
        cap_ms = 0
        if self.settings.cap:
            cap_ms = max(int((self.settings.cap - (time.monotonic() - self.held_since)) * 1000), 1)
        return (self.token, self.ticket, self.mode, self.seats, self.weight, cap_ms, self.who)


# --- a step's own hold (no coordinator)


def _pause(attempt: int) -> float:
    return min(0.05 * 2.0**attempt, RETRY_PAUSE_MAX)


class _Waiting:
    """Takes one seat for a step: in the line, waiting for its wake-up, within the step's deadline."""

    def __init__(
        self,
        seat: Seat,
        link: Link,
        reporter: Reporter,
        deadline: float | None,
        lock_timeout: float | None,
        on_wait: Callable[[str], None] | None,
    ) -> None:
        self.seat = seat
        self.link = link
        self.reporter = reporter
        self.deadline = deadline
        self.lock_timeout = lock_timeout
        self.on_wait = on_wait
        self.holder = ""

    def _call(self, op: str, *args: str | int) -> Reply:
        """The script, retried while the server is away: for FIRST_CONTACT_SECONDS before this step ever
        reached it, then for a lease (a restart); past that, or past the deadline, exit 69. A server loading
        its data (after a restart) is waited for as long as it takes, within the deadline."""
        from .resp import ConnectionLost, ServerLoading

        link, attempt, lost_at = self.link, 0, None
        while True:
            try:
                return link.script(self.seat.target, op, *args)
            except ConnectionLost as exc:
                now = time.monotonic()
                if lost_at is None or isinstance(exc, ServerLoading):
                    lost_at = now  # a server loading its data is there: the wait for it is not bounded
                bound = link.settings.lease if link.ever_connected else FIRST_CONTACT_SECONDS
                if now - lost_at >= bound or (self.deadline is not None and now >= self.deadline):
                    raise unreachable(self.seat.target, str(exc), f" for {now - lost_at:.1f} s") from None
                time.sleep(_pause(attempt))
                attempt += 1

    def _answer(self, reply: Reply) -> tuple[bool, float]:
        """(held, how long the line may stay as it is, in seconds) from an acquire's reply."""
        if not isinstance(reply, list) or len(reply) != 5:
            raise RemoteUnavailableError(f"the Redis server of {self.seat.target.canonical!r} sent {reply!r}")
        self.seat.ticket = as_int(reply[1])
        if reply[0] == 1:
            return True, 0.0
        who = reply[4]
        self.holder = describe_who(who.decode("utf-8", "replace")) if isinstance(who, bytes) and who else ""
        hint = as_int(reply[3])
        return False, (hint / 1000 if hint > 0 else float("inf"))

    def take(self, notice_wanted: bool) -> None:
        seat, settings = self.seat, self.link.settings
        started = time.monotonic()
        held, quiet = self._answer(self._call("acquire", *seat.acquire_args()))
        if held:
            return
        if self.on_wait is not None:
            self.on_wait(seat.target.canonical)  # not free at once: lend the job slot (lending.py)
        notice_at = started + WAIT_NOTICE_SECONDS if notice_wanted else None
        while True:
            now = time.monotonic()
            if self.deadline is not None and now >= self.deadline:
                on_whom = f" (held by {self.holder})" if self.holder else ""
                raise LockTimeoutError(
                    f"gave up after {self.lock_timeout:g} s waiting for {seat.describe()}{on_whom}"
                )
            if notice_at is not None and now >= notice_at:
                notice_at = None
                self.reporter.info(
                    f"waiting for {seat.describe()}" + (f", held by {self.holder}" if self.holder else "")
                )
            # Until the first of: its lease to renew, a lease in the line to end, the deadline, the notice.
            limits = [settings.renew_every, quiet + 0.005]
            limits += [t - now for t in (self.deadline, notice_at) if t is not None]
            pause = max(min(limits), 0.01)
            woken = None
            try:
                woken = self.link.blpop(seat.wake, pause)
            except OSError:  # ConnectionLost: the acquire below reconnects, or says the server is gone
                pass
            if woken is not None and time.monotonic() - now < settings.lease / 2:
                # Granted by whoever changed the line: its lease started then, so at least half a lease is
                # left. (Woken later, after a stop, it asks: the lease may have ended since.)
                seat.ticket = int(woken.split()[1]) if len(woken.split()) == 2 else seat.ticket
                return
            held, quiet = self._answer(self._call("acquire", *seat.acquire_args()))
            if held:
                return


class Renewer:
    """Renews a step's remote holds from a thread, every third of a lease, while the step waits for its other
    locks and while its command runs (the main thread then sits in waitpid). Only a step with a redis://
    resource starts one. It reconnects when the server goes away and, while a restarted server recovers,
    claims back a seat the server forgot; it says once when a hold may have lapsed."""

    def __init__(self, settings: Settings, reporter: Reporter) -> None:
        import _thread

        self.settings = settings
        self.reporter = reporter
        self.seats: list[Seat] = []
        self.links: dict[tuple[str, int, int, str], Link] = {}
        self._stop = _thread.allocate_lock()
        self._stop.acquire()
        self._finished = _thread.allocate_lock()
        self._started = False

    def add(self, seat: Seat) -> None:
        self.seats.append(seat)  # list.append is atomic; the thread reads a copy
        if not self._started:
            import _thread

            self._started = True
            self._finished.acquire()
            _thread.start_new_thread(self._run, ())

    def stop(self) -> None:
        if not self._started:
            return
        self._stop.release()
        self._finished.acquire(timeout=10.0)  # the thread's last renewal, at most a bounded call
        for link in self.links.values():
            link.close()

    def _run(self) -> None:
        try:
            last_ok: dict[str, float] = {}
            warned: set[str] = set()
            while not self._stop.acquire(timeout=self.settings.renew_every):
                for seat in list(self.seats):
                    if seat.lost:
                        continue
                    answer = self._renew(seat)
                    now = time.monotonic()
                    if answer == 1:
                        last_ok[seat.token] = now
                        continue
                    self._trouble(seat, answer, now - last_ok.get(seat.token, seat.held_since), warned)
        except BaseException as exc:  # never a traceback from a thread; say it once
            self.reporter.warning(f"renewing the remote leases stopped: {type(exc).__name__}: {exc}")
        finally:
            self._finished.release()

    def _renew(self, seat: Seat) -> int | None:
        """1 renewed, 0 forgotten and not taken back, -1 past its cap, None unreachable."""
        from .resp import ConnectionLost

        target = seat.target
        link = self.links.get(target.server)
        if link is None:
            link = self.links[target.server] = Link(target, self.settings)
        try:
            reply = link.script(target, "renew", seat.token)
            answer = as_int(reply[0]) if isinstance(reply, list) and reply else None
            if answer == 0:  # the server lost its data (a restart without it): take the seat back, if in time
                answer = as_int(link.script(target, "reclaim", *seat.reclaim_args()))
            return answer
        except (ConnectionLost, RemoteUnavailableError, UsageError, ValueError):
            return None

    def _trouble(self, seat: Seat, answer: int | None, since_ok: float, warned: set[str]) -> None:
        name = seat.target.canonical
        if answer == 0:
            seat.lost = True
            self.reporter.warning(
                f"lost the hold on {name!r}: the server no longer knows it (its lease ended, or a restarted "
                "server lost its data before this step came back); another step may hold it now (this one's "
                f"fence was {seat.ticket})"
            )
        elif answer == -1 and seat.token not in warned:
            warned.add(seat.token)
            self.reporter.warning(
                f"{name!r} has been held past its cap ({CAP_VARIABLE}): its lease is not renewed"
            )
        elif answer is None and since_ok >= self.settings.lease and seat.token not in warned:
            warned.add(seat.token)
            self.reporter.warning(
                f"could not renew the lease on {name!r} for {since_ok:.0f} s (the server cannot be reached): "
                f"another step may be granted it while this command runs (this one's fence is {seat.ticket})"
            )


def _release(seat: Seat, links: dict[tuple[str, int, int, str], Link], reporter: Reporter) -> None:
    """Out of the line, or let go: one try, on a connection that works (the waiting one may be mid-call)."""
    from .resp import ConnectionLost

    link = links.get(seat.target.server)
    try:
        if link is None or not link.connected:
            link = Link(seat.target, seat.settings)
            link.open(timeout=1.0)
            links[seat.target.server] = link
        link.script(seat.target, "release", seat.token)
    except (ConnectionLost, RemoteUnavailableError, UsageError) as exc:
        if seat.ticket and not seat.lost:
            reporter.warning(
                f"could not let go of {seat.target.canonical!r} ({exc}): the server frees it when its lease "
                f"ends (within {seat.settings.lease:g} s)"
            )


def held(
    spec: StepSpec,
    reporter: Reporter,
    record: StepRecord,
    on_wait: Callable[[str], None] | None = None,
    *,
    deadline: float | None = None,
    requests: Sequence[LockRequest] | None = None,
) -> _Held:
    """The step's locks, local and remote, in the one global order (lockdir.merge_requests): a context
    manager like locks.held_locks, for a step that names a redis:// resource and has no coordinator. Its
    value is the RemoteHold. A path resource (and --mem's budget) is taken through the lock directory
    (locks.py, imported only then). ``requests``: as locks.held_locks (spec.locks and --mem's share)."""
    return _Held(spec, reporter, record, on_wait, deadline, spec.locks if requests is None else requests)


class _Held:
    def __init__(
        self,
        spec: StepSpec,
        reporter: Reporter,
        record: StepRecord,
        on_wait: Callable[[str], None] | None,
        deadline: float | None,
        requests: Sequence[LockRequest],
    ) -> None:
        self.spec = spec
        self.requests = requests
        self.reporter = reporter
        self.record = record
        self.on_wait = on_wait
        if deadline is None and spec.lock_timeout is not None:
            deadline = time.monotonic() + spec.lock_timeout
        self.deadline = deadline
        self.settings = Settings.from_environ(os.environ)
        self.links: dict[tuple[str, int, int, str], Link] = {}
        self.seats: list[Seat] = []
        self.acquirer: Acquirer | None = None
        self.renewer: Renewer | None = None
        self.acquired: list[tuple[dict[str, JSON], float]] = []

    def _local(self) -> Acquirer:
        if self.acquirer is None:
            from .lockdir import prepare_lock_dir
            from .locks import Acquirer

            self.acquirer = Acquirer(
                self.spec,
                self.reporter,
                prepare_lock_dir(self.spec),
                on_wait=self.on_wait,
                deadline=self.deadline,
            )
        return self.acquirer

    def __enter__(self) -> RemoteHold:
        from .lockdir import merge_requests, resource_dir_name

        spec, record = self.spec, self.record
        merged = merge_requests(self.requests, spec.start_dir, windows=sys.platform == "win32")
        who = who_text(os.getpid(), " ".join(spec.command))
        notice = self.reporter.verbosity >= 2 or _stderr_is_tty()
        fences: dict[str, str] = {}
        names: list[str] = []
        try:
            for canonical, modes in merged:
                wait_start = record.offset()
                seat = None
                try:
                    if is_remote(canonical):
                        target = parse_url(canonical)
                        seat = Seat(target, modes, who, self.settings)
                        link = self.links.get(target.server)
                        if link is None:
                            link = self.links[target.server] = Link(target, self.settings)
                        self.seats.append(seat)
                        _Waiting(
                            seat, link, self.reporter, self.deadline, spec.lock_timeout, self.on_wait
                        ).take(notice)
                        seat.held_since = time.monotonic()
                        if self.renewer is None:
                            self.renewer = Renewer(self.settings, self.reporter)
                        self.renewer.add(seat)
                        variable = target.fence_variable
                        if variable in fences:
                            raise UsageError(
                                f"two redis:// resources of this step are both named {target.name!r}: "
                                f"{variable} would hold only one fence; rename one"
                            )
                        fences[variable] = str(seat.ticket)
                        names.append(canonical)
                    else:
                        from .locks import Plan

                        acquirer = self._local()
                        directory = os.path.join(acquirer.lock_dir.path, resource_dir_name(canonical))
                        acquirer.acquire(Plan(canonical, directory, modes))
                except BaseException:  # a lock timeout or an interrupt: the wait still goes into the log
                    for mode, seats, weight in modes:
                        entry = record.add_lock(canonical, mode, seats, wait_start, weight)
                        if seat is not None:
                            entry["host"] = _hostname()
                    raise
                held_since = record.offset()
                for mode, seats, weight in modes:
                    entry = record.add_lock(canonical, mode, seats, wait_start, weight)
                    if seat is not None:
                        entry["host"] = _hostname()
                        entry["fence"] = seat.ticket
                    self.acquired.append((entry, held_since))
        except BaseException:
            self._let_go()
            raise
        waited = record.offset()
        self.reporter.debug(
            f"locks held after {waited:.3f} s: "
            + ", ".join(
                describe_modes(c, m)
                + (f" (fence {fences.get(parse_url(c).fence_variable)})" if is_remote(c) else "")
                for c, m in merged
            )
        )
        return RemoteHold(fences, self.settings.cap, names)

    def __exit__(self, *exc: object) -> None:
        released = self.record.offset()
        for entry, held_since in self.acquired:
            entry["held"] = round(released - held_since, 6)
        self._let_go()

    def _let_go(self) -> None:
        if self.renewer is not None:
            self.renewer.stop()
            self.renewer = None
        seats, self.seats = self.seats, []
        for seat in reversed(seats):
            _release(seat, self.links, self.reporter)
        for link in self.links.values():
            link.close()
        if self.acquirer is not None:
            self.acquirer.release_all(lambda: None)


_HOSTNAME: list[str] = []


def _hostname() -> str:
    if not _HOSTNAME:
        import _socket

        _HOSTNAME.append(_socket.gethostname())
    return _HOSTNAME[0]


def _stderr_is_tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


# --- what the server says about a resource (`fi-run locks`)


class Entry:
    """One holder or waiter of a redis:// resource, as the server keeps it."""

    __slots__ = (
        "build",
        "command",
        "fence",
        "host",
        "lease_left",
        "mode",
        "pid",
        "seats",
        "seconds",
        "state",
        "weight",
    )

    def __init__(self, fields: list[Reply]) -> None:
        state, ticket, mode, seats, weight, who, since_ms, lease_ms = fields
        self.state = "holds" if state == 1 else "waits"
        self.fence = as_int(ticket)
        self.mode = {"x": "exclusive", "s": "shared", "c": "semaphore", "cs": "semaphore+shared"}.get(
            mode.decode() if isinstance(mode, bytes) else "", "?"
        )
        self.seats = as_int(seats)
        self.weight = as_int(weight)
        text = who.decode("utf-8", "replace") if isinstance(who, bytes) else ""
        host, _, rest = text.partition("\t")
        pid, _, rest = rest.partition("\t")
        build, _, command = rest.partition("\t")
        self.host = host
        self.pid = int(pid) if pid.isdigit() else None
        self.build = int(build) if build.isdigit() else None
        self.command = command
        self.seconds = as_int(since_ms) / 1000
        self.lease_left = as_int(lease_ms) / 1000

    def as_json(self) -> dict[str, JSON]:
        return {name: getattr(self, name) for name in self.__slots__}


class View:
    """Who holds a redis:// resource and who waits for it, in the order they will be served."""

    def __init__(self, resource: str, recovering: float, holders: list[Entry], waiters: list[Entry]) -> None:
        self.resource = resource
        self.recovering = recovering  # seconds the server still gives holders to come back after a restart
        self.holders = holders
        self.waiters = waiters

    def as_json(self) -> dict[str, JSON]:
        return {
            "resource": self.resource,
            "recovering": self.recovering,
            "holders": [e.as_json() for e in self.holders],
            "waiters": [e.as_json() for e in self.waiters],
        }


def look(resource: str, environ: Mapping[str, str] | None = None) -> View:
    """What the server says about ``resource`` (a redis:// URL) now: for `fi-run locks` (issue 21, item 4).
    Raises UsageError (a bad URL, credentials) and RemoteUnavailableError (exit 69)."""
    from .resp import ConnectionLost

    target = parse_url(resource)
    link = Link(target, Settings.from_environ(os.environ if environ is None else environ))
    try:
        reply = link.script(target, "look")
    except ConnectionLost as exc:
        raise unreachable(target, str(exc), "") from None
    finally:
        link.close()
    if not isinstance(reply, list) or not reply:
        raise RemoteUnavailableError(f"the Redis server of {target.canonical!r} sent {reply!r}")
    entries = [Entry(item) for item in reply[1:] if isinstance(item, list) and len(item) == 8]
    entries.sort(key=lambda e: e.fence)
    return View(
        target.canonical,
        as_int(reply[0]) / 1000,
        [e for e in entries if e.state == "holds"],
        [e for e in entries if e.state == "waits"],
    )


def release_seats(seats: Sequence[Seat], reporter: Reporter) -> None:
    """Let go of ``seats`` (last first), each on a connection of its own server."""
    links: dict[tuple[str, int, int, str], Link] = {}
    for seat in reversed(seats):
        _release(seat, links, reporter)
    for link in links.values():
        link.close()
