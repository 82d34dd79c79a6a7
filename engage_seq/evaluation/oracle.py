"""The oracle row of a run report: the synthetic generator's Bayes-optimal P(purchase) given
each user's history, scored on the test samples like any model; or, where it does not apply,
the reason the report gives. Dispatched by source type: the behavioural generator's Monte
Carlo oracle (`engage_seq.synthetic.oracle.purchase_probability`) or the customer base's
closed form (`engage_seq.synthetic.customer_base_oracle.customer_base_probability`)."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import polars as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from engage_seq.data.ingest import user_keys
from engage_seq.data.sequences import Task
from engage_seq.data.tasks import HorizonTask, horizon_part
from engage_seq.evaluation.options import ReportOptions
from engage_seq.evaluation.references import ReferenceCache
from engage_seq.evaluation.results import EvaluatedSplit, Scorer, prefixed
from engage_seq.metrics.scores import score_probabilities

log = logging.getLogger(__name__)
ORACLE_LABEL = "oracle, best possible given each user's history"


def _why_not(
    source: Any, horizon: HorizonTask | None, split: EvaluatedSplit, options: ReportOptions
) -> str | None:
    """Why the oracle cannot score ``split`` (wrong data, target or period, too many users)."""
    from engage_seq.synthetic import CustomerBaseSource, SyntheticEventSource

    if not isinstance(source, (SyntheticEventSource, CustomerBaseSource)):
        return "the oracle exists only for the built-in synthetic data"
    if horizon is None or "purchase" not in horizon.targets:
        return "the oracle forecasts purchases; this task has no purchase target"
    if isinstance(source, CustomerBaseSource):
        return None  # closed form: exact, milliseconds, no period or size limit
    drift = source.drift_epoch
    if drift is not None and max(split.cutoffs) + horizon.horizon_seconds > drift:
        return (
            "the test window reaches past the generator's drift_start "
            f"({source.drift_start}), where the oracle has no ground truth"
        )
    user_cutoffs = source.n_users * len(split.cutoffs)
    if user_cutoffs > options.oracle_max_users:
        return (
            f"{user_cutoffs:,} user-cutoffs exceed report.oracle_max_users="
            f"{options.oracle_max_users:,} (about 0.3 ms each at 256 replicates)"
        )
    return None


def _probabilities(
    cfg: DictConfig, source: Any, horizon: HorizonTask, split: EvaluatedSplit, replicates: int
) -> np.ndarray | str:
    """(N, 1) oracle P(purchase) in ``split``'s row order, or why some sample has none."""
    from engage_seq.synthetic import CustomerBaseSource, customer_base_probability
    from engage_seq.synthetic.oracle import purchase_probability

    salt_env = str(cfg.data.ingest.get("salt_env", "ENGAGE_SEQ_SALT"))
    parts = []
    for cutoff in split.cutoffs:
        if isinstance(source, CustomerBaseSource):
            truth = customer_base_probability(source, int(cutoff), horizon.horizon_seconds)
        else:
            truth = purchase_probability(
                source, int(cutoff), horizon.horizon_seconds, replicates=replicates
            )
        parts.append(
            pl.DataFrame(
                {
                    "user_key": user_keys(truth["user_id"], salt_env),
                    "cutoff": pl.Series([cutoff] * truth.height, dtype=pl.Int64),
                    "probability": truth["probability"],
                }
            )
        )  # raw user ids stop here: only keys and probabilities go on
    keys = split.frame.select("user_key", pl.col("cutoff").cast(pl.Int64))
    joined = keys.join(
        pl.concat(parts), on=["user_key", "cutoff"], how="left", maintain_order="left"
    )
    missing = joined["probability"].null_count()
    if missing:
        return f"the oracle has no probability for {missing} of {split.frame.height} samples"
    return joined["probability"].to_numpy().reshape(-1, 1)


def oracle_scorer(
    cfg: DictConfig,
    task: Task,
    split: EvaluatedSplit,
    options: ReportOptions,
    cache: ReferenceCache | None = None,
) -> Scorer | str:
    """The synthetic generator's Bayes-optimal P(purchase) given each user's history
    (`engage_seq.synthetic.oracle.purchase_probability`) on ``split``, or why it does not
    apply."""
    source = instantiate(cfg.data.source)
    horizon = horizon_part(task)
    reason = _why_not(source, horizon, split, options)
    if reason is not None:
        return reason
    assert horizon is not None
    started = time.perf_counter()
    settings = {"replicates": options.oracle_replicates, "split": split.name, "task": str(task)}
    path = cache.path("oracle", settings) if cache is not None else None
    cached = cache.load(path) if cache is not None and path is not None else None
    if cached is not None:
        cached.seconds = time.perf_counter() - started
        log.info("report: oracle from %s", path)
        return cached
    probs = _probabilities(cfg, source, horizon, split, options.oracle_replicates)
    if isinstance(probs, str):
        return probs
    column = list(horizon.targets).index("purchase")
    labels = split.horizon_labels[:, column : column + 1]
    values = score_probabilities(["purchase"], torch.tensor(probs), torch.tensor(labels))
    scorer = Scorer("oracle", ORACLE_LABEL, "oracle", ("purchase",))
    scorer.horizon[split.name] = probs
    scorer.metrics = prefixed(split.name, values)
    scorer.seconds = time.perf_counter() - started
    if cache is not None and path is not None:
        cache.save(path, scorer)
    log.info("report: oracle scored %d samples in %.1f s", len(split), scorer.seconds)
    return scorer
