"""An artifact's aggregate settings are untrusted input: read back in the model's order after
a JSON round trip, refused when the names or the scaling do not fit this version's code."""

from __future__ import annotations

import json

import pytest

from engage_seq.data.aggregates import aggregate_names
from engage_seq.serving.aggregate_metadata import served_aggregates
from engage_seq.serving.contract import ArtifactMetadata, ArtifactMetadataError

NAMES = aggregate_names(["purchase"], ["num_amount"])


def metadata(**changes) -> ArtifactMetadata:
    values = {
        "format_version": 3,
        "output_names": ["purchase"],
        "vocabulary": {"event_type": ["purchase"], "channel": []},
        "categorical_attributes": [],
        "numeric_attributes": ["num_amount"],
        "numeric_scaling": {"num_amount": {"mean": 0.0, "std": 1.0}},
        "max_len": 8,
        "task": {"targets": ["purchase"]},
        "aggregate_names": NAMES,
        "aggregate_scaling": {n: {"mean": float(i), "std": 1.0 + i} for i, n in enumerate(NAMES)},
    }
    # as written and read back: JSON sorts the scaling's keys
    return ArtifactMetadata.from_dict(json.loads(json.dumps({**values, **changes}, sort_keys=True)))


def test_scaling_round_trips_in_the_models_order() -> None:
    served = served_aggregates(metadata())
    assert list(served.scaling) == NAMES  # not the sorted order JSON gave
    assert served.scaling_pairs[2] == (2.0, 3.0)
    assert served.targets == ["purchase"] and served.windows_days == [7, 30, 90, 365]


def test_no_aggregates_is_an_empty_setting() -> None:
    for changes in ({"aggregate_names": []}, {"aggregate_names": None}):
        assert served_aggregates(metadata(**changes)).scaling == {}


@pytest.mark.parametrize(
    "changes",
    [
        {"aggregate_names": list(reversed(NAMES))},  # another order
        {"aggregate_names": NAMES[:-1]},  # another definition (a numeric left out)
        {"task": {"targets": ["view"]}},  # names for other targets
        {"aggregate_scaling": {n: {"mean": 0.0, "std": 0.0} for n in NAMES}},
        {"aggregate_scaling": {n: {"mean": "1", "std": 1.0} for n in NAMES}},
        {"aggregate_scaling": {}},
    ],
)
def test_bad_settings_are_refused(changes) -> None:
    with pytest.raises(ArtifactMetadataError, match="aggregate"):
        served_aggregates(metadata(**changes))
