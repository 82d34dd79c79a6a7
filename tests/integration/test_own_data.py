"""A user's own dirty Parquet export trains end to end with only a data config."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import polars as pl
import pytest
from helpers import VENV_BIN
from helpers.consumers import consumers_reproduce_training

from engage_seq.serving.export import load_artifact
from engage_seq.synthetic import SyntheticEventSource

pytestmark = pytest.mark.slow


def dirty_export(path: Path) -> list[str]:
    """The synthetic events as a CRM would export them: other names, strings, dirt."""
    events = SyntheticEventSource(n_users=400, days=70, seed=5).scan().collect()
    export = events.select(
        ("customer-7f3a9c1e-" + pl.col("user_id")).alias("customer_id"),
        pl.col("timestamp").dt.strftime("%Y-%m-%dT%H:%M:%SZ").alias("event_time"),
        pl.col("event_type").alias("action"),
        pl.col("channel").alias("touchpoint"),
        # attributes: a categorical device and a numeric order value on purchases only
        pl.when(pl.col("channel") == "app")
        .then(pl.lit("ios"))
        .otherwise(pl.lit("desktop"))
        .alias("device"),
        pl.when(pl.col("event_type") == "purchase")
        .then((pl.col("timestamp").dt.second() + 5) * 3.5)
        .alias("order_value"),
        # a second attribute of each kind, declared out of alphabetical order below: the
        # artifact's metadata.json stores its maps key-sorted, so a reader that took key order
        # would look ids up in the wrong attribute's vocabulary (issue 20)
        pl.when(pl.col("timestamp").dt.day() % 3 == 0)
        .then(pl.lit("spring_sale"))
        .otherwise(pl.lit("newsletter"))
        .alias("campaign"),
        (pl.col("timestamp").dt.hour() % 5).cast(pl.Float64).alias("basket_size"),
    )
    dirt = pl.concat(
        [
            export.head(20),  # exact duplicates
            export.head(5).with_columns(pl.lit(None, pl.String).alias("customer_id")),
            export.head(5).with_columns(pl.lit("yesterday").alias("event_time")),
        ]
    )
    pl.concat([export, dirt]).write_parquet(path)
    return export["customer_id"].unique().to_list()


def test_dirty_parquet_trains_with_only_a_data_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw_ids = dirty_export(tmp_path / "export.parquet")
    run = tmp_path / "run"
    env = {**os.environ, "ENGAGE_SEQ_SALT": "unit-test-salt", "CUDA_VISIBLE_DEVICES": "",
           "ENGAGE_SEQ_CACHE_DIR": str(tmp_path / "cache")}  # fmt: skip
    result = subprocess.run(
        [
            str(VENV_BIN / "engage-train"),
            "data=files",
            f"data.source.path={tmp_path / 'export.parquet'}",
            "data.columns.user_id=customer_id",
            "data.columns.timestamp=event_time",
            "data.columns.event_type=action",
            "data.columns.channel=touchpoint",
            "data.columns.categorical=[device,campaign]",  # not alphabetical, on purpose
            "data.columns.numeric=[order_value,basket_size]",
            "data.sampling.max_len=32",
            "data.sampling.n_train_cutoffs=3",
            "trainer=smoke",
            f"hydra.run.dir={run}",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads((run / "data_report.json").read_text())
    assert report["rows_dropped"]["duplicate_event"] == 20
    assert report["rows_dropped"]["null_user"] == 5
    assert report["rows_dropped"]["unparseable_timestamp"] == 5
    assert report["user_keys"] == "hmac-sha256"
    assert json.loads((run / "metrics.json").read_text())["test/n_samples"] > 0
    assert report["vocabulary_sizes"]["cat_device"] == 2
    assert report["numeric_scaling"]["num_order_value"]["std"] > 0

    # No raw id in any file the run wrote: text, checkpoint, TensorBoard, cache, artifact.
    subprocess.run([str(VENV_BIN / "engage-export"), str(run)], check=True, capture_output=True)
    _, meta = load_artifact(run / "artifact.pt")
    assert meta["numeric_attributes"] == ["num_order_value", "num_basket_size"]
    assert meta["categorical_attributes"] == ["cat_device", "cat_campaign"]
    consumers_reproduce_training(tmp_path, run, env, monkeypatch)
    needles = [i.encode() for i in raw_ids] + [b"customer-7f3a9c1e"]
    written = [p for p in [*run.rglob("*"), *(tmp_path / "cache").rglob("*")] if p.is_file()]
    assert any(p.name == "artifact.pt" for p in written)
    for path in written:
        blob = path.read_bytes()
        assert not any(n in blob for n in needles), f"raw user id found in {path}"
    assert "customer-7f3a9c1e" not in result.stdout + result.stderr
