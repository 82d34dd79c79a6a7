"""The run report's oracle row on the customer-base data: the closed form, joined to the real
samples of ``data=customer_base_tiny task=purchase_13w`` (merged order lines, no event type)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from engage_seq.common.config_dir import CONF_DIR
from engage_seq.data.cache import prepare_samples
from engage_seq.data.ingest import user_keys
from engage_seq.evaluation.options import ReportOptions
from engage_seq.evaluation.oracle import oracle_scorer
from engage_seq.evaluation.results import EvaluatedSplit, Scorer
from engage_seq.synthetic import customer_base_probability


def test_report_oracle_scores_customer_base_samples(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ENGAGE_SEQ_SALT", raising=False)
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=["data=customer_base_tiny", "task=purchase_13w"])
    source, task = instantiate(cfg.data.source), instantiate(cfg.task)
    prepared = prepare_samples(
        source,
        task,
        instantiate(cfg.data.sampling),
        tmp_path,
        instantiate(cfg.data.columns),
        instantiate(cfg.data.ingest),
    )
    test = prepared.split("test").sample(fraction=1.0, shuffle=True, seed=0)  # any row order
    cutoffs = tuple(int(c) for c in test["cutoff"].unique())
    labels = test["label_purchase"].cast(pl.Float64).to_numpy().reshape(-1, 1)
    split = EvaluatedSplit("test", test, labels, np.full(test.height, -1), cutoffs)
    # a tiny limit does not apply: the closed form has no Monte Carlo cost
    scorer = oracle_scorer(cfg, task, split, ReportOptions(oracle_max_users=1))
    assert isinstance(scorer, Scorer), scorer
    (cutoff,) = cutoffs
    truth = customer_base_probability(source, cutoff, task.horizon_seconds)
    truth = truth.with_columns(user_key=user_keys(truth["user_id"]))
    expected = test.join(truth, on="user_key", how="left", maintain_order="left")
    np.testing.assert_allclose(scorer.horizon["test"][:, 0], expected["probability"].to_numpy())
    assert truth.height == test.height  # every customer acquired before c has a sample
    assert scorer.metrics["test/auroc"] > 0.6
