"""The tensor entry point as a `torch.export` program (``engage-export --pt2``): exported,
saved, reloaded and parity-checked like the TorchScript artifact (`engage_seq.serving.export`),
which it accompanies; nothing is written unless parity holds.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch

from engage_seq.common.io import atomic_path
from engage_seq.models.calibration import Calibration
from engage_seq.models.engagement import MODEL_INPUTS, EngagementModel, ProbabilityModel
from engage_seq.serving.checkpoint import ExportError
from engage_seq.serving.contract import ArtifactMetadata
from engage_seq.serving.loading import METADATA_FILE, file_sha256
from engage_seq.serving.parity import max_diff, one_row
from engage_seq.serving.signing import SigningKey
from engage_seq.serving.vouchers import remove_vouchers, vouch


def _pad_time(tensor: torch.Tensor, width: int) -> torch.Tensor:
    if tensor.dim() < 2 or tensor.shape[1] >= width:
        return tensor
    pad = torch.zeros(
        (tensor.shape[0], width - tensor.shape[1], *tensor.shape[2:]), dtype=tensor.dtype
    )
    return torch.cat([tensor, pad], dim=1)


def export_program(
    model: EngagementModel,
    output_names: list[str],
    calibration: Calibration | None,
    golden: dict[str, torch.Tensor],
    metadata: ArtifactMetadata,
    out: Path,
    atol: float,
    key: SigningKey | None = None,
) -> dict[str, float]:
    """The tensor entry point as a `torch.export` program (``.pt2``), parity-checked like the
    TorchScript file; raw events need TorchScript (string ops do not export).

    Batch size is dynamic. Time steps: 1..max_len for the Transformer; for the LSTM/GRU the
    recurrent kernel specialises the sequence length, so the program takes exactly ``max_len``
    steps (right-pad to it: the output is read at ``length - 1``, so padding never changes it).
    """
    eager = ProbabilityModel(model, output_names, calibration).eval()
    max_len = int(metadata.max_len)
    fixed_time = model.config["encoder"] != "transformer"
    per_event = MODEL_INPUTS[:-2]  # lengths and aggregates have no event axis
    inputs = tuple(
        _pad_time(golden[name], max_len) if name in per_event else golden[name]
        for name in MODEL_INPUTS
    )
    batch = torch.export.Dim("batch", min=1, max=1_000_000)
    per_event = (
        {0: batch} if fixed_time else {0: batch, 1: torch.export.Dim("time", min=1, max=max_len)}
    )
    shapes = (per_event,) * 5 + ({0: batch}, {0: batch})
    try:
        with warnings.catch_warnings():  # nn.LSTM's flat weights: known and harmless on export
            warnings.filterwarnings("ignore", message=r".*were assigned during export")
            program = torch.export.export(eager, inputs, dynamic_shapes=shapes)
    except Exception as exc:  # torch.export reports unsupported code in many exception types
        raise ExportError(f"torch.export could not export this model: {exc}") from exc
    steps = f"exactly {max_len}" if fixed_time else f"1..{max_len}"
    extra = {
        METADATA_FILE: json.dumps(
            {**metadata.to_dict(), "program": {"time_steps": steps}}, sort_keys=True
        )
    }
    with atomic_path(out) as tmp:
        # Through open files, not the path: torch warns ("Expect archive file to be a file
        # ending in .pt2", "Unable to load package…") on every name not ending in .pt2, which
        # our temp file (and a user's --pt2 name) need not; a buffer is always accepted.
        with tmp.open("wb") as sink:
            torch.export.save(program, sink, extra_files=extra)
        with tmp.open("rb") as source:
            loaded = torch.export.load(source).module()
        diffs = _program_diffs(loaded, eager, inputs, golden, max_len if fixed_time else None)
        failing = {k: v for k, v in diffs.items() if not v <= atol}
        if failing:
            raise ExportError(
                f"torch.export program parity failed: {failing}; nothing written to {out}"
            )
        digest = file_sha256(tmp)
        remove_vouchers(out)
    vouch(out, digest, key)
    return diffs


def _program_diffs(
    loaded: Any,
    eager: torch.nn.Module,
    inputs: tuple[torch.Tensor, ...],
    golden: dict[str, torch.Tensor],
    fixed_width: int | None,
) -> dict[str, float]:
    """The reloaded program vs the eager model and Lightning, and batch 1 vs batch N (rows
    cut to their length, or kept at ``fixed_width`` where the program takes exactly that)."""
    with torch.inference_mode():
        reference = eager(*inputs)
        found = loaded(*inputs)
        singles = []
        for i in range(min(8, inputs[0].shape[0])):
            width = fixed_width if fixed_width is not None else int(inputs[5][i])
            singles.append(loaded(*one_row(inputs, i, width)))
    return {
        "pt2_vs_eager": max_diff(found, reference),
        "pt2_vs_lightning": max_diff(found, golden["probabilities"]),
        "pt2_batch1_vs_batchN": max_diff(torch.cat(singles), found[: len(singles)]),
    }
