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
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import torch

from engage_seq import __version__
from engage_seq.common.io import atomic_path
from engage_seq.common.times import now_text
from engage_seq.models.calibration import Calibration, CalibrationError
from engage_seq.models.engagement import MODEL_INPUTS, EngagementModel, ProbabilityModel
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
from engage_seq.serving.loading import (
    METADATA_FILE,
    file_sha256,
    load_artifact,
    quiet_jit_deprecation,
    sidecar_path,
    write_sidecar,
)
from engage_seq.serving.parity import full_parity
from engage_seq.serving.scripted import ServingModule
from engage_seq.serving.signing import SigningError, SigningKey, signature_path, write_signature
from engage_seq.serving.signing import signing_key as configured_signing_key

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


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max())


def check_parity(
    scripted: torch.jit.ScriptModule,
    eager: torch.nn.Module,
    golden: dict[str, torch.Tensor],
    n_single: int = 8,
) -> dict[str, float]:
    """Tensor entry: max abs differences scripted vs eager vs Lightning, batch 1 vs batch N."""
    inputs = [golden[name] for name in MODEL_INPUTS]
    lengths = golden["lengths"]
    with torch.inference_mode():
        eager_probs = eager(*inputs)
        scripted_probs = scripted(*inputs)
        singles = []
        for i in range(min(n_single, lengths.shape[0])):
            width = int(lengths[i])
            singles.append(scripted(*_one_row(inputs, i, width)))
    return {
        "eager_vs_lightning": _max_diff(eager_probs, golden["probabilities"]),
        "torchscript_vs_eager": _max_diff(scripted_probs, eager_probs),
        "batch1_vs_batchN": _max_diff(torch.cat(singles), scripted_probs[: len(singles)]),
    }


def _one_row(inputs: Sequence[torch.Tensor], i: int, width: int) -> list[torch.Tensor]:
    """Row ``i`` of the MODEL_INPUTS tensors, its per-event inputs cut to ``width`` events
    (lengths and aggregates have no event axis)."""
    per_event = len(MODEL_INPUTS) - 2
    return [t[i : i + 1, :width] if k < per_event else t[i : i + 1] for k, t in enumerate(inputs)]


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
    eager = ProbabilityModel(model, output_names, artifact_calibration(metadata)).eval()
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
        _remove_vouchers(out)
    _vouch(out, digest, key)
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
            singles.append(loaded(*_one_row(inputs, i, width)))
    return {
        "pt2_vs_eager": _max_diff(found, reference),
        "pt2_vs_lightning": _max_diff(found, golden["probabilities"]),
        "pt2_batch1_vs_batchN": _max_diff(torch.cat(singles), found[: len(singles)]),
    }


def _remove_vouchers(out: Path) -> None:
    """Before the rename: no sidecar or signature of an older file stays next to the new one."""
    sidecar_path(out).unlink(missing_ok=True)
    signature_path(out).unlink(missing_ok=True)


def _vouch(out: Path, digest: str, key: SigningKey | None) -> None:
    """After the rename: the sidecar, then (with a key) the signature of the same digest."""
    write_sidecar(out, digest)
    if key is not None:
        write_signature(out, digest, key)


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
                export_program(model, output_names, golden, metadata, Path(pt2), atol, key)
            )
        _remove_vouchers(out)
    _vouch(out, digest, key)
    return ExportResult(out, diffs, int(golden["lengths"].shape[0]), metadata)
