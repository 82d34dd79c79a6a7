"""`GradientBoostedTrees`: the RFM aggregates with LightGBM, the strongest usual tabular baseline.
LightGBM is optional (``pip install 'engage_seq[gbm]'``) and imported only when a model is fitted
or loaded."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from engage_seq.baselines.features import AggregateFeatures
from engage_seq.baselines.frames import FORMAT_VERSION, Frame, check_format
from engage_seq.baselines.horizon import HorizonBaseline, binary_labels


def import_lightgbm() -> Any:
    try:
        import lightgbm
    except ImportError as error:
        raise ImportError("model=gbm needs LightGBM: pip install 'engage_seq[gbm]'") from error
    return lightgbm


class GradientBoostedTrees(HorizonBaseline):
    """RFM aggregates + one LightGBM binary model per target.

    With ``val``, boosting stops once the validation log-loss has not improved for
    ``early_stopping_rounds`` rounds and `best_iterations` records where it peaked; without
    it all ``n_estimators`` trees are kept. Fits are deterministic for a fixed ``seed`` and
    ``n_jobs``.
    """

    name = "gbm"

    def __init__(
        self,
        n_estimators: int = 500,
        learning_rate: float = 0.05,
        num_leaves: int = 31,
        min_child_samples: int = 50,
        early_stopping_rounds: int = 30,
        seed: int = 0,
        n_jobs: int = 2,
    ) -> None:
        self.n_estimators = int(n_estimators)
        self.learning_rate = float(learning_rate)
        self.num_leaves = int(num_leaves)
        self.min_child_samples = int(min_child_samples)
        self.early_stopping_rounds = int(early_stopping_rounds)
        self.seed = int(seed)
        self.n_jobs = int(n_jobs)
        self.boosters: list[Any] = []
        self.best_iterations: dict[str, int] = {}
        # Rounds per target used when fitted without ``val`` (a refit on train + validation
        # keeps what early stopping chose in the first fit: `engage_seq.baselines.refit`).
        self.fixed_rounds: dict[str, int] = {}

    def _params(self) -> dict[str, Any]:
        return {
            "objective": "binary",
            "metric": "binary_logloss",
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_child_samples,
            "seed": self.seed,
            "deterministic": True,
            "force_row_wise": True,
            "num_threads": self.n_jobs,
            "verbose": -1,
        }

    def fit(
        self, train: Frame, val: Frame | None, label_columns: Sequence[str]
    ) -> GradientBoostedTrees:
        lgb = import_lightgbm()
        x = self._features(train, label_columns)
        y = binary_labels(train, "train", self.label_columns)
        x_val = self.features.transform(val) if val is not None else None
        y_val = binary_labels(val, "val", self.label_columns) if val is not None else None
        params = self._params()
        self.boosters, self.best_iterations = [], {}
        for j, column in enumerate(self.label_columns):
            data = lgb.Dataset(x, label=y[:, j], params=params)
            valid_sets, callbacks = [], []
            if x_val is not None and y_val is not None:
                valid_sets = [lgb.Dataset(x_val, label=y_val[:, j], reference=data)]
                callbacks = [lgb.early_stopping(self.early_stopping_rounds, verbose=False)]
            booster = lgb.train(
                params,
                data,
                num_boost_round=self.n_estimators if valid_sets else self._rounds(column),
                valid_sets=valid_sets or None,
                callbacks=callbacks or None,
            )
            best = booster.best_iteration or booster.current_iteration()
            # keep only the trees that are used: identical predictions, smaller artifact
            self.boosters.append(lgb.Booster(model_str=booster.model_to_string(best)))
            self.best_iterations[column] = int(best)
        return self

    def _rounds(self, column: str) -> int:
        return int(self.fixed_rounds.get(column, self.n_estimators))

    def predict_proba(self, samples: Frame) -> np.ndarray:
        """(N, n_targets) float64 probabilities."""
        x = self.features.transform(samples)
        columns = [
            booster.predict(x, num_iteration=self.best_iterations[c])
            for booster, c in zip(self.boosters, self.label_columns, strict=True)
        ]
        return np.stack(columns, axis=1).astype(np.float64, copy=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.name,
            "format": FORMAT_VERSION,
            "params": {
                "n_estimators": self.n_estimators,
                "learning_rate": self.learning_rate,
                "num_leaves": self.num_leaves,
                "min_child_samples": self.min_child_samples,
                "early_stopping_rounds": self.early_stopping_rounds,
                "seed": self.seed,
                "n_jobs": self.n_jobs,
            },
            "label_columns": self.label_columns,
            "features": self.features.to_dict(),
            "feature_names": self.features.names,
            "best_iterations": self.best_iterations,
            "models": [b.model_to_string() for b in self.boosters],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GradientBoostedTrees:
        check_format(d, cls.name)
        lgb = import_lightgbm()
        out = cls(**d["params"])
        out.label_columns = list(d["label_columns"])
        out.features = AggregateFeatures.from_dict(d["features"])
        out.best_iterations = {k: int(v) for k, v in d["best_iterations"].items()}
        out.boosters = [lgb.Booster(model_str=text) for text in d["models"]]
        return out
