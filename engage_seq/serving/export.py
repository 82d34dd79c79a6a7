"""Export: a run's best checkpoint -> one self-contained TorchScript artifact.

The artifact is a `engage_seq.serving.scripted.ServingModule`: the model plus vocabularies
(id = index + 2; 0 pad, 1 unknown), numeric scaling, ``max_len`` and the time-feature code,
with two entry points (``forward`` on tensors, ``predict_events`` on raw events) and
``output_names()``. The extra file ``metadata.json`` documents the same (and task, metrics,
versions, data fingerprint; its keys: `engage_seq.serving.contract`). No raw user id is ever
written.

Nothing is written unless the parity checks pass (`check_parity`,
`engage_seq.serving.parity`): the reloaded artifact must agree with the eager model and with
the Lightning predictions recorded at training time (``golden_batch.pt``,
``golden_events.parquet``) through both entry points, at batch size N and 1, and with the
training code on constructed edge cases, within ``--atol``.

Each file written gets a ``<file>.sha256`` sidecar (``sha256sum`` format) that the loaders in
`engage_seq.serving.loading` check before parsing it. Order: the parity-checked temp file
is hashed, any old sidecar is removed, the file is renamed into place, then the new sidecar
is written; a crash in between leaves an artifact without a sidecar (refused: re-export),
never a sidecar that vouches for other bytes. With ``ENGAGE_SEQ_SIGNING_KEY`` set,
``<file>.sig`` (`engage_seq.serving.signing`) follows the sidecar the same way: any old one
goes before the rename, the new one is written last, so a signature never outlives the bytes
it names. Reading the run folder is `engage_seq.serving.checkpoint`; the console script
(``engage-export``) is `engage_seq.cli.export`.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import torch

from engage_seq import __version__
from engage_seq.common.io import atomic_path
from engage_seq.common.times import now_text
from engage_seq.models.calibration import Calibration, CalibrationError
from engage_seq.models.engagement import EngagementModel, ProbabilityModel
from engage_seq.serving.aggregate_metadata import served_aggregates
from engage_seq.serving.calibration_file import read_calibration
from engage_seq.serving.checkpoint import (
    ExportError,
    find_checkpoint,
    load_model,
    run_config,
    run_dir_of,
)
from engage_seq.serving.contract import (
    ARTIFACT_FORMAT_VERSION,
    ArtifactMetadata,
    ArtifactMetadataError,
)
from engage_seq.serving.export_program import export_program
from engage_seq.serving.loading import (
    METADATA_FILE,
    file_sha256,
    load_artifact,
    quiet_jit_deprecation,
)
from engage_seq.serving.parity import check_parity, full_parity
from engage_seq.serving.scripted import ServingModule
from engage_seq.serving.signing import SigningError
from engage_seq.serving.signing import signing_key as configured_signing_key
from engage_seq.serving.vouchers import remove_vouchers, vouch

__all__ = [  # reading the run folder lives in engage_seq.serving.checkpoint
    "ARTIFACT_FORMAT_VERSION",
    "ExportError",
    "ExportResult",
    "artifact_metadata",
    "check_parity",
    "export_artifact",
    "export_program",
    "find_checkpoint",
    "load_artifact",
    "load_model",
    "quiet_jit_deprecation",
    "run_dir_of",
    "serving_module",
]

GOLDEN_BATCH = "golden_batch.pt"
GOLDEN_EVENTS = "golden_events.parquet"

# what metadata.json says about the two entry points' arguments (for callers in any language)
INPUTS_DOC: dict[str, Any] = {
    "forward": [
        "event_ids (B, T) int64: vocabulary.event_type index + 2; 0 pad, 1 unknown",
        "channel_ids (B, T) int64: vocabulary.channel index + 2; 0 pad, 1 unknown",
        "attribute_ids (B, T, C) int64: per categorical_attributes, vocabulary index + 2",
        "numeric (B, T, F) float32: clip((sign(x)*log1p(|x|) - mean) / std, -5, 5), "
        "null -> 0, in the order of numeric_attributes, statistics in numeric_scaling",
        "time_features (B, T, K) float32: in the order of time_features",
        "lengths (B,) int64: real events per row, 1..max_len",
        "aggregates (B, A) float32: full-history aggregates in the order of aggregate_names, "
        "clip((value - mean) / std, -5, 5) with aggregate_scaling; A = 0 when the list is "
        "empty (definitions: aggregate_definitions)",
    ],
    "predict_events": [
        "event_types: list (per user) of lists of event-type strings",
        "timestamps: list of (n,) int64 tensors, epoch seconds, any order",
        "channels: list of lists of channel strings (None = missing)",
        "attributes: list (per user) of lists (per categorical_attributes) of strings "
        "(None = missing)",
        "numeric: list of (n, F) float64 tensors in the order of numeric_attributes "
        "(NaN = missing)",
        "cutoffs: (B,) int64 epoch seconds; only events strictly before count; every "
        "user needs one such event",
    ],
    "returns": "(B, n_outputs) float32 probabilities, columns as output_names: "
    "horizon targets are independent sigmoids; next_event/<type> columns are one "
    "softmax (they sum to 1)",
}


@dataclass(frozen=True)
class ExportResult:
    path: Path
    max_abs_diff: dict[str, float]
    n_checked: int
    metadata: ArtifactMetadata  # what metadata.json holds


def serving_module(model: EngagementModel, meta: ArtifactMetadata) -> ServingModule:
    """The exported module for a model and the metadata its artifact will carry (read through
    the same typed contract every scorer reads)."""
    scaling = meta.numeric_scaling
    if meta.time_features is None:  # optional for reading old artifacts, needed to build one
        raise ExportError("checkpoint metadata cannot describe a serving module: no time_features")
    try:
        aggregates = served_aggregates(meta, "the checkpoint")
        if len(aggregates.scaling) != model.n_aggregates:
            raise ValueError(
                f"the model reads {model.n_aggregates} aggregates, the metadata lists "
                f"{len(aggregates.scaling)}"
            )
        return ServingModule(
            ProbabilityModel(model, meta.output_names, artifact_calibration(meta)),
            meta.vocabulary,
            list(meta.categorical_attributes),
            [(scaling[c]["mean"], scaling[c]["std"]) for c in meta.numeric_attributes],
            meta.max_len,
            list(meta.time_features),
            meta.category_token,
            aggregates.targets,
            aggregates.scaling_pairs,
            aggregates.windows_days,
        )
    except (KeyError, ValueError) as exc:
        raise ExportError(f"checkpoint metadata cannot describe a serving module: {exc}") from exc


def artifact_calibration(meta: ArtifactMetadata) -> Calibration | None:
    """The calibration the metadata records (None: none), checked against its outputs."""
    if meta.calibration is None:
        return None
    try:
        calibration = Calibration.from_dict(meta.calibration, "metadata key 'calibration'")
        calibration.check_outputs(meta.targets, "metadata key 'calibration'")
    except CalibrationError as exc:
        raise ExportError(str(exc)) from None
    return calibration


def artifact_metadata(
    meta: dict[str, Any], run_dir: Path, config: dict[str, Any] | None
) -> ArtifactMetadata:
    """What ``metadata.json`` records: export's own keys, then the checkpoint's metadata (the
    training run's, `engage_seq.training.metadata`) less its target names, and the run's
    ``calibration.json`` where it has one (untrusted: validated first)."""
    metrics_path = run_dir / "metrics.json"
    try:
        calibration = read_calibration(run_dir)
    except CalibrationError as exc:
        raise ExportError(str(exc)) from None
    written = {
        "format_version": ARTIFACT_FORMAT_VERSION,
        "created_at": now_text(),
        "engage_seq_version": __version__,
        "torch_version": torch.__version__,
        "output_names": list(meta.get("output_names", meta["target_names"])),
        "inputs": copy.deepcopy(INPUTS_DOC),
        "metrics": json.loads(metrics_path.read_text()) if metrics_path.is_file() else {},
        "config": config,
        **{k: v for k, v in meta.items() if k not in ("target_names", "output_names")},
        **({"calibration": calibration.to_dict()} if calibration is not None else {}),
    }
    try:
        return ArtifactMetadata.from_dict(written, "the checkpoint")
    except ArtifactMetadataError as exc:
        raise ExportError(f"{exc} (retrain: the checkpoint predates this version)") from None


def _golden_batch_path(run_dir: Path) -> Path:
    golden_path = run_dir / GOLDEN_BATCH
    if not golden_path.is_file():
        raise ExportError(
            f"no parity reference {golden_path}; export needs the run folder written by "
            "engage-train (it records test inputs and the Lightning predictions there)"
        )
    return golden_path


def _golden_references(
    golden_path: Path, meta: dict[str, Any]
) -> tuple[dict[str, torch.Tensor], pl.DataFrame]:
    """The test inputs and Lightning predictions engage-train saved, to check parity on."""
    run_dir = golden_path.parent
    golden = torch.load(golden_path, map_location="cpu", weights_only=True)
    for prefix in ("", "complete_"):  # a run from before the aggregates input: none
        if f"{prefix}lengths" in golden and f"{prefix}aggregates" not in golden:
            golden[f"{prefix}aggregates"] = torch.zeros(len(golden[f"{prefix}lengths"]), 0)
    events_path = run_dir / GOLDEN_EVENTS
    if not events_path.is_file():
        raise ExportError(
            f"no raw-event parity reference {events_path}; the run was written by an older "
            "engage-train: retrain it to export an artifact with the raw entry point"
        )
    golden_events = pl.read_parquet(events_path)
    if golden_events.is_empty() or "complete_probabilities" not in golden:
        raise ExportError(
            f"{events_path} holds no test user whose whole history fits in max_len "
            f"({meta['max_len']}), so the raw entry point cannot be checked against training; "
            "retrain with a larger data.sampling.max_len or more test users"
        )
    return golden, golden_events


def export_artifact(
    run: str | Path, out: str | Path, atol: float = 1e-5, pt2: str | Path | None = None
) -> ExportResult:
    """Script, save to a temp file, reload, check parity, then move into place (and, with
    ``pt2``, the same for a torch.export program of the tensor entry point). Signs both
    when ``ENGAGE_SEQ_SIGNING_KEY`` is set."""
    try:
        key = configured_signing_key()  # an unusable key fails now, before any work
    except SigningError as exc:
        raise ExportError(str(exc)) from None
    checkpoint = find_checkpoint(Path(run))
    run_dir = run_dir_of(checkpoint)
    config = run_config(run_dir)  # untrusted input: refused before anything else is read
    model, meta = load_model(checkpoint)
    golden_path = _golden_batch_path(run_dir)
    metadata = artifact_metadata(meta, run_dir, config)
    eager = serving_module(model, metadata).eval()
    golden, golden_events = _golden_references(golden_path, meta)
    out = Path(out)
    with quiet_jit_deprecation(), atomic_path(out) as tmp:
        scripted = torch.jit.script(eager)
        extra = {METADATA_FILE: json.dumps(metadata.to_dict(), indent=2, sort_keys=True)}
        torch.jit.save(scripted, str(tmp), _extra_files=extra)
        digest = file_sha256(tmp)  # the bytes parity is checked on are the bytes vouched for
        reloaded, written = load_artifact(tmp, expected_sha256=digest)
        diffs = check_parity(reloaded, eager, golden)
        # through the metadata as written and read back, exactly as every scorer reads it
        diffs.update(
            full_parity(reloaded, golden, golden_events, ArtifactMetadata.from_dict(written))
        )
        failing = {k: v for k, v in diffs.items() if not v <= atol}  # NaN fails too
        if failing:
            raise ExportError(
                f"parity check failed (max abs diff > atol {atol:g}): {failing}; "
                f"no artifact written to {out}"
            )
        if pt2 is not None:  # inside: a failing program leaves no TorchScript file either
            output_names = metadata.output_names
            diffs.update(
                export_program(
                    model,
                    output_names,
                    artifact_calibration(metadata),
                    golden,
                    metadata,
                    Path(pt2),
                    atol,
                    key,
                )
            )
        remove_vouchers(out)
    vouch(out, digest, key)
    return ExportResult(out, diffs, int(golden["lengths"].shape[0]), metadata)
