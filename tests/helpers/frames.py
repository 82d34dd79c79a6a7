"""An in-memory event table as an `EventSource`, for tests that build samples from a frame."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl


@dataclass(frozen=True)
class FrameSource:
    """``tag`` goes into the cache key: two different frames of the same size built into one
    cache folder need different tags."""

    frame: pl.DataFrame
    tag: str = "frame"

    def fingerprint(self) -> dict[str, object]:
        return {"tag": self.tag, "rows": self.frame.height}

    def scan(self) -> pl.LazyFrame:
        return self.frame.lazy()

    def describe(self) -> str:
        return f"in-memory frame {self.tag!r}"
