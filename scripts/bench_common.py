"""What every benchmark's final JSON line says about where and how it ran."""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path
from typing import Any


def run_record(args: argparse.Namespace) -> dict[str, Any]:
    """Machine, library versions, arguments and the command line, for the JSON record."""
    import lightning
    import polars
    import torch

    return {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.machine(),
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "lightning": lightning.__version__,
            "polars": polars.__version__,
        },
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
    }


def peak_rss_gb() -> float:
    """Peak resident memory of this process since it started its program, in GB.

    Linux's VmHWM belongs to the process image, so it is this program's own peak. getrusage's
    ru_maxrss is not: it survives exec, so a worker started from a parent holding a 10 GB table
    would report that parent's memory as its own. Elsewhere ru_maxrss is the fallback.
    """
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / 1024**3
    import resource

    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 1024**3
