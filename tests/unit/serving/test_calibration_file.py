"""A run folder's calibration.json is untrusted: absent means uncalibrated, anything malformed
is refused naming the file, and the artifact metadata's copy must match the outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engage_seq.models.calibration import (
    CALIBRATION_FILE,
    Calibration,
    CalibrationError,
    OutputCalibration,
)
from engage_seq.serving.calibration_file import MAX_CALIBRATION_BYTES, read_calibration
from engage_seq.serving.contract import ArtifactMetadata
from engage_seq.serving.export import ExportError, artifact_calibration

PLATT = Calibration("platt", (OutputCalibration("purchase", scale=0.5, bias=-1.0),))


def test_absent_file_means_uncalibrated_and_a_written_one_round_trips(tmp_path: Path) -> None:
    assert read_calibration(tmp_path) is None
    (tmp_path / CALIBRATION_FILE).write_text(json.dumps(PLATT.to_dict()))
    assert read_calibration(tmp_path) == PLATT


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON"),
        (json.dumps({**PLATT.to_dict(), "method": "__import__"}), "key 'method'"),
        (" " * (MAX_CALIBRATION_BYTES + 1), "bytes"),
    ],
)
def test_a_bad_file_is_refused_naming_it(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / CALIBRATION_FILE).write_text(text)
    with pytest.raises(CalibrationError, match=CALIBRATION_FILE) as error:
        read_calibration(tmp_path)
    assert message in str(error.value)


def _metadata(calibration: dict | None) -> ArtifactMetadata:
    data = {
        "format_version": 2,
        "output_names": ["purchase"],
        "vocabulary": {"event_type": ["a"], "channel": ["web"]},
        "categorical_attributes": [],
        "numeric_attributes": [],
        "numeric_scaling": {},
        "max_len": 4,
        "task": {"targets": ["purchase"]},
    }
    extra = {"calibration": calibration} if calibration is not None else {}
    return ArtifactMetadata.from_dict({**data, **extra})


def test_the_artifact_metadata_copy_is_checked_against_the_outputs() -> None:
    assert artifact_calibration(_metadata(None)) is None
    assert artifact_calibration(_metadata(PLATT.to_dict())) == PLATT
    other = Calibration("platt", (OutputCalibration("click"),)).to_dict()
    with pytest.raises(ExportError, match="metadata key 'calibration'"):
        artifact_calibration(_metadata(other))
