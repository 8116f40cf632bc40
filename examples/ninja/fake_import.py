"""A stand-in for `python -c "import PKG"` run against the venv: it fails if an install is in progress
(a half-written site-packages), which is what a shared lock prevents.

Usage: fake_import.py VENV PACKAGE
"""

from __future__ import annotations

import os
import sys
import time

venv, package = sys.argv[1], sys.argv[2]
if os.path.exists(os.path.join(venv, ".busy")):
    print(f"ImportError: {package} is being installed right now", file=sys.stderr)
    sys.exit(1)
time.sleep(0.1)
with open(os.path.join(venv, "installed.txt"), encoding="utf-8") as f:
    if package not in f.read().split():
        print(f"ModuleNotFoundError: No module named {package!r}", file=sys.stderr)
        sys.exit(1)
print(f"import {package}: ok")
