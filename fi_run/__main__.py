"""``python -m fi_run`` and ``python path/to/fi_run/__main__.py`` (GN's ``script``): see cli.py."""

# Kept this small on purpose: run by path, this file is compiled from source on every step.
import os
import sys

if __name__ == "__main__":
    import gc

    gc.disable()  # until the run's imports are done: see cli._collect_from_now_on
    if not __package__:
        # By path. Python has put this file's directory, symlinks resolved, first on sys.path: the package
        # itself (through a symlink too, as uv#2767's gntools/fi_run.py). Its parent takes that place, so
        # that fi_run is importable and fi_run's own modules are not also top-level modules that every
        # top-level import must look past. Under -I or -P nothing was put there: the parent goes first.
        if sys.path and os.path.basename(sys.path[0]) == "fi_run":
            sys.path[0] = os.path.dirname(sys.path[0])
        else:
            sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
        __package__ = "fi_run"

from .cli import entrypoint, main

__all__ = ["entrypoint", "main"]

if __name__ == "__main__":
    entrypoint()
