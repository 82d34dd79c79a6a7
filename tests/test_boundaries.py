"""The direction of imports (DESIGN §4), checked in fresh interpreters."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

FORBIDDEN = {
    # data code stays torch-free, so it runs in light environments and in Polars-only jobs
    **{
        f"engage_seq.synthetic{module}": {"torch", "lightning", "hydra"}
        for module in (
            "",
            ".settings",
            ".behaviour",
            ".clocks",
            ".population",
            ".sessions",
            ".events",
            ".drift",
            ".generator",
            ".history",
            ".grids",
            ".posterior",
            ".oracle",
        )
    },
    "engage_seq.data.schema": {"torch", "lightning", "hydra"},
    "engage_seq.common.messages": {"torch", "lightning", "hydra"},
    # config checking runs before Hydra (engage-train) and without it (evaluate, export)
    "engage_seq.common.safe_config": {"torch", "lightning", "hydra"},
    "engage_seq.common.trust": {"torch", "lightning", "hydra", "omegaconf"},
    "engage_seq.common.untrusted_yaml": {"torch", "lightning", "hydra"},
    "engage_seq.data.listing": {"torch", "lightning", "hydra"},
    "engage_seq.data.sequences": {"torch", "lightning", "hydra"},
    "engage_seq.data.tasks": {"torch", "lightning", "hydra"},
    "engage_seq.data.sampling": {"torch", "lightning", "hydra"},
    "engage_seq.data.vocabulary": {"torch", "lightning", "hydra"},
    "engage_seq.data.cache": {"torch", "lightning", "hydra"},
    "engage_seq.data.ingest": {"torch", "lightning", "hydra"},
    "engage_seq.data.validation": {"torch", "lightning", "hydra"},
    "engage_seq.data.id_lists": {"torch", "lightning", "hydra"},
    "engage_seq.data.build": {"torch", "lightning", "hydra"},
    "engage_seq.data.splits": {"torch", "lightning", "hydra"},
    "engage_seq.data.shards": {"torch", "lightning", "hydra"},
    # baselines run where only Polars and numpy are installed (LightGBM is optional, lazy)
    "engage_seq.baselines": {"torch", "lightning", "hydra", "lightgbm"},
    "engage_seq.baselines.gbm": {"torch", "lightning", "hydra", "lightgbm"},
    "engage_seq.baselines.registry": {"torch", "lightning", "hydra", "lightgbm"},
    # metrics score models, baselines and oracles alike, without a Trainer
    "engage_seq.metrics.scores": {"lightning", "hydra", "polars"},
    # exported modules import torch only
    "engage_seq.models.config": {"torch", "lightning", "hydra", "polars"},
    "engage_seq.models.encoders": {"lightning", "hydra", "polars"},
    "engage_seq.models.engagement": {"lightning", "hydra", "polars"},
    # encoding serves training and batch scoring alike: numpy + Polars only
    "engage_seq.data.encoding": {"torch", "lightning", "hydra"},
    # the exported serving module: torch only (it must load without engage_seq)
    "engage_seq.serving.scripted": {"lightning", "hydra", "polars"},
    # export and its parity harness need neither Lightning nor Hydra (Polars runs the
    # training code as the reference for constructed inputs)
    "engage_seq.serving.export": {"lightning", "hydra"},
    "engage_seq.serving.parity": {"lightning", "hydra"},
    # batch scoring: no Lightning, no Hydra (and no model classes, checked below)
    "engage_seq.serving.scoring": {"lightning", "hydra"},
    "engage_seq.serving.scoring_artifact": {"lightning", "hydra"},
    # reading an event table for scoring, and ranking the scores: Polars, no torch (drift too)
    "engage_seq.serving.event_table": {"torch", "lightning", "hydra"},
    "engage_seq.serving.ranking": {"torch", "lightning", "hydra"},
    # the artifact contract and the archive check: the standard library only
    "engage_seq.serving.contract": {"torch", "lightning", "hydra", "polars", "numpy"},
    "engage_seq.serving.archive": {"torch", "lightning", "hydra", "polars", "numpy"},
    # its far-future rule is data code; its output writing needs only the standard library
    "engage_seq.serving.cutoff": {"torch", "lightning", "hydra"},
    "engage_seq.serving.outputs": {"torch", "lightning", "hydra", "polars", "numpy"},
    # monitoring runs next to serving: drift on event tables needs no torch at all (the
    # artifact's scores load it lazily), the backtest only the artifact
    "engage_seq.monitoring.drift": {"torch", "lightning", "hydra"},
    "engage_seq.monitoring.drift_inputs": {"torch", "lightning", "hydra"},
    "engage_seq.monitoring.drift_features": {"torch", "lightning", "hydra"},
    "engage_seq.monitoring.drift_verdicts": {"torch", "lightning", "hydra"},
    "engage_seq.monitoring.drift_report": {"torch", "lightning", "hydra"},
    "engage_seq.monitoring.histograms": {"torch", "lightning", "hydra"},
    "engage_seq.monitoring.distances": {"torch", "lightning", "hydra", "polars"},
    "engage_seq.cli.drift": {"torch", "lightning", "hydra"},
    "engage_seq.monitoring.backtest": {"lightning", "hydra"},
    "engage_seq.monitoring.backtest_schedule": {"torch", "lightning", "hydra"},
    "engage_seq.monitoring.backtest_result": {"torch", "lightning", "hydra"},
    "engage_seq.monitoring.backtest_report": {"torch", "lightning", "hydra"},
    "engage_seq.cli.backtest": {"lightning", "hydra"},
    # artifact keys and signatures: the standard library only (no new dependency to trust)
    "engage_seq.serving.signing": {"torch", "lightning", "hydra", "polars", "numpy"},
    # report sections work on a model and frames, without a Trainer; drawing is matplotlib only
    "engage_seq.evaluation.attribution": {"lightning", "hydra", "matplotlib"},
    "engage_seq.evaluation.explain": {"lightning", "hydra", "matplotlib"},
    "engage_seq.reporting.explain_section": {"lightning", "hydra", "matplotlib"},
    "engage_seq.evaluation.segments": {"torch", "lightning", "hydra"},
    "engage_seq.evaluation.fairness": {"lightning", "hydra"},
    "engage_seq.reporting.fairness_section": {"lightning", "hydra"},
    "engage_seq.reporting.section": {"torch", "lightning", "hydra"},
    # what a run folder holds, the report options, the evaluation's types and the report's
    # words and reproduce commands: no torch, so engage-evaluate checks its arguments (and
    # prints --help) without loading a model
    **{
        module: {"torch", "lightning", "hydra"}
        for module in (
            "engage_seq.evaluation.run_folder",
            "engage_seq.evaluation.options",
            "engage_seq.evaluation.results",
            "engage_seq.cli.evaluate",
            "engage_seq.reporting.wording",
            "engage_seq.reporting.reproduce",
        )
    },
    "engage_seq.reporting.figures": {"torch", "lightning", "hydra"},
    "engage_seq.reporting.explain_figures": {"torch", "lightning", "hydra"},
    "engage_seq.monitoring.figures": {"torch", "lightning", "hydra"},
    # training is Lightning plumbing from plain arguments; Hydra wires it from experiments/
    "engage_seq.training.callbacks": {"hydra"},
    "engage_seq.training.loop": {"hydra"},
    "engage_seq.training.golden": {"hydra"},
    "engage_seq.training.metadata": {"hydra"},
    # matplotlib is an optional extra: importing the plumbing must not load it
    "engage_seq.reporting.plotting": {"torch", "lightning", "hydra", "polars", "matplotlib"},
}


@pytest.mark.parametrize("module", sorted(FORBIDDEN))
def test_module_imports_stay_inside_their_layer(module: str) -> None:
    code = (
        f"import importlib, json, sys; importlib.import_module({module!r}); "
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(json.loads(out.stdout))
    assert not (loaded & FORBIDDEN[module]), f"{module} pulls in {loaded & FORBIDDEN[module]}"


def test_scoring_needs_no_model_classes() -> None:
    code = (
        "import json, sys, engage_seq.serving.scoring; "
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('engage_seq'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(json.loads(out.stdout))
    assert not loaded & {
        "engage_seq.models.engagement",
        "engage_seq.models.encoders",
        "engage_seq.training.lit_module",
    }, loaded
