"""BG/NBD features inside the model (``model.btyd_features``): the same numbers as the BG/NBD
baseline's closed form, parameters recovered from data the model simulated, TorchScript, and the
untrusted ``model_config.btyd`` checked."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
import torch
from helpers.bgnbd_simulation import CUTOFF, TRUE, D, simulate
from omegaconf import OmegaConf

from engage_seq.baselines.bgnbd import PARAMETERS, probability_alive, probability_any
from engage_seq.data.aggregates import (
    aggregate_names,
    aggregates_at_cutoff,
    fit_aggregate_scaling,
    standardised_aggregates,
)
from engage_seq.data.tasks import HorizonTask
from engage_seq.experiments.hybrid import btyd_spec, hybrid_setup, refit_btyd
from engage_seq.models.btyd_features import BTYDFeatures
from engage_seq.models.btyd_spec import check_btyd_spec
from engage_seq.models.config import EngagementModelConfig
from engage_seq.models.engagement import EngagementModel
from engage_seq.serving.export import quiet_jit_deprecation

PARAMS = [TRUE[k] for k in PARAMETERS]
HORIZON_DAYS = 30.0


def _samples(n: int, seed: int) -> pl.DataFrame:
    """Simulated BG/NBD users as samples with their full-history aggregates (purchases only)."""
    frame, _ = simulate(n, seed=seed, params=TRUE)
    events = frame.select("user_key", "ts", "event_type").explode("ts", "event_type")
    found = aggregates_at_cutoff(events.lazy(), CUTOFF, ["purchase"], []).collect()
    return frame.join(found, on="user_key", how="left", maintain_order="left")


def _spec(scaling: dict, params: list[float]) -> dict:
    order = list(scaling)
    inputs = [
        [order.index(f"{name}/purchase"), scaling[f"{name}/purchase"]["mean"],
         scaling[f"{name}/purchase"]["std"]]
        for name in ("first_h", "recency_h", "count_all")
    ]  # fmt: skip
    return {"horizon_days": HORIZON_DAYS, "targets": [{"params": params, "inputs": inputs}]}


def test_features_are_the_baselines_closed_form() -> None:
    """Through the standardised aggregates, the layer gives the BG/NBD baseline's P(any in the
    horizon) and P(alive) for the same users (birth = first purchase)."""
    samples = _samples(3000, seed=3)
    names = aggregate_names(["purchase"], [])
    scaling = fit_aggregate_scaling(samples, names)
    layer = BTYDFeatures(check_btyd_spec(_spec(scaling, PARAMS), len(names), 1))
    features = layer(torch.from_numpy(standardised_aggregates(samples, scaling))).double()

    # the textbook summary from the raw timestamps, not from the aggregates
    ts = samples["ts"].to_list()
    summary = np.array(
        [[len(t) - 1, (t[-1] - t[0]) / D, (CUTOFF - t[0]) / D] for t in ts], dtype=np.float64
    )
    p_any = probability_any(np.array(PARAMS), summary, HORIZON_DAYS)
    p_alive = probability_alive(np.array(PARAMS), summary)
    error_any = np.abs(torch.sigmoid(features[:, 0]).numpy() - p_any)
    error_alive = np.abs(np.exp(features[:, 1].numpy()) - p_alive)
    assert np.median(error_any) < 1e-7 and np.median(error_alive) < 1e-7
    # the few exceptions: logits capped at ±10, and aggregates clipped at ±5 std (a purchase
    # minutes before the cutoff) before the layer undoes the standardisation
    assert error_any.max() < 1e-3 and error_alive.max() < 1e-3
    assert (summary[:, 0] > 0).any() and (summary[:, 0] == 0).any()  # both branches ran


def test_a_user_without_the_target_event_gets_zeros() -> None:
    names = aggregate_names(["purchase"], [])
    scaling = {n: {"mean": 1.0, "std": 2.0} for n in names}
    layer = BTYDFeatures(check_btyd_spec(_spec(scaling, PARAMS), len(names), 1))
    never = torch.full((1, len(names)), (-1.0 - 1.0) / 2.0)  # every aggregate at -1 (never)
    never[0, names.index("count_all/purchase")] = (0.0 - 1.0) / 2.0  # log1p(0 events)
    assert torch.equal(layer(never), torch.zeros(1, 2))
    assert BTYDFeatures(None)(never).shape == (1, 0)


def test_fitted_parameters_are_recovered_and_refit_on_the_newest_samples() -> None:
    samples = _samples(6000, seed=0)
    names = aggregate_names(["purchase"], [])
    scaling = fit_aggregate_scaling(samples, names)
    task = HorizonTask(targets=("purchase",), horizon=f"{int(HORIZON_DAYS)}d")
    spec = btyd_spec(samples, task, scaling)
    got = dict(zip(PARAMETERS, spec["targets"][0]["params"], strict=True))
    tolerance = {"r": 0.15, "alpha": 0.2, "a": 0.35, "b": 0.4}  # as the baseline's own test
    for name in PARAMETERS:
        assert abs(got[name] / TRUE[name] - 1) < tolerance[name], (name, got, TRUE)
    assert spec["horizon_days"] == HORIZON_DAYS
    cfg = OmegaConf.create({"encoder": "none", "btyd": spec})
    other = _samples(6000, seed=1)  # other users: other maximum-likelihood estimates
    refitted = refit_btyd(cfg, other, task, scaling)
    assert refitted.btyd.targets[0].params != spec["targets"][0]["params"]
    assert cfg.btyd.targets[0].params == spec["targets"][0]["params"]  # the input untouched
    plain = OmegaConf.create({"encoder": "lstm"})
    assert refit_btyd(plain, other, task, scaling) is plain


def test_the_switch_needs_the_aggregates() -> None:
    task = HorizonTask(targets=("purchase",))
    with pytest.raises(ValueError, match=r"model\.aggregates=true too"):
        hybrid_setup(OmegaConf.create({"encoder": "lstm", "btyd_features": True}), task, None)
    with pytest.raises(ValueError, match="true or false"):
        hybrid_setup(OmegaConf.create({"aggregates": True, "btyd_features": "yes"}), task, None)
    with pytest.raises(ValueError, match=r"set model\.btyd_features=true"):
        hybrid_setup(OmegaConf.create({"aggregates": True, "btyd_offset": True}), task, None)


def test_the_offset_starts_the_logits_at_bgnbd() -> None:
    """With ``offset`` the horizon logit is the head's residual plus BG/NBD's logit: a head
    that outputs 0 gives exactly the BG/NBD probability."""
    names = aggregate_names(["purchase"], [])
    scaling = {n: {"mean": 1.0, "std": 2.0} for n in names}
    spec = check_btyd_spec({**_spec(scaling, PARAMS), "offset": True}, len(names), 1)
    model = EngagementModel(
        n_event_ids=6, n_channel_ids=4, n_time_features=3, n_outputs=1, max_len=8,
        encoder="none", hidden=8, n_aggregates=len(names), btyd=spec,
    ).eval()  # fmt: skip
    torch.nn.init.zeros_(model.head[-1].weight)
    torch.nn.init.zeros_(model.head[-1].bias)
    aggregates = torch.randn(6, len(names), generator=torch.Generator().manual_seed(2))
    state = torch.zeros(6, 0)
    expected = model.btyd_features(aggregates)[:, 0:1]  # (B, 1) logit P(any)
    assert torch.equal(model.read_out(state, aggregates), expected)
    assert expected.abs().sum() > 0


def test_the_model_scripts_and_reads_the_features() -> None:
    names = aggregate_names(["purchase"], [])
    scaling = {n: {"mean": 1.0, "std": 2.0} for n in names}
    spec = check_btyd_spec(_spec(scaling, PARAMS), len(names), 1)
    torch.manual_seed(0)
    model = EngagementModel(
        n_event_ids=6, n_channel_ids=4, n_time_features=3, n_outputs=1, max_len=8,
        encoder="none", hidden=8, n_aggregates=len(names), btyd=spec,
    ).eval()  # fmt: skip
    assert model.aggregate_projection.linear.in_features == len(names) + 2
    b, t = 5, 4
    aggregates = torch.randn(b, len(names), generator=torch.Generator().manual_seed(1))
    inputs = (
        torch.ones(b, t, dtype=torch.long), torch.ones(b, t, dtype=torch.long),
        torch.ones(b, t, 0, dtype=torch.long), torch.zeros(b, t, 0), torch.zeros(b, t, 3),
        torch.full((b,), t), aggregates,
    )  # fmt: skip
    with quiet_jit_deprecation():
        scripted = torch.jit.script(model)
    assert torch.allclose(scripted(*inputs), model(*inputs), atol=1e-6)
    assert "btyd_features.params" not in model.state_dict()  # rebuilt from model_config
    changed = (*inputs[:-1], aggregates.clone())
    changed[-1][:, names.index("count_all/purchase")] += 1.0  # more purchases: other features
    assert not torch.allclose(model(*changed), model(*inputs))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s.update(horizon_days=float("nan")), "horizon_days"),
        (lambda s: s["targets"][0].update(params=[1.0, -2.0, 1.0, 1.0]), "4 positive numbers"),
        (lambda s: s["targets"][0]["inputs"][0].__setitem__(0, 99), "not an aggregate"),
        (lambda s: s["targets"][0]["inputs"][1].__setitem__(0, True), "must be an integer"),
        (lambda s: s["targets"][0]["inputs"][2].__setitem__(2, 0.0), "std > 0"),
        (lambda s: s["targets"][0].update(inputs=[[0, 0.0, 1.0]]), r"3 \[index, mean, std\]"),
        (lambda s: s.update(targets=[]), "is empty"),
        (lambda s: s.update(targets="purchase"), "list 'targets'"),
        (lambda s: s.update(offset="yes"), "offset must be true or false"),
    ],
)
def test_an_untrusted_spec_is_checked(edit, message) -> None:
    names = aggregate_names(["purchase"], [])
    spec = _spec({n: {"mean": 0.0, "std": 1.0} for n in names}, list(PARAMS))
    edit(spec)
    with pytest.raises(ValueError, match=message):
        EngagementModelConfig(
            n_event_ids=4, n_channel_ids=4, n_time_features=3, n_outputs=1, max_len=8,
            n_aggregates=len(names), btyd=spec,
        )  # fmt: skip


def test_a_spec_without_aggregates_is_refused() -> None:
    spec = {"horizon_days": 1.0, "targets": [{"params": PARAMS, "inputs": [[0, 0, 1]] * 3}]}
    with pytest.raises(ValueError, match="needs the aggregates"):
        check_btyd_spec(spec, 0, 1)
    with pytest.raises(ValueError, match=r"1 target\(s\) for 2 horizon output"):
        check_btyd_spec(spec, 3, 2)
    checked = check_btyd_spec(spec, 3, 1)
    assert math.isclose(checked["horizon_days"], 1.0) and checked["offset"] is False
