"""Register a plugin in a registry directory that all the register steps change: a read-modify-write of
REGISTRY/index.txt, the kind of update that loses entries when two steps do it at once.

Usage: register.py PLUGIN_FILE REGISTRY_DIR

The build runs one of these per plugin, in parallel, each under an exclusive fi_run lock on REGISTRY_DIR.
"""

from __future__ import annotations

import os
import sys
import time


def main() -> None:
    plugin_file, registry = sys.argv[1], sys.argv[2]
    name = os.path.splitext(os.path.basename(plugin_file))[0]
    with open("runs.log", "a", encoding="utf-8") as log:
        log.write(f"register_plugins:{name}\n")

    os.makedirs(registry, exist_ok=True)
    index = os.path.join(registry, "index.txt")
    try:
        with open(index, encoding="utf-8") as f:
            names = set(f.read().split())
    except FileNotFoundError:
        names = set()
    time.sleep(0.2)  # the window in which another step, without the lock, would read the same old index
    names.add(name)
    with open(plugin_file, encoding="utf-8") as f:
        description = f.read().strip()
    with open(os.path.join(registry, name + ".txt"), "w", encoding="utf-8") as f:
        f.write(description + "\n")
    with open(index, "w", encoding="utf-8") as f:
        f.write("".join(n + "\n" for n in sorted(names)))
    print(f"register.py: {name} registered ({len(names)} in the registry)")


if __name__ == "__main__":
    main()
