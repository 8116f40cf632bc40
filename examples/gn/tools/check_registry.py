"""Check that the registry lists every expected plugin; fail, naming the missing ones, if not.

Usage: check_registry.py REGISTRY_DIR NAME...

Run under a shared fi_run lock on REGISTRY_DIR: it never reads the index while a register step writes it.
"""

from __future__ import annotations

import os
import sys


def main() -> int:
    registry, expected = sys.argv[1], sys.argv[2:]
    with open("runs.log", "a", encoding="utf-8") as log:
        log.write("check_registry\n")
    with open(os.path.join(registry, "index.txt"), encoding="utf-8") as f:
        registered = set(f.read().split())
    missing = [name for name in expected if name not in registered]
    if missing:
        print(f"check_registry.py: not in the registry: {', '.join(missing)}", file=sys.stderr)
        return 1
    print(f"check_registry.py: all {len(expected)} plugins registered")
    return 0


if __name__ == "__main__":
    sys.exit(main())
