"""Shared test helpers (frames, fault injection, doc blocks) and the repo root."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
