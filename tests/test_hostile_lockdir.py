"""Hostile lock directories (issue 12): planted symlinks, directories owned by others, several users.

A shared --lock-dir is writable by everyone who uses it, so anyone can plant a name in it before fi_run
comes. Nothing fi_run opens there may be written through a symlink, and a victim file is left unchanged.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest
from fi_run_testing import HANG_TIMEOUT, run_fi_run

from fi_run.contention.lockdir import PROBE_MARKER, canonical_resource, resource_dir_name

if sys.platform == "win32":
    pytest.skip("POSIX permissions and symlinks", allow_module_level=True)

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

VICTIM_TEXT = "precious data that belongs to someone else\n" * 20


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    path = tmp_path / "victim" / "file"
    path.parent.mkdir()
    path.write_text(VICTIM_TEXT, encoding="utf-8")
    return path


def _resource_dir(lock_dir: Path, resource: str, start: Path) -> Path:
    return lock_dir / resource_dir_name(canonical_resource(resource, str(start), windows=False))


def _lock(tmp_path: Path, lock_dir: Path, *extra: str) -> tuple[int, str]:
    ran = run_fi_run(
        "module", ["--lock-dir", str(lock_dir), "--lock", "R", *extra, "--", "true"], cwd=tmp_path
    )
    assert "Traceback" not in ran.err
    return ran.status, ran.err


@pytest.mark.parametrize("name", ["gate.lock.holder", "gate.lock"])
def test_a_planted_symlink_in_a_resource_directory_is_never_written_through(
    tmp_path: Path, victim: Path, name: str
) -> None:
    lock_dir = tmp_path / "locks"
    resource_dir = _resource_dir(lock_dir, "R", tmp_path)
    resource_dir.mkdir(parents=True)
    (resource_dir / name).symlink_to(victim)
    status, err = _lock(tmp_path, lock_dir)
    assert victim.read_text(encoding="utf-8") == VICTIM_TEXT  # before the fix: its first 512 bytes replaced
    if name == "gate.lock":  # the lock itself cannot be taken: one clear line, exit 2
        assert status == 2
        assert err.startswith("fi_run: cannot lock "), err
        assert "symlink" in err
    else:  # the holder record is only for messages: skipped, the step runs
        assert status == 0, err


def test_a_dangling_marker_symlink_is_refused_and_nothing_is_created_where_it_points(
    tmp_path: Path,
) -> None:
    lock_dir = tmp_path / "locks"
    lock_dir.mkdir()
    target = tmp_path / "elsewhere" / "created-by-fi_run"
    target.parent.mkdir()
    (lock_dir / PROBE_MARKER).symlink_to(target)
    status, err = _lock(tmp_path, lock_dir)
    assert status == 2
    assert PROBE_MARKER in err, err
    assert "symlink" in err
    assert not target.exists()  # before the fix fi_run created it


@pytest.mark.parametrize("what", ["resource", "waiters"])
def test_a_symlinked_resource_or_waiters_directory_is_refused(tmp_path: Path, what: str) -> None:
    lock_dir = tmp_path / "locks"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    resource_dir = _resource_dir(lock_dir, "R", tmp_path)
    if what == "resource":
        lock_dir.mkdir()
        resource_dir.symlink_to(elsewhere, target_is_directory=True)
    else:
        resource_dir.mkdir(parents=True)
        (resource_dir / "waiters").symlink_to(elsewhere, target_is_directory=True)
    status, err = _lock(tmp_path, lock_dir)
    assert status == 2
    assert "not a directory" in err, err
    assert list(elsewhere.iterdir()) == []


needs_root = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root")


@needs_root
def test_a_resource_directory_owned_by_someone_else_is_refused(tmp_path: Path) -> None:
    lock_dir = tmp_path / "locks"
    resource_dir = _resource_dir(lock_dir, "R", tmp_path)
    resource_dir.mkdir(parents=True)
    os.chown(resource_dir, 4242, 4242)
    status, err = _lock(tmp_path, lock_dir)
    assert status == 2
    assert "belongs to uid 4242" in err, err


# --- 9. several users sharing one lock directory (numeric uids through setpriv, as root)


def _public_python() -> str:
    """An interpreter other users can run (this venv's may sit under root's private home)."""
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        done = subprocess.run(
            ["setpriv", "--reuid=5009", "--regid=5009", "--clear-groups", candidate, "-c",
             "import sys; assert sys.version_info >= (3, 10)"],
            capture_output=True, check=False, timeout=HANG_TIMEOUT,
        )  # fmt: skip
        if done.returncode == 0:
            return candidate
    pytest.skip("no Python >= 3.10 that another user can run")


def _as_user(uid: int, argv: list[str], cwd: Path, umask: str = "022") -> subprocess.CompletedProcess[str]:
    """Run ``fi_run argv`` as ``uid`` with ``umask``: setpriv changes the ids, sh sets the umask."""
    import filelock

    import fi_run

    env = {k: v for k, v in os.environ.items() if not k.startswith("FI_RUN_")}
    env["HOME"] = str(cwd)
    # fi_run and filelock as this checkout has them, copied where the other users can read them: the checkout
    # itself may sit in a private directory (a home of mode 0700, mktemp -d), which they cannot enter.
    public = cwd / "public-packages"
    for module in (fi_run, filelock):
        package = os.path.dirname(module.__file__ or "")
        target = public / os.path.basename(package)
        if not target.exists():
            shutil.copytree(package, target, ignore=shutil.ignore_patterns("__pycache__"))
    for path in [public, *(p for p in public.rglob("*"))]:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    env["PYTHONPATH"] = str(public)
    argv = [_public_python(), "-m", "fi_run", *argv]
    return subprocess.run(
        ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
         "sh", "-c", f'umask {umask}; exec "$@"', "sh", *argv],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=HANG_TIMEOUT, check=False,
    )  # fmt: skip


@needs_root
def test_two_users_with_umask_022_share_a_1777_lock_directory(tmp_path: Path) -> None:
    os.chmod(tmp_path, 0o755)  # pytest makes tmp_path private; the users must reach it
    for parent in tmp_path.parents:
        if parent == parent.parent:
            break
        os.chmod(parent, os.stat(parent).st_mode | 0o005)
    shared = tmp_path / "shared-locks"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    resource = tmp_path / "res"
    resource.mkdir()
    os.chmod(resource, 0o777)
    for uid in (5001, 5002, 5001):
        for mode in ("--lock", "--shared-lock"):
            done = _as_user(uid, ["--lock-dir", str(shared), mode, str(resource), "--", "true"], tmp_path)
            # before the fix the second user got exit 70 (PermissionError on the first user's lock files)
            assert done.returncode == 0, (uid, mode, done.stderr)
            assert done.stderr == ""


@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 64-inode tmpfs of 256 KiB, mounted for the test (root only; skipped where mounting is refused)."""
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k,nr_inodes=64", "tmpfs", str(mount_point)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def _exhaust_inodes(directory: Path) -> None:
    directory.mkdir()
    for i in range(10_000):
        try:
            (directory / f"filler-{i}").touch()
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
            return
    raise AssertionError("the tmpfs never ran out of inodes")


@needs_root
def test_a_lock_directory_out_of_inodes_gives_exit_2_naming_the_path(
    tmp_path: Path, tiny_tmpfs: Path
) -> None:
    lock_dir = tiny_tmpfs / "locks"
    assert run_fi_run("module", ["--lock-dir", str(lock_dir), "--lock", "Other", "--", "true"]).status == 0
    resource_dir = _resource_dir(lock_dir, "R", tmp_path)
    (resource_dir / "waiters").mkdir(parents=True)
    _exhaust_inodes(tiny_tmpfs / "fill")
    status, err = _lock(tmp_path, lock_dir)
    assert status == 2, err  # before the fix: 70, an internal error
    assert err.startswith(f"fi_run: cannot lock '{resource_dir / 'gate.lock'}'"), err
    assert "No space left" in err
