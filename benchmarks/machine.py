"""One description of the machine a benchmark ran on, shared by every benchmark script."""

from __future__ import annotations

import os
import platform
import subprocess


def describe() -> str:
    """CPU model, core count, RAM, Python, and the GPU when torch sees one."""
    model = platform.processor() or "unknown CPU"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
        model = fields.get("Model name", model).strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    text = f"{model}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, Python {platform.python_version()}"
    try:
        import torch

        if torch.cuda.is_available():
            text += f", GPU {torch.cuda.get_device_name()}"
    except ImportError:
        pass
    return text


def peak_rss_gib() -> float:
    """This process's own peak RSS in GiB: VmHWM, not ``ru_maxrss`` (Linux copies the parent's
    ``ru_maxrss`` into a child across fork+exec, so a benchmark child started from a big
    process would report the parent's peak)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20  # kB
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
