"""Benchmarks keep working: each runs tiny and ends with one parseable JSON line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO

pytestmark = pytest.mark.slow
SCRIPTS = REPO / "scripts"


def last_json(args: list[str], cwd: Path) -> dict:
    done = subprocess.run(
        [sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_bench_sequences_small(tmp_path: Path) -> None:
    record = last_json(
        [str(SCRIPTS / "bench_sequences.py"), "--events", "30000", "--max-len", "16"], tmp_path
    )
    (result,) = record["results"]
    assert result["samples"] > 0 and result["engage_seq_seconds"] > 0
    if "same_samples" in result:  # pandas reference installed (pip install -e '.[bench]')
        assert result["same_samples"] is True
    assert record["machine"]["cpus"] >= 1 and "polars" in record["versions"]


def test_bench_encoders_small(tmp_path: Path) -> None:
    record = last_json(
        [str(SCRIPTS / "bench_encoders.py"), "--users", "300", "--steps", "2", "--warmup", "1"],
        tmp_path,
    )
    assert record["lstm_padded_vs_packed_max_abs_diff"] < 1e-5
    assert record["lstm_padded_ms_per_step"] > 0


def test_bench_train_small(tmp_path: Path) -> None:
    record = last_json(
        [str(SCRIPTS / "bench_train.py"), "--users", "300", "--steps", "3", "--warmup", "1",
         "--rounds", "1", "--batch-size", "32", "--cache-dir", str(tmp_path / "cache")],
        tmp_path,
    )  # fmt: skip
    for model in ("lstm", "transformer"):
        speeds = record[model]["sequences_per_s"]
        assert set(speeds) == {"lightning", "bare_bucketed", "bare_naive"}
        assert all(v > 0 for v in speeds.values())
    assert record["padding_share"]["bucketed"] < record["padding_share"]["naive"]


def test_bench_quality_small(tmp_path: Path) -> None:
    record = last_json(
        [str(SCRIPTS / "bench_quality.py"), "--seeds", "1", "--models", "lstm,gbm",
         "--next-event-models", "markov", "--replicates", "16", "--workdir", str(tmp_path),
         "--override", "data=synthetic_tiny", "--override", "trainer=smoke", "--epochs", "1",
         "--next-event-epochs", "1"],
        tmp_path,
    )  # fmt: skip
    rows = {row["model"]: row for row in record["rows"]}
    assert {"lstm", "gbm", "oracle", "oracle_latent"} <= set(rows)
    assert all(0 <= row["roc_auc"] <= 1 for row in rows.values())
    assert record["next_event_rows"][0]["model"] == "markov"
    assert "gap_to_oracle" in record["targets"]


def test_bench_quality_customer_base_small(tmp_path: Path) -> None:
    record = last_json(
        [str(SCRIPTS / "bench_quality.py"), "--data", "customer_base", "--customers", "400",
         "--seeds", "1", "--models", "lstm,bgnbd", "--epochs", "1", "--workdir", str(tmp_path),
         "--override", "trainer=smoke", "--variant", "broken=model=gru model.no_such_option=1"],
        tmp_path,
    )  # fmt: skip
    rows = {row["model"]: row for row in record["rows"]}
    assert set(rows) == {"lstm", "bgnbd", "oracle"} and "broken" in record["skipped"]
    assert all(0 <= row["roc_auc"] <= 1 and row["brier"] > 0 for row in rows.values())
    assert record["targets"]["recommended"] == "lstm"  # the only non-baseline row
    assert record["targets"]["best_classical_roc_auc"] == rows["bgnbd"]["roc_auc"]


def test_bench_serving_small(tmp_path: Path) -> None:
    record = last_json(
        [str(SCRIPTS / "bench_serving.py"), "--models", "lstm,transformer", "--calls", "120",
         "--batch", "16", "--batch-calls", "2", "--users", "300", "--score-shards", "1,3"],
        tmp_path,
    )  # fmt: skip
    for model in ("lstm", "transformer"):
        for entry in ("eager", "torchscript_tensor", "torchscript_raw"):
            figures = record["latency"][model][entry]
            assert 0 < figures["batch1_p50_ms"] <= figures["batch1_p99_ms"]
            assert figures["batch16_users_per_s"] > 0
    assert record["engage_score"]["users"] > 250 and record["engage_score"]["users_per_second"] > 0
    runs = record["engage_score"]["by_shards"]
    assert runs["3"]["users"] == runs["1"]["users"] and runs["3"]["peak_rss_gb"] > 0.1
    assert "engage_score_ge_50k_users_per_s" in record["targets"]
