"""The hybrid model: the head reads the encoder state and the full-history aggregates
(``n_aggregates``), or the aggregates only (``encoder: none``, a neural RFM model)."""

from __future__ import annotations

from typing import ClassVar

import pytest
import torch
from omegaconf import OmegaConf

from engage_seq.experiments.hybrid import hybrid_setup
from engage_seq.models.engagement import MODEL_INPUTS, EngagementModel, ProbabilityModel
from engage_seq.serving.export import quiet_jit_deprecation

K, A = 6, 5


def make_model(encoder: str, n_aggregates: int = A, **kwargs) -> EngagementModel:
    torch.manual_seed(0)
    return EngagementModel(
        n_event_ids=10, n_channel_ids=6, n_time_features=K, n_outputs=2, max_len=12,
        attribute_sizes=[5], n_numeric=1, encoder=encoder, hidden=16, embed_dim=8,
        num_heads=2, n_aggregates=n_aggregates, **kwargs,
    ).eval()  # fmt: skip


def make_batch(lengths: list[int], n_aggregates: int = A, seed: int = 0) -> tuple:
    g = torch.Generator().manual_seed(seed)
    b, width = len(lengths), max(lengths)
    lengths_t = torch.tensor(lengths)
    real = torch.arange(width).unsqueeze(0) < lengths_t.unsqueeze(1)
    return (
        torch.randint(2, 10, (b, width), generator=g) * real,
        torch.randint(2, 6, (b, width), generator=g) * real,
        torch.randint(2, 5, (b, width, 1), generator=g) * real.unsqueeze(-1),
        torch.randn(b, width, 1, generator=g) * real.unsqueeze(-1),
        torch.randn(b, width, K, generator=g) * real.unsqueeze(-1),
        lengths_t,
        torch.randn(b, n_aggregates, generator=g),
    )


def test_aggregates_are_the_seventh_input() -> None:
    assert MODEL_INPUTS[5:] == ("lengths", "aggregates")


@pytest.mark.parametrize("encoder", ["lstm", "gru", "transformer", "none"])
def test_shapes_gradients_and_the_aggregates_matter(encoder: str) -> None:
    model = make_model(encoder).train()
    batch = make_batch([3, 1, 7])
    logits = model(*batch)
    assert logits.shape == (3, 2)
    logits.sum().backward()
    assert model.aggregate_projection.linear.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        other = (*batch[:6], batch[6] + 1.0)
        assert not torch.allclose(model(*batch), model(*other))


def test_encoder_none_reads_the_aggregates_only() -> None:
    model = make_model("none")
    assert not any(k.startswith(("embedding.", "encoder.")) for k in model.state_dict())
    batch = make_batch([3, 1, 7])
    other_events = (*make_batch([5, 2, 2], seed=1)[:6], batch[6])
    with torch.no_grad():
        assert torch.equal(model(*batch), model(*other_events))
    assert model.head[0].in_features == 16  # the projection only


def test_without_aggregates_the_model_is_unchanged() -> None:
    """n_aggregates=0: no new weights, the same initial draws, (B, 0) aggregates accepted."""
    model = make_model("lstm", n_aggregates=0)
    assert not any(k.startswith("aggregate_projection") for k in model.state_dict())
    assert model.head[0].in_features == 16
    hybrid = make_model("lstm")
    assert hybrid.head[0].in_features == 32  # [encoder state ; aggregate projection]
    assert torch.equal(model.embedding.event.weight, hybrid.embedding.event.weight)
    assert model(*make_batch([2, 4], n_aggregates=0)).shape == (2, 2)


@pytest.mark.parametrize("encoder", ["lstm", "none"])
def test_scripted_matches_eager_batch_and_single(encoder: str) -> None:
    eager = ProbabilityModel(make_model(encoder), ["a", "b"]).eval()
    with quiet_jit_deprecation():
        scripted = torch.jit.script(eager)
    batch = make_batch([3, 1, 7])
    with torch.no_grad():
        probs = eager(*batch)
        assert torch.allclose(scripted(*batch), probs, atol=1e-6)
        one = [t[1:2, :1] if k < 5 else t[1:2] for k, t in enumerate(batch)]
        assert torch.allclose(scripted(*one), probs[1:2], atol=1e-6)


def test_bad_configurations_are_refused() -> None:
    with pytest.raises(ValueError, match="encoder none reads no events"):
        make_model("none", n_aggregates=0)
    for bad in (-1, "5", True):  # a checkpoint's model_config is untrusted input
        with pytest.raises(ValueError, match="n_aggregates"):
            make_model("lstm", n_aggregates=bad)


class _Prepared:
    numeric_scaling: ClassVar[dict] = {"num_amount": {"mean": 0.0, "std": 1.0}}

    def split(self, name: str):
        import polars as pl

        from engage_seq.data.aggregates import aggregate_names

        names = aggregate_names(["purchase"], ["num_amount"])
        return pl.DataFrame({f"agg_{n}": [0.0, 2.0] for n in names})


def test_the_switch_leaves_the_model_config_and_sizes_the_scaling() -> None:
    from engage_seq.data.tasks import HorizonTask

    task = HorizonTask(targets=("purchase",))
    cfg = OmegaConf.create({"encoder": "lstm", "aggregates": True})
    model_cfg, scaling = hybrid_setup(cfg, task, _Prepared())
    assert "aggregates" not in model_cfg and cfg.aggregates is True  # cfg itself untouched
    assert len(scaling) == 7 + 7 + 2 and scaling["recency_h"] == {"mean": 1.0, "std": 2**0.5}
    off, none = hybrid_setup(OmegaConf.create({"encoder": "gru"}), task, _Prepared())
    assert none == {} and "aggregates" not in off
    with pytest.raises(ValueError, match=r"model\.aggregates=true"):
        hybrid_setup(OmegaConf.create({"encoder": "none", "aggregates": False}), task, None)


def test_runs_are_labelled_by_what_the_head_reads() -> None:
    from engage_seq.evaluation.run_folder import model_label

    hybrid = {"encoder": "lstm", "hidden": 64, "aggregates": True}
    assert model_label(hybrid) == "LSTM + full-history aggregates, hidden 64"
    assert model_label({**hybrid, "encoder": "none"}) == "MLP on full-history aggregates, hidden 64"
    assert model_label({**hybrid, "aggregates": False}) == "LSTM, hidden 64"
    none_of_a_transformer = {**hybrid, "encoder": "none", "num_layers": 2}
    assert model_label(none_of_a_transformer) == "MLP on full-history aggregates, hidden 64"


def test_aggregate_dropout_hides_whole_rows_in_training_only() -> None:
    model = make_model("lstm", aggregate_dropout=0.5)
    projection = model.aggregate_projection
    aggregates = torch.randn(4000, A)
    torch.manual_seed(1)
    projection.train()
    hidden = projection(aggregates).abs().sum(1) == 0  # (B,): a zeroed row
    assert 0.45 < hidden.float().mean() < 0.55
    projection.eval()
    assert (projection(aggregates).abs().sum(1) > 0).all()
    # aggregates only: nothing else to score from, so never hidden
    assert make_model("none", aggregate_dropout=0.5).aggregate_projection.drop_rate == 0.0
    with pytest.raises(ValueError, match="aggregate_dropout"):
        make_model("lstm", aggregate_dropout=1.0)
