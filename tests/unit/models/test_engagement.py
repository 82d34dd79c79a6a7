"""Encoders and the exported module: shapes, padding/batch invariance, scripting."""

from __future__ import annotations

import inspect

import pytest
import torch

from engage_seq.models.config import EngagementModelConfig
from engage_seq.models.engagement import EngagementModel, ProbabilityModel
from engage_seq.serving.export import quiet_jit_deprecation

K = 6


def make_model(encoder: str, **kwargs) -> EngagementModel:
    torch.manual_seed(0)
    defaults = dict(
        n_event_ids=10, n_channel_ids=6, n_time_features=K, n_outputs=2, max_len=12,
        attribute_sizes=[5, 7], n_numeric=2,
    )  # fmt: skip
    return EngagementModel(encoder=encoder, **{**defaults, **kwargs}).eval()


def make_batch(lengths: list[int], width: int | None = None, seed: int = 0, n_aggregates: int = 0):
    g = torch.Generator().manual_seed(seed)
    width = width or max(lengths)
    b = len(lengths)
    lengths_t = torch.tensor(lengths, dtype=torch.int64)
    real = torch.arange(width).unsqueeze(0) < lengths_t.unsqueeze(1)
    events = torch.randint(2, 10, (b, width), generator=g) * real
    channels = torch.randint(2, 6, (b, width), generator=g) * real
    attributes = torch.randint(2, 5, (b, width, 2), generator=g) * real.unsqueeze(-1)
    numeric = torch.randn(b, width, 2, generator=g) * real.unsqueeze(-1)
    times = torch.randn(b, width, K, generator=g) * real.unsqueeze(-1)
    aggregates = torch.randn(b, n_aggregates, generator=g)
    return events, channels, attributes, numeric, times, lengths_t, aggregates


ENCODERS = [
    ("lstm", {}),
    ("lstm", {"num_layers": 2, "attribute_sizes": [], "n_numeric": 0}),
    ("transformer", {}),
    ("transformer", {"pool": "last", "hidden": 32, "num_heads": 2}),
    ("transformer", {"pool": "cls", "positions": "time"}),
    ("transformer", {"pool": "last", "causal": True, "time_encoding": "linear"}),
    ("gru", {"num_layers": 2}),
    ("lstm", {"n_outputs": 0, "n_next_classes": 9, "time_to_next": True}),
    ("transformer", {"n_next_classes": 9}),
]


@pytest.mark.parametrize(("encoder", "kwargs"), ENCODERS)
def test_output_shape_and_gradients(encoder, kwargs) -> None:
    model = make_model(encoder, **kwargs).train()
    logits = model(*make_batch([3, 1, 7]))
    n_next = kwargs.get("n_next_classes", 0)
    width = kwargs.get("n_outputs", 2) + n_next + 2 * kwargs.get("time_to_next", False)
    assert logits.shape == (3, width)
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize(("encoder", "kwargs"), ENCODERS)
def test_padding_does_not_change_outputs(encoder, kwargs) -> None:
    model = make_model(encoder, **kwargs)
    wide = make_batch([3, 1, 5], width=11)
    short = tuple(t[:, :5] if t.dim() > 1 else t for t in wide)
    with torch.no_grad():
        assert torch.allclose(model(*short), model(*wide), atol=1e-6)


@pytest.mark.parametrize(("encoder", "kwargs"), ENCODERS)
def test_batch_size_invariance(encoder, kwargs) -> None:
    model = make_model(encoder, **kwargs)
    batch = make_batch([4, 2, 9, 1])
    with torch.no_grad():
        full = model(*batch)
        for i, n in enumerate([4, 2, 9, 1]):
            single = model(*(t[i : i + 1, :n] if t.dim() > 1 else t[i : i + 1] for t in batch))
            assert torch.allclose(single, full[i : i + 1], atol=1e-5)


def test_sequence_order_matters() -> None:
    """A sequence model must see order: reversing a history changes the LSTM's output."""
    model = make_model("lstm")
    batch = make_batch([8])
    with torch.no_grad():
        forward = model(*batch)
        backward = model(*(t.flip(1) if t.dim() > 1 else t for t in batch))
    assert not torch.allclose(forward, backward)


@pytest.mark.parametrize(("encoder", "kwargs"), ENCODERS)
def test_scripted_module_matches_eager(encoder, kwargs) -> None:
    model = make_model(encoder, **kwargs)
    names = [f"out{i}" for i in range(model.n_outputs + model.n_next_classes)]
    eager = ProbabilityModel(model, names).eval()
    with quiet_jit_deprecation():
        scripted = torch.jit.script(eager)
    batch = make_batch([5, 2, 12])
    with torch.no_grad():
        probs = eager(*batch)
        assert torch.allclose(scripted(*batch), probs, atol=1e-6)
    assert scripted.output_names() == names
    assert ((probs > 0) & (probs < 1)).all()
    if model.n_next_classes:  # one softmax over the next-event columns
        next_probs = probs[:, model.n_outputs :]
        assert torch.allclose(next_probs.sum(1), torch.ones(3), atol=1e-6)


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(ValueError, match="encoder"):
        make_model("rnn")
    with pytest.raises(ValueError, match="causal"):
        make_model("transformer", pool="cls", causal=True)
    with pytest.raises(ValueError, match="positions"):
        make_model("transformer", positions="sinusoid")
    with pytest.raises(ValueError, match="head"):
        make_model("lstm", n_outputs=0)
    with pytest.raises(ValueError, match="time_to_next"):
        make_model("lstm", time_to_next=True)
    with pytest.raises(ValueError, match="divisible"):
        make_model("transformer", hidden=30, num_heads=4)
    with pytest.raises(ValueError, match="pool"):
        make_model("transformer", pool="max")


def test_config_mirrors_the_constructor() -> None:
    """The dataclass and the keyword arguments (what Hydra and checkpoints pass) stay in step:
    same names, order and defaults, and `config` / `from_config` round-trip."""
    params = list(inspect.signature(EngagementModel.__init__).parameters.values())[1:]
    fields = EngagementModelConfig.__dataclass_fields__
    assert [p.name for p in params] == list(fields)
    for p in params:
        default = fields[p.name].default
        expected = p.default if p.default is not inspect.Parameter.empty else default
        assert default == expected, p.name
    model = make_model("transformer", n_next_classes=9, time_to_next=True)
    config = EngagementModelConfig(**model.config)
    assert config.as_dict() == model.config
    assert isinstance(model.config["attribute_sizes"], list)
    torch.manual_seed(0)
    rebuilt = EngagementModel.from_config(config).eval()
    assert rebuilt.config == model.config
    batch = make_batch([5, 2])
    with torch.no_grad():
        assert torch.equal(rebuilt(*batch), model(*batch))
