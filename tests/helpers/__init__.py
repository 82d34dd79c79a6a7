"""Shared test helpers (frames, fault injection, doc blocks, artifact consumers), the repo
root and the folder of the console scripts."""

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent  # console scripts of the interpreter running pytest
