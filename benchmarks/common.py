"""What every benchmark needs: the environment a build's processes really have."""

from __future__ import annotations

import compileall
import os

import fi_run


def prepare() -> dict[str, str]:
    """Compile fi_run's bytecode and return an environment that lets Python use it.

    Some sandboxes set PYTHONDONTWRITEBYTECODE=1 (this one does). An editable install then compiles every
    fi_run module from source on every run, which no user's installed fi_run does: measuring that would
    measure the sandbox.
    """
    compileall.compile_dir(os.path.dirname(fi_run.__file__), quiet=1)
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env
