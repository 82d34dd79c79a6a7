"""engage_seq.cli."""

from __future__ import annotations

from typing import Any

from engage_seq.common.moved import legacy_attribute


def __getattr__(name: str) -> Any:
    """A 0.1 class path through this name: resolved from its new home, with a warning."""
    return legacy_attribute(__name__, name)
