"""What every baseline shares: the samples frame it reads and its saved (JSON) format."""

from __future__ import annotations

from typing import Any

import polars as pl

FORMAT_VERSION = 1
Frame = pl.DataFrame | pl.LazyFrame


def as_lazy(samples: Frame) -> pl.LazyFrame:
    return samples.lazy() if isinstance(samples, pl.DataFrame) else samples


def check_format(d: dict[str, Any], kind: str) -> None:
    if d.get("type") != kind or d.get("format") != FORMAT_VERSION:
        raise ValueError(
            f"expected a saved {kind!r} baseline (format {FORMAT_VERSION}), got type "
            f"{d.get('type')!r}, format {d.get('format')!r}"
        )
