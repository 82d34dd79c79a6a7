"""engage_seq.evaluation: evaluate a finished run. `run_evaluation.evaluate_run` recomputes
the predictions and metrics of the run's model (`predictions`) and of its references: baselines
refitted on the same samples (`references`, through `baseline_scores`), the synthetic data's
oracle (`oracle`), other runs of the sweep (`siblings`); `run_folder` reads the run's files
safely, `options` holds `ReportOptions`, `results` the types a report is made from; explanations
and fairness are the math behind their report sections. May import common, data, synthetic,
metrics, models, baselines, training (its batches) and serving (checkpoint loading); never
reporting, monitoring, experiments or cli. Nothing is re-exported here, so importing a light
module (`options`, `run_folder`) does not load torch."""

from __future__ import annotations

from engage_seq.common.moved import package_getattr

__getattr__ = package_getattr(__name__)  # 0.1 class paths: engage_seq.common.moved
