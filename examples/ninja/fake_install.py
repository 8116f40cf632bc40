"""A stand-in for `uv pip install -e PKG` into one venv: it fails the way uv did in uv#2767 when another
install is inside the venv at the same time, and otherwise records the package as installed.

Usage: fake_install.py VENV PACKAGE SECONDS
"""

from __future__ import annotations

import os
import sys
import time

venv, package, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
os.makedirs(venv, exist_ok=True)
busy = os.path.join(venv, ".busy")
try:
    fd = os.open(busy, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
except FileExistsError:
    print(
        "error: Could not try lock bin\\venv\\.lock: The process cannot access the file because another "
        "process has locked a portion of the file. (os error 33)",
        file=sys.stderr,
    )
    sys.exit(2)
try:
    time.sleep(seconds)
    with open(os.path.join(venv, "installed.txt"), "a", encoding="utf-8") as f:
        f.write(package + "\n")
    print(f"Installed {package}")
finally:
    os.close(fd)
    os.unlink(busy)
