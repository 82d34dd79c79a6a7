"""Reading a run folder's ``calibration.json`` (written by engage-train,
`engage_seq.training.calibration`) as untrusted input: size-limited, parsed as plain JSON and
validated by `engage_seq.models.calibration.Calibration.from_dict` (allow-listed method, finite
numbers, monotone knots) before export builds it into an artifact or the report applies it.
Standard library and the model package only; no Lightning, no Hydra."""

from __future__ import annotations

import json
from pathlib import Path

from engage_seq.models.calibration import CALIBRATION_FILE, Calibration, CalibrationError

MAX_CALIBRATION_BYTES = 1 << 20  # the file engage-train writes is a few KB (<= 100 knots each)


def read_calibration(run_dir: Path) -> Calibration | None:
    """The run's fitted calibration, or None where the run has none (``calibration.method:
    none``, or a run older than calibration). Raises `CalibrationError` naming the file."""
    path = Path(run_dir) / CALIBRATION_FILE
    if not path.is_file():
        return None
    with path.open("rb") as handle:
        raw = handle.read(MAX_CALIBRATION_BYTES + 1)
    if len(raw) > MAX_CALIBRATION_BYTES:
        raise CalibrationError(
            f"{path} is over {MAX_CALIBRATION_BYTES:,} bytes; engage-train writes a few KB: "
            "retrain the run (with calibration.method=none "
            "for an uncalibrated model: its golden batch is calibrated)"
        )
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        message = f"{path} is not valid JSON ({error}); retrain to rewrite it"
        raise CalibrationError(message) from None
    return Calibration.from_dict(data, str(path))
