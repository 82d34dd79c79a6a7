"""Reading the hybrid model's aggregate settings from an artifact's (or checkpoint's) metadata.

``aggregate_names`` and ``aggregate_scaling`` are untrusted input like the rest of the
metadata: the names must be exactly what this version computes for the task's targets and the
numeric attributes (`engage_seq.data.aggregates.aggregate_names`), so a model is never fed
aggregates in another order or of another definition; the scaling must be finite with a
positive std. Everything that builds the aggregates input (export, engage-score, the parity
checks) reads them through `served_aggregates`.
"""

from __future__ import annotations

from dataclasses import dataclass

from engage_seq.data.aggregates import WINDOW_DAYS, aggregate_names, ordered_aggregate_scaling
from engage_seq.serving.contract import ArtifactMetadata, ArtifactMetadataError


@dataclass(frozen=True)
class ServedAggregates:
    """What the aggregates input needs: the target types counted per type, the ordered scaling
    (empty: the model reads no aggregates) and the count windows."""

    targets: list[str]
    scaling: dict[str, dict[str, float]]
    windows_days: list[int]

    @property
    def scaling_pairs(self) -> list[tuple[float, float]]:
        """(mean, std) per aggregate, in order (what the TorchScript module holds)."""
        return [(stats["mean"], stats["std"]) for stats in self.scaling.values()]


def served_aggregates(meta: ArtifactMetadata, where: str = "the artifact") -> ServedAggregates:
    """The checked aggregate settings of ``meta``; none when it lists no aggregates."""
    names = meta.aggregate_names or []
    targets = [str(t) for t in (meta.task.get("targets") or [])]
    if not names:
        return ServedAggregates(targets, {}, list(WINDOW_DAYS))
    expected = aggregate_names(targets, meta.numeric_attributes)
    if names != expected:
        raise ArtifactMetadataError(
            f"{where}: aggregate_names do not match the aggregates this version computes for "
            f"targets {targets} and numeric attributes {meta.numeric_attributes} (expected "
            f"{len(expected)} names starting {expected[:3]}); re-export the artifact with this "
            "version of engage-export, or retrain"
        )
    try:
        scaling = ordered_aggregate_scaling(meta.aggregate_scaling, names)
    except ValueError as exc:
        raise ArtifactMetadataError(f"{where}: {exc}") from None
    return ServedAggregates(targets, scaling, list(WINDOW_DAYS))
