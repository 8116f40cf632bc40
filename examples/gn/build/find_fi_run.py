"""Where fi_run is, for //build/fi_run.gni when the GN arg `fi_run_script` is left empty (the default).

Run once by `gn gen` (exec_script), with the `script_executable` of //.gn: the Python that will run every
fi_run step. Prints one GN path, or nothing:

- GN_PATH, when VENDORED (the same file, as a path from the build directory) exists: the tree vendors fi_run;
- else the fi_run/__main__.py that this Python imports (pip-installed, or an editable install of a
  checkout), as a GN system-absolute path;
- else nothing: the template then stops `gn gen` with one line naming the arg to set (issue 17: before,
  `gn gen` succeeded and ninja failed late, "missing and no known rule to make it").

Usage: find_fi_run.py VENDORED GN_PATH
"""

from __future__ import annotations

import importlib.util
import os
import sys


def gn_system_path(path: str, *, windows: bool) -> str:
    """An absolute file path as GN writes a system-absolute one: forward slashes, "/C:/..." on Windows."""
    if windows:
        path = path.replace("\\", "/")
        if not path.startswith("/"):
            path = "/" + path
    return path


def installed_main() -> str | None:
    """This Python's fi_run/__main__.py, without importing fi_run (nor running anything of it)."""
    spec = importlib.util.find_spec("fi_run")
    if spec is None or spec.origin is None:
        return None
    main = os.path.join(os.path.dirname(os.path.abspath(spec.origin)), "__main__.py")
    return main if os.path.isfile(main) else None


def main(argv: list[str]) -> int:
    vendored, gn_path = argv
    if os.path.isfile(vendored):
        print(gn_path)
        return 0
    found = installed_main()
    if found is not None:
        print(gn_system_path(found, windows=sys.platform == "win32"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
