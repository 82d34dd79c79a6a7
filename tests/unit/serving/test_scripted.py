"""The artifact's raw entry point reproduces the training inputs, and the harness catches it
when it does not."""

from __future__ import annotations

import warnings
from pathlib import Path

import polars as pl
import pytest
import torch
from helpers.frames import FrameSource
from helpers.untrained_serving import untrained_serving_module

from engage_seq.data.cache import prepare_samples
from engage_seq.data.encoding import encode_samples
from engage_seq.data.sampling import SamplingConfig
from engage_seq.data.schema import ColumnMapping
from engage_seq.data.sequences import TIME_FEATURES
from engage_seq.data.tasks import HorizonTask
from engage_seq.data.validation import validate_events
from engage_seq.serving.contract import ArtifactMetadata
from engage_seq.serving.parity import check_edge_cases, raw_arguments
from engage_seq.serving.scripted import ServingModule

MAX_LEN = 16  # small, so many tiny-data users have longer histories than the window
MAPPING = ColumnMapping(categorical=("device",), numeric=("order_value",))


@pytest.fixture(scope="module")
def served(tiny_events: pl.DataFrame, tmp_path_factory):
    """Tiny synthetic events with a categorical and a numeric attribute (missing values,
    a category first seen after training), their samples, and an untrained serving module."""
    events = tiny_events.with_columns(
        pl.when(pl.col("channel") == "app")
        .then(pl.lit("ios"))
        .when(pl.col("timestamp") > pl.col("timestamp").max() - pl.duration(days=12))
        .then(pl.lit("smart-tv"))  # first seen after the training period -> unknown
        .when(pl.col("channel") == "web")
        .then(pl.lit(None, dtype=pl.String))
        .otherwise(pl.lit("desktop"))
        .alias("device"),
        pl.when(pl.col("event_type") == "purchase")
        .then(pl.col("timestamp").dt.second().cast(pl.Float64) * 3.5 - 20.0)
        .alias("order_value"),
    )
    source = FrameSource(events)
    sampling = SamplingConfig(max_len=MAX_LEN, n_train_cutoffs=2)
    cache = tmp_path_factory.mktemp("serving-cache")
    prepared = prepare_samples(source, HorizonTask(), sampling, cache, mapping=MAPPING)
    vocabulary = prepared.fitted_vocabulary
    module = untrained_serving_module(prepared, MAX_LEN, "lstm")
    canonical = validate_events(events.lazy(), MAPPING).events.collect()
    return prepared, vocabulary, module, canonical


def _scripted(module: ServingModule):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated")
        return torch.jit.script(module)


def _raw_events_of(samples: pl.DataFrame, canonical: pl.DataFrame) -> pl.DataFrame:
    """Every raw event of each sample's user (before and after its cutoff, unsorted input is
    fine), tagged with the sample row and cutoff: what a caller would send."""
    keyed = samples.select("user_key", "cutoff").with_row_index("sample")
    joined = keyed.join(canonical, on="user_key", how="inner").sort("sample", "_row")
    # shuffled time order on purpose, but events at the same second keep their input order
    return joined.sort("sample", pl.col("ts").hash(seed=7), maintain_order=True).drop(
        "user_key", "_row"
    )


@pytest.mark.parametrize("scripted", [False, True], ids=["eager", "torchscript"])
def test_raw_entry_reproduces_the_training_inputs(served, scripted: bool) -> None:
    prepared, vocabulary, module, canonical = served
    test = prepared.split("test").head(60)
    assert (test["n_history"] > MAX_LEN).any() and (test["n_history"] == 1).any()
    expected = encode_samples(test, vocabulary, MAX_LEN, (), prepared.numeric_scaling)
    raw = _raw_events_of(test, canonical).with_columns(
        pl.col("cat_device").replace("none", None),  # a caller sends nulls, not "none"
        # and non-finite numbers where training had nulls (ingest reads them as missing)
        pl.col("num_order_value").fill_null(
            pl.when(pl.int_range(pl.len()) % 2 == 0).then(float("inf")).otherwise(float("-inf"))
        ),
    )
    assert raw["cat_device"].null_count() > 0 and raw["num_order_value"].is_infinite().any()
    arguments = raw_arguments(raw, ["cat_device"], ["num_order_value"])
    entry = _scripted(module) if scripted else module
    with torch.inference_mode():
        found = entry.preprocess_events(*arguments)
        probabilities = entry.predict_events(*arguments)
    width = found[0].shape[1]
    reference = expected.batch(torch.arange(len(expected)).numpy())[:7]
    assert width == int(expected.lengths.max())
    for name, got, want in zip(
        ("event_ids", "channel_ids", "attribute_ids"), found[:3], reference[:3], strict=True
    ):
        assert torch.equal(got, want), name
    for name, got, want in zip(
        ("numeric", "time_features"), found[3:5], reference[3:5], strict=True
    ):
        assert torch.allclose(got, want, atol=1e-6, rtol=0), name
    assert torch.equal(found[5], reference[5])
    with torch.inference_mode():
        assert torch.allclose(probabilities, module(*reference), atol=1e-6)
    # an unseen device (unknown id) and missing devices ("none" token) did occur
    none_id = vocabulary.ids("cat_device")["none"]
    assert (found[2] == 1).any() and (found[2] == none_id).any()


def test_harness_catches_a_serving_module_that_truncates_differently(served) -> None:
    prepared, _, module, canonical = served
    test = prepared.split("test")
    short = test.filter(pl.col("n_history") <= MAX_LEN).head(5)
    events = _raw_events_of(short, canonical).filter(pl.col("ts") < pl.col("cutoff"))
    metadata = ArtifactMetadata(
        format_version=3,
        output_names=["purchase"],
        vocabulary=prepared.vocabulary,
        categorical_attributes=["cat_device"],
        numeric_attributes=["num_order_value"],
        numeric_scaling=prepared.numeric_scaling,
        max_len=MAX_LEN,
        task={},
    )
    assert (events["cat_device"] == "none").any()  # the missing token is in the vocabulary
    good = check_edge_cases(_scripted(module), events, metadata)
    assert set(good) >= {"edge/single_event", "edge/longer_than_max_len", "edge/tied_timestamps"}
    assert max(good.values()) <= 1e-6, good
    wrong = ServingModule(
        module.model,
        prepared.vocabulary,
        ["cat_device"],
        [(0.0, 1.0)],  # and unscaled numerics
        MAX_LEN - 1,  # one event short
        list(TIME_FEATURES),
    ).eval()
    bad = check_edge_cases(_scripted(wrong), events, metadata)
    assert bad["edge/longer_than_max_len"] > 1e-3


def test_raw_entry_errors_name_the_user(served) -> None:
    module = _scripted(served[2])
    ts = torch.tensor([100, 200])
    ok = (["view", "view"], ts, ["web", "web"], [["ios", "ios"]], torch.zeros(2, 1))
    late = (["view"], torch.tensor([5000]), ["web"], [["ios"]], torch.zeros(1, 1))
    args = [[a, b] for a, b in zip(ok, late, strict=True)]
    with pytest.raises(Exception, match="user 1 has no event before its cutoff"):
        module.predict_events(*args, torch.tensor([1000, 1000]))
    with pytest.raises(Exception, match="one entry per user"):
        module.predict_events(*args, torch.tensor([1000]))
    bad_numeric = [[ok[i]] for i in range(4)] + [[torch.zeros(2, 3)]]
    with pytest.raises(Exception, match=r"user 0: numeric must be \(2, 1\)"):
        module.predict_events(*bad_numeric, torch.tensor([1000]))


def test_an_empty_request_scores_no_users(served) -> None:
    """Zero users in, a (0, n_outputs) tensor out (a batch job's empty shard must not crash)."""
    module = _scripted(served[2])
    empty = module.predict_events([], [], [], [], [], torch.zeros(0, dtype=torch.long))
    assert tuple(empty.shape) == (0, len(module.output_names()))


def test_serving_computes_the_training_time_features() -> None:
    # serving.py must stay torch-only, so it spells the list out; this keeps the two in step
    from engage_seq.serving.scripted import SERVED_TIME_FEATURES

    assert SERVED_TIME_FEATURES == TIME_FEATURES


def test_serving_refuses_unknown_time_features(served) -> None:
    module = served[2]
    with pytest.raises(ValueError, match="time features"):
        ServingModule(module.model, {"event_type": [], "channel": []}, [], [], 8, ["log_gap_h"])


def test_golden_events_are_complete_histories(tmp_path: Path) -> None:
    from engage_seq.training.golden import complete_history_rows, write_golden_events

    samples = pl.DataFrame(
        {
            "user_key": ["a", "b"],
            "cutoff": [1000, 1000],
            "n_history": [2, 5],  # b's history is longer than its 3-event window
            "ts": [[10, 20], [30, 40, 50]],
            "event_type": [["view", "cart"], ["view", "view", "purchase"]],
            "channel": [["web", None], ["app", "app", "app"]],
        }
    )
    rows = complete_history_rows(samples, 3)
    assert rows.tolist() == [0]
    write_golden_events(samples, rows, tmp_path / "g.parquet")
    golden = pl.read_parquet(tmp_path / "g.parquet")
    assert golden.columns == ["sample", "cutoff", "ts", "event_type", "channel"]
    assert golden["sample"].to_list() == [0, 0] and golden["ts"].to_list() == [10, 20]
