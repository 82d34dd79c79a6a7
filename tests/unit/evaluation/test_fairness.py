"""Segment fairness: leakage-safe segment values, exact per-segment metrics, honest flags."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from helpers.frames import FrameSource

from engage_seq.data.build import build_in_memory
from engage_seq.data.ingest import FileEventSource, IngestConfig, user_keys
from engage_seq.data.sampling import SamplingConfig
from engage_seq.data.schema import USER_KEY_SEED, ColumnMapping, EventSchemaError
from engage_seq.data.tasks import HorizonTask
from engage_seq.data.validation import validate_events
from engage_seq.evaluation.fairness import OTHER, segment_metrics
from engage_seq.evaluation.segments import (
    MISSING,
    check_segment_columns,
    history_labels,
    segment_frame,
)
from engage_seq.reporting.fairness_section import fairness_report_section as fairness_section

T0 = 1_700_000_000  # epoch seconds


def _country_of_user() -> pl.Expr:
    """A user-level attribute derived from the synthetic id ('u042' -> 42 % 3)."""
    number = pl.col("user_id").str.slice(1).cast(pl.Int64)
    return (number % 3).replace_strict({0: "DE", 1: "FR", 2: "US"}, return_dtype=pl.String)


def _key(user_id: str) -> int:
    """The unkeyed user key of `schema.to_canonical` (no salt in the environment)."""
    return pl.Series([user_id]).hash(seed=USER_KEY_SEED).item()


# --- segment_frame -----------------------------------------------------------------------


@pytest.fixture()
def two_users() -> pl.DataFrame:
    """User a: AT then DE at the same second (DE is the later row), a null, FR exactly at a
    cutoff. User b: country null, then an ingest-dropped row (null event_type) saying XX,
    then US."""
    rows = [
        ("a", T0 + 100, "page_view", "AT"),
        ("a", T0 + 100, "click", "DE"),
        ("a", T0 + 200, "page_view", None),
        ("a", T0 + 300, "page_view", "FR"),
        ("a", T0 + 400, "page_view", None),
        ("b", T0 + 100, "page_view", None),
        ("b", T0 + 150, None, "XX"),
        ("b", T0 + 250, "page_view", "US"),
    ]
    return pl.DataFrame(
        rows, schema=["user_id", "timestamp", "event_type", "country"], orient="row"
    ).with_columns(pl.lit("web").alias("channel"))


def _samples(pairs: list[tuple[str, int, int]]) -> pl.DataFrame:
    """(user, cutoff offset, n_history) -> a minimal sample frame."""
    return pl.DataFrame(
        {
            "user_key": pl.Series([_key(u) for u, _, _ in pairs], dtype=pl.UInt64),
            "cutoff": [T0 + c for _, c, _ in pairs],
            "n_history": pl.Series([n for _, _, n in pairs], dtype=pl.UInt32),
            "channel": [["web"] * n for _, _, n in pairs],
        }
    )


def test_declared_value_is_the_last_non_null_strictly_before_the_cutoff(
    two_users: pl.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ENGAGE_SEQ_SALT", raising=False)
    samples = _samples(  # deliberately not in cutoff order: the output keeps this order
        [("a", 301, 4), ("a", 300, 3), ("b", 200, 1), ("a", 150, 2), ("b", 260, 2), ("a", 100, 1)]
    )
    frame = segment_frame(
        samples,
        source=FrameSource(two_users),
        ingest=IngestConfig(max_drop_fraction=0.5),
        columns=["country"],
        derived=(),
    )
    assert frame.columns == ["country"]
    assert frame["country"].to_list() == [
        "FR",  # FR at 300 is before 301
        "DE",  # FR sits exactly at the cutoff: not used; the null at 200 is skipped
        MISSING,  # only a null before 200; the XX row is dropped by ingest, as in training
        "DE",  # same second: the later input row wins
        "US",
        MISSING,  # nothing strictly before 100
    ]


def test_derived_segments_bucket_history_and_take_the_last_channel() -> None:
    samples = pl.DataFrame(
        {
            "n_history": pl.Series([1, 2, 4, 5, 15, 16, 63, 64, 200], dtype=pl.UInt32),
            "channel": [["web"], ["app", "email"], ["web", "push"]] * 3,
        }
    )
    frame = segment_frame(samples)
    assert frame.columns == ["history_length", "last_channel"]
    assert frame["history_length"].dtype == pl.Enum(["1", "2-4", "5-15", "16-63", "64+"])
    assert frame["history_length"].cast(pl.String).to_list() == [
        "1", "2-4", "2-4", "5-15", "5-15", "16-63", "16-63", "64+", "64+",
    ]  # fmt: skip
    assert frame["last_channel"].to_list() == ["web", "email", "push"] * 3
    assert history_labels((1, 3, 10)) == ["1-2", "3-9", "10+"]
    with pytest.raises(ValueError, match="start at 1"):
        history_labels((2, 5))


def test_unknown_or_unsafe_segment_columns_are_refused(two_users: pl.DataFrame) -> None:
    samples = _samples([("a", 300, 3)])
    source = FrameSource(two_users)
    with pytest.raises(EventSchemaError, match=r"\['platform'\].*available columns.*'country'"):
        segment_frame(samples, source=source, columns=["platform"])
    with pytest.raises(EventSchemaError, match="'user_id' \\(user id\\)"):
        segment_frame(samples, source=source, columns=["user_id"])
    with pytest.raises(ValueError, match="pass the run's source"):
        segment_frame(samples, columns=["country"])
    with pytest.raises(ValueError, match="unknown derived segment"):
        segment_frame(samples, derived=["device"])
    with pytest.raises(ValueError, match="given twice"):
        segment_frame(samples, source=source, columns=["last_channel"])


def test_a_declared_column_the_table_lacks_can_be_skipped_instead_of_failing(
    two_users: pl.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A report passes ``missing``: it loses that column only (the table may have changed
    since training checked it); derived segments and present columns are still there."""
    monkeypatch.delenv("ENGAGE_SEQ_SALT", raising=False)
    samples = _samples([("a", 300, 3), ("b", 300, 2)])
    source = FrameSource(two_users)
    ingest = IngestConfig(max_drop_fraction=0.5)
    missing: dict[str, str] = {}
    frame = segment_frame(
        samples, source=source, ingest=ingest, columns=["country", "platform"], missing=missing
    )
    assert frame.columns == ["history_length", "last_channel", "country"]
    assert frame["country"].to_list() == ["DE", "US"]
    assert list(missing) == ["platform"]
    assert "['platform'] not in in-memory frame" in missing["platform"]
    assert "available columns" in missing["platform"] and "'country'" in missing["platform"]
    only_missing: dict[str, str] = {}
    frame = segment_frame(
        samples, source=source, ingest=ingest, columns=["platform"], missing=only_missing
    )
    assert frame.columns == ["history_length", "last_channel"] and list(only_missing) == [
        "platform"
    ]
    # the schema-only check train runs before any work
    schema = two_users.collect_schema()
    check_segment_columns(schema, ["country"], ColumnMapping(), "events")
    with pytest.raises(EventSchemaError, match=r"\['platform'\] not in events; available"):
        check_segment_columns(schema, ["platform"], ColumnMapping(), "events")


@pytest.mark.parametrize("salt", [None, "a-salt"], ids=["unkeyed", "hmac"])
def test_user_keys_are_the_keys_validate_events_gives(
    salt: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One public function for ingest's key hashing: the oracle joins raw ids to samples
    through it, so it must give exactly the keys ingest wrote (with and without a salt)."""
    if salt is None:
        monkeypatch.delenv("ENGAGE_SEQ_SALT", raising=False)
    else:
        monkeypatch.setenv("ENGAGE_SEQ_SALT", salt)
    ids = ["u1", "u2", "00042", "ünï"]
    events = pl.DataFrame(
        {
            "user_id": ids,
            "timestamp": [T0 + i for i in range(len(ids))],
            "event_type": ["page_view"] * len(ids),
            "channel": ["web"] * len(ids),
        }
    )
    validated = validate_events(events.lazy(), keep_user_id=True).events.collect()
    expected = dict(zip(validated["user_id"], validated["user_key"], strict=True))
    keys = user_keys(pl.Series("user_id", ids), "ENGAGE_SEQ_SALT")
    assert keys.name == "user_key" and keys.dtype == pl.UInt64
    assert keys.to_list() == [expected[i] for i in ids]
    assert validated["user_key"].n_unique() == len(ids)
    integers = user_keys(pl.Series([42]), "ENGAGE_SEQ_SALT")  # ids are read as text
    assert integers.item() == user_keys(pl.Series(["42"]), "ENGAGE_SEQ_SALT").item()
    with pytest.raises(ValueError, match="null"):
        user_keys(pl.Series(["u1", None]), "ENGAGE_SEQ_SALT")


def test_a_column_with_one_value_per_user_is_refused_as_an_identifier() -> None:
    n = 120
    events = pl.DataFrame(
        {
            "user_id": [f"u{i}" for i in range(n)],
            "timestamp": [T0 + 10] * n,
            "event_type": ["page_view"] * n,
            "channel": ["web"] * n,
            "email": [f"user{i}@example.com" for i in range(n)],
            "plan": ["free", "pro"] * (n // 2),
        }
    )
    samples = _samples([(f"u{i}", 100, 1) for i in range(n)])
    frame = segment_frame(samples, source=FrameSource(events), columns=["plan"], derived=())
    assert frame["plan"].to_list() == ["free", "pro"] * (n // 2)
    with pytest.raises(EventSchemaError, match=r"\['email'\] have about one value per user"):
        segment_frame(samples, source=FrameSource(events), columns=["email"], derived=())


@pytest.mark.parametrize("declared", [False, True], ids=["undeclared", "declared_categorical"])
def test_segment_frame_end_to_end_through_ingest_with_a_salt(
    tiny_events: pl.DataFrame,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    declared: bool,
) -> None:
    """Samples built by the real pipeline (HMAC keys) get each user's country, known from the
    user's 3rd event on: samples with fewer than 3 history events must show (missing)."""
    monkeypatch.setenv("ENGAGE_SEQ_SALT", "fairness-test-salt")
    rank = pl.int_range(pl.len()).over("user_id", order_by=["timestamp", "_row"])
    events = (
        tiny_events.with_row_index("_row")
        .with_columns(pl.when(rank >= 2).then(_country_of_user()).alias("country"))
        .drop("_row")
    )
    path = tmp_path / "events.parquet"
    events.write_parquet(path)
    source = FileEventSource(str(path))
    mapping = ColumnMapping(categorical=("country",) if declared else ())
    ingest = IngestConfig()
    (tmp_path / "samples").mkdir()
    built = build_in_memory(
        source,
        mapping,
        HorizonTask(),
        SamplingConfig(max_len=16, n_train_cutoffs=2),
        ingest,
        tmp_path / "samples",
    )
    samples = built.samples
    assert samples is not None and samples.height > 100
    assert built.report["user_keys"] == "hmac-sha256"
    frame = segment_frame(
        samples, source=source, mapping=mapping, ingest=ingest, columns=["country"]
    )
    assert frame.height == samples.height
    assert frame.columns == ["history_length", "last_channel", "country"]

    users = validate_events(source.scan(), mapping, ingest, keep_user_id=True).events
    country_of = (
        users.select("user_key", "user_id")
        .unique()
        .select("user_key", _country_of_user().alias("expected"))
        .collect()
    )
    expected = samples.select("user_key", "n_history").join(
        country_of, on="user_key", how="left", maintain_order="left"
    )
    wanted = (
        pl.when(expected["n_history"] >= 3).then(expected["expected"]).otherwise(pl.lit(MISSING))
    )
    assert frame["country"].to_list() == expected.select(wanted)["expected"].to_list()
    assert 0 < (frame["country"] == MISSING).sum() < frame.height  # both cases occur
    last = samples["channel"].list.last()
    assert frame["last_channel"].to_list() == last.to_list()


# --- segment_metrics ---------------------------------------------------------------------


def test_segment_metrics_exact_numbers_on_a_hand_written_frame() -> None:
    """a: positives {0.9, 0.3}, negatives {0.8, 0.1} -> ROC-AUC 3/4; b: {0.6, 0.4} vs
    {0.2, 0.7} -> 2/4; all: 10/16. Each score sits in its own of the 15 bins, so
    ECE = mean |score − label|."""
    scores = pl.DataFrame(
        {
            "score": [0.9, 0.8, 0.3, 0.1, 0.6, 0.4, 0.2, 0.7],
            "label": [True, False, True, False, True, True, False, False],
            "platform": ["a"] * 4 + ["b"] * 4,
        }
    )
    metrics = segment_metrics(scores, ["platform"], min_size=1)
    assert metrics["segment"].to_list() == ["(overall)", "platform", "platform"]
    assert metrics["value"].to_list() == ["(all)", "a", "b"]
    assert metrics["n"].to_list() == [8, 4, 4]
    assert metrics["positives"].to_list() == [4, 2, 2]
    assert metrics["positive_rate"].to_list() == [0.5, 0.5, 0.5]
    expected = {
        "mean_score": [0.5, 0.525, 0.475],
        "auroc": [0.625, 0.75, 0.5],
        "ece": [(0.1 + 0.8 + 0.7 + 0.1 + 0.4 + 0.6 + 0.2 + 0.7) / 8, 0.425, 0.475],
        "calibration_gap": [0.0, 0.025, -0.025],
        "auroc_diff": [0.0, 0.125, -0.125],
        "calibration_diff": [0.0, 0.025, -0.025],
    }
    for column, values in expected.items():
        assert metrics[column].to_list() == pytest.approx(values, abs=1e-6), column
    # b's ROC-AUC is 0.125 below the overall, but with 2 + 2 samples that is noise (SE ~0.3)
    assert metrics["status"].to_list() == ["reference", "ok", "ok"]
    without_noise_guard = segment_metrics(scores, ["platform"], min_size=1, min_z=0)
    assert without_noise_guard["flagged"].to_list() == [False, False, True]
    assert without_noise_guard["reason"][2] == "ROC-AUC 0.500 vs 0.625 overall"


def _block(n_pos: int = 100, n_neg: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """A calibrated, perfectly ranked block: mean score == positive rate == 0.25."""
    positives = np.linspace(0.4, 0.9, n_pos)
    negatives = np.linspace(0.0, 0.7 / 3, n_neg)
    return np.concatenate([positives, negatives]), np.r_[np.ones(n_pos), np.zeros(n_neg)]


@pytest.fixture()
def fair_but_one() -> pl.DataFrame:
    """Segments A, B: good; C: the same scores shuffled; D: one class (all negatives, scores
    0.01); E: 50 shuffled samples (too small to judge)."""
    rng = np.random.default_rng(7)
    score, label = _block()
    parts = {
        "A": (score, label),
        "B": (score, label),
        "C": (rng.permutation(score), label),
        "D": (np.full(200, 0.01), np.zeros(200)),
        "E": (rng.permutation(score)[:50], label[rng.permutation(400)[:50]]),
    }
    return pl.DataFrame(
        {
            "score": np.concatenate([s for s, _ in parts.values()]),
            "label": np.concatenate([lab for _, lab in parts.values()]).astype(bool),
            "country": np.concatenate([[k] * len(s) for k, (s, _) in parts.items()]),
        }
    )


def test_shuffled_segment_is_flagged_and_the_others_are_not(fair_but_one: pl.DataFrame) -> None:
    metrics = segment_metrics(fair_but_one, ["country"]).filter(pl.col("segment") == "country")
    by_value = {row["value"]: row for row in metrics.iter_rows(named=True)}
    assert list(by_value) == ["A", "B", "C", "D", "E"]  # largest first
    assert by_value["A"]["auroc"] == pytest.approx(1.0)
    assert by_value["C"]["auroc"] < 0.6
    assert {v: r["status"] for v, r in by_value.items()} == {
        "A": "ok",
        "B": "ok",
        "C": "flagged",
        "D": "ok",
        "E": "too small to judge",
    }
    assert by_value["C"]["reason"].startswith("ROC-AUC ")
    assert "overall" in by_value["C"]["reason"]
    # one class: undefined, said so, never 0.5, and no flag from it
    assert math.isnan(by_value["D"]["auroc"])
    assert by_value["D"]["reason"] == "ROC-AUC undefined: only negatives"
    assert not by_value["D"]["flagged"]
    assert by_value["E"]["reason"] == "n = 50 < min_size = 100"
    assert not by_value["E"]["flagged"]


def test_miscalibrated_segment_is_flagged_in_its_direction() -> None:
    score, label = _block()
    scores = pl.DataFrame(
        {
            "score": np.concatenate([score, score, np.clip(score + 0.1, 0, 1)]),
            "label": np.concatenate([label, label, label]),
            "platform": ["android"] * 400 + ["ios"] * 400 + ["web"] * 400,
        }
    )
    metrics = segment_metrics(scores, ["platform"]).filter(pl.col("segment") == "platform")
    assert metrics["flagged"].to_list() == [False, False, True]
    assert metrics["reason"][2].startswith("over-predicts: mean score 0.350 vs positive rate 0.250")
    # an explicit absolute threshold replaces the relative default (0.2 × 0.25 = 0.05)
    lenient = segment_metrics(scores, ["platform"], max_calibration_gap=0.1)
    assert not lenient["flagged"].any()


def test_missing_values_and_rare_values_are_kept_as_their_own_rows() -> None:
    values = [f"c{i:02d}" for i in range(25) for _ in range(i + 1)] + [None] * 7
    n = len(values)
    scores = pl.DataFrame(
        {"score": np.linspace(0.1, 0.9, n), "label": np.arange(n) % 2, "country": values}
    )
    metrics = segment_metrics(scores, ["country"], max_values=10)
    rows = metrics.filter(pl.col("segment") == "country")
    assert rows["value"].to_list() == [*[f"c{i:02d}" for i in range(24, 15, -1)], OTHER, MISSING]
    assert rows["n"].sum() == n  # nothing dropped
    assert rows.filter(pl.col("value") == MISSING)["n"].item() == 7


def test_bad_scores_are_refused_with_the_column_named() -> None:
    good = pl.DataFrame({"score": [0.2, 0.7], "label": [0, 1], "country": ["DE", "FR"]})
    with pytest.raises(ValueError, match=r"\['platform'\].*available"):
        segment_metrics(good, ["platform"])
    with pytest.raises(ValueError, match="'score' has 1 value"):
        segment_metrics(good.with_columns(pl.Series("score", [0.2, 1.5])), ["country"])
    with pytest.raises(ValueError, match="'label' has 1 value"):
        segment_metrics(good.with_columns(pl.Series("label", [0, 2])), ["country"])


# --- fairness_section --------------------------------------------------------------------


def test_fairness_section_writes_figure_and_names_flagged_segments(
    fair_but_one: pl.DataFrame, tmp_path: Path
) -> None:
    scores = fair_but_one.with_columns(
        pl.Series("history_length", ["1", "2-4", "5-15", "16-63", "2-4"] * 290)
        .cast(pl.Enum(history_labels()))
    )  # fmt: skip
    metrics = segment_metrics(scores, ["country"])
    overall = {"auroc": metrics["auroc"][0], "positive_rate": metrics["positive_rate"][0]}
    section = fairness_section(
        scores, ["country", "history_length"], overall, tmp_path / "run", report_dir=tmp_path
    )
    figure = section.figures["fairness"]
    assert figure == tmp_path / "run" / "fairness.png"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "![ROC-AUC and calibration per segment value](run/fairness.png)" in section.markdown
    assert "- country = C: ROC-AUC " in section.markdown
    assert "| D | 200 | 0.000 | 0.010 | n/a (one class) |" in section.markdown
    assert "| E | 50 |" in section.markdown and "too small |" in section.markdown
    assert "Warning" not in section.markdown
    history_rows = section.tables["fairness"].filter(pl.col("segment") == "history_length")
    assert history_rows["value"].to_list() == ["1", "2-4", "5-15", "16-63"]  # Enum order
    summary = section.summary
    json.dumps(summary, allow_nan=False)
    assert summary["flagged"] == 1 and summary["too_small"] == 1
    assert summary["segment_values"] == 9
    assert [(f["segment"], f["value"]) for f in summary["flagged_segments"]] == [("country", "C")]
    positive_rate = summary["overall"]["positive_rate"]
    assert summary["thresholds"]["max_calibration_gap"] == pytest.approx(0.2 * positive_rate)


def test_fairness_section_warns_when_the_headline_is_from_another_split(
    fair_but_one: pl.DataFrame, tmp_path: Path
) -> None:
    one_class_flagged = fair_but_one.with_columns(
        pl.when(pl.col("country") == "D").then(0.6).otherwise(pl.col("score")).alias("score")
    )
    section = fairness_section(one_class_flagged, ["country"], {"auroc": 0.99}, tmp_path)
    assert "**Warning:** the headline metrics do not match" in section.markdown
    assert "auroc 0.990 given" in section.markdown
    flagged = {f["value"]: f for f in section.summary["flagged_segments"]}
    assert flagged["D"]["auroc"] is None  # NaN -> None: report.json stays valid JSON
    assert flagged["D"]["reason"].startswith("over-predicts")
    json.dumps(section.summary, allow_nan=False)
    with pytest.raises(TypeError, match="unknown fairness threshold"):
        fairness_section(fair_but_one, ["country"], {}, tmp_path, max_gap=0.1)


def test_fairness_section_shows_its_notes_first_and_keeps_them(
    fair_but_one: pl.DataFrame, tmp_path: Path
) -> None:
    note = "Segment column(s) ['platform'] not in events. Skipped here."
    section = fairness_section(fair_but_one, ["country"], {}, tmp_path, notes=[note])
    assert f"**Note:** {note}" in section.markdown
    assert section.markdown.index("**Note:**") < section.markdown.index("**Flagged:")
    assert section.summary["notes"] == [note]
    assert fairness_section(fair_but_one, ["country"], {}, tmp_path).summary["notes"] == []


def test_segment_names_that_collide_are_refused_and_a_row_column_is_harmless(
    two_users: pl.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A table column named ``_row`` (the input-order column) no longer breaks reading the
    declared segments (it was a DuplicateError); declaring it is a named error, and so is a
    derived segment whose name is also a table column (it silently replaced the column)."""
    monkeypatch.delenv("ENGAGE_SEQ_SALT", raising=False)
    samples = _samples([("a", 301, 4), ("b", 260, 2)])
    table = two_users.with_columns(pl.lit(7).alias("_row"), pl.lit("12").alias("history_length"))
    source, ingest = FrameSource(table), IngestConfig(max_drop_fraction=0.5)
    frame = segment_frame(
        samples, source=source, ingest=ingest, columns=["country"], derived=("last_channel",)
    )
    assert frame["country"].to_list() == ["FR", "US"]
    with pytest.raises(EventSchemaError, match=r"\['_row'\] of .* share a name .* another name"):
        segment_frame(samples, source=source, ingest=ingest, columns=["_row"], derived=())
    with pytest.raises(EventSchemaError, match=r"\['history_length'\] in report\.segments are "
                       r"derived .* also has a column of that name"):  # fmt: skip
        segment_frame(samples, source=source, ingest=ingest, columns=["country"])


def test_training_refuses_a_derived_segment_named_like_a_table_column(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checked before any work, with the default report.segments and a file source."""
    monkeypatch.setenv("ENGAGE_SEQ_REPORT", "true")  # conftest turns run reports off
    from hydra import compose, initialize_config_dir

    from engage_seq.common.config_dir import CONF_DIR
    from engage_seq.experiments.config_checks import _check_report_segments, _report_options

    path = tmp_path / "events.parquet"
    pl.DataFrame(
        {"user_id": ["a"], "timestamp": [T0], "event_type": ["view"], "channel": ["web"],
         "history_length": [3]}
    ).write_parquet(path)  # fmt: skip
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=["data=files", f"data.source.path={path}"])
    with pytest.raises(ValueError, match=r"report\.segments: segment\(s\) \['history_length'\]"):
        _check_report_segments(cfg, _report_options(cfg))
