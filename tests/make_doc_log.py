"""Make the log the docs show: docs/data/contended.log, which docs/how-to.md ("Read a report") reads with
`fi_run report` and docs/reference.md ("Log line schema") quotes a line of.

    python tests/make_doc_log.py [ROOT]      # ROOT (default /tmp/fi_run-demo) must not exist yet

It runs the tests' contended build (fi_run_testing.contended_build: 46 steps at -j16 under the real ninja,
with retries, locks, a semaphore and two failures) in ROOT, with the simulator copied there and run as
`python3`, so that the log names no path of this machine, and copies the log to docs/data/contended.log.
tests/test_snippets.py then fails until the pages show what fi_run prints for the new log: run the
commands it names and paste their output.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from fi_run_testing import CONTENTION_SIM, contended_build

DOC_LOG = Path(__file__).resolve().parent.parent / "docs" / "data" / "contended.log"


def main(argv: list[str]) -> int:
    root = Path(argv[0] if argv else "/tmp/fi_run-demo")
    if root.exists():
        print(f"make_doc_log.py: {root} exists; remove it or name another directory", file=sys.stderr)
        return 2
    root.mkdir(parents=True)
    sim = root / CONTENTION_SIM.name
    shutil.copy(CONTENTION_SIM, sim)
    build = contended_build(root, python="python3", sim=sim)
    DOC_LOG.parent.mkdir(exist_ok=True)
    shutil.copy(build.log, DOC_LOG)
    print(f"{DOC_LOG}: {len(build.records())} records from the build in {root} (ninja exit {build.status})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
