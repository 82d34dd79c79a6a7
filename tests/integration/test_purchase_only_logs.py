"""A purchase-only line-item export (no event-type column, several rows per order) trains,
exports, scores, backtests and drifts through the CLIs with only a column mapping (issue 21),
with the hybrid model (``model.aggregates=true``), so every consumer rebuilds the
full-history aggregates exactly as training did."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from helpers import VENV_BIN
from helpers.consumers import consumers_reproduce_training

from engage_seq.serving.export import load_artifact

pytestmark = pytest.mark.slow
DAY = 86_400
T0 = 1_767_225_600  # 2026-01-01T00:00:00Z


def line_item_export(path: Path, n_users: int = 300, days: int = 70) -> int:
    """Order lines of customers who rebuy every 4-15 days (jittered), 1-3 lines per order,
    each line with its own store and sku, some returns (negative quantity and amount).
    Written as ``path``; returns the number of orders (= events after merging)."""
    rng = np.random.default_rng(7)
    users, times = [], []
    for user in range(n_users):
        period = rng.uniform(4, 15) * DAY
        t = rng.uniform(0, period) + np.cumsum(
            np.full(int(days * DAY / period) + 1, period) + rng.normal(0, 0.3 * DAY, 1)
        )
        t = t[t < days * DAY]
        users += [f"cust-{user:05d}"] * len(t)
        times += list(T0 + t.astype(np.int64))
    lines = rng.integers(1, 4, len(times))
    n = int(lines.sum())
    quantity = rng.integers(1, 4, n).astype(float)
    quantity[rng.random(n) < 0.05] *= -1  # returns
    pl.DataFrame(
        {
            "customer_id": np.repeat(users, lines),
            "ordered_at": np.repeat(times, lines),
            "sku": [f"sku{i}" for i in rng.integers(0, 12, n)],
            "store": rng.choice(["web", "app", "shop"], n),
            "quantity": quantity,
            "amount": quantity * rng.uniform(2, 40, n).round(2),
        }
    ).with_columns(pl.from_epoch("ordered_at", time_unit="s")).write_parquet(path)
    return len(times)


def test_line_item_purchases_train_and_serve_with_only_a_column_mapping(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    orders = line_item_export(tmp_path / "export.parquet")
    rows = pl.read_parquet(tmp_path / "export.parquet").height
    assert rows > orders  # line items to merge
    run = tmp_path / "run"
    env = {**os.environ, "ENGAGE_SEQ_SALT": "unit-test-salt", "CUDA_VISIBLE_DEVICES": "",
           "ENGAGE_SEQ_CACHE_DIR": str(tmp_path / "cache")}  # fmt: skip
    result = subprocess.run(
        [
            str(VENV_BIN / "engage-train"),
            "data=files",
            f"data.source.path={tmp_path / 'export.parquet'}",
            "data.columns.user_id=customer_id",
            "data.columns.timestamp=ordered_at",
            "data.columns.event_type=null",  # purchase-only: every row is a `purchase`
            "data.columns.channel=null",
            "data.columns.categorical=[store,sku]",
            "data.columns.numeric=[quantity,amount]",
            "data.ingest.merge_same_instant=true",
            "data.sampling.max_len=16",
            "data.sampling.n_train_cutoffs=3",
            "trainer=smoke",
            "model.aggregates=true",  # the hybrid model: aggregates through every consumer
            "model.btyd_features=true",  # and BG/NBD features computed from them in the model
            "model.btyd_offset=true",  # whose logit the horizon head starts from
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
    assert report["rows_read"] == report["rows_kept"] == rows
    assert report["rows_merged_same_instant"] == rows - orders  # one event per order
    assert report["event_types"] == ["purchase"]

    subprocess.run([str(VENV_BIN / "engage-export"), str(run)], check=True, capture_output=True)
    _, meta = load_artifact(run / "artifact.pt")
    assert meta["column_mapping"]["event_type"] is None
    assert meta["column_mapping"]["constant_event_type"] == "purchase"
    assert meta["config"]["data"]["ingest"]["merge_same_instant"] is True
    # full-history recency, frequency, tenure and monetary aggregates, standardised
    assert meta["aggregate_names"][-4:] == [
        "sum/num_quantity", "mean/num_quantity", "sum/num_amount", "mean/num_amount",
    ]  # fmt: skip
    assert len(meta["aggregate_names"]) == 7 + 7 + 4 == meta["model_config"]["n_aggregates"]
    (btyd,) = meta["model_config"]["btyd"]["targets"]  # fitted on the training histories
    assert btyd["name"] == "purchase" and all(p > 0 for p in btyd["params"])
    assert meta["model_config"]["btyd"]["offset"] is True
    # engage-score, engage-backtest and engage-drift get the training-time predictions from
    # the raw line items: only possible if they merge them as training did
    consumers_reproduce_training(tmp_path, run, env, monkeypatch)
    merged = rows - orders
    scored = json.loads((tmp_path / "scores.parquet.report.json").read_text())
    assert scored["rows_merged_same_instant"] == merged
    backtest = json.loads((tmp_path / "backtest" / "backtest.json").read_text())
    assert backtest["inputs"]["rows_merged_same_instant"] == merged
