"""Concatenate text files into one, under the title in $BUNDLE_TITLE.

Usage: bundle.py OUTPUT FILE...
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    output, sources = sys.argv[1], sys.argv[2:]
    with open("runs.log", "a", encoding="utf-8") as log:
        log.write("bundle\n")
    parts = [f"# {os.environ['BUNDLE_TITLE']}\n"]
    for path in sources:
        with open(path, encoding="utf-8") as f:
            parts.append(f"\n## {os.path.basename(path)}\n{f.read()}")
    with open(output, "w", encoding="utf-8") as f:
        f.write("".join(parts))
    print(f"bundle.py: {len(sources)} files -> {output}")


if __name__ == "__main__":
    main()
