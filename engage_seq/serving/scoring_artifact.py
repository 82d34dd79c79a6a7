"""Opening an artifact for batch scoring: the loaders' checks, then its metadata's contract.

`open_scoring_artifact` is what engage-score, engage-drift and engage-backtest call: the file
must pass `engage_seq.serving.loading.load_artifact` (archive bounds, sidecar, signature),
carry a ``metadata.json`` of a format this version reads (`engage_seq.serving.contract`), and
name the same outputs as its module. torch only through the loader; no model classes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engage_seq.serving.aggregate_metadata import served_aggregates
from engage_seq.serving.contract import REQUIRED_METADATA, ArtifactMetadata, ArtifactMetadataError
from engage_seq.serving.event_table import ScoringError
from engage_seq.serving.loading import ArtifactIntegrityError, load_artifact

SUPPORTED_FORMATS = (3,)  # artifact format versions this scorer understands (3: aggregates)


def open_scoring_artifact(
    path: str | Path, allow_unverified: bool | None = None, require_signed: bool | None = None
) -> tuple[Any, ArtifactMetadata]:
    """The scripted module and its typed metadata, checked against each other.

    Before torch parses the file it must look like a TorchScript archive and match its
    ``<artifact>.sha256`` sidecar (`engage_seq.serving.loading.verify_artifact`). A missing
    sidecar is refused unless ``allow_unverified`` (None: the ``ENGAGE_SEQ_ALLOW_UNVERIFIED``
    environment variable, which also covers engage-drift and engage-backtest); a mismatch is
    always refused. ``require_signed`` (None: ``ENGAGE_SEQ_REQUIRE_SIGNED``) also refuses an
    artifact without a valid ``<artifact>.sig`` (`engage_seq.serving.loading.verify_provenance`).
    """
    path = Path(path)
    if not path.exists():  # a folder or an unreadable file: named by check_archive
        raise ScoringError(f"artifact {path} does not exist")
    try:
        module, metadata = load_artifact(
            path, allow_unverified=allow_unverified, require_signed=require_signed
        )
    except ArtifactIntegrityError as exc:  # foreign, altered or unverifiable: nothing parsed
        raise ScoringError(str(exc)) from None
    except (RuntimeError, ValueError) as exc:
        raise ScoringError(f"{path} is not a TorchScript artifact: {exc}") from None
    if not metadata:
        raise ScoringError(f"{path} carries no metadata.json: export it with engage-export")
    missing = [key for key in REQUIRED_METADATA if key not in metadata]
    if missing:
        raise ScoringError(f"{path}: metadata lacks {missing}; re-export it with engage-export")
    if metadata["format_version"] not in SUPPORTED_FORMATS:
        raise ScoringError(
            f"{path} has artifact format {metadata['format_version']}; this engage-score reads "
            f"{list(SUPPORTED_FORMATS)}: re-export the run with this version of engage-export"
        )
    try:
        meta = ArtifactMetadata.from_dict(metadata, str(path))
        served_aggregates(meta, str(path))  # refuse bad aggregate settings before any work
    except ArtifactMetadataError as exc:
        raise ScoringError(str(exc)) from None
    names = list(module.output_names())
    if names != list(meta.output_names):
        raise ScoringError(
            f"{path}: the module's outputs {names} do not match its metadata "
            f"{meta.output_names}; the file was altered or assembled by hand"
        )
    return module, meta
