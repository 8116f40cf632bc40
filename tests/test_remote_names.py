"""redis:// resources (issue 21), without a server: how they are spelled, named and ordered, and what is
refused before anything runs. The behaviour against a real redis-server is tests/test_remote.py's."""

from __future__ import annotations

import hashlib
import sys
from typing import TYPE_CHECKING

import pytest
from fi_run_testing import only_fi_run_line, run

from fi_run.contention import redis_url, remote
from fi_run.contention.hold import CAP_VARIABLE, hold_from_grant
from fi_run.contention.lockdir import canonical_resource, is_remote, merge_requests, resource_identity
from fi_run.errors import EXIT_STATUSES, EXIT_UNAVAILABLE, EXIT_USAGE, UsageError
from fi_run.records import LockRequest

if TYPE_CHECKING:
    from pathlib import Path


@pytest.mark.parametrize(
    ("spelled", "canonical"),
    [
        ("redis://cache/seats", "redis://cache:6379/0/seats"),
        ("redis://Cache.Example.COM:7000/3/licence-seats", "redis://cache.example.com:7000/3/licence-seats"),
        ("redis://ci@10.0.0.5/lab.devices", "redis://ci@10.0.0.5:6379/0/lab.devices"),
        ("redis://[::1]:6380/2/x_y", "redis://[::1]:6380/2/x_y"),
    ],
)
def test_a_redis_url_has_one_canonical_name(spelled: str, canonical: str) -> None:
    assert redis_url.parse_url(spelled).canonical == canonical
    assert redis_url.canonical_url(canonical) == canonical  # canonical names are fixed points


@pytest.mark.parametrize(
    ("spelled", "says"),
    [
        ("redis://ci:hunter2@cache/seats", "has a password in it; put it in FI_RUN_REDIS_PASSWORD"),
        ("rediss://cache/seats", "TLS (rediss://) is not supported"),
        ("redis://cache:0/seats", "the port must be a number from 1 to 65535"),
        ("redis://cache:http/seats", "the port must be a number from 1 to 65535"),
        ("redis://cache/seats?x=1", "NAME must be 1 to 100"),
        ("redis://cache/", "NAME must be 1 to 100"),
        ("redis://cache/a/b", "(db: a number)"),
        ("redis:///seats", "no host"),
        ("redis://ca che/seats", "no host"),
        ("redis://[zz]/seats", "a bad IPv6 address"),
    ],
)
def test_a_bad_redis_url_is_one_line_that_never_repeats_a_password(spelled: str, says: str) -> None:
    with pytest.raises(UsageError) as raised:
        redis_url.parse_url(spelled, "--lock")
    assert says in raised.value.message
    assert "hunter2" not in raised.value.message


def test_the_identity_leaves_out_the_user_and_so_does_the_global_order() -> None:
    assert resource_identity("redis://zed@cache:6379/0/b") == "redis://cache:6379/0/b"
    assert resource_identity("/some/path@x/y") == "/some/path@x/y"
    requests = [
        LockRequest("redis://zed@cache/b", "exclusive"),
        LockRequest("redis://cache/a", "semaphore", 3, 2),
        LockRequest("/tmp/local-resource", "shared"),
    ]
    merged = merge_requests(requests, "/", windows=False)
    local = canonical_resource("/tmp/local-resource", "/", windows=False)  # Z:\tmp\... under Wine
    # One order on every machine: sorted by identity, paths and URLs alike; the user only in the name shown.
    assert [name for name, _modes in merged] == [
        local,
        "redis://cache:6379/0/a",
        "redis://zed@cache:6379/0/b",
    ]
    assert merged[1][1] == (("semaphore", 3, 2),)


def test_one_resource_named_with_two_users_is_refused() -> None:
    requests = [LockRequest("redis://a@cache/x", "exclusive"), LockRequest("redis://b@cache/x", "shared")]
    with pytest.raises(UsageError, match="one resource named with two users"):
        merge_requests(requests, "/", windows=False)


def test_is_remote_knows_the_scheme_in_any_case_and_nothing_else() -> None:
    assert is_remote("redis://h/x")
    assert is_remote("REDIS://h/x")
    assert is_remote("rediss://h/x")
    assert not is_remote("redis/x")
    assert not is_remote("/srv/redis://x")


def test_the_fence_variable_is_the_name_upper_cased_with_underscores() -> None:
    assert redis_url.parse_url("redis://h/licence-seats.eu").fence_variable == "FI_RUN_FENCE_LICENCE_SEATS_EU"
    # A step under the coordinator names it from the canonical name alone (hold.py, without remote.py).
    hold = hold_from_grant(["redis://ci@h:6379/0/licence-seats.eu", "17", "token"], {})
    assert hold.fences == {"FI_RUN_FENCE_LICENCE_SEATS_EU": "17"}


def test_the_script_sha_is_the_script_s() -> None:
    # EVALSHA sends this; a script edited without it would make every first call fall back to EVAL.
    assert hashlib.sha1(remote.SCRIPT.encode()).hexdigest() == remote.SCRIPT_SHA  # Redis's name for a script


def test_unreachable_has_its_own_exit_status() -> None:
    assert EXIT_UNAVAILABLE == 69
    assert EXIT_UNAVAILABLE in dict(EXIT_STATUSES)


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        (remote.LEASE_VARIABLE, "0.1", "FI_RUN_REDIS_LEASE expects seconds from 0.5 to 3600"),
        (remote.LEASE_VARIABLE, "nan", "FI_RUN_REDIS_LEASE expects seconds"),
        (CAP_VARIABLE, "-1", "FI_RUN_REDIS_MAX_HOLD expects seconds from 0"),
    ],
)
def test_bad_lease_and_cap_settings_are_refused(variable: str, value: str, says: str) -> None:
    with pytest.raises(UsageError, match=says):
        remote.Settings.from_environ({variable: value})


def test_the_settings_default_to_a_15_s_lease_and_a_4_h_cap() -> None:
    settings = remote.Settings.from_environ({})
    assert (settings.lease, settings.cap, settings.password) == (15.0, 14400.0, "")


@pytest.mark.parametrize(
    "option",
    [
        ["--lock", "redis://ci:hunter2@127.0.0.1/seats"],
        ["--shared-lock", "redis://ci:hunter2@127.0.0.1/seats"],
        ["--semaphore", "redis://ci:hunter2@127.0.0.1/seats=2"],
        ["--semaphore", "redis://ci:hunter2@127.0.0.1/seats"],  # no =N either: still not repeated
    ],
)
def test_a_password_on_the_command_line_is_exit_2_and_never_echoed(tmp_path: Path, option: list[str]) -> None:
    done = run([sys.executable, "-m", "fi_run", *option, "--stamp", "s", "--", "true"], cwd=tmp_path)
    assert (done.status, done.out) == (EXIT_USAGE, "")
    line = only_fi_run_line(done.err)
    assert "hunter2" not in done.err
    assert "FI_RUN_REDIS_PASSWORD" in line
    assert not (tmp_path / "s").exists()
