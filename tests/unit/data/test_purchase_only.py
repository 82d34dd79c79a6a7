"""Purchase-only and line-item logs: no event-type column, several rows per order (issue 21)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone

import polars as pl
import pytest

from engage_seq.data.build import check_constant_targets
from engage_seq.data.ingest import IngestConfig
from engage_seq.data.schema import ColumnMapping, EventSchemaError
from engage_seq.data.tasks import HorizonTask, NextEventTask
from engage_seq.data.validation import validate_events
from engage_seq.serving.contract import ArtifactMetadata
from engage_seq.serving.event_table import column_mapping, ingest_config

T0 = int(datetime(2026, 3, 2, tzinfo=timezone.utc).timestamp())

PURCHASES = ColumnMapping(
    user_id="customer", timestamp="ordered_at", event_type=None, channel="store",
    categorical=("sku",), numeric=("quantity", "amount"),
)  # fmt: skip


def line_items() -> pl.DataFrame:
    """Three customers' order lines, as a shop exports them (no event-type column).

    c1: one order of three lines at T0 (one line without an amount), a later single line.
    c2: one order of two lines, one of them a return (negative quantity and amount).
    c3: two orders one second apart (two events, not merged), one line without any numbers.
    """
    return pl.DataFrame(
        {
            "customer": ["c1", "c2", "c1", "c1", "c3", "c2", "c3", "c1"],
            "ordered_at": [T0, T0 + 5, T0, T0, T0 + 9, T0 + 5, T0 + 10, T0 + 3600],
            "store": ["web", "app", "app", "web", "web", "web", "web", "app"],
            "sku": ["a", "b", "c", "a", "d", "e", "f", "g"],
            "quantity": [1.0, 2.0, 3.0, 1.0, 1.0, -1.0, None, 4.0],
            "amount": [10.0, 20.0, 5.0, None, 7.5, -12.0, None, 40.0],
        }
    ).with_columns(pl.from_epoch("ordered_at", time_unit="s"))


def read(frame: pl.DataFrame, mapping: ColumnMapping = PURCHASES, **config) -> tuple:
    out = validate_events(frame.lazy(), mapping, IngestConfig(**config), keep_user_id=True)
    events = out.events.collect().drop("user_key", "_row")
    return events, out.report


def test_no_event_type_column_makes_every_row_the_constant_event_type() -> None:
    events, report = read(line_items())
    assert events["event_type"].to_list() == ["purchase"] * 8
    assert report["event_types"] == ["purchase"] and report["rows_merged_same_instant"] == 0
    named = ColumnMapping(**{**PURCHASES.__dict__, "constant_event_type": "order"})
    events, _ = read(line_items(), named)
    assert events["event_type"].unique().to_list() == ["order"]
    # an event_type column that happens to exist is ignored: the mapping says there is none
    events, _ = read(line_items().with_columns(event_type=pl.lit("view")))
    assert events["event_type"].unique().to_list() == ["purchase"]


def test_line_items_merge_into_one_event_per_user_instant_and_type() -> None:
    events, report = read(line_items(), merge_same_instant=True)
    expected = pl.DataFrame(
        {
            "user_id": ["c1", "c2", "c3", "c3", "c1"],  # first rows' input order
            "ts": [T0, T0 + 5, T0 + 9, T0 + 10, T0 + 3600],
            "event_type": ["purchase"] * 5,
            "channel": ["web", "app", "web", "web", "app"],  # the first line's
            "cat_sku": ["a", "b", "d", "f", "g"],  # the first line's
            "num_quantity": [5.0, 1.0, 1.0, None, 4.0],  # summed; null only when all are
            "num_amount": [15.0, 8.0, 7.5, None, 40.0],  # a null line adds nothing
        }
    )
    assert events.to_dicts() == expected.to_dicts()
    assert report["rows_read"] == report["rows_kept"] == 8
    assert report["rows_merged_same_instant"] == 3  # 8 rows -> 5 events
    assert report["numeric_missing"] == {"quantity": 1, "amount": 2}  # counted per row read


def test_same_instant_events_of_different_types_stay_apart() -> None:
    frame = line_items().with_columns(
        action=pl.Series(["view", "purchase", "purchase", "purchase"] * 2)
    )
    mapping = ColumnMapping(**{**PURCHASES.__dict__, "event_type": "action"})
    events, report = read(frame, mapping, merge_same_instant=True)
    c1_at_t0 = events.filter((pl.col("user_id") == "c1") & (pl.col("ts") == T0))
    assert sorted(c1_at_t0["event_type"].to_list()) == ["purchase", "view"]
    assert c1_at_t0.sort("event_type")["num_quantity"].to_list() == [4.0, 1.0]
    assert report["rows_merged_same_instant"] == 2


def test_a_return_stays_a_negative_numeric_attribute() -> None:
    events, report = read(line_items().filter(pl.col("quantity") < 0), merge_same_instant=True)
    assert events.select("num_quantity", "num_amount").row(0) == (-1.0, -12.0)
    assert report["rows_dropped"]["duplicate_event"] == 0 and report["numeric_missing"] == {
        "quantity": 0,
        "amount": 0,
    }


def test_a_missing_event_type_column_suggests_the_purchase_only_mapping() -> None:
    mapping = ColumnMapping(**{**PURCHASES.__dict__, "event_type": "event_type"})
    with pytest.raises(EventSchemaError, match=r"data\.columns\.event_type=null") as error:
        read(line_items(), mapping)
    assert "c1" not in str(error.value)


def test_targets_must_be_the_constant_event_type() -> None:
    check_constant_targets(HorizonTask(targets=("purchase",)), PURCHASES)
    check_constant_targets(HorizonTask(targets=("click",)), ColumnMapping())  # has a column
    with pytest.raises(EventSchemaError, match=r"\['click'\].*task\.targets=\[purchase\]"):
        check_constant_targets(HorizonTask(targets=("purchase", "click")), PURCHASES)
    with pytest.raises(EventSchemaError, match="nothing to choose between"):
        check_constant_targets(NextEventTask(), PURCHASES)
    with pytest.raises(ValueError, match="constant_event_type is empty"):
        ColumnMapping(event_type=None, constant_event_type=" ")


def test_scoring_reads_a_table_with_the_runs_mapping_and_merge_setting() -> None:
    recorded = {**PURCHASES.__dict__, "categorical": ["sku"], "numeric": ["quantity", "amount"]}
    meta = ArtifactMetadata(
        format_version=1, output_names=["purchase"], vocabulary={}, categorical_attributes=[],
        numeric_attributes=[], numeric_scaling={}, max_len=4, task={},
        config={"data": {"ingest": {"merge_same_instant": True}}}, column_mapping=recorded,
    )  # fmt: skip
    assert column_mapping(meta) == PURCHASES
    assert ingest_config(meta).merge_same_instant is True
    older = replace(meta, config={"data": {"ingest": {}}})  # a run from before the option
    assert ingest_config(older).merge_same_instant is False


def test_drift_reads_a_table_without_event_types_when_told_so() -> None:
    from engage_seq.monitoring.drift_inputs import ColumnOverrides
    from engage_seq.monitoring.drift_inputs import column_mapping as drift_mapping

    assert drift_mapping(ColumnOverrides(event_type=""), None).event_type is None
    assert drift_mapping(ColumnOverrides(event_type="action"), None).event_type == "action"
    assert drift_mapping(ColumnOverrides(), None).event_type == "event_type"


def test_user_shards_merge_line_items_as_one_table_does(tmp_path) -> None:
    from engage_seq.data.ingest import FileEventSource
    from engage_seq.serving.event_table import validated_parts

    line_items().write_parquet(tmp_path / "orders.parquet")
    source = FileEventSource(str(tmp_path / "orders.parquet"))
    config = IngestConfig(merge_same_instant=True)
    whole, report, _ = validated_parts(source, PURCHASES, config, None)
    parts, sharded, _ = validated_parts(source, PURCHASES, config, tmp_path / "work", shards=3)
    key = ["user_id", "ts"]
    one = whole[0].collect().drop("_row").sort(key)
    assert pl.concat([p.collect() for p in parts]).drop("_row").sort(key).equals(one)
    assert one.height == 5 and sharded["rows_merged_same_instant"] == 3
    assert sharded == {**report, "source": sharded["source"]}
