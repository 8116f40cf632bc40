"""A real redis-server for the tests of redis:// resources (issue 21): started on a loopback port the test
picks, in the test's own directory, and stopped after; restarted in place (the same port) when a test
restarts it.

It is Debian's redis-server (`.ci/run` installs it when missing). Without it these tests are skipped, saying
how to install it, so that a newcomer's clone passes its own tests; where REQUIRED_VARIABLE is set (.ci/run
sets it) they fail instead: there a missing server is a broken machine, never a silent skip.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from typing import TYPE_CHECKING

import pytest

from fi_run.contention import redis_url, remote
from fi_run.contention.resp import Connection, ConnectionLost

if TYPE_CHECKING:
    from pathlib import Path

INSTALL_HINT = (
    "redis-server is not installed: these tests need a real one (Redis 7, Debian's package). Install it "
    "with `apt-get install -y redis-server` (.ci/run does that) and run them again"
)
REQUIRED_VARIABLE = "FI_RUN_TESTS_NEED_REDIS"
START_SECONDS = 20.0


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found is None:
        if os.environ.get(REQUIRED_VARIABLE):
            pytest.fail(f"{INSTALL_HINT} ({REQUIRED_VARIABLE} is set)", pytrace=False)
        pytest.skip(INSTALL_HINT)
    return found


def free_port() -> int:
    """A loopback port nobody listens on now (the server binds it a moment later; see start's retries)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class RedisServer:
    """One redis-server on 127.0.0.1: start(), stop() (or kill()), restart(); url(NAME) names a resource."""

    def __init__(
        self, directory: Path, *, persist: bool = False, password: str = "", replica_of: int = 0
    ) -> None:
        self.directory = directory
        self.persist = persist  # an append-only file, fsynced on every write: a restart keeps everything
        self.password = password
        self.replica_of = replica_of  # the port of a primary on the loopback: a read-only replica of it
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.was_loading = False  # seen answering LOADING since the last restart
        self.directory.mkdir(parents=True, exist_ok=True)

    def url(self, name: str, db: int | None = None) -> str:
        return f"redis://127.0.0.1:{self.port}/{'' if db is None else f'{db}/'}{name}"

    def _argv(self) -> list[str]:
        argv = [
            redis_server_binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.directory),
        ]
        argv += ["--save", "", "--daemonize", "no", "--logfile", str(self.directory / "redis.log")]
        argv += ["--appendonly", "yes", "--appendfsync", "always"] if self.persist else ["--appendonly", "no"]
        if self.password:
            argv += ["--requirepass", self.password]
        if self.replica_of:
            argv += ["--replicaof", "127.0.0.1", str(self.replica_of)]
        return argv

    def start(self) -> RedisServer:
        for _ in range(5):  # another process may take the port picked between the probe and the bind
            if not self.port:
                self.port = free_port()
            self.proc = subprocess.Popen(
                self._argv(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            if self._ready():
                return self
            self.kill()
            self.port = 0
        raise AssertionError(f"redis-server did not start; see {self.directory / 'redis.log'}")

    def restart(self, *, crash: bool = False, wait: bool = True) -> None:
        """Stop it (SIGKILL when ``crash``: nothing saved beyond the append-only file or a SAVE) and start it
        again on the same port, with whatever it kept; ``wait``: until it answers PING (else only until it
        listens: it may still be loading its data)."""
        if crash:
            self.kill()
        else:
            self.stop()
        self.proc = subprocess.Popen(
            self._argv(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        if not wait:
            wait_for_port(self.port)
            self.was_loading = self.loading() is True
            return
        if not self._ready():
            raise AssertionError(f"redis-server did not start again; see {self.directory / 'redis.log'}")

    def loading(self) -> bool | None:
        """Is it loading its data (it answers LOADING)? None: it does not answer at all."""
        try:
            reply = self.call("PING")
        except ConnectionLost:
            return None
        loading = isinstance(reply, Exception) and str(reply).startswith("LOADING")
        self.was_loading = self.was_loading or loading
        return loading

    def _ready(self) -> bool:
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                return False
            try:
                reply = self.call("PING")
            except ConnectionLost:
                time.sleep(0.02)
                continue
            if reply == "PONG":
                return True
            time.sleep(0.02)
        return False

    def call(self, *args: str | int) -> object:
        """One command on a connection of its own (authenticated when the server has a password)."""
        conn = Connection("127.0.0.1", self.port, timeout=2.0)
        try:
            if self.password:
                conn.call("AUTH", self.password)
            return conn.call(*args)
        finally:
            conn.close()

    def look(self, name: str) -> remote.View:
        env = {redis_url.PASSWORD_VARIABLE: self.password} if self.password else {}
        return remote.look(self.url(name), env)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=20)
        self.proc = None

    def kill(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(OSError):
            self.proc.kill()
        self.proc.wait(timeout=20)
        self.proc = None


def wait_for_port(port: int) -> None:
    """Until something listens on the loopback's ``port``."""
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.005)
    raise AssertionError(f"nothing listens on port {port}")


def redis_environ(**extra: str) -> dict[str, str]:
    """FI_RUN_REDIS_* for the tests: a short lease, so that a dead holder is dropped quickly."""
    env = {remote.LEASE_VARIABLE: "1.5"}
    env.update(extra)
    return env


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
