"""Loading TorchScript artifacts (torch only, no model classes: used by export and scoring)."""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

METADATA_FILE = "metadata.json"
# torch 2.13 deprecates TorchScript; it is still the format our users asked for, so exactly
# that warning is silenced around the jit calls, nothing else.
JIT_DEPRECATION = r"`torch\.jit\.\w+` is deprecated"


@contextlib.contextmanager
def quiet_jit_deprecation() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=JIT_DEPRECATION, category=DeprecationWarning)
        yield


def load_artifact(path: str | Path) -> tuple[torch.jit.ScriptModule, dict[str, Any]]:
    """torch.jit.load plus the parsed metadata (what any consumer does, shown once here)."""
    extra = {METADATA_FILE: ""}
    with quiet_jit_deprecation():
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    return module, json.loads(extra[METADATA_FILE]) if extra[METADATA_FILE] else {}
