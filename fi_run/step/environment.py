"""The child's environment and the executable it runs: pure functions of their inputs.

Everything platform-specific takes ``windows`` as an argument instead of checking the platform, so the
Windows rules (case-insensitive names, ``Scripts``, ``PATHEXT``) are unit-tested on Linux too.
"""

from __future__ import annotations

import os
import stat

from ..errors import CommandNotFoundError, NotExecutableError

TYPE_CHECKING = False  # not typing's: saves importing typing (~6 ms) per unlocked step (docs/performance.md)
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Final

    from ..records import EnvOp


# Windows: CreateProcess searches these when the name has no extension (cmd.exe's default PATHEXT).
_DEFAULT_PATHEXT: Final = ".COM;.EXE;.BAT;.CMD"


def venv_bin_dir(venv: str, *, windows: bool) -> str:
    """Where a virtual environment keeps its executables: ``Scripts`` on Windows, ``bin`` elsewhere."""
    return os.path.join(venv, "Scripts" if windows else "bin")


def _key(name: str, *, windows: bool) -> str:
    # Windows environment names are case-insensitive and os.environ upper-cases them; match that so
    # `--env Path=...` and `--prepend-path PATH=...` change the one variable the child will see.
    return name.upper() if windows else name


def _prepend(env: dict[str, str], name: str, directory: str, *, windows: bool) -> None:
    key = _key(name, windows=windows)
    current = env.get(key, "")
    env[key] = directory + os.pathsep + current if current else directory


def build_environment(
    base: Mapping[str, str], ops: Sequence[EnvOp], *, windows: bool, start_dir: str
) -> dict[str, str]:
    """Return the child's environment: ``base`` with ``ops`` applied in order.

    Directories (``--prepend-path`` values and ``--venv``) are made absolute against ``start_dir``, the
    directory fi_run was started in, so that they still hold when the command runs in ``--cwd``.
    """
    env = {_key(k, windows=windows): v for k, v in base.items()}
    for op in ops:
        if op.kind == "set":
            env[_key(op.name, windows=windows)] = op.value
        elif op.kind == "unset":
            env.pop(_key(op.name, windows=windows), None)
        elif op.kind == "prepend":
            _prepend(env, op.name, os.path.normpath(os.path.join(start_dir, op.value)), windows=windows)
        else:  # venv: what `activate` does, minus the prompt
            venv = os.path.normpath(os.path.join(start_dir, op.name))
            env["VIRTUAL_ENV"] = venv
            _prepend(env, "PATH", venv_bin_dir(venv, windows=windows), windows=windows)
            # A PYTHONHOME inherited from the build would make the venv's python load another stdlib.
            env.pop(_key("PYTHONHOME", windows=windows), None)
    return env


def describe_changes(ops: Sequence[EnvOp], env: Mapping[str, str], *, windows: bool) -> str:
    """What --verbose says the environment options did, in command-line order.

    A --env value is not shown, only its name (as in the --log record): build logs are kept and shared, and
    values hold tokens. The lists fi_run prepended to (PATH, PYTHONPATH...) and VIRTUAL_ENV are shown as the
    command gets them: which program runs depends on them, and they hold directories.
    """
    said: list[str] = []
    shown: set[str] = set()
    for op in ops:
        if op.kind == "set":
            said.append(f"set {op.name}")
        elif op.kind == "unset":
            said.append(f"unset {op.name}")
        else:
            names = [op.name] if op.kind == "prepend" else ["VIRTUAL_ENV", "PATH"]
            for name in names:
                key = _key(name, windows=windows)
                if key not in shown:
                    shown.add(key)
                    said.append(f"{name}={env.get(key, '')}")
    return "; ".join(said)


def _is_executable_file(path: str, *, windows: bool) -> tuple[bool, bool]:
    """(exists as a file, may be executed)."""
    try:
        st = os.stat(path)
    except OSError:
        return False, False
    if not stat.S_ISREG(st.st_mode):
        return False, False
    return True, windows or os.access(path, os.X_OK)


def _candidates(name: str, *, windows: bool, pathext: str) -> list[str]:
    if not windows:
        return [name]
    exts = [e for e in pathext.split(";") if e]
    if os.path.splitext(name)[1].upper() in (e.upper() for e in exts):
        return [name]
    return [name + ext for ext in exts]


def find_executable(name: str, env: Mapping[str, str], *, cwd: str, windows: bool) -> str:
    """Find the program the command names, searching the *child's* PATH, as execvp would.

    The child's PATH is the one that counts: `--venv` exists to make `python` mean the venv's python.
    (Neither posix_spawnp nor Windows' CreateProcess searches the environment passed to the child.)
    A name with a directory part is taken relative to the command's working directory.
    Raises CommandNotFoundError (127) or NotExecutableError (126), each naming the command.
    """
    pathext = env.get("PATHEXT", _DEFAULT_PATHEXT) if windows else ""
    seps = (os.sep, "/") if not windows else ("\\", "/")
    found_not_executable = ""
    has_dir = any(s in name for s in seps)
    # An empty PATH entry means the current directory, as in execvp.
    dirs = ["."] if has_dir else env.get(_key("PATH", windows=windows), os.defpath).split(os.pathsep)
    for directory in dirs:
        for candidate in _candidates(name, windows=windows, pathext=pathext):
            path = os.path.join(cwd, directory or ".", candidate)
            exists, executable = _is_executable_file(path, windows=windows)
            if executable:
                return path
            if exists and not found_not_executable:
                found_not_executable = path
    if found_not_executable:
        raise NotExecutableError(
            f"command is not executable: {name!r} ({os.path.normpath(found_not_executable)})"
        )
    if has_dir:
        if os.path.isdir(os.path.join(cwd, name)):
            raise NotExecutableError(f"command is a directory: {name!r}")
        raise CommandNotFoundError(f"command not found: {name!r} (no such file)")
    raise CommandNotFoundError(f"command not found: {name!r} (not on the command's PATH)")
