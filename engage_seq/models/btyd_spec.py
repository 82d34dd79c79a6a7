"""The checked description of the model's BG/NBD features (``model.btyd_features``).

A checkpoint or artifact stores it in ``model_config["btyd"]``, so it is untrusted input: every
number must be finite, every parameter and scale positive, every index inside the aggregates.
Plain Python, no torch, so that it is checked before any layer is built.

Shape (JSON)::

    {"horizon_days": 91.0,
     "offset": false,                                    # add logit P(any) to the head's logits
     "targets": [{"name": "purchase",
                  "params": [r, alpha, a, b],            # BG/NBD, time in days
                  "inputs": [[index, mean, std],         # first_h/<t>
                             [index, mean, std],         # recency_h/<t>
                             [index, mean, std]]}]}      # count_all/<t>

``index`` is the aggregate's position in ``aggregate_names`` and ``mean``/``std`` its training
standardisation, so the layer can recover the raw summary from the model's standardised input.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

BTYD_INPUTS = ("first_h", "recency_h", "count_all")  # per target, in this order


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_btyd_spec(spec: Any, n_aggregates: int, n_outputs: int) -> dict[str, Any] | None:
    """``spec`` as a plain dict (None: no BG/NBD features), or ValueError naming what is wrong.
    Its targets are the model's horizon outputs, one each, in order."""
    if spec is None:
        return None
    where = "model_config.btyd"
    targets_in = spec.get("targets") if isinstance(spec, Mapping) else None
    if not isinstance(targets_in, Sequence) or isinstance(targets_in, str):  # Hydra: ListConfig
        raise ValueError(f"{where} must be a mapping with a list 'targets'; retrain the model")
    horizon = spec.get("horizon_days")
    if not _finite(horizon) or horizon <= 0:
        raise ValueError(f"{where}.horizon_days must be a positive number, got {horizon!r}")
    offset = spec.get("offset", False)  # absent: a spec from before the option
    if not isinstance(offset, bool):
        raise ValueError(f"{where}.offset must be true or false, got {offset!r}")
    if not spec["targets"]:
        raise ValueError(f"{where}.targets is empty; omit btyd for a model without it")
    if n_aggregates <= 0:
        raise ValueError(f"{where} needs the aggregates (n_aggregates > 0)")
    if len(spec["targets"]) != n_outputs:
        raise ValueError(
            f"{where} lists {len(spec['targets'])} target(s) for {n_outputs} horizon output(s)"
        )
    targets = []
    for k, target in enumerate(spec["targets"]):
        here = f"{where}.targets[{k}]"
        if not isinstance(target, Mapping):
            raise ValueError(f"{here} must be a mapping")
        params = list(target.get("params") or [])
        if len(params) != 4 or not all(_finite(p) and p > 0 for p in params):
            raise ValueError(f"{here}.params must be 4 positive numbers (r, alpha, a, b)")
        inputs = [list(row) for row in (target.get("inputs") or [])]
        if len(inputs) != len(BTYD_INPUTS) or any(len(row) != 3 for row in inputs):
            raise ValueError(f"{here}.inputs must be {len(BTYD_INPUTS)} [index, mean, std] rows")
        for name, (index, mean, std) in zip(BTYD_INPUTS, inputs, strict=True):
            if not isinstance(index, int) or isinstance(index, bool):
                raise ValueError(f"{here}.inputs ({name}): the index must be an integer")
            if not 0 <= index < n_aggregates:
                raise ValueError(f"{here}.inputs ({name}): index {index} is not an aggregate")
            if not (_finite(mean) and _finite(std) and std > 0):
                raise ValueError(f"{here}.inputs ({name}): mean and std must be finite, std > 0")
        targets.append(
            {
                "name": str(target.get("name", "")),
                "params": [float(p) for p in params],
                "inputs": [[int(i), float(m), float(s)] for i, m, s in inputs],
            }
        )
    return {"horizon_days": float(horizon), "offset": offset, "targets": targets}
