"""fi_run: run one build step for Ninja or GN.

Sets up the step's environment, holds per-resource locks, retries failures whose output shows lock
contention, and writes the stamp only on success. This module stays import-light on purpose: fi_run
runs once per build step, so nothing here may import more than the version string needs.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
