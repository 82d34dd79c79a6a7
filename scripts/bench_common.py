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
