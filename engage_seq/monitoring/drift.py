"""`engage-drift`: has the current data moved away from the reference? One number per feature.

Each feature is turned into a histogram on the reference's bins and compared with the
population stability index, PSI = sum((c - r) * ln(c / r)) over bins of the reference (r) and
current (c) shares, and the Jensen-Shannon distance (base 2, in [0, 1]; symmetric and finite
even where a bin is empty on one side, so it reads as "how different", where PSI reads as
"how much would a model notice"). Features:

* ``event_type``, ``channel``, ``cat_<column>``: category shares (a category unseen on one
  side is smoothed to `SMOOTHING`, so a new category that takes 5% of events scores ~0.3).
  Only the `MAX_CATEGORIES` categories with the largest share on either side keep a bin of
  their own; the rest are pooled into ``(other)``, and PSI, JS and noise are computed on these
  pooled bins, so drift.json reproduces its numbers and rare values (which can single a user
  out) are never listed. Pooling also keeps the statistic meaningful: over K sparse bins PSI
  is mostly its noise floor (K - 1)(1/n_ref + 1/n_cur), which for a few hundred categories
  alone exceeds the threshold. A column with about one value per user
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

import argparse
import itertools
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from engage_seq.cli.args import KeywordArgumentParser, parse_instant_arg
from engage_seq.common.errors import EngageSeqError
from engage_seq.common.messages import describe_columns
from engage_seq.common.times import format_instant, gap_text
from engage_seq.data.ingest import FileEventSource, IngestConfig
from engage_seq.data.schema import (
    ColumnMapping,
    EventSchemaError,
    looks_like_identifier,
    read_error,
)
from engage_seq.data.validation import validate_events
from engage_seq.serving.outputs import Writer, write_outputs

DEFAULT_THRESHOLD = 0.25  # PSI at or above which a feature has drifted (exit status 1)
WATCH_THRESHOLD = 0.1  # PSI above which the verdict is "watch" (no exit status)
SMOOTHING = 1e-4  # share given to a bin that is empty on one side (PSI would be infinite)
QUANTILE_BINS = 10
MAX_CATEGORIES = 20  # categories listed (and binned) per feature; the rest pool into OTHER
MISSING = "missing"
INGEST_COUNTS = ("rows_dropped", "numeric_missing", "categorical_missing")  # own lines in drift.md
OTHER = "(other)"
ONE_SIDED = "missing on one side"  # verdict of a feature with values on one side only
DRIFT_VERDICTS = ("drift", ONE_SIDED)  # the verdicts that set exit status 1
DATA_CATEGORICALS = ("event_type", "channel")  # plus cat_<column>: checked for identifiers
SAMPLE_COLUMNS = ("split", "cutoff", "n_history")


class DriftError(EngageSeqError, ValueError):
    """Bad input for engage-drift; the message says what to change. Nothing was written."""


# --- distances ----------------------------------------------------------------------------


def psi(reference: np.ndarray, current: np.ndarray, smoothing: float = SMOOTHING) -> float:
    """Population stability index of two count (or share) vectors over the same bins; each
    share is smoothed as (share + eps) / (1 + K eps), so empty bins stay finite."""
    r, c = _shares(reference), _shares(current)
    k = r.size
    r = (r + smoothing) / (1.0 + k * smoothing)
    c = (c + smoothing) / (1.0 + k * smoothing)
    return float(np.sum((c - r) * np.log(c / r)))


def js_distance(reference: np.ndarray, current: np.ndarray) -> float:
    """Jensen-Shannon distance, base 2: sqrt of the JS divergence, 0 (same) to 1 (disjoint)."""
    r, c = _shares(reference), _shares(current)
    m = (r + c) / 2.0

    def kl(p: np.ndarray) -> float:
        inside = p > 0
        return float(np.sum(p[inside] * np.log2(p[inside] / m[inside])))

    return math.sqrt(max(0.5 * kl(r) + 0.5 * kl(c), 0.0))


def _shares(counts: np.ndarray) -> np.ndarray:
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    return counts / total if total > 0 else np.full(counts.size, 1.0 / max(counts.size, 1))


# --- histograms ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's histograms on the reference's bins, and how far apart they are.

    With values on one side only, PSI and JS are NaN: against an empty histogram (uniform
    shares, or all zeros) they would read as a number, even as "ok", where nothing was
    compared.
    """

    name: str
    kind: str  # "categorical" or "binned"
    bins: list[str]
    reference: list[int]  # counts per bin
    current: list[int]
    threshold: float
    watch: float
    pooled: int = 0  # categories counted in the OTHER bin
    psi: float = field(init=False)
    js_distance: float = field(init=False)

    def __post_init__(self) -> None:
        ref, cur = np.array(self.reference), np.array(self.current)
        one_sided = self.missing_in is not None
        object.__setattr__(self, "psi", math.nan if one_sided else psi(ref, cur))
        object.__setattr__(self, "js_distance", math.nan if one_sided else js_distance(ref, cur))

    @property
    def missing_in(self) -> str | None:
        """The side ("reference" or "current") with no value of the feature at all while the
        other has some; None otherwise."""
        n_ref, n_cur = sum(self.reference), sum(self.current)
        if (n_ref == 0) == (n_cur == 0):
            return None
        return "reference" if n_ref == 0 else "current"

    @property
    def noise(self) -> float:
        """The PSI expected between two samples of one population of these sizes (chi-square
        approximation for independent rows)."""
        n_ref, n_cur = sum(self.reference), sum(self.current)
        if n_ref == 0 or n_cur == 0:
            return math.nan
        return (len(self.bins) - 1) * (1.0 / n_ref + 1.0 / n_cur)

    @property
    def verdict(self) -> str:
        if self.missing_in is not None:
            return ONE_SIDED
        if self.psi >= self.threshold:
            return "drift"
        return "watch" if self.psi >= self.watch else "ok"

    def to_dict(self) -> dict[str, Any]:
        ref, cur = _shares(np.array(self.reference)), _shares(np.array(self.current))
        return {
            "name": self.name,
            "kind": self.kind,
            "psi": _finite_or_none(self.psi),
            "js_distance": _finite_or_none(self.js_distance),
            "threshold": self.threshold,
            "verdict": self.verdict,
            "missing_in": self.missing_in,
            "noise": _finite_or_none(self.noise),
            "pooled_categories": self.pooled,
            "n_reference": int(sum(self.reference)),
            "n_current": int(sum(self.current)),
            "bins": self.bins,
            "reference_counts": self.reference,
            "current_counts": self.current,
            "reference_shares": ref.tolist(),
            "current_shares": cur.tolist(),
        }


def _finite_or_none(value: float) -> float | None:
    return None if math.isnan(value) else value


def severity_order(features: list[FeatureDrift]) -> list[FeatureDrift]:
    """Features one-sided first, then by decreasing PSI: the order every output lists them."""

    def key(feature: FeatureDrift) -> tuple[int, float]:
        return (0, 0.0) if feature.missing_in is not None else (1, -feature.psi)

    return sorted(features, key=key)


def pool_categories(
    bins: list[str], reference: list[int], current: list[int], keep: int = MAX_CATEGORIES
) -> tuple[list[str], list[int], list[int], int]:
    """Keep the ``keep`` categories with the largest share on either side (so a category new
    in the current data that matters keeps its bin), in their order, and sum the rest into
    `OTHER` (last). Returns the bins, both counts and how many categories were pooled."""
    if len(bins) <= keep:
        return bins, reference, current, 0
    ref, cur = _shares(np.array(reference)), _shares(np.array(current))
    order = np.argsort(-np.maximum(ref, cur), kind="stable")  # ties: reference order
    kept = np.sort(order[:keep])
    rest = np.sort(order[keep:])
    return (
        [bins[i] for i in kept] + [OTHER],
        [reference[i] for i in kept] + [int(sum(reference[i] for i in rest))],
        [current[i] for i in kept] + [int(sum(current[i] for i in rest))],
        len(rest),
    )


def categorical_counts(
    reference: pl.LazyFrame, current: pl.LazyFrame
) -> tuple[list[str], list[int], list[int]]:
    """Counts per category of the ``value`` column on both sides (nulls as `MISSING`); bins
    are the union of both sides' categories, most frequent in the reference first."""

    def counted(frame: pl.LazyFrame, name: str) -> pl.LazyFrame:
        value = pl.col("value").cast(pl.String).fill_null(MISSING)
        return frame.group_by(value.alias("bin")).agg(pl.len().cast(pl.Int64).alias(name))

    joined = (
        counted(reference, "reference")
        .join(counted(current, "current"), on="bin", how="full", coalesce=True)
        .with_columns(pl.col("reference", "current").fill_null(0))
        .sort(["reference", "current", "bin"], descending=[True, True, False])
        .collect()
    )
    return joined["bin"].to_list(), joined["reference"].to_list(), joined["current"].to_list()


def quantile_edges(reference: pl.LazyFrame, n_bins: int = QUANTILE_BINS) -> list[float]:
    """Distinct inner edges at the reference's 1/n .. (n-1)/n quantiles (nulls ignored)."""
    qs = [i / n_bins for i in range(1, n_bins)]
    row = (
        reference.select(
            pl.col("value").cast(pl.Float64).quantile(q).alias(f"q{i}") for i, q in enumerate(qs)
        )
        .collect()
        .row(0)
    )
    return sorted({float(v) for v in row if v is not None and math.isfinite(v)})


def binned_counts(
    reference: pl.LazyFrame,
    current: pl.LazyFrame,
    n_bins: int = QUANTILE_BINS,
    edge_text: Callable[[float], str] = lambda x: f"{x:.3g}",
) -> tuple[list[str], list[int], list[int]]:
    """Counts on right-closed bins between the reference's quantile edges, plus a `MISSING`
    bin for nulls (kept only when either side has one); ``edge_text`` writes the labels."""
    edges = quantile_edges(reference, n_bins)
    labels = _bin_labels([edge_text(e) for e in edges])
    index = (
        pl.when(pl.col("value").is_null())
        .then(pl.lit(len(edges) + 1, dtype=pl.UInt32))
        .otherwise(pl.lit(pl.Series(edges, dtype=pl.Float64)).search_sorted(pl.col("value")))
    )

    def counted(frame: pl.LazyFrame) -> np.ndarray:
        found = frame.select(index.alias("bin")).group_by("bin").len().collect()
        counts = np.zeros(len(edges) + 2, dtype=np.int64)
        counts[found["bin"].to_numpy()] = found["len"].to_numpy()
        return counts

    ref, cur = (
        counted(reference.cast({"value": pl.Float64})),
        counted(current.cast({"value": pl.Float64})),
    )
    if ref[-1] == 0 and cur[-1] == 0:
        ref, cur = ref[:-1], cur[:-1]
    else:
        labels = [*labels, MISSING]
    return labels, ref.tolist(), cur.tolist()


def _bin_labels(text: list[str]) -> list[str]:
    if not text:
        return ["all"]
    inner = [f"({a}, {b}]" for a, b in itertools.pairwise(text)]
    return [f"≤ {text[0]}", *inner, f"> {text[-1]}"]


# --- inputs -------------------------------------------------------------------------------


@dataclass
class DriftInput:
    """One side of the comparison: canonical events or samples, plus its size for the report.

    ``history`` (events only) holds every event before the window's end: scores need the
    whole past, the feature histograms only the window (``frame``).
    """

    kind: str  # "events" or "samples"
    where: str
    frame: pl.DataFrame
    history: pl.DataFrame | None
    summary: dict[str, Any]


@dataclass(frozen=True)
class Window:
    start: int | None = None  # epoch seconds, inclusive
    end: int | None = None  # exclusive

    def mask(self, column: str) -> pl.Expr:
        keep = pl.lit(True)
        if self.start is not None:
            keep = keep & (pl.col(column) >= self.start)
        if self.end is not None:
            keep = keep & (pl.col(column) < self.end)
        return keep


def detect_kind(path: str) -> str:
    """``samples`` when the file has the builder's columns (split, cutoff, list columns)."""
    try:
        schema = FileEventSource(path).scan().collect_schema()
    except EventSchemaError as exc:
        raise DriftError(str(exc)) from None
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DriftError(str(read_error(path, exc))) from None
    is_list = isinstance(schema.get("event_type"), pl.List)
    if all(c in schema for c in SAMPLE_COLUMNS) and is_list:
        return "samples"
    return "events"


COLUMN_HINT = (
    "Name your table's columns with --user-id/--timestamp/--event-type/--channel ('' for "
    "none), list only existing attributes in --categorical/--numeric, or pass --artifact to "
    "read the table with the run's column mapping."
)
ARTIFACT_COLUMN_HINT = (
    "The artifact's column mapping names these columns; override a name with --user-id/"
    "--timestamp/--event-type/--channel ('' for none)."
)


def check_event_columns(source: FileEventSource, mapping: ColumnMapping, hint: str) -> None:
    """Name every mapped column the table lacks, with the fix for this command (the ingest
    layer's message points at the training config, which engage-drift does not read)."""
    try:
        frame = source.scan()
        schema = frame.collect_schema()
    except EventSchemaError as exc:
        raise DriftError(str(exc)) from None
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DriftError(str(read_error(source.describe(), exc))) from None
    missing = {role: col for role, col in mapping.required().items() if col not in schema}
    if missing:
        wanted = ", ".join(f"{role} -> {col!r}" for role, col in missing.items())
        where = source.describe()
        available = describe_columns(schema.names(), where, frame)  # never a headerless row
        raise DriftError(f"{where} lacks column(s): {wanted}. {available} {hint}")


def read_input(
    path: str,
    mapping: ColumnMapping,
    ingest: IngestConfig,
    window: Window,
    split: str | None = None,
    column_hint: str = COLUMN_HINT,
) -> DriftInput:
    """Read one side: validated canonical events (raw ids dropped) or samples. ``column_hint``
    ends the error for a table that lacks a mapped column (how to fix the mapping)."""
    kind = detect_kind(path)
    if kind == "samples":
        frame = pl.scan_parquet(FileEventSource(path).files())
        if split is not None:
            frame = frame.filter(pl.col("split") == split)
        frame = frame.filter(window.mask("cutoff")).collect()
        if frame.is_empty():
            raise DriftError(
                f"{path}: no samples left (split {split!r}, window {_window_text(window)})"
            )
        first, last = frame["cutoff"].min(), frame["cutoff"].max()
        summary = {
            "kind": kind,
            "path": path,
            "samples": frame.height,
            "users": frame["user_key"].n_unique(),
            "cutoffs": [format_instant(int(first)), format_instant(int(last))],
            "split": split,
        }
        return DriftInput(kind, path, frame, None, summary)
    if split is not None:
        raise DriftError(f"{path} is an event table; a split filter only applies to sample files")
    source = FileEventSource(path, csv_string_columns=(mapping.user_id,))
    check_event_columns(source, mapping, column_hint)
    try:
        validated = validate_events(source.scan(), mapping, ingest, where=source.describe())
        events = validated.events.collect()
    except EventSchemaError as exc:
        raise DriftError(str(exc)) from None
    history = events.filter(pl.col("ts") < window.end) if window.end is not None else events
    frame = history.filter(window.mask("ts"))
    if frame.is_empty():
        raise DriftError(f"{path}: no events in the window {_window_text(window)}")
    first, last = frame["ts"].min(), frame["ts"].max()
    summary = {
        "kind": kind,
        "path": path,
        "rows_read": validated.report["rows_read"],
        "rows_kept": validated.report["rows_kept"],
        "rows_dropped": validated.report["rows_dropped"],  # per reason
        "numeric_missing": validated.report["numeric_missing"],  # kept, scaled as missing
        "categorical_missing": validated.report["categorical_missing"],  # kept, as "none"
        "events": frame.height,
        "users": frame["user_key"].n_unique(),
        "time_span": [format_instant(int(first)), format_instant(int(last))],
        "window": _window_text(window),
    }
    return DriftInput(kind, path, frame, history, summary)


def _window_text(window: Window) -> str:
    start = format_instant(window.start) if window.start is not None else "start"
    end = format_instant(window.end) if window.end is not None else "end"
    return f"[{start}, {end})"


def feature_values(table: DriftInput) -> dict[str, tuple[str, pl.LazyFrame]]:
    """Per feature: its kind and a lazy one-column frame ``value`` (one row per event, user
    or sample, as the feature counts)."""
    frame = table.frame.lazy()
    names = table.frame.columns
    categorical = ["event_type", "channel", *[c for c in names if c.startswith("cat_")]]
    numeric = [c for c in names if c.startswith("num_")]
    out: dict[str, tuple[str, pl.LazyFrame]] = {}
    if table.kind == "samples":
        for column in categorical:
            out[column] = ("categorical", frame.select(pl.col(column).explode().alias("value")))
        out["sequence_length"] = ("binned", frame.select(pl.col("n_history").alias("value")))
        # the history reaches back to the user's first event when none was truncated away;
        # that event's log_gap_h is a placeholder 0, not a gap (event tables have no row for it)
        gaps = pl.col("log_gap_h")
        from_first = pl.col("n_history") == gaps.list.len()
        gaps = pl.when(from_first).then(gaps.list.slice(1)).otherwise(gaps)
        hours = gaps.explode().cast(pl.Float64).exp() - 1.0
        out["gap_hours"] = ("binned", frame.select(hours.alias("value")).drop_nulls())
        for column in numeric:
            out[column] = ("binned", frame.select(pl.col(column).explode().alias("value")))
        return out
    for column in categorical:
        out[column] = ("categorical", frame.select(pl.col(column).alias("value")))
    out["sequence_length"] = ("binned", frame.group_by("user_key").agg(pl.len().alias("value")))
    ordered = frame.sort(["user_key", "ts", "_row"])
    gap = (pl.col("ts").diff().over("user_key") / 3600.0).alias("value")
    out["gap_hours"] = ("binned", ordered.select(gap).drop_nulls())
    for column in numeric:
        out[column] = ("binned", frame.select(pl.col(column).alias("value")))
    return out


# --- scores -------------------------------------------------------------------------------


def score_values(table: DriftInput, module: Any, metadata: dict[str, Any]) -> dict[str, Any]:
    """Per artifact output: a lazy ``value`` frame of the table's scores (see the module
    docstring for the cutoffs), and the cutoff or cutoffs used."""
    from engage_seq.data.encoding import (
        Vocabulary,
        encode_events_at_cutoff,
        encode_samples,
        numeric_scaling_from_metadata,
    )
    from engage_seq.serving.scoring import predict_in_batches

    vocabulary = Vocabulary.from_metadata(metadata)
    scaling = numeric_scaling_from_metadata(metadata)
    max_len = int(metadata["max_len"])
    if table.kind == "samples":
        missing = [c for c in [*vocabulary.tokens, *scaling] if c not in table.frame.columns]
        longest = int(table.frame["event_type"].list.len().max() or 0)
        if missing or longest > max_len:
            raise DriftError(
                f"{table.where}: these samples do not fit the artifact (missing columns "
                f"{missing}, longest history {longest} vs max_len {max_len}); build them with "
                "the artifact's data settings or compare event tables instead"
            )
        encoded = encode_samples(table.frame, vocabulary, max_len, (), scaling)
        cutoff = "per sample"
    else:
        assert table.history is not None
        at = int(table.frame["ts"].max()) + 1
        _, encoded = encode_events_at_cutoff(table.history.lazy(), at, vocabulary, scaling, max_len)
        cutoff = format_instant(at)
    probabilities, _ = predict_in_batches(module, encoded)
    names = list(metadata["output_names"])
    out: dict[str, Any] = {"cutoff": cutoff, "features": {}}
    for i, name in enumerate(names):
        if not name.startswith("next_event/"):
            values = pl.LazyFrame({"value": probabilities[:, i].astype(np.float64)})
            out["features"][f"score_{name}"] = ("binned", values)
    classes = [i for i, name in enumerate(names) if name.startswith("next_event/")]
    if classes:
        best = np.asarray(names)[classes][probabilities[:, classes].argmax(axis=1)]
        out["features"]["score_next_event"] = ("categorical", pl.LazyFrame({"value": best}))
    return out


def _mostly_missing(values: pl.LazyFrame) -> bool:
    """More than half the rows null: e.g. an order value, set on purchases only. Its nulls
    then dominate the histogram, so a change in the values themselves barely moves the PSI;
    `compare` adds the present values as a feature of their own."""
    share = values.select(pl.col("value").is_null().mean()).collect().item()
    return share is not None and share > 0.5


# --- the comparison -----------------------------------------------------------------------


@dataclass
class DriftReport:
    features: list[FeatureDrift]
    inputs: dict[str, Any]
    max_categories: int = MAX_CATEGORIES  # categories listed per categorical feature

    @property
    def drifted(self) -> list[FeatureDrift]:
        """Features at or above their threshold, and those with values on one side only."""
        return [f for f in self.features if f.verdict in DRIFT_VERDICTS]

    def table(self) -> pl.DataFrame:
        return pl.DataFrame(
            {
                "feature": [f.name for f in self.features],
                "kind": [f.kind for f in self.features],
                "psi": [f.psi for f in self.features],
                "js_distance": [f.js_distance for f in self.features],
                "threshold": [f.threshold for f in self.features],
                "verdict": [f.verdict for f in self.features],
                "noise": [f.noise for f in self.features],
                "n_reference": [sum(f.reference) for f in self.features],
                "n_current": [sum(f.current) for f in self.features],
                "missing_in": [f.missing_in for f in self.features],
            },
            schema_overrides={"missing_in": pl.String},
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "drift": bool(self.drifted),
            "drifted_features": [f.name for f in self.drifted],
            "watch_threshold": self.features[0].watch if self.features else WATCH_THRESHOLD,
            "max_categories": self.max_categories,
            "features": [f.to_dict() for f in self.features],
            "inputs": self.inputs,
        }


def compare(
    reference: DriftInput,
    current: DriftInput,
    threshold: float = DEFAULT_THRESHOLD,
    watch: float = WATCH_THRESHOLD,
    feature_thresholds: dict[str, float] | None = None,
    artifact: tuple[Any, dict[str, Any]] | None = None,
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
        module, metadata = artifact
        ref_scores = score_values(reference, module, metadata)
        cur_scores = score_values(current, module, metadata)
        ref_values.update(ref_scores["features"])
        cur_values.update(cur_scores["features"])
        inputs["scored_at"] = {"reference": ref_scores["cutoff"], "current": cur_scores["cutoff"]}
    for name in [n for n in ref_values if n.startswith("num_") and n in cur_values]:
        if _mostly_missing(ref_values[name][1]):
            present = pl.col("value").is_not_null()
            ref_values[f"{name}:present"] = ("binned", ref_values[name][1].filter(present))
            cur_values[f"{name}:present"] = ("binned", cur_values[name][1].filter(present))
    unknown = sorted(set(feature_thresholds) - set(ref_values) - set(cur_values))
    if unknown:
        raise DriftError(
            f"thresholds for unknown features {unknown}; the features are "
            f"{sorted(set(ref_values) | set(cur_values))}"
        )
    features = []
    for name in [*ref_values, *[n for n in cur_values if n not in ref_values]]:
        kind = (ref_values.get(name) or cur_values[name])[0]
        empty = pl.LazyFrame(schema={"value": pl.String if kind == "categorical" else pl.Float64})
        ref = ref_values[name][1] if name in ref_values else empty
        cur = cur_values[name][1] if name in cur_values else empty
        pooled = 0
        if kind == "categorical":
            bins, r, c, pooled = pool_categories(*categorical_counts(ref, cur), max_categories)
        else:
            text = gap_text if name == "gap_hours" else (lambda x: f"{x:.3g}")
            bins, r, c = binned_counts(ref, cur, n_bins, text)
        limit = feature_thresholds.get(name, threshold)
        features.append(FeatureDrift(name, kind, bins, r, c, limit, min(watch, limit), pooled))
    return DriftReport(features, inputs, max_categories)


def refuse_identifiers(table: DriftInput, values: dict[str, tuple[str, pl.LazyFrame]]) -> None:
    """Raise `DriftError` for a data categorical (event type, channel, declared attribute)
    with about one value per user: its top categories would be identifiers in drift.json,
    and its PSI would only say that two sets of users differ."""
    columns = [n for n in values if n in DATA_CATEGORICALS or n.startswith("cat_")]
    if not columns:
        return
    users = int(table.summary["users"])
    distinct = pl.collect_all([values[n][1].select(pl.col("value").n_unique()) for n in columns])
    counts = {n: int(frame.item()) for n, frame in zip(columns, distinct, strict=True)}
    suspicious = [n for n in columns if looks_like_identifier(counts[n], users)]
    if suspicious:
        named = ", ".join(f"{_column_name(n)} ({counts[n]:,} values)" for n in suspicious)
        raise DriftError(
            f"{table.where}: categorical column(s) {named} for {users:,} users look like "
            "identifiers (about one value per user), whose values must not reach drift.json/md; "
            "drop them from --categorical (or compare a coarser column)"
        )


def _column_name(feature: str) -> str:
    """The table's column behind a feature, as the user named it (cat_email -> 'email')."""
    return repr(feature.removeprefix("cat_")) if feature.startswith("cat_") else feature


# --- outputs ------------------------------------------------------------------------------


def markdown(report: DriftReport) -> str:
    lines = [
        "# Drift report",
        "",
        f"Verdict: **{'drift' if report.drifted else 'no drift'}**"
        + (f" in {', '.join(f.name for f in report.drifted)}" if report.drifted else ""),
        "",
        "PSI: population stability index on the reference's bins (below the watch level "
        f"{report.features[0].watch if report.features else WATCH_THRESHOLD:g} stable, at or "
        "above the threshold: drift); JS: Jensen-Shannon distance (base 2, 0 to 1); noise: the "
        "PSI two samples of one population of these sizes show on average. Categorical "
        f"features list their {report.max_categories} largest categories (by share on either "
        f"side) and pool the rest as `{OTHER}`; PSI is computed on those bins.",
        "",
        "| feature | PSI | JS distance | threshold | verdict | noise |",
        "|---|---:|---:|---:|---|---:|",
    ]
    for f in severity_order(report.features):
        verdict = f"{f.verdict} (no values in {f.missing_in})" if f.missing_in else f.verdict
        lines.append(
            f"| {f.name} | {_number(f.psi, '.3f')} | {_number(f.js_distance, '.3f')} "
            f"| {f.threshold:g} | {verdict} | {_number(f.noise, '.2g')} |"
        )
    moved = [f for f in severity_order(report.features) if f.verdict != "ok"]
    if moved:
        lines += ["", "## What moved", ""]
        for f in moved:
            lines.append(f"- **{f.name}**: {_largest_moves(f)}")
    lines += ["", "## Inputs", ""]
    for side in ("reference", "current"):
        info = report.inputs[side]
        size = ", ".join(
            f"{k} {v:,}"
            if isinstance(v, int)
            else f"{k} {' to '.join(v)}"
            if isinstance(v, list)
            else f"{k} {v}"
            for k, v in info.items()
            if k not in ("kind", "path", *INGEST_COUNTS) and v is not None
        )
        lines.append(f"- **{side}** ({info['kind']}): `{info['path']}`: {size}")
        dropped = {k: n for k, n in (info.get("rows_dropped") or {}).items() if n}
        if dropped:
            reasons = ", ".join(f"{k} {n:,}" for k, n in sorted(dropped.items(), key=_by_count))
            lines.append(
                f"  - rows dropped on ingest: {sum(dropped.values()):,} of {info['rows_read']:,}"
                f" ({reasons})"
            )
        missing = [
            f"{column} {n:,}"
            for key in ("numeric_missing", "categorical_missing")
            for column, n in (info.get(key) or {}).items()
            if n
        ]
        if missing:
            lines.append(f"  - kept rows with a missing value: {', '.join(missing)}")
    if "scored_at" in report.inputs:
        at = report.inputs["scored_at"]
        lines.append(f"- scores as of {at['reference']} (reference), {at['current']} (current)")
    return "\n".join(lines) + "\n"


def _number(value: float, spec: str) -> str:
    return "n/a" if math.isnan(value) else format(value, spec)


def _by_count(item: tuple[str, int]) -> tuple[int, str]:
    return -item[1], item[0]


def _largest_moves(feature: FeatureDrift, n: int = 3) -> str:
    """The bins whose share changed most, e.g. "app 22% -> 51%, web 53% -> 30%"."""
    if feature.missing_in is not None:
        other = "current" if feature.missing_in == "reference" else "reference"
        n_other = sum(feature.current if other == "current" else feature.reference)
        return f"no values in the {feature.missing_in} data ({n_other:,} in the {other})"
    ref, cur = _shares(np.array(feature.reference)), _shares(np.array(feature.current))
    order = np.argsort(-np.abs(cur - ref), kind="stable")[:n]
    return ", ".join(f"{feature.bins[i]} {ref[i]:.1%} -> {cur[i]:.1%}" for i in order)


def write_drift_report(report: DriftReport, out: str | Path, plot: bool = True) -> dict[str, Path]:
    """drift.md / .csv / .json (and drift.png), each written atomically into ``out``."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DriftError(f"cannot write into {out}: it is a file, not a folder")
    files = {name: out / f"drift.{name}" for name in ("md", "csv", "json")}
    table = report.table()
    writers: dict[Path, Writer] = {
        files["csv"]: table.write_csv,
        files["md"]: lambda path: path.write_text(markdown(report)),
    }
    if plot:
        from engage_seq.monitoring.figures import plot_drift, save_png

        files["png"] = out / "drift.png"
        writers[files["png"]] = lambda path: save_png(plot_drift(report), path)
    out.mkdir(parents=True, exist_ok=True)
    # one unit: drift.json, renamed last, lists the SHA-256 of the other files
    # (`engage_seq.serving.outputs.check_score_outputs(csv, manifest=json)` checks a set)
    write_outputs(files["csv"], writers, report.to_dict, manifest=files["json"])
    return files


# --- command line -------------------------------------------------------------------------


def _feature_thresholds(pairs: list[str]) -> dict[str, float]:
    out = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        try:
            out[name] = float(value)
        except ValueError:
            raise DriftError(f"threshold.{name} must be a number, got {value!r}") from None
    return out


def _names(value: str | None) -> tuple[str, ...]:
    return tuple(v.strip() for v in (value or "").split(",") if v.strip())


def build_parser() -> KeywordArgumentParser:
    parser = KeywordArgumentParser(
        prog="engage-drift",
        description="Compare a current event table (or sample file) with a reference: PSI and "
        "Jensen-Shannon distance per feature (event types, channels, sequence length, gaps, "
        "attributes, and with an artifact the scores). Writes drift.md/.csv/.json/.png. Exit "
        "status 0: no drift, 1: some feature at or above its threshold or with values on one "
        "side only, 2: bad input. Options may be given as key=value (reference=a.parquet) or "
        "--key value.",
    )
    parser.add_argument("--reference", required=True, help="reference events or samples")
    parser.add_argument("--current", required=True, help="current events or samples")
    parser.add_argument("--artifact", help="engage-export artifact: adds the score distribution "
                        "and reads event tables with its column mapping")  # fmt: skip
    parser.add_argument("--out", default="drift", help="output folder (default: drift/)")
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                        help=f"PSI that counts as drift (default {DEFAULT_THRESHOLD})")  # fmt: skip
    parser.add_argument("--watch", type=float, default=WATCH_THRESHOLD,
                        help=f"PSI reported as 'watch' (default {WATCH_THRESHOLD})")  # fmt: skip
    parser.add_argument(
        "--feature-threshold", action="append", default=[], metavar="FEATURE=PSI",
        help="per-feature threshold, repeatable (key=value form: threshold.channel=0.1)",
    )  # fmt: skip
    parser.add_argument("--bins", type=int, default=QUANTILE_BINS, help="quantile bins")
    parser.add_argument("--max-categories", type=int, default=MAX_CATEGORIES,
                        help="categories kept per categorical feature, the rest pooled as "
                        f"'{OTHER}' (default {MAX_CATEGORIES})")  # fmt: skip
    for side in ("reference", "current"):
        parser.add_argument(f"--{side}-start", help=f"keep {side} events (samples: cutoffs) "
                            "from this ISO date/time (or epoch seconds) on")  # fmt: skip
        parser.add_argument(f"--{side}-end", help="... and before this one")
        parser.add_argument(f"--{side}-split", help="sample files: keep this split only")
    parser.add_argument("--categorical", help="extra categorical columns, comma-separated")
    parser.add_argument("--numeric", help="extra numeric columns, comma-separated")
    parser.add_argument("--user-id", help="user id column (default: user_id)")
    parser.add_argument("--timestamp", help="timestamp column (default: timestamp)")
    parser.add_argument("--event-type", help="event type column (default: event_type)")
    parser.add_argument("--channel", help="channel column (default: channel; '' for none)")
    parser.add_argument(
        "--max-drop-fraction",
        type=float,
        help="ingest drop limit, 0 to 1 (default: the artifact's, else 0.05)",
    )
    parser.add_argument("--no-plot", action="store_true", help="skip drift.png")
    parser.add_argument("--require-signed", action="store_true", default=None,
                        help="refuse an --artifact without a valid <artifact>.sig (default: "
                        "ENGAGE_SEQ_REQUIRE_SIGNED)")  # fmt: skip
    return parser


def _mapping(args: argparse.Namespace, metadata: dict[str, Any] | None) -> ColumnMapping:
    if metadata is not None:
        from engage_seq.serving.scoring import column_mapping

        mapping = column_mapping(metadata)
    else:
        mapping = ColumnMapping()
    changes: dict[str, Any] = {
        k: v
        for k, v in {
            "user_id": args.user_id,
            "timestamp": args.timestamp,
            "event_type": args.event_type,
        }.items()
        if v
    }
    if args.channel is not None:
        changes["channel"] = args.channel or None
    extra_cat = [c for c in _names(args.categorical) if c not in mapping.categorical]
    extra_num = [c for c in _names(args.numeric) if c not in mapping.numeric]
    changes["categorical"] = (*mapping.categorical, *extra_cat)
    changes["numeric"] = (*mapping.numeric, *extra_num)
    try:
        return replace(mapping, **changes)
    except ValueError as exc:
        raise DriftError(str(exc)) from None


def run(args: argparse.Namespace) -> DriftReport:
    """The command without its exit status: read, compare, write."""
    if args.bins < 2:
        raise DriftError(f"--bins must be at least 2, got {args.bins}")
    if not 0 < args.watch <= args.threshold:
        raise DriftError(f"need 0 < watch <= threshold, got {args.watch} and {args.threshold}")
    if args.max_drop_fraction is not None and not 0 <= args.max_drop_fraction <= 1:
        raise DriftError(f"--max-drop-fraction must be in [0, 1], got {args.max_drop_fraction}")
    artifact = None
    metadata = None
    if args.artifact:
        from engage_seq.serving.scoring import ScoringError, load_scoring_artifact

        try:
            artifact = load_scoring_artifact(args.artifact, require_signed=args.require_signed)
        except ScoringError as exc:
            raise DriftError(str(exc)) from None
        metadata = artifact[1]
    mapping = _mapping(args, metadata)
    if metadata is not None:
        from engage_seq.serving.scoring import ingest_config

        ingest = ingest_config(metadata, max_drop_fraction=args.max_drop_fraction)
    else:
        given = args.max_drop_fraction is not None  # 0 is a limit too: no row may be dropped
        ingest = IngestConfig(**({"max_drop_fraction": args.max_drop_fraction} if given else {}))
    hint = ARTIFACT_COLUMN_HINT if metadata is not None else COLUMN_HINT
    sides = {}
    for side in ("reference", "current"):
        window = Window(
            parse_instant_arg(getattr(args, f"{side}_start"), f"{side}_start", DriftError),
            parse_instant_arg(getattr(args, f"{side}_end"), f"{side}_end", DriftError),
        )
        path = getattr(args, side)
        split = getattr(args, f"{side}_split")
        sides[side] = read_input(path, mapping, ingest, window, split, column_hint=hint)
    report = compare(
        sides["reference"],
        sides["current"],
        threshold=args.threshold,
        watch=args.watch,
        feature_thresholds=_feature_thresholds(args.feature_threshold),
        artifact=artifact,
        n_bins=args.bins,
        max_categories=args.max_categories,
    )
    write_drift_report(report, args.out, plot=not args.no_plot)
    return report


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # key=value tokens become options; usage: exit 2
    try:
        report = run(args)
    except (DriftError, EventSchemaError, OSError, pl.exceptions.PolarsError) as exc:
        print(f"engage-drift: error: {exc}", file=sys.stderr)
        return 2
    width = max(len(f.name) for f in report.features)
    for f in severity_order(report.features):
        print(
            f"{f.name:<{width}}  PSI {_number(f.psi, '7.3f')}  JS {_number(f.js_distance, '5.3f')}"
            f"  {f.verdict}" + (f" (no values in {f.missing_in})" if f.missing_in else "")
        )
    names = ", ".join(f.name for f in report.drifted)
    verdict = f"drift in {names}" if names else "no drift"
    print(f"{verdict} (threshold {args.threshold:g}) -> {Path(args.out) / 'drift.md'}")
    return 1 if report.drifted else 0


if __name__ == "__main__":
    raise SystemExit(main())
