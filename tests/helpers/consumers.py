"""The consumers of an artifact (engage-score, engage-backtest, engage-drift) give the
training-time predictions: one check shared by the own-data and purchase-only runs."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from engage_seq.serving.export import load_artifact


def consumers_reproduce_training(
    tmp_path: Path, run: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """engage-score, engage-backtest and engage-drift read the artifact's metadata.json (whose
    maps are key-sorted) and must give the training-time predictions: golden_batch.pt holds
    the Lightning module's probabilities for the first test samples, in test-split order."""
    import torch

    from engage_seq.cli.backtest import main as backtest_main
    from engage_seq.cli.drift import main as drift_main
    from engage_seq.cli.score import main as score_main

    artifact = run / "artifact.pt"
    _, meta = load_artifact(artifact)
    golden = torch.load(run / "golden_batch.pt", weights_only=True)
    cache = next((tmp_path / "cache").glob("samples-*"))
    test = pl.read_parquet(sorted(cache.glob("*.parquet"))).filter(pl.col("split") == "test")
    expected = pl.DataFrame(
        {
            "user_key": test["user_key"].head(len(golden["probabilities"])),
            "expected": golden["probabilities"][:, 0].numpy(),
        }
    )
    # the attributes must matter, or a mix-up could not show
    assert golden["attribute_ids"].shape[-1] == 2 and golden["numeric"].shape[-1] == 2
    cutoff = meta["cutoffs"]["test"][0]  # ISO, as engage-score's --cutoff takes it
    scores = tmp_path / "scores.parquet"
    monkeypatch.setenv("ENGAGE_SEQ_SALT", env["ENGAGE_SEQ_SALT"])  # the same keys as training
    code = score_main(
        [str(artifact), str(tmp_path / "export.parquet"), "--out", str(scores),
         "--cutoff", str(cutoff), "--ids", "key", "--max-drop-fraction", "0.5"]
    )  # fmt: skip
    assert code == 0
    joined = expected.join(pl.read_parquet(scores), on="user_key")
    assert joined.height == expected.height
    diff = (joined["expected"] - joined["score_purchase"]).abs().max()
    assert diff < 1e-5, f"engage-score differs from training by {diff}"

    # the backtest's first cutoff is the test cutoff: the run's own test metrics
    assert backtest_main(
        [f"artifact={artifact}", f"events={tmp_path / 'export.parquet'}",
         f"out={tmp_path / 'backtest'}", f"start={cutoff}", "count=1", "--no-plot"]
    ) == 0  # fmt: skip
    rows = json.loads((tmp_path / "backtest" / "backtest.json").read_text())["rows"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert abs(rows[0]["auroc"] - metrics["test/auroc"]) < 1e-4

    # drift of a table against itself, with the artifact's scores: no drift anywhere
    assert drift_main(
        [f"reference={tmp_path / 'export.parquet'}", f"current={tmp_path / 'export.parquet'}",
         f"artifact={artifact}", f"out={tmp_path / 'drift'}", "--no-plot"]
    ) == 0  # fmt: skip
    drift = json.loads((tmp_path / "drift" / "drift.json").read_text())
    assert any(row["name"] == "score_purchase" for row in drift["features"])
    # and its scores of the test samples are the training-time predictions
    from engage_seq.monitoring.drift_features import score_values
    from engage_seq.monitoring.drift_inputs import DriftInput
    from engage_seq.serving.contract import ArtifactMetadata

    module, _ = load_artifact(artifact)
    samples = DriftInput("samples", "test samples", test, None, {})
    typed = ArtifactMetadata.from_dict(meta)
    drift_scores = score_values(samples, module, typed)["features"]["score_purchase"][1]
    values = drift_scores.collect()["value"].head(expected.height).to_numpy()
    assert abs(values - expected["expected"].to_numpy()).max() < 1e-5
