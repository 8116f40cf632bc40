"""``python -m fi_run``, the console scripts, and ``python path/to/fi_run/__main__.py`` (GN's ``script``).

Kept this small on purpose: a script run by path is compiled from source on every run (only imported modules
get cached bytecode), so the parser and main() live in cli.py.
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__" and not __package__:
    # Run by path, as GN's `script` or a tree that vendors its Python tools does: make the package importable
    # (through a symlink too, as uv#2767's gntools/fi_run.py), then carry on exactly as `python -m fi_run`.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
    __package__ = "fi_run"

from .cli import entrypoint, main

__all__ = ["entrypoint", "main"]

if __name__ == "__main__":
    entrypoint()
