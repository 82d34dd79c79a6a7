"""The calibration inside the exported module: what each method computes, that scripting
keeps it exact, and that a malformed calibration record is refused with its file and key."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from engage_seq.models.calibration import (
    MAX_KNOTS,
    Calibration,
    CalibrationError,
    CalibrationLayer,
    OutputCalibration,
)
from engage_seq.models.engagement import EngagementModel, ProbabilityModel
from engage_seq.serving.export import quiet_jit_deprecation


def _model() -> EngagementModel:
    torch.manual_seed(0)
    return EngagementModel(
        n_event_ids=10, n_channel_ids=6, n_time_features=3, n_outputs=2, max_len=8,
        n_next_classes=3,
    ).eval()  # fmt: skip


def _batch(lengths: list[int]) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(1)
    b, width = len(lengths), max(lengths)
    lengths_t = torch.tensor(lengths)
    real = torch.arange(width)[None, :] < lengths_t[:, None]
    events = torch.randint(2, 10, (b, width), generator=g) * real
    channels = torch.randint(2, 6, (b, width), generator=g) * real
    times = torch.randn(b, width, 3, generator=g) * real[..., None]
    return (
        events,
        channels,
        torch.zeros(b, width, 0).long(),
        torch.zeros(b, width, 0),
        times,
        lengths_t,
        torch.zeros(b, 0),  # aggregates: (B, 0), the model has none
    )


CALIBRATIONS = {
    "temperature": Calibration(
        "temperature",
        (OutputCalibration("a", scale=0.5), OutputCalibration("b", scale=2.0)),
        next_event_scale=0.7,
    ),
    "platt": Calibration(
        "platt",
        (OutputCalibration("a", scale=0.8, bias=-1.0), OutputCalibration("b", 1.2, 0.3)),
        next_event_scale=1.3,
    ),
    "isotonic": Calibration(
        "isotonic",
        (
            OutputCalibration("a", knots_x=(0.2, 0.5, 0.6), knots_y=(0.05, 0.3, 0.9)),
            OutputCalibration("b", knots_x=(0.4,), knots_y=(0.25,)),  # one block: constant
        ),
    ),
}


@pytest.mark.parametrize("method", sorted(CALIBRATIONS))
def test_scripted_calibrated_module_matches_eager_and_the_formula(method: str) -> None:
    model = _model()
    calibration = CALIBRATIONS[method]
    eager = ProbabilityModel(model, ["a", "b", "n0", "n1", "n2"], calibration).eval()
    with quiet_jit_deprecation():
        scripted = torch.jit.script(eager)
    batch = _batch([5, 2, 8, 1])
    with torch.no_grad():
        probs = eager(*batch)
        raw = model(*batch)
        assert torch.equal(scripted(*batch), probs)
        plain = model.probabilities(raw)
    z, next_logits = raw[:, :2], raw[:, 2:]
    if method == "isotonic":
        p = torch.sigmoid(z[:, 0]).numpy()
        expected = np.interp(p, [0.2, 0.5, 0.6], [0.05, 0.3, 0.9])
        assert np.allclose(probs[:, 0].numpy(), expected, atol=1e-6)
        assert torch.allclose(probs[:, 1], torch.full((4,), 0.25))
    else:
        scale = torch.tensor([o.scale for o in calibration.outputs])
        bias = torch.tensor([o.bias for o in calibration.outputs])
        assert torch.allclose(probs[:, :2], torch.sigmoid(z * scale + bias), atol=1e-6)
        expected_next = torch.softmax(next_logits * calibration.next_event_scale, dim=1)
        assert torch.allclose(probs[:, 2:], expected_next, atol=1e-6)
    assert torch.allclose(probs[:, 2:].sum(1), torch.ones(4), atol=1e-6)
    assert not torch.allclose(probs, plain)


def test_no_calibration_is_the_plain_probabilities_bit_for_bit() -> None:
    model = _model()
    batch = _batch([3, 8])
    with torch.no_grad():
        probs = ProbabilityModel(model, ["a", "b", "n0", "n1", "n2"])(*batch)
        assert torch.equal(probs, model.probabilities(model(*batch)))


def test_isotonic_is_flat_beyond_its_end_knots() -> None:
    layer = CalibrationLayer(CALIBRATIONS["isotonic"], 2)
    logits = torch.tensor([[-9.0, 0.0], [9.0, 0.0], [0.0, 0.0]])  # p ~ 0, ~1, 0.5
    out = layer.horizon_probabilities(logits)[:, 0]
    assert torch.allclose(out, torch.tensor([0.05, 0.9, 0.3]))


def _record(**changes: object) -> dict:
    data = CALIBRATIONS["isotonic"].to_dict()
    data.update(changes)
    return data


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "not a JSON object"),
        (_record(method="beta"), "key 'method'"),
        (_record(outputs={"a": 1}), "key 'outputs'"),
        (_record(next_event_scale=math.inf), "finite"),
        (_record(next_event_scale=-1.0), "outside"),
        (
            _record(outputs=[{"name": "a", "knots_x": [0.5, 0.2], "knots_y": [0.1, 0.2]}]),
            "strictly",
        ),
        (
            _record(outputs=[{"name": "a", "knots_x": [0.1, 0.2], "knots_y": [0.3, 0.2]}]),
            "non-decr",
        ),
        (_record(outputs=[{"name": "a", "knots_x": [0.1, 1.5], "knots_y": [0.1, 0.2]}]), "[0, 1]"),
        (_record(outputs=[{"name": "a", "knots_x": [0.1], "knots_y": []}]), "same length"),
        (_record(outputs=[{"name": "a", "knots_x": [0.0] * (MAX_KNOTS + 1)}]), "at most"),
        (_record(outputs=[{"name": 3}]), "'name'"),
        (_record(method="temperature", outputs=[{"name": "a", "bias": 1.0}]), "no bias"),
        (_record(method="platt", outputs=[{"name": "a", "scale": "2"}]), "finite number"),
        (_record(before={"ece": "x"}), "before"),
    ],
)
def test_a_malformed_record_is_refused_naming_file_and_key(data: object, message: str) -> None:
    with pytest.raises(CalibrationError, match=r"calibration\.json") as error:
        Calibration.from_dict(data)
    assert message in str(error.value)


def test_a_record_round_trips_and_must_match_the_outputs() -> None:
    calibration = CALIBRATIONS["platt"]
    assert Calibration.from_dict(calibration.to_dict()) == calibration
    calibration.check_outputs(["a", "b"])
    with pytest.raises(CalibrationError, match=r"\['a', 'b'\].*\['purchase'\]"):
        calibration.check_outputs(["purchase"])
    with pytest.raises(CalibrationError, match="1 horizon outputs"):
        CalibrationLayer(Calibration("platt", (OutputCalibration("a"),)), 2)
