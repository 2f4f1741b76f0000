"""What the benchmark ran on: CPU, cores, kernel, Python, filesystem, load."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _fs_type(path: Path) -> str:
    try:
        out = subprocess.run(
            ["df", "--output=fstype,source", str(path)],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout.split()
        return f"{out[2]} on {out[3]}" if len(out) >= 4 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _mem_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return None


def _virt() -> str:
    try:
        flags = Path("/proc/cpuinfo").read_text()
        return "virtual machine" if " hypervisor" in flags else "bare metal"
    except OSError:
        return "unknown"


def _pressure(resource: str) -> float | None:
    """PSI "some" avg10 of cpu or io: percent of the last 10 s that a task waited for it."""
    try:
        first = Path(f"/proc/pressure/{resource}").read_text().splitlines()[0]
        return float(first.split()[1].split("=")[1])
    except (OSError, IndexError, ValueError):
        return None


def load() -> dict[str, Any]:
    """1/5/15-minute load averages and the CPU and I/O pressure stall shares (PSI, percent)."""
    return {
        "loadavg": list(os.getloadavg()),
        "cpu_pressure_some_avg10_pct": _pressure("cpu"),
        "io_pressure_some_avg10_pct": _pressure("io"),
    }


def describe(work: Path) -> dict[str, Any]:
    import orjson
    import watchdog.version

    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "environment": _virt(),
        "memory_gb": _mem_gb(),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "orjson": orjson.__version__,
        "watchdog": watchdog.version.VERSION_STRING,
        "filesystem": _fs_type(work),
        "clk_tck": os.sysconf("SC_CLK_TCK"),
    }
