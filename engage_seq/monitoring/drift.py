"""`engage-drift`: has the current data moved away from the reference? One number per feature.

Each feature is turned into a histogram on the reference's bins and compared with the
population stability index, PSI = sum((c - r) * ln(c / r)) over bins of the reference (r) and
current (c) shares, and the Jensen-Shannon distance (base 2, in [0, 1]; symmetric and finite
even where a bin is empty on one side, so it reads as "how different", where PSI reads as
"how much would a model notice"). Features:

* ``event_type``, ``channel``, ``cat_<column>``: category shares (a category unseen on one
  side is smoothed to `distances.SMOOTHING`, so a new category that takes 5% of events scores
  ~0.3). Only the `histograms.MAX_CATEGORIES` categories with the largest share on either side
  keep a bin of their own; the rest are pooled into ``(other)``, and PSI, JS and noise are
  computed on these pooled bins, so drift.json reproduces its numbers and rare values (which
  can single a user out) are never listed. Pooling also keeps the statistic meaningful: over K
  sparse bins PSI is mostly its noise floor (K - 1)(1/n_ref + 1/n_cur), which for a few hundred
  categories alone exceeds the threshold. A column with about one value per user
  (`engage_seq.data.schema.looks_like_identifier`: an e-mail, a device id) is refused outright;
* ``sequence_length``: events per user in an event table, ``n_history`` (events before the
  cutoff) per sample in a sample file;
* ``gap_hours``: hours between a user's consecutive events (decile bins of the reference;
  quantile bins are invariant to monotone maps, so this equals binning log hours); a user's
  first event has no gap and is left out on both paths (samples: when the history reaches
  back to it, its ``log_gap_h`` is a placeholder 0);
* ``num_<column>``: every numeric attribute, reference deciles, nulls as their own bin; when
  most reference rows are null (an order value set on purchases only) also
  ``num_<column>:present``, the values where present, whose change the nulls would dilute;
* ``score_<target>`` (with ``artifact=``): the model's scores, binned by reference deciles;
  each table is scored at its own cutoff, 1 s after its last event (samples: at their own
  cutoffs), through engage-score's code. A next-event artifact adds ``score_next_event``, the
  share of each predicted class.

Inputs are raw event tables (Parquet/CSV, read with the artifact's column mapping or the
default one) or sample Parquet files written by the builder (recognised by their ``split``,
``cutoff`` and list columns); both inputs must be of one kind. Compare like with like: a
table of 8 weeks against one of 2 weeks differs in events per user whatever happened, so
use windows of equal length (``reference_start``/``reference_end``/``current_*`` cut one
table into two).

A feature with values on one side only (a column one sample file lacks) has no PSI: its verdict
is ``missing on one side``, which counts as drift for the exit status.

Thresholds: PSI below 0.1 is conventionally "no change", 0.1-0.25 "watch", above 0.25 "act".
The default drift threshold is that 0.25, not 0.1, because PSI has a noise floor: two samples
of one population differ by about (K - 1)(1/n_ref + 1/n_cur) for K bins and n independent rows
(reported per feature as ``noise``; rows clustered by user show more). Per-user features of a
few hundred users sit at 0.05-0.1 on noise alone (measured on synthetic data: sequence length
of 300 users, fresh seed vs seed, 0.05 and 0.09; 2000 users: 0.007), and a scheduler that
retrains on noise learns to ignore the alarm. Every feature's threshold can be overridden.
Exit status: 0 no feature at or above its threshold, 1 drift (some feature is, or has values
on one side only), 2 bad usage or input.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import polars as pl

from engage_seq.common.times import gap_text
from engage_seq.monitoring.drift_features import (
    Values,
    add_present_values,
    feature_values,
    refuse_identifiers,
    score_values,
)
from engage_seq.monitoring.drift_inputs import (
    ARTIFACT_COLUMN_HINT,
    COLUMN_HINT,
    ColumnOverrides,
    DriftInput,
    Window,
    column_mapping,
    ingest_settings,
    read_input,
)
from engage_seq.monitoring.drift_verdicts import (
    DEFAULT_THRESHOLD,
    WATCH_THRESHOLD,
    DriftReport,
    FeatureDrift,
)
from engage_seq.monitoring.errors import DriftError
from engage_seq.monitoring.histograms import (
    MAX_CATEGORIES,
    QUANTILE_BINS,
    binned_counts,
    categorical_counts,
    pool_categories,
)
from engage_seq.serving.contract import ArtifactMetadata  # standard library only: no torch


def compare(
    reference: DriftInput,
    current: DriftInput,
    threshold: float = DEFAULT_THRESHOLD,
    watch: float = WATCH_THRESHOLD,
    feature_thresholds: dict[str, float] | None = None,
    artifact: tuple[Any, ArtifactMetadata] | None = None,
    n_bins: int = QUANTILE_BINS,
    max_categories: int = MAX_CATEGORIES,
) -> DriftReport:
    """Every feature of `feature_values` (and the scores, given a loaded artifact) on both
    sides. Categorical features keep their ``max_categories`` largest categories and pool the
    rest (see the module docstring); an identifier-like one raises `DriftError`. A feature
    with values on one side only gets the verdict `ONE_SIDED` (no PSI)."""
    if max_categories < 1:
        raise DriftError(f"--max-categories must be at least 1, got {max_categories}")
    if reference.kind != current.kind:
        raise DriftError(
            f"reference {reference.where} holds {reference.kind} and current {current.where} "
            f"holds {current.kind}: give two event tables or two sample files"
        )
    feature_thresholds = dict(feature_thresholds or {})
    ref_values, cur_values = feature_values(reference), feature_values(current)
    refuse_identifiers(reference, ref_values)
    refuse_identifiers(current, cur_values)
    inputs: dict[str, Any] = {"reference": reference.summary, "current": current.summary}
    if artifact is not None:
        module, meta = artifact
        ref_scores = score_values(reference, module, meta)
        cur_scores = score_values(current, module, meta)
        ref_values.update(ref_scores["features"])
        cur_values.update(cur_scores["features"])
        inputs["scored_at"] = {"reference": ref_scores["cutoff"], "current": cur_scores["cutoff"]}
    add_present_values(ref_values, cur_values)
    unknown = sorted(set(feature_thresholds) - set(ref_values) - set(cur_values))
    if unknown:
        raise DriftError(
            f"thresholds for unknown features {unknown}; the features are "
            f"{sorted(set(ref_values) | set(cur_values))}"
        )
    features = []
    for name in [*ref_values, *[n for n in cur_values if n not in ref_values]]:
        limit = feature_thresholds.get(name, threshold)
        drift = _feature_drift(name, ref_values, cur_values, limit, watch, n_bins, max_categories)
        features.append(drift)
    return DriftReport(features, inputs, max_categories)


def _feature_drift(
    name: str,
    reference: Values,
    current: Values,
    threshold: float,
    watch: float,
    n_bins: int,
    max_categories: int,
) -> FeatureDrift:
    """One feature's histograms on both sides (empty on a side that lacks the feature) and
    their distance; its watch level is capped at its threshold."""
    kind = (reference.get(name) or current[name])[0]
    empty = pl.LazyFrame(schema={"value": pl.String if kind == "categorical" else pl.Float64})
    ref = reference[name][1] if name in reference else empty
    cur = current[name][1] if name in current else empty
    pooled = 0
    if kind == "categorical":
        bins, r, c, pooled = pool_categories(*categorical_counts(ref, cur), max_categories)
    else:
        text = gap_text if name == "gap_hours" else (lambda x: f"{x:.3g}")
        bins, r, c = binned_counts(ref, cur, n_bins, text)
    return FeatureDrift(name, kind, bins, r, c, threshold, min(watch, threshold), pooled)


@dataclass(frozen=True)
class DriftSide:
    """One side as the user names it: a table or sample file, a window of time and, for
    sample files, a split."""

    path: str
    window: Window = field(default_factory=Window)
    split: str | None = None


def detect_drift(
    reference: DriftSide,
    current: DriftSide,
    *,
    artifact: str | None = None,
    require_signed: bool | None = None,
    columns: ColumnOverrides | None = None,
    max_drop_fraction: float | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    watch: float = WATCH_THRESHOLD,
    feature_thresholds: dict[str, float] | None = None,
    n_bins: int = QUANTILE_BINS,
    max_categories: int = MAX_CATEGORIES,
) -> DriftReport:
    """engage-drift without its command line and outputs: check the settings, load the
    ``artifact`` (if any; ``require_signed``: see
    `engage_seq.serving.scoring.open_scoring_artifact`), read both sides with its column
    mapping (or the default one) and ``columns`` on top, and `compare` them. Write the result
    with `engage_seq.monitoring.drift_report.write_drift_report`."""
    if n_bins < 2:
        raise DriftError(f"--bins must be at least 2, got {n_bins}")
    if not 0 < watch <= threshold:
        raise DriftError(f"need 0 < watch <= threshold, got {watch} and {threshold}")
    if max_drop_fraction is not None and not 0 <= max_drop_fraction <= 1:
        raise DriftError(f"--max-drop-fraction must be in [0, 1], got {max_drop_fraction}")
    loaded = _load_artifact(artifact, require_signed) if artifact else None
    meta = loaded[1] if loaded is not None else None
    mapping = column_mapping(columns or ColumnOverrides(), meta)
    ingest = ingest_settings(meta, max_drop_fraction)
    hint = ARTIFACT_COLUMN_HINT if meta is not None else COLUMN_HINT
    ref, cur = (
        read_input(side.path, mapping, ingest, side.window, side.split, column_hint=hint)
        for side in (reference, current)
    )
    return compare(
        ref,
        cur,
        threshold=threshold,
        watch=watch,
        feature_thresholds=feature_thresholds,
        artifact=loaded,
        n_bins=n_bins,
        max_categories=max_categories,
    )


def _load_artifact(path: str, require_signed: bool | None) -> tuple[Any, ArtifactMetadata]:
    from engage_seq.serving.scoring import ScoringError, open_scoring_artifact  # torch: lazily

    try:
        return open_scoring_artifact(path, require_signed=require_signed)
    except ScoringError as exc:
        raise DriftError(str(exc)) from None
