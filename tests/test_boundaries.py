"""The direction of imports (DESIGN §4), checked in fresh interpreters."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

FORBIDDEN = {
    # data code stays torch-free, so it runs in light environments and in Polars-only jobs
    "engage_seq.synthetic": {"torch", "lightning", "hydra"},
    "engage_seq.schema": {"torch", "lightning", "hydra"},
    "engage_seq.messages": {"torch", "lightning", "hydra"},
    "engage_seq.listing": {"torch", "lightning", "hydra"},
    "engage_seq.sequences": {"torch", "lightning", "hydra"},
    "engage_seq.sample_cache": {"torch", "lightning", "hydra"},
    "engage_seq.ingest": {"torch", "lightning", "hydra"},
    "engage_seq.build": {"torch", "lightning", "hydra"},
    # baselines run where only Polars and numpy are installed (LightGBM is optional, lazy)
    "engage_seq.baselines": {"torch", "lightning", "hydra", "lightgbm"},
    # metrics score models, baselines and oracles alike, without a Trainer
    "engage_seq.metrics": {"lightning", "hydra", "polars"},
    # exported modules import torch only
    "engage_seq.encoders": {"lightning", "hydra", "polars"},
    "engage_seq.model": {"lightning", "hydra", "polars"},
    # encoding serves training and batch scoring alike: numpy + Polars only
    "engage_seq.encoding": {"torch", "lightning", "hydra"},
    # the exported serving module: torch only (it must load without engage_seq)
    "engage_seq.serving": {"lightning", "hydra", "polars"},
    # export and its parity harness need neither Lightning nor Hydra (Polars runs the
    # training code as the reference for constructed inputs)
    "engage_seq.export": {"lightning", "hydra"},
    "engage_seq.parity": {"lightning", "hydra"},
    # batch scoring: no Lightning, no Hydra (and no model classes, checked below)
    "engage_seq.score": {"lightning", "hydra"},
    # its far-future rule is data code; its output writing needs only the standard library
    "engage_seq.score_cutoff": {"torch", "lightning", "hydra"},
    "engage_seq.score_outputs": {"torch", "lightning", "hydra", "polars", "numpy"},
    # monitoring runs next to serving: drift on event tables needs no torch at all (the
    # artifact's scores load it lazily), the backtest only the artifact
    "engage_seq.drift": {"torch", "lightning", "hydra"},
    "engage_seq.backtest": {"lightning", "hydra"},
    # artifact keys and signatures: the standard library only (no new dependency to trust)
    "engage_seq.signing": {"torch", "lightning", "hydra", "polars", "numpy"},
    # report sections work on a model and frames, without a Trainer; drawing is matplotlib only
    "engage_seq.explain": {"lightning", "hydra", "matplotlib"},
    "engage_seq.fairness": {"lightning", "hydra"},
    "engage_seq.report_section": {"torch", "lightning", "hydra"},
    "engage_seq.report_figures": {"torch", "lightning", "hydra"},
    "engage_seq.explain_figures": {"torch", "lightning", "hydra"},
    "engage_seq.drift_figures": {"torch", "lightning", "hydra"},
    # matplotlib is an optional extra: importing the plumbing must not load it
    "engage_seq.plotting": {"torch", "lightning", "hydra", "polars", "matplotlib"},
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
        "import json, sys, engage_seq.score; "
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('engage_seq'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(json.loads(out.stdout))
    assert not loaded & {"engage_seq.model", "engage_seq.encoders", "engage_seq.module"}, loaded
