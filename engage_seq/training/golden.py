"""``golden_batch.pt`` and ``golden_events.parquet``: the best checkpoint's predictions on test
samples, which `engage-export` uses as its parity reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import torch

from engage_seq.common.io import atomic_path
from engage_seq.models.calibration import Calibration, CalibrationLayer
from engage_seq.models.engagement import MODEL_INPUTS
from engage_seq.training.batches import EncodedSamples
from engage_seq.training.lit_module import EngagementLitModule

GOLDEN_BATCH_SIZE = 256


def write_golden_batch(
    module: EngagementLitModule,
    test: EncodedSamples,
    complete: np.ndarray,
    path: Path,
    calibration: Calibration | None = None,
) -> None:
    """Parity reference for export: the module's predictions for the first test samples, and
    for ``complete`` (test samples whose whole history is in their window, whose raw events
    `write_golden_events` saves), on CPU in fp32 whatever the training device and precision,
    because that is how the artifact is served (a bf16-trained GPU run would otherwise fail
    the 1e-5 parity check). With a ``calibration`` the reference is the calibrated
    prediction, as the artifact returns it."""
    module = module.cpu().float().eval()
    layer = CalibrationLayer(calibration, module.model.n_outputs)
    reference: dict[str, torch.Tensor] = {}
    for prefix, rows in (
        ("", np.arange(min(GOLDEN_BATCH_SIZE, len(test)))),
        ("complete_", complete),
    ):
        if rows.size == 0:
            continue
        batch = test.batch(rows)
        with torch.inference_mode():
            probabilities = module.predict_step(batch, 0)
            if calibration is not None:
                horizon, next_logits, _ = module.model.split_outputs(module(batch).float())
                probabilities = layer(horizon, next_logits)
        reference.update({f"{prefix}{k}": v for k, v in zip(MODEL_INPUTS, batch[:-1], strict=True)})
        reference[f"{prefix}probabilities"] = probabilities.float()
    torch.save(reference, path)


def complete_history_rows(test: pl.DataFrame, max_len: int) -> np.ndarray:
    """Up to GOLDEN_BATCH_SIZE test rows whose whole history before the cutoff fits in
    ``max_len``: their sample lists are everything the raw entry point needs."""
    rows = np.flatnonzero((test["n_history"] <= max_len).to_numpy())
    return rows[:GOLDEN_BATCH_SIZE]


def write_golden_events(test: pl.DataFrame, rows: np.ndarray, path: Path) -> None:
    """The raw events behind the complete-history golden samples, one row per event;
    ``sample`` = position in ``rows`` (the ``complete_*`` tensors of golden_batch.pt). No user
    id or key is written."""
    golden = test[rows.tolist()].with_row_index("sample")
    per_event = ["ts", "event_type", "channel"]
    per_event += [c for c in golden.columns if c.startswith(("cat_", "num_"))]
    events = golden.select("sample", "cutoff", *per_event).explode(per_event)
    with atomic_path(path) as tmp:
        events.write_parquet(tmp)
