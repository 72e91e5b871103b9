"""What machine a benchmark ran on, for the reports of every ``bench/*.py`` script (they run as
``python bench/<name>.py``, so this folder is on ``sys.path``)."""

from __future__ import annotations

import platform
from pathlib import Path


def cpu_name() -> str:
    """The CPU model from ``/proc/cpuinfo``, else what :mod:`platform` knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()
