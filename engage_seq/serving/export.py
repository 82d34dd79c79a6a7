"""`engage-export`: a run's best checkpoint -> one self-contained TorchScript artifact.

The artifact is a `engage_seq.serving.scripted.ServingModule`: the model plus vocabularies (id =
index
+ 2; 0 pad, 1 unknown), numeric scaling, ``max_len`` and the time-feature code, with two entry
points (``forward`` on tensors, ``predict_events`` on raw events) and ``output_names()``. The
extra file ``metadata.json`` documents the same (and task, metrics, versions, data
fingerprint). No raw user id is ever written.

Nothing is written unless the parity checks pass (`check_parity`, `engage_seq.serving.parity`): the
reloaded artifact must agree with the eager model and with the Lightning predictions recorded
at training time (``golden_batch.pt``, ``golden_events.parquet``) through both entry points,
at batch size N and 1, and with the training code on constructed edge cases, within ``--atol``.

Each file written gets a ``<file>.sha256`` sidecar (``sha256sum`` format) that the loaders in
`engage_seq.serving.loading` check before parsing it. Order: the parity-checked temp file is
hashed, any
old sidecar is removed, the file is renamed into place, then the new sidecar is written; a
crash in between leaves an artifact without a sidecar (refused: re-export), never a sidecar
that vouches for other bytes. With ``ENGAGE_SEQ_SIGNING_KEY`` set, ``<file>.sig``
(`engage_seq.serving.signing`) follows the sidecar the same way: any old one goes before the rename,
the new one is written last, so a signature never outlives the bytes it names.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import torch

from engage_seq import __version__
from engage_seq.common.errors import EngageSeqError
from engage_seq.common.io import atomic_path
from engage_seq.common.times import now_text
from engage_seq.common.untrusted_yaml import load_untrusted_config
from engage_seq.models.engagement import MODEL_INPUTS, EngagementModel, ProbabilityModel
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
from engage_seq.serving.signing import (
    SIGNING_KEY_ENV,
    SigningError,
    SigningKey,
    signature_path,
    write_signature,
)
from engage_seq.serving.signing import signing_key as configured_signing_key

ARTIFACT_FORMAT_VERSION = 2  # 2: predict_events / preprocess_events (raw events in)
GOLDEN_BATCH = "golden_batch.pt"
GOLDEN_EVENTS = "golden_events.parquet"


class ExportError(EngageSeqError, RuntimeError):
    """The run cannot be exported, or the exported module disagrees with the model."""


@dataclass(frozen=True)
class ExportResult:
    path: Path
    max_abs_diff: dict[str, float]
    n_checked: int
    metadata: dict[str, Any]


def find_checkpoint(run: Path) -> Path:
    """A run folder -> its best checkpoint; a checkpoint path is returned as is."""
    if run.is_file():
        return run
    candidate = run / "checkpoints" / "best.ckpt"
    if not candidate.is_file():
        raise ExportError(
            f"no checkpoint at {candidate}; pass a run folder written by engage-train "
            "or the path of a .ckpt file"
        )
    return candidate


def _run_dir_of(checkpoint: Path) -> Path:
    return (
        checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent
    )


def _model_parameter_types() -> dict[str, tuple[type, bool]]:
    """EngagementModel's keyword arguments -> (expected type, required), from its signature."""
    types: dict[str, tuple[type, bool]] = {}
    for name, param in inspect.signature(EngagementModel.__init__).parameters.items():
        if name == "self":
            continue
        default = param.default
        if default is inspect.Parameter.empty:
            types[name] = (int, True)  # the required ones are all sizes
        else:
            types[name] = (list if isinstance(default, tuple | list) else type(default), False)
    return types


def _is_type(value: Any, expected: type) -> bool:
    if expected is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected is list:
        return isinstance(value, list | tuple) and all(_is_type(v, int) for v in value)
    return isinstance(value, expected)


def checkpoint_metadata_problem(meta: dict[str, Any]) -> str | None:
    """What is wrong with a checkpoint's ``engage_seq`` metadata, or None. weights_only loading
    runs no code, but these values still size the model and the serving vocabularies, so
    they are checked against EngagementModel's signature and against each other."""
    config = meta.get("model_config")
    if not isinstance(config, dict):
        return "model_config is not a mapping"
    expected = _model_parameter_types()
    unknown = sorted(set(config) - set(expected))
    missing = sorted(k for k, (_, required) in expected.items() if required and k not in config)
    if unknown or missing:
        return f"model_config keys unknown {unknown}, missing {missing}"
    wrong = [k for k, v in config.items() if not _is_type(v, expected[k][0])]
    if wrong:
        return f"model_config values of the wrong type: {wrong}"
    vocabulary = meta.get("vocabulary")
    if not isinstance(vocabulary, dict) or not all(
        isinstance(v, list) and all(isinstance(t, str) for t in v) for v in vocabulary.values()
    ):
        return "vocabulary is not a mapping of column -> list of strings"
    attributes = meta.get("categorical_attributes", [])
    attribute_sizes = list(config.get("attribute_sizes", []))
    if not isinstance(attributes, list) or len(attributes) != len(attribute_sizes):
        return f"categorical_attributes {attributes!r} do not match attribute_sizes"
    sizes = {
        "event_type": config["n_event_ids"],
        "channel": config["n_channel_ids"],
        **dict(zip(attributes, attribute_sizes, strict=True)),
    }
    for column, size in sizes.items():
        if column not in vocabulary or len(vocabulary[column]) + 2 != size:
            found = len(vocabulary.get(column, [])) + 2
            return f"vocabulary[{column!r}] gives {found} ids, the model expects {size}"
    return None


def load_model(checkpoint: Path) -> tuple[EngagementModel, dict[str, Any]]:
    """Rebuild the eager model from a checkpoint (weights_only: no code runs on load)."""
    try:
        ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ExportError(f"cannot read checkpoint {checkpoint}: {exc}") from exc
    meta = ckpt.get("engage_seq") if isinstance(ckpt, dict) else None
    if not isinstance(meta, dict) or "model_config" not in meta:
        raise ExportError(
            f"{checkpoint} is not an engage_seq checkpoint (no 'engage_seq' metadata); "
            "export runs written by engage-train"
        )
    problem = checkpoint_metadata_problem(meta)
    if problem:
        raise ExportError(
            f"{checkpoint}: invalid engage_seq metadata: {problem}; export runs written by "
            "engage-train (retrain if the file was edited)"
        )
    if not isinstance(ckpt.get("state_dict"), dict):
        raise ExportError(f"{checkpoint} has no state_dict; export runs written by engage-train")
    try:
        model = EngagementModel(**meta["model_config"])
        prefix = "model."
        state = {
            k.removeprefix(prefix): v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)
        }
        model.load_state_dict(state)
    except (TypeError, ValueError, RuntimeError, KeyError) as exc:
        raise ExportError(f"{checkpoint}: weights do not fit the recorded model: {exc}") from exc
    return model.eval(), meta


def _run_config(run_dir: Path) -> dict[str, Any] | None:
    """The run's resolved configuration (settings and file paths, no data), if present.

    Untrusted input that rides into the artifact's metadata: size/alias limits before parsing
    and the `_target_` check, so a hand-edited file cannot balloon the export or smuggle in a
    target that a later reader instantiates."""
    path = run_dir / "config_resolved.yaml"
    if not path.is_file():
        return None
    try:
        return load_untrusted_config(path)
    except ValueError as error:  # UnsafeConfigError, or not YAML
        raise ExportError(str(error)) from error


def serving_module(model: EngagementModel, meta: dict[str, Any]) -> ServingModule:
    """The exported module for a model and its checkpoint metadata."""
    output_names = list(meta.get("output_names", meta["target_names"]))
    scaling = meta["numeric_scaling"]
    try:
        return ServingModule(
            ProbabilityModel(model, output_names),
            meta["vocabulary"],
            list(meta["categorical_attributes"]),
            [(scaling[c]["mean"], scaling[c]["std"]) for c in meta["numeric_attributes"]],
            int(meta["max_len"]),
            list(meta["time_features"]),
            str(meta.get("missing_category_token", "none")),
        )
    except (KeyError, ValueError) as exc:
        raise ExportError(f"checkpoint metadata cannot describe a serving module: {exc}") from exc


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
            row = [t[i : i + 1, :width] if t.dim() > 1 else t[i : i + 1] for t in inputs]
            singles.append(scripted(*row))
    return {
        "eager_vs_lightning": _max_diff(eager_probs, golden["probabilities"]),
        "torchscript_vs_eager": _max_diff(scripted_probs, eager_probs),
        "batch1_vs_batchN": _max_diff(torch.cat(singles), scripted_probs[: len(singles)]),
    }


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
    metadata: dict[str, Any],
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
    eager = ProbabilityModel(model, output_names).eval()
    max_len = int(metadata["max_len"])
    fixed_time = model.config["encoder"] != "transformer"
    inputs = tuple(_pad_time(golden[name], max_len) for name in MODEL_INPUTS)
    batch = torch.export.Dim("batch", min=1, max=1_000_000)
    per_event = (
        {0: batch} if fixed_time else {0: batch, 1: torch.export.Dim("time", min=1, max=max_len)}
    )
    shapes = (per_event,) * 5 + ({0: batch},)
    try:
        with warnings.catch_warnings():  # nn.LSTM's flat weights: known and harmless on export
            warnings.filterwarnings("ignore", message=r".*were assigned during export")
            program = torch.export.export(eager, inputs, dynamic_shapes=shapes)
    except Exception as exc:  # torch.export reports unsupported code in many exception types
        raise ExportError(f"torch.export could not export this model: {exc}") from exc
    extra = {
        METADATA_FILE: json.dumps(
            {
                **metadata,
                "program": {"time_steps": f"exactly {max_len}" if fixed_time else f"1..{max_len}"},
            },
            sort_keys=True,
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
        with torch.inference_mode():
            reference = eager(*inputs)
            found = loaded(*inputs)
            singles = []
            for i in range(min(8, inputs[0].shape[0])):
                width = max_len if fixed_time else int(inputs[5][i])
                singles.append(
                    loaded(*[t[i : i + 1, :width] if t.dim() > 1 else t[i : i + 1] for t in inputs])
                )
        diffs = {
            "pt2_vs_eager": _max_diff(found, reference),
            "pt2_vs_lightning": _max_diff(found, golden["probabilities"]),
            "pt2_batch1_vs_batchN": _max_diff(torch.cat(singles), found[: len(singles)]),
        }
        failing = {k: v for k, v in diffs.items() if not v <= atol}
        if failing:
            raise ExportError(
                f"torch.export program parity failed: {failing}; nothing written to {out}"
            )
        digest = file_sha256(tmp)
        _remove_vouchers(out)
    _vouch(out, digest, key)
    return diffs


def _remove_vouchers(out: Path) -> None:
    """Before the rename: no sidecar or signature of an older file stays next to the new one."""
    sidecar_path(out).unlink(missing_ok=True)
    signature_path(out).unlink(missing_ok=True)


def _vouch(out: Path, digest: str, key: SigningKey | None) -> None:
    """After the rename: the sidecar, then (with a key) the signature of the same digest."""
    write_sidecar(out, digest)
    if key is not None:
        write_signature(out, digest, key)


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
    run_dir = _run_dir_of(checkpoint)
    config = _run_config(run_dir)  # untrusted input: refused before anything else is read
    model, meta = load_model(checkpoint)
    golden_path = run_dir / GOLDEN_BATCH
    if not golden_path.is_file():
        raise ExportError(
            f"no parity reference {golden_path}; export needs the run folder written by "
            "engage-train (it records test inputs and the Lightning predictions there)"
        )
    output_names = list(meta.get("output_names", meta["target_names"]))
    eager = serving_module(model, meta).eval()
    metrics_path = run_dir / "metrics.json"
    metadata = {
        "format_version": ARTIFACT_FORMAT_VERSION,
        "created_at": now_text(),
        "engage_seq_version": __version__,
        "torch_version": torch.__version__,
        "output_names": output_names,
        "inputs": {
            "forward": [
                "event_ids (B, T) int64: vocabulary.event_type index + 2; 0 pad, 1 unknown",
                "channel_ids (B, T) int64: vocabulary.channel index + 2; 0 pad, 1 unknown",
                "attribute_ids (B, T, C) int64: per categorical_attributes, vocabulary index + 2",
                "numeric (B, T, F) float32: clip((sign(x)*log1p(|x|) - mean) / std, -5, 5), "
                "null -> 0, in the order of numeric_attributes, statistics in numeric_scaling",
                "time_features (B, T, K) float32: in the order of time_features",
                "lengths (B,) int64: real events per row, 1..max_len",
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
        },
        "metrics": json.loads(metrics_path.read_text()) if metrics_path.is_file() else {},
        "config": config,
        **{k: v for k, v in meta.items() if k not in ("target_names", "output_names")},
    }
    golden = torch.load(golden_path, map_location="cpu", weights_only=True)
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

    out = Path(out)
    with quiet_jit_deprecation(), atomic_path(out) as tmp:
        scripted = torch.jit.script(eager)
        extra = {METADATA_FILE: json.dumps(metadata, indent=2, sort_keys=True)}
        torch.jit.save(scripted, str(tmp), _extra_files=extra)
        digest = file_sha256(tmp)  # the bytes parity is checked on are the bytes vouched for
        reloaded, written = load_artifact(tmp, expected_sha256=digest)
        diffs = check_parity(reloaded, eager, golden)
        # through the metadata as written and read back, exactly as every scorer reads it
        diffs.update(full_parity(reloaded, golden, golden_events, written))
        failing = {k: v for k, v in diffs.items() if not v <= atol}  # NaN fails too
        if failing:
            raise ExportError(
                f"parity check failed (max abs diff > atol {atol:g}): {failing}; "
                f"no artifact written to {out}"
            )
        if pt2 is not None:  # inside: a failing program leaves no TorchScript file either
            program = export_program(model, output_names, golden, metadata, Path(pt2), atol, key)
            diffs.update(program)
        _remove_vouchers(out)
    _vouch(out, digest, key)
    return ExportResult(out, diffs, int(golden["lengths"].shape[0]), metadata)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="engage-export",
        description="Export an engage-train run to a self-contained TorchScript artifact, "
        "refusing to write it unless parity checks pass.",
    )
    parser.add_argument("run", help="run folder written by engage-train, or its .ckpt file")
    parser.add_argument("--out", help="artifact path (default: <run>/artifact.pt)", default=None)
    parser.add_argument("--atol", type=float, default=1e-5, help="max abs difference allowed")
    parser.add_argument(
        "--pt2", help="also write a torch.export program of the tensor entry point here (.pt2)"
    )
    args = parser.parse_args(argv)
    run = Path(args.run)
    try:
        out = Path(args.out) if args.out else _run_dir_of(find_checkpoint(run)) / "artifact.pt"
        result = export_artifact(run, out, atol=args.atol, pt2=args.pt2)
    except ExportError as exc:
        print(f"engage-export: error: {exc}", file=sys.stderr)
        return 1
    diffs = ", ".join(f"{k}={v:.2e}" for k, v in result.max_abs_diff.items())
    print(f"wrote {result.path} (outputs: {', '.join(result.metadata['output_names'])})")
    print(f"wrote {sidecar_path(result.path)} (checked by engage-score; sha256sum -c works)")
    if signature_path(result.path).is_file():
        print(f"wrote {signature_path(result.path)} (signed with {SIGNING_KEY_ENV})")
    if args.pt2:
        print(f"wrote {args.pt2} (torch.export program of the tensor entry point)")
    print(f"parity on {result.n_checked} test samples: {diffs}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
