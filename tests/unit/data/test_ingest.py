"""Ingest: files in every layout, column mapping, timestamps, counted drops, privacy."""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime, timezone
from pathlib import Path

import polars as pl
import pytest

from engage_seq.data.ingest import FileEventSource, IngestConfig
from engage_seq.data.schema import DROP_REASONS, ColumnMapping, EventSchemaError
from engage_seq.data.validation import validate_events

T0 = int(datetime(2026, 3, 2, tzinfo=timezone.utc).timestamp())  # a Monday


def user_table() -> pl.DataFrame:
    """A CRM-style export with its own column names."""
    return pl.DataFrame(
        {
            "customer": ["c1", "c1", "c2", "c2", "c3"],
            "when": [T0 + 10, T0 + 20, T0 + 30, T0 + 30, T0 + 40],
            "action": ["view", "buy", "view", "open", "view"],
            "device": ["ios", "ios", "web", None, "web"],
            "order_value": [None, 30.5, None, None, None],
        }
    ).with_columns(pl.from_epoch("when", time_unit="s"))


MAPPING = ColumnMapping(
    user_id="customer", timestamp="when", event_type="action", channel="device",
    numeric=("order_value",),
)  # fmt: skip


def validated(frame: pl.DataFrame, mapping=MAPPING, **config) -> tuple[pl.DataFrame, dict]:
    out = validate_events(frame.lazy(), mapping, IngestConfig(**config))
    return out.events.collect(), out.report


def test_every_file_layout_reads_the_same_events(tmp_path: Path) -> None:
    table = user_table().with_columns(pl.col("when").dt.date().alias("day"))
    table.write_parquet(tmp_path / "one.parquet")
    table.drop("day").write_csv(tmp_path / "one.csv")
    (tmp_path / "parts").mkdir()
    table.head(2).write_parquet(tmp_path / "parts" / "a.parquet")
    table.tail(3).write_parquet(tmp_path / "parts" / "b.parquet")
    table.write_parquet(tmp_path / "hive", partition_by="day")
    expected = validated(user_table())[0].drop("_row")
    for path in ("one.parquet", "one.csv", "parts", "parts/*.parquet", "hive"):
        source = FileEventSource(str(tmp_path / path))
        events = validate_events(source.scan(), MAPPING, IngestConfig(), where=path).events
        got = events.collect().drop("_row").sort("ts", "event_type")
        assert got.equals(expected.sort("ts", "event_type")), path


def test_missing_files_and_columns_are_named(tmp_path: Path) -> None:
    with pytest.raises(EventSchemaError, match="no event files"):
        FileEventSource(str(tmp_path / "nothing*.parquet")).files()
    user_table().write_parquet(tmp_path / "e.parquet")
    source = FileEventSource(str(tmp_path / "e.parquet"))
    with pytest.raises(EventSchemaError, match=r"e\.parquet lacks.*timestamp -> 'ts'.*'when'"):
        validate_events(source.scan(), ColumnMapping(user_id="customer", timestamp="ts"),
                        where=str(tmp_path / "e.parquet"))  # fmt: skip


def test_fingerprint_changes_with_the_input(tmp_path: Path) -> None:
    path = tmp_path / "e.parquet"
    user_table().write_parquet(path)
    source = FileEventSource(str(path))
    before = source.fingerprint()
    user_table().head(3).write_parquet(path)
    assert source.fingerprint() != before


@pytest.mark.parametrize(
    ("values", "mapping_kwargs"),
    [
        ([T0, T0 + 90], {}),  # epoch seconds
        ([T0 * 1000, (T0 + 90) * 1000], {}),  # epoch milliseconds, detected
        ([T0 * 1000, (T0 + 90) * 1000], {"epoch_unit": "ms"}),
        (["2026-03-02T00:00:00Z", "2026-03-02 01:01:30+01:00"], {}),  # mixed ISO formats
        (["2026-03-02T01:00:00", "2026-03-02 01:01:30"], {"timezone": "Europe/Berlin"}),
        ([datetime(2026, 3, 2), datetime(2026, 3, 2, 0, 1, 30)], {}),  # naive = UTC
    ],
)
def test_timestamp_representations(values, mapping_kwargs) -> None:
    frame = pl.DataFrame({"user_id": ["a", "a"], "timestamp": values, "event_type": ["x", "y"]})
    events, _ = validated(frame, ColumnMapping(channel=None, **mapping_kwargs))
    assert events["ts"].to_list() == [T0, T0 + 90]


def test_every_drop_is_counted_once_with_priority() -> None:
    frame = pl.DataFrame(
        {
            "user_id": [None, "a", "a", "a", "a", "a", "a", "b"],
            "timestamp": ["2026-03-02", None, "not a date", "2026-03-02", "2020-01-01",
                          "2026-03-03", "2026-03-03", "2026-03-04"],
            "event_type": ["x", "x", "x", None, "x", "x", "x", "x"],
        }
    )  # fmt: skip
    events, report = validated(
        frame, ColumnMapping(channel=None), start="2026-01-01", max_drop_fraction=1.0
    )
    assert report["rows_dropped"] == {
        "null_user": 1, "null_timestamp": 1, "unparseable_timestamp": 1, "null_event_type": 1,
        "consent_opt_out": 0, "out_of_date_range": 1, "duplicate_event": 1,
    }  # fmt: skip
    assert report["rows_read"] == 8 and report["rows_kept"] == 2 == events.height
    assert set(report["rows_dropped"]) == set(DROP_REASONS)


def test_too_many_drops_is_an_error_with_an_example() -> None:
    frame = pl.DataFrame(
        {"user_id": ["a"] * 4, "timestamp": ["2026-03-02", "03/02/2026", "03/03/2026", "x"],
         "event_type": ["v"] * 4}
    )  # fmt: skip
    with pytest.raises(EventSchemaError, match=r"3 of 4 rows.*unparseable_timestamp.*'03/02/2026'"):
        validated(frame, ColumnMapping(channel=None))
    with pytest.raises(EventSchemaError, match=r"all 1 rows were dropped.*unparseable"):
        validated(frame.tail(1), ColumnMapping(channel=None))
    with pytest.raises(EventSchemaError, match="empty"):
        validated(frame.head(0), ColumnMapping(channel=None))


def test_consent_column_and_opt_out_list_exclude_whole_users(tmp_path: Path) -> None:
    frame = user_table().with_columns(consent=pl.Series([True, False, True, True, None]))
    mapping = ColumnMapping(**{**MAPPING.__dict__, "consent": "consent"})
    events, report = validated(frame, mapping, max_drop_fraction=1.0)
    assert report["rows_dropped"]["consent_opt_out"] == 2  # both rows of c1
    assert report["users"] == 2
    pl.DataFrame({"customer": ["c3"]}).write_csv(tmp_path / "optout.csv")
    events, report = validated(
        user_table(), opt_out_path=str(tmp_path / "optout.csv"), max_drop_fraction=1.0
    )
    assert report["rows_dropped"]["consent_opt_out"] == 1
    assert events.height == 4


def test_salt_keys_users_with_hmac_and_drops_raw_ids(monkeypatch) -> None:
    monkeypatch.setenv("ENGAGE_SEQ_SALT", "s3cret")
    events, report = validated(user_table())
    assert report["user_keys"] == "hmac-sha256"
    assert "customer" not in events.columns and "user_id" not in events.columns
    expected = int.from_bytes(hmac.new(b"s3cret", b"c1", hashlib.sha256).digest()[:8], "little")
    first = events.filter(pl.col("event_type") == "buy")["user_key"].item()
    assert first == expected
    monkeypatch.setenv("ENGAGE_SEQ_SALT", "other")
    assert validated(user_table())[0]["user_key"].to_list() != events["user_key"].to_list()


def test_attributes_are_carried_and_ties_keep_input_order() -> None:
    events, _ = validated(user_table())
    assert events.columns[-1] == "num_order_value"
    c2 = events.filter(pl.col("ts") == T0 + 30)
    assert c2["event_type"].to_list() == ["view", "open"]  # same second: input order
    assert c2["channel"].to_list() == ["web", "none"]  # null channel -> 'none'


def test_uncoercible_types_are_named() -> None:
    frame = pl.DataFrame(
        {"user_id": ["a"], "timestamp": [True], "event_type": ["x"], "value": [[1, 2]]}
    )
    with pytest.raises(EventSchemaError, match=r"timestamp column 'timestamp' has type Boolean"):
        validated(frame, ColumnMapping(channel=None))
    ok = frame.with_columns(pl.lit("2026-03-02").alias("timestamp"))
    with pytest.raises(EventSchemaError, match=r"numeric column 'value' has type List"):
        validated(ok, ColumnMapping(channel=None, numeric=("value",)))


def test_epoch_unit_is_decided_per_value() -> None:
    """One stray millisecond row must not turn the seconds rows into 1970."""
    frame = pl.DataFrame(
        {"user_id": ["a", "a", "a"], "timestamp": [T0, (T0 + 60) * 1000, T0 + 120],
         "event_type": ["x", "y", "z"]}
    )  # fmt: skip
    events, _ = validated(frame, ColumnMapping(channel=None))
    assert events["ts"].to_list() == [T0, T0 + 60, T0 + 120]


def test_nan_and_inf_numerics_are_missing_values() -> None:
    frame = user_table().with_columns(
        pl.Series("order_value", [float("nan"), 30.5, float("inf"), None, 2.0])
    )
    events, _ = validated(frame)
    assert events["num_order_value"].to_list() == [None, 30.5, None, None, 2.0]


def test_string_consent_column_is_refused_clearly() -> None:
    frame = user_table().with_columns(pl.lit("yes").alias("consent"))
    mapping = ColumnMapping(**{**MAPPING.__dict__, "consent": "consent"})
    with pytest.raises(EventSchemaError, match=r"consent column 'consent' has type String"):
        validated(frame, mapping)


def test_opt_out_list_needs_an_identifiable_column(tmp_path: Path) -> None:
    pl.DataFrame({"id": ["c3"], "reason": ["gdpr"]}).write_csv(tmp_path / "optout.csv")
    with pytest.raises(EventSchemaError, match=r"no column 'customer'.*\['id', 'reason'\]"):
        validated(user_table(), opt_out_path=str(tmp_path / "optout.csv"), max_drop_fraction=1.0)


def test_id_lists_are_matched_in_the_tables_id_form_counted_and_warned(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Float ids (7.0) match a text list ("7"), whitespace is trimmed, leading zeros are kept
    ("007" is another user than "7"); a partial or empty match is a warning with counts and
    the file, never an id."""
    table = pl.DataFrame(
        {"user_id": [7.0, 7.0, 8.0, 42.0], "timestamp": [T0, T0 + 1, T0, T0],
         "event_type": ["view"] * 4}
    )  # fmt: skip
    plain = ColumnMapping(channel=None)
    (tmp_path / "list.csv").write_text("user_id\n 7 \n007\n")
    with caplog.at_level("WARNING", logger="engage_seq.data.id_lists"):
        _, report = validated(
            table, plain, opt_out_path=str(tmp_path / "list.csv"), max_drop_fraction=1.0
        )
    assert report["rows_dropped"]["consent_opt_out"] == 2
    assert report["opt_out"] == {"users_listed": 2, "users_matched": 1}
    assert "list.csv' matches 1 of its 2 users" in caplog.text and "007" not in caplog.text
    caplog.clear()
    (tmp_path / "other.csv").write_text("user_id\nc-9\n")
    with caplog.at_level("WARNING", logger="engage_seq.data.id_lists"):
        _, report = validated(table, plain, opt_out_path=str(tmp_path / "other.csv"))
    assert report["opt_out"] == {"users_listed": 1, "users_matched": 0}
    assert "matches none of its 1 users" in caplog.text and "c-9" not in caplog.text
    assert validated(table, plain)[1]["opt_out"] is None


def test_user_keys_normalise_ids_as_ingest_does() -> None:
    """The oracle's and fairness' keys equal ingest's for float, padded and integer ids."""
    from engage_seq.data.ingest import user_keys

    table = pl.DataFrame({"user_id": [7, 8], "timestamp": [T0, T0], "event_type": ["v", "v"]})
    events, _ = validated(table, ColumnMapping(channel=None))
    want = events.sort("user_key")["user_key"].to_list()
    for ids in ([7.0, 8.0], [" 7", "8 "], [7, 8]):
        assert sorted(user_keys(pl.Series(ids)).to_list()) == want, ids
    assert user_keys(pl.Series(["007"])).item() != user_keys(pl.Series(["7"])).item()
    with pytest.raises(ValueError, match="blank or NaN"):
        user_keys(pl.Series(["  "]))


def test_dst_rule_for_naive_datetimes_and_dates() -> None:
    """Ambiguous local time (the fall-back hour): kept as the earlier instant, counted.
    Nonexistent (a spring-forward gap, here midnight of a Chilean date): dropped as
    unparseable_timestamp and counted; it used to raise from inside Polars for dates."""
    ambiguous = pl.DataFrame(
        {"user_id": ["a", "a"], "event_type": ["v", "v"],
         "timestamp": [datetime(2026, 10, 24, 12), datetime(2026, 10, 25, 2, 30)]}
    )  # fmt: skip
    berlin = ColumnMapping(channel=None, timezone="Europe/Berlin")
    events, report = validated(ambiguous, berlin)
    assert report["timestamp_dst"] == {"ambiguous": 1, "nonexistent": 0}
    assert events["ts"].max() == int(datetime(2026, 10, 25, 0, 30, tzinfo=timezone.utc).timestamp())
    dates = pl.DataFrame(
        {"user_id": ["a"] * 30, "event_type": ["v"] * 30,
         "timestamp": pl.date_range(datetime(2026, 8, 8), datetime(2026, 9, 6), eager=True)}
    )  # fmt: skip
    santiago = ColumnMapping(channel=None, timezone="America/Santiago")
    events, report = validated(dates, santiago, max_drop_fraction=0.05)
    assert report["rows_dropped"]["unparseable_timestamp"] == 1
    assert report["timestamp_dst"] == {"ambiguous": 0, "nonexistent": 1}


def test_folders_are_listed_here_with_hive_columns_from_below_the_root_only(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The folder is read as the list of its .parquet files (a README.txt is skipped and
    counted, a _SUCCESS marker skipped quietly); hive key=value folders below the root become
    columns as before, and a key=value folder *above* it does not (Polars parses every part
    of a listed path)."""
    root = tmp_path / "run=3" / "events"
    table = user_table().with_columns(pl.col("when").dt.day().alias("day"))
    table.write_parquet(root, partition_by="day")
    (root / "README.txt").write_text("exported by the CRM team\n")
    (root / "_SUCCESS").write_text("")
    with caplog.at_level("WARNING", logger="engage_seq.data.listing"):
        frame = FileEventSource(str(root)).scan().collect()
    assert "day" in frame.columns and "run" not in frame.columns and frame.height == 5
    assert "1 file(s) neither .parquet nor .csv are not read (e.g. README.txt)" in caplog.text
    assert "_SUCCESS" not in caplog.text
    explicit = FileEventSource(str(root), hive_partitioning=True).scan().collect_schema()
    assert "run" not in explicit
