"""Sample cache: reuse, counted drops, clear errors, nothing half-written."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from helpers.frames import FrameSource

import engage_seq.data.cache as sample_cache
from engage_seq.data.encoding import UNKNOWN_ID, encode_samples
from engage_seq.data.ingest import FileEventSource
from engage_seq.data.sampling import SamplingConfig, plan_cutoffs
from engage_seq.data.schema import ColumnMapping, EventSchemaError
from engage_seq.data.tasks import HorizonTask, NextEventTask

TASK = HorizonTask()
SAMPLING = SamplingConfig(max_len=16, n_train_cutoffs=2)


def test_second_prepare_reuses_the_cache(tiny_source, tmp_path: Path, monkeypatch) -> None:
    first = sample_cache.prepare_samples(tiny_source, TASK, SAMPLING, tmp_path)

    def must_not_build(*args, **kwargs):
        raise AssertionError("rebuilt samples although the cache entry exists")

    monkeypatch.setattr(sample_cache, "build_in_memory", must_not_build)
    monkeypatch.setattr(sample_cache, "build_sharded", must_not_build)
    second = sample_cache.prepare_samples(tiny_source, TASK, SAMPLING, tmp_path)
    assert second.samples.equals(first.samples)
    assert second.vocabulary == first.vocabulary
    leftovers = [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")]
    assert leftovers == [first.cache_dir.name]  # no temp folders


def test_concurrent_runs_build_an_entry_once(tiny_source, tmp_path: Path, monkeypatch) -> None:
    """Parallel sweep jobs needing the same samples: one builds, the others wait and reuse."""
    builds = []
    real_build = sample_cache.build_in_memory

    def slow_build(*args, **kwargs):
        builds.append(threading.get_ident())
        time.sleep(0.5)  # long enough for the other thread to reach the lock
        return real_build(*args, **kwargs)

    monkeypatch.setattr(sample_cache, "build_in_memory", slow_build)
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = [
            pool.submit(sample_cache.prepare_samples, tiny_source, TASK, SAMPLING, tmp_path)
            for _ in range(3)
        ]
        results = [f.result() for f in futures]
    assert len(builds) == 1
    assert all(r.samples.equals(results[0].samples) for r in results)


def test_report_counts_every_row(tiny_events, tmp_path: Path) -> None:
    dirty = tiny_events.with_columns(
        pl.when(pl.int_range(pl.len()) < 7).then(None).otherwise(pl.col("user_id")).alias("user_id")
    )
    prepared = sample_cache.prepare_samples(FrameSource(dirty), TASK, SAMPLING, tmp_path)
    report = prepared.report
    assert report["rows_read"] == tiny_events.height
    assert report["rows_dropped"]["null_user"] == 7
    assert report["users"] == dirty["user_id"].drop_nulls().n_unique()
    assert {"train", "val", "test"} == set(report["splits"])
    assert sum(s["samples"] for s in report["splits"].values()) == prepared.samples.height
    assert prepared.samples["user_key"].null_count() == 0


def test_missing_column_error_names_it(tiny_events, tmp_path: Path) -> None:
    renamed = tiny_events.rename({"event_type": "action"})
    with pytest.raises(EventSchemaError, match=r"event_type -> 'event_type'.*action"):
        sample_cache.prepare_samples(FrameSource(renamed), TASK, SAMPLING, tmp_path)
    mapped = sample_cache.prepare_samples(
        FrameSource(renamed), TASK, SAMPLING, tmp_path, ColumnMapping(event_type="action")
    )
    assert mapped.samples.height > 0


def test_unparseable_timestamps_are_refused(tmp_path: Path) -> None:
    frame = pl.DataFrame(
        {
            "user_id": ["a", "b"],
            "timestamp": ["yesterday", "soon"],
            "event_type": ["x", "y"],
            "channel": ["web", "web"],
        }
    )
    with pytest.raises(ValueError, match=r"all 2 rows were dropped.*unparseable_timestamp"):
        sample_cache.prepare_samples(FrameSource(frame), TASK, SAMPLING, tmp_path)


def test_empty_table_is_refused(tiny_events, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="empty"):
        sample_cache.prepare_samples(FrameSource(tiny_events.head(0)), TASK, SAMPLING, tmp_path)


def test_misspelt_target_is_refused(tiny_source, tmp_path: Path) -> None:
    task = HorizonTask(targets=("purchases",), name="typo")
    with pytest.raises(ValueError, match=r"'purchases'.*never occur.*spelling"):
        sample_cache.prepare_samples(tiny_source, task, SAMPLING, tmp_path)


def test_split_without_positives_is_refused(tiny_events, tmp_path: Path) -> None:
    # unsubscribes are rare: on 300 users over a 1-hour horizon, some split has none
    task = HorizonTask(targets=("unsubscribe",), horizon="1h", name="rare")
    with pytest.raises(ValueError, match=r"no positive label for target 'unsubscribe'"):
        sample_cache.prepare_samples(FrameSource(tiny_events), task, SAMPLING, tmp_path)


def test_eligibility_rules_are_counted_and_holdout_users_are_disjoint(
    tiny_source, tmp_path: Path
) -> None:
    sampling = SamplingConfig(
        max_len=16, n_train_cutoffs=2, active_within="14d", holdout_user_fraction=0.3
    )
    prepared = sample_cache.prepare_samples(tiny_source, TASK, sampling, tmp_path)
    dropped = prepared.report["samples_dropped"]
    assert set(dropped) == {"min_history_events", "inactive", "holdout_users"}
    assert sum(dropped["inactive"].values()) > 0
    samples = prepared.samples
    assert (samples["seconds_since_last"] <= 14 * 86_400).all()
    train_users = set(prepared.split("train")["user_key"])
    assert not train_users & set(prepared.split("test")["user_key"])
    assert not train_users & set(prepared.split("val")["user_key"])


def test_next_event_samples_from_the_same_builder(tiny_source, tmp_path: Path) -> None:
    prepared = sample_cache.prepare_samples(tiny_source, NextEventTask("3d"), SAMPLING, tmp_path)
    assert prepared.samples["label_next_event"].null_count() == 0
    assert (prepared.samples["label_next_hours"] < 72).all()
    assert sum(prepared.report["samples_dropped"]["no_next_event_within_max_gap"].values()) > 0
    assert prepared.report["splits"]["test"]["mean_hours_to_next_event"] < 72


@pytest.mark.parametrize("task", [TASK, NextEventTask("3d")], ids=["horizon", "next_event"])
def test_sharded_build_equals_in_memory_build(tiny_events, tmp_path: Path, task) -> None:
    """Out-of-core shards give exactly the in-memory samples, vocabulary and counts."""
    path = tmp_path / "events.parquet"
    tiny_events.with_columns(
        pl.when(pl.col("event_type") == "purchase").then(pl.col("timestamp").dt.second() * 2.5)
        .alias("value")
    ).write_parquet(path)  # fmt: skip
    source = FileEventSource(str(path))
    mapping = ColumnMapping(numeric=("value",))
    whole = sample_cache.prepare_samples(source, task, SAMPLING, tmp_path / "a", mapping)
    sharded_cfg = SamplingConfig(max_len=16, n_train_cutoffs=2, shards=3)
    sharded = sample_cache.prepare_samples(source, task, sharded_cfg, tmp_path / "b", mapping)
    assert len(sharded.files) == 3
    key = ["cutoff", "user_key"]
    assert sharded.samples.sort(key).equals(whole.samples.sort(key))
    assert sharded.vocabulary == whole.vocabulary
    for column, stats in whole.numeric_scaling.items():
        assert sharded.numeric_scaling[column] == pytest.approx(stats, rel=1e-9)
    for field in ("rows_read", "rows_kept", "rows_dropped", "users", "samples_dropped"):
        assert sharded.report[field] == whole.report[field], field
    for split, figures in whole.report["splits"].items():  # float sums: order may differ
        assert sharded.report["splits"][split] == pytest.approx(figures, rel=1e-6)  # f32 sums
    assert not list((tmp_path / "b").rglob("_work"))  # raw-id temp shards are gone


@pytest.mark.parametrize("shards", [1, 3])
def test_a_token_first_seen_after_the_last_training_cutoff_is_unknown(
    tiny_events, tmp_path: Path, shards: int
) -> None:
    """The vocabulary is fitted before the last *training* cutoff, not the last validation
    one: a token first seen in between is unknown (id 1) in the validation samples."""
    seconds = tiny_events["timestamp"].dt.epoch("s")
    plan = plan_cutoffs(seconds.min(), seconds.max() + 1, TASK, SAMPLING)
    late = plan.val[0] - 1  # after the last training cutoff, before the first validation one
    assert max(plan.train) < late
    extra = pl.DataFrame(
        {
            "user_id": ["u000"],
            "timestamp": [datetime.fromtimestamp(late, UTC)],
            "event_type": ["late_type"],
            "channel": ["late_channel"],
        },
        schema=tiny_events.schema,
    )
    source = FrameSource(pl.concat([tiny_events, extra]), "late")
    sampling = SamplingConfig(max_len=16, n_train_cutoffs=2, shards=shards)
    prepared = sample_cache.prepare_samples(source, TASK, sampling, tmp_path)
    assert prepared.plan == plan
    assert "late_type" not in prepared.vocabulary["event_type"]
    assert "late_channel" not in prepared.vocabulary["channel"]
    val = prepared.split("val").filter(pl.col("event_type").list.last() == "late_type")
    assert val["cutoff"].to_list() == [plan.val[0]]
    encoded = encode_samples(val, prepared.fitted_vocabulary, 16, TASK.label_columns)
    last = int(encoded.lengths[0]) - 1
    assert encoded.event_ids[0, last] == UNKNOWN_ID == encoded.channel_ids[0, last]


def test_a_split_left_empty_is_named(tiny_source, tmp_path: Path) -> None:
    demanding = SamplingConfig(max_len=16, n_train_cutoffs=2, min_history_events=10_000)
    with pytest.raises(ValueError, match=r"the train split is empty \(cutoffs \["):
        sample_cache.prepare_samples(tiny_source, TASK, demanding, tmp_path)


def test_editing_the_opt_out_list_invalidates_the_cache(tiny_source, tmp_path: Path) -> None:
    from engage_seq.data.ingest import IngestConfig

    optout = tmp_path / "optout.csv"
    pl.DataFrame({"user_id": ["u000"]}).write_csv(optout)
    ingest = IngestConfig(opt_out_path=str(optout))
    key = sample_cache.cache_key(tiny_source, ColumnMapping(), TASK, SAMPLING, ingest)
    pl.DataFrame({"user_id": ["u000", "u001", "u002"]}).write_csv(optout)
    assert sample_cache.cache_key(tiny_source, ColumnMapping(), TASK, SAMPLING, ingest) != key


def test_code_fingerprint_reads_every_module_that_decides_samples(monkeypatch) -> None:
    """Modules get split and renamed; the cache key must follow every file of data/ (but the
    cache itself) and of synthetic/, or an edit to a new module would reuse stale samples."""
    import engage_seq
    from engage_seq.data import cache

    package = Path(engage_seq.__file__).resolve().parent
    read: list[Path] = []
    original = Path.read_bytes

    def recording(self: Path) -> bytes:
        read.append(self.resolve())
        return original(self)

    monkeypatch.setattr(Path, "read_bytes", recording)
    cache._code_fingerprint()
    expected = {p.resolve() for p in (package / "data").glob("*.py") if p.name != "cache.py"}
    expected |= {p.resolve() for p in (package / "synthetic").glob("*.py")}
    assert set(read) == expected
    assert (
        package / "data" / "tasks.py" in expected
        and package / "synthetic" / "oracle.py" in expected
    )
