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
