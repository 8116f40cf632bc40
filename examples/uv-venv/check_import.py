"""Import a package from the venv this runs in and check that it is the editable install of PACKAGE_DIR.

Usage: python check_import.py MODULE PACKAGE_DIR   (run by the venv's python)

An editable install imports the package's own source files, so MODULE's __file__ must lie in PACKAGE_DIR.
"""

from __future__ import annotations

import importlib
import os
import sys


def main() -> int:
    module_name, package_dir = sys.argv[1], os.path.realpath(sys.argv[2])
    if sys.prefix == sys.base_prefix:
        print(f"check_import.py: not running in a virtual environment ({sys.executable})", file=sys.stderr)
        return 1
    module = importlib.import_module(module_name)
    where = os.path.realpath(module.__file__ or "")
    if os.path.commonpath([where, package_dir]) != package_dir:
        print(f"check_import.py: {module_name} comes from {where}, not from {package_dir}", file=sys.stderr)
        return 1
    print(f"import {module_name}: ok, {module.hello()}, editable from {package_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
