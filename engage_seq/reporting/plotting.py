"""The figure plumbing every report, monitor and sweep plot shares: pyplot on the headless Agg
backend, imported only when a figure is drawn (matplotlib is an optional extra), and PNGs
written atomically with the figure closed, because a report draws many."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engage_seq.common.io import atomic_path


def pyplot() -> Any:
    """``matplotlib.pyplot`` on Agg (no display needed), imported on first use."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def save_png(figure: Any, path: str | Path, dpi: int = 120, tight: bool = False) -> Path:
    """Write ``figure`` to ``path`` atomically and free it; ``tight`` crops to the drawing."""
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            figure.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight" if tight else None)
    finally:
        pyplot().close(figure)
    return path
