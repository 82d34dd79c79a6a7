"""Explanations: IG completeness and padding on every encoder, the long format and driver table
on hand-written frames, the report section, and (slow) a sanity check on the synthetic data:
the events that truly drive purchases rank at the top."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from engage_seq.data.build import build_in_memory
from engage_seq.data.encoding import EncodedSamples, Vocabulary, attribute_order, encode_samples
from engage_seq.data.ingest import IngestConfig
from engage_seq.data.sampling import SamplingConfig
from engage_seq.data.schema import ColumnMapping
from engage_seq.data.sequences import TIME_FEATURES
from engage_seq.data.tasks import HorizonTask
from engage_seq.evaluation.attribution import (
    TOLERANCE,
    attribute,
    integrated_gradients,
    mean_event_embedding,
)
from engage_seq.evaluation.explain import UNKNOWN_TOKEN, driver_table, explain_samples, per_sample
from engage_seq.metrics.scores import _binary_scores
from engage_seq.models.encoders import padding_mask
from engage_seq.models.engagement import EngagementModel
from engage_seq.reporting.explain_section import _user_lines, explain_report_section
from engage_seq.synthetic.generator import SyntheticEventSource

K = len(TIME_FEATURES)
ENCODERS = [
    ("lstm", {}),
    ("gru", {"num_layers": 2}),
    ("transformer", {}),
    ("transformer", {"pool": "cls", "positions": "time"}),
    ("transformer", {"pool": "last", "causal": True}),
    ("lstm", {"n_outputs": 1, "n_next_classes": 4}),  # target 1 = a next-event softmax column
]


@pytest.fixture(autouse=True)
def one_thread():
    """Batches here are tiny, so intra-op threads only spin against each other: on the shared
    2-core runner the slow test's training took 12.6 s of CPU with two threads, 2.5 s with
    one. Restored afterwards, so other test modules keep their setting."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_model(encoder: str, **kwargs) -> EngagementModel:
    torch.manual_seed(0)
    defaults = dict(
        n_event_ids=9, n_channel_ids=5, n_time_features=K, n_outputs=2, max_len=12,
        attribute_sizes=[4], n_numeric=1, embed_dim=16, hidden=16, num_heads=2,
    )  # fmt: skip
    return EngagementModel(encoder=encoder, **{**defaults, **kwargs})


def make_batch(lengths: list[int], width: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    lengths_t = torch.tensor(lengths, dtype=torch.int64)
    real = torch.arange(width).unsqueeze(0) < lengths_t.unsqueeze(1)
    b = len(lengths)
    return (
        torch.randint(2, 9, (b, width), generator=g) * real,
        torch.randint(2, 5, (b, width), generator=g) * real,
        torch.randint(2, 4, (b, width, 1), generator=g) * real.unsqueeze(-1),
        torch.randn(b, width, 1, generator=g) * real.unsqueeze(-1),
        torch.randn(b, width, K, generator=g) * real.unsqueeze(-1),
        lengths_t,
        torch.zeros(b, 0),  # no aggregates
    )


def reference_scores(model, batch, baseline, target):
    """p(x) and p(baseline) computed here, independently of the code under test."""
    with torch.no_grad():
        x = model.embedding(*batch[:5])
        real = ~padding_mask(batch[5], x.size(1))
        ref = torch.where(real.unsqueeze(-1), baseline.expand_as(x), x)
        p_x = model.probabilities(model(*batch))[:, target]
        state = model.encoder(ref, batch[5])
        p_ref = model.probabilities(model.read_out(state, batch[6]))[:, target]
    return p_x, p_ref, real


@pytest.mark.parametrize(("encoder", "kwargs"), ENCODERS)
def test_attributions_are_complete_and_zero_at_padding(encoder, kwargs) -> None:
    model = make_model(encoder, **kwargs).train()  # must be switched to eval and back
    batch = make_batch([3, 1, 7, 5], width=9)
    baseline = torch.randn(16, generator=torch.Generator().manual_seed(1))
    attributions = integrated_gradients(model, batch, target=1, steps=16, baseline=baseline)
    assert model.training
    model.eval()
    p_x, p_ref, real = reference_scores(model, batch, baseline, target=1)
    assert attributions.shape == (4, 9) and attributions.dtype == torch.float32
    assert torch.all(attributions[~real] == 0.0)  # exactly, not approximately
    torch.testing.assert_close(attributions.sum(1), p_x - p_ref, atol=TOLERANCE, rtol=0)
    assert float(attributions[real].abs().sum()) > 1e-4  # the events do get credit
    again = integrated_gradients(model.train(), batch, target=1, steps=16, baseline=baseline)
    assert torch.equal(again, attributions)  # eval mode: no dropout noise


def sharp(model: EngagementModel) -> EngagementModel:
    """Saturate the LSTM gates and steepen the head, so p switches within a short stretch of
    the path, as trained RNNs do (the gains were picked so 8 plain nodes miss by > 0.01)."""
    with torch.no_grad():
        model.encoder.rnn.weight_ih_l0.mul_(6.0)
        model.head[0].weight.mul_(3.0)
        model.head[-1].weight.mul_(30.0)
        model.head[-1].bias.zero_()
    return model.eval()


def test_bisection_restores_completeness_where_a_fixed_rule_misses() -> None:
    model = sharp(make_model("lstm"))
    batch = make_batch([6, 8, 4, 7, 8, 5], width=8, seed=3)
    baseline = torch.zeros(16)
    p_x, p_ref, _ = reference_scores(model, batch, baseline, target=0)
    plain = attribute(model, batch, 0, steps=8, baseline=baseline, tolerance=None)
    plain_gap = (plain.attributions.sum(1) - (p_x - p_ref)).abs().max()
    assert plain_gap > 10 * TOLERANCE  # the test model is sharp enough to matter
    checked = attribute(model, batch, 0, steps=8, baseline=baseline, tolerance=TOLERANCE)
    torch.testing.assert_close(checked.attributions.sum(1), p_x - p_ref, atol=TOLERANCE, rtol=0)
    assert int(checked.intervals.max()) > 1 and int(plain.intervals.max()) == 1
    torch.testing.assert_close(checked.scores, p_x)
    torch.testing.assert_close(checked.baseline_scores, p_ref)


@pytest.mark.parametrize("encoder", ["lstm", "transformer"])
def test_a_sample_gets_the_same_attributions_alone_or_in_a_batch(encoder) -> None:
    model = make_model(encoder).eval()
    batch = make_batch([4, 9, 2], width=9, seed=5)
    baseline = torch.randn(16, generator=torch.Generator().manual_seed(2))
    together = integrated_gradients(model, batch, steps=8, baseline=baseline)
    alone = integrated_gradients(
        model, tuple(t[:1, :4] if t.dim() > 1 else t[:1] for t in batch), steps=8,
        baseline=baseline,
    )  # fmt: skip
    torch.testing.assert_close(alone[0], together[0, :4], atol=1e-5, rtol=1e-4)


def test_works_when_the_caller_scores_in_inference_mode() -> None:
    model = make_model("transformer").eval()
    outside = integrated_gradients(model, make_batch([3, 2], width=3), steps=4)
    with torch.inference_mode():
        inside = integrated_gradients(model, make_batch([3, 2], width=3), steps=4)
    assert torch.equal(inside, outside)


def test_invalid_target_and_baseline_are_refused() -> None:
    model = make_model("lstm").eval()
    batch = make_batch([2, 3], width=3)
    with pytest.raises(ValueError, match="target 2"):
        integrated_gradients(model, batch, target=2)
    with pytest.raises(ValueError, match="baseline"):
        integrated_gradients(model, batch, baseline=torch.zeros(2, 3, 5))


# --- hand-written frames -----------------------------------------------------------------

VOCAB = Vocabulary.from_lists(
    {"event_type": ["add_to_cart", "email_open", "page_view"], "channel": ["app", "web"]}, []
)
CUTOFF = 1_000_000
HOUR = 3600


def hand_samples() -> pl.DataFrame:
    """Three samples; 'mystery' and 'fax' are not in the vocabulary."""
    ts = [
        [CUTOFF - 50 * HOUR, CUTOFF - 2 * HOUR],
        [CUTOFF - 800 * HOUR, CUTOFF - 30 * HOUR, CUTOFF - HOUR // 2],
        [CUTOFF - 100 * HOUR],
    ]
    frame = pl.DataFrame(
        {
            "user_key": ["u-secret-a", "u-secret-b", "u-secret-c"],
            "cutoff": [CUTOFF] * 3,
            "event_type": [
                ["page_view", "add_to_cart"],
                ["email_open", "mystery", "add_to_cart"],
                ["page_view"],
            ],
            "channel": [["web", "web"], ["app", "fax", "app"], ["web"]],
            "ts": ts,
            "label_purchase": [1, 0, 0],
        }
    )
    hours = pl.col("ts").list.eval(((CUTOFF - pl.element()) / HOUR).log1p().cast(pl.Float32))
    scaled = {name: 1.0 if name == "log_age_h" else 0.5 for name in TIME_FEATURES}
    return frame.with_columns(
        hours.list.eval(pl.element() * scale).alias(name) for name, scale in scaled.items()
    )


def hand_model() -> EngagementModel:
    torch.manual_seed(0)
    return EngagementModel(
        VOCAB.n_event_ids, VOCAB.n_channel_ids, K, 1, 4, embed_dim=8, hidden=8
    ).eval()  # fmt: skip


def test_explain_samples_long_format_on_a_hand_written_frame() -> None:
    samples = hand_samples()
    encoded = encode_samples(samples, VOCAB, 4, ("label_purchase",))
    frame = explain_samples(hand_model(), encoded, samples, VOCAB, [2, 0, 1], steps=8)
    assert frame.columns == [
        "row", "position", "event_type", "channel", "hours_before_cutoff", "attribution",
        "score", "baseline_score", "ig_intervals",
    ]  # fmt: skip
    expected = pl.DataFrame(
        {
            "row": [2, 0, 0, 1, 1, 1],
            "position": [0, 0, 1, 0, 1, 2],
            "event_type": ["page_view", "page_view", "add_to_cart", "email_open", UNKNOWN_TOKEN,
                           "add_to_cart"],
            "channel": ["web", "web", "web", "app", UNKNOWN_TOKEN, "app"],
            "hours_before_cutoff": [100.0, 50.0, 2.0, 800.0, 30.0, 0.5],
        }
    )  # fmt: skip
    assert frame.select(expected.columns).cast(expected.schema).equals(expected)
    checks = per_sample(frame)
    assert checks["completeness_gap"].abs().max() <= TOLERANCE
    # the default baseline is the mean embedding of the split's 6 real events
    model = hand_model()
    with torch.no_grad():
        x = model.embedding(*encoded.batch(np.arange(3))[:5])
    real = ~padding_mask(torch.from_numpy(encoded.lengths), x.size(1))
    torch.testing.assert_close(mean_event_embedding(model, encoded), x[real].mean(0))
    # per-sample scores agree with the model run on the whole split
    with torch.no_grad():
        full = torch.sigmoid(hand_model()(*encoded.batch(np.arange(3))[:7])[:, 0]).numpy()
    np.testing.assert_allclose(checks["score"].to_numpy(), full[[2, 0, 1]], atol=1e-6)


def test_explain_samples_refuses_frames_that_are_not_row_aligned() -> None:
    samples = hand_samples()
    encoded = encode_samples(samples, VOCAB, 4, ("label_purchase",))
    with pytest.raises(ValueError, match="row-aligned"):
        explain_samples(hand_model(), encoded, samples.reverse(), VOCAB, [0, 1, 2])


def test_driver_table_buckets_and_statistics() -> None:
    attributions = pl.DataFrame(
        {
            "event_type": ["cart", "cart", "cart", "email", "email", "cart"],
            "hours_before_cutoff": [0.0, 23.99, 24.0, 200.0, 720.0, 5.0],
            "attribution": [0.3, 0.1, -0.05, -0.02, 0.01, -0.1],
        }
    )
    table = driver_table(attributions).with_columns(pl.col("recency").cast(pl.String))
    expected = pl.DataFrame(
        {
            "event_type": ["cart", "email", "cart", "email"],
            "recency": ["<1 d", ">30 d", "1-3 d", "7-30 d"],
            "count": [3, 1, 1, 1],
            "mean_attribution": [0.1, 0.01, -0.05, -0.02],
            "mean_abs_attribution": [0.5 / 3, 0.01, 0.05, 0.02],
            "share_positive": [2 / 3, 1.0, 0.0, 0.0],
            "total_attribution": [0.3, 0.01, -0.05, -0.02],
        }
    )
    # sorted by mean attribution, highest first: -0.02 sorts above -0.05
    expected = expected.sort("mean_attribution", descending=True)
    keys = ["event_type", "recency", "count"]
    assert table.select(keys).equals(expected.select(keys).cast({"count": pl.UInt32}))
    for column in ("mean_attribution", "mean_abs_attribution", "share_positive",
                   "total_attribution"):  # fmt: skip
        np.testing.assert_allclose(table[column], expected[column], atol=1e-12)


# --- the report section --------------------------------------------------------------------


def small_split(n_users: int, seed: int, max_len: int = 32):
    source = SyntheticEventSource(n_users=n_users, days=70, seed=seed, replenishment_share=0.6)
    task = HorizonTask(targets=("purchase",), horizon="7d", name="purchase_7d")
    sampling = SamplingConfig(max_len=max_len, n_train_cutoffs=4)
    with tempfile.TemporaryDirectory() as tmp:
        built = build_in_memory(source, ColumnMapping(), task, sampling, IngestConfig(), Path(tmp))
    vocabulary = Vocabulary.from_lists(built.vocabulary, attribute_order(built.vocabulary))
    splits = {
        name: built.samples.filter(pl.col("split") == name) for name in ("train", "val", "test")
    }
    encoded = {
        name: encode_samples(frame, vocabulary, max_len, task.label_columns, built.numeric_scaling)
        for name, frame in splits.items()
    }
    return vocabulary, splits, encoded


def _untrained_section_inputs() -> tuple:
    """A seeded untrained LSTM and its test probabilities: enough for the section's plumbing."""
    vocabulary, splits, encoded = small_split(300, seed=1)
    test = encoded["test"]
    torch.manual_seed(0)
    model = EngagementModel(
        vocabulary.n_event_ids, vocabulary.n_channel_ids, K, 1, 32, embed_dim=8, hidden=8
    ).eval()  # fmt: skip
    with torch.no_grad():
        probabilities = torch.sigmoid(model(*test.batch(np.arange(len(test)))[:7])[:, 0]).numpy()
    return vocabulary, splits, test, model, probabilities


def test_report_section_writes_its_figures_and_a_json_safe_summary(tmp_path: Path) -> None:
    vocabulary, splits, test, model, probabilities = _untrained_section_inputs()
    section = explain_report_section(
        model, test, splits["test"], vocabulary, probabilities, tmp_path / "report",
        n_explain=150, n_top_users=3, link_base=tmp_path,
    )  # fmt: skip
    for name in ("explain_drivers", "explain_top_users"):
        path = section.figures[name]
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"](report/{path.name})" in section.markdown
    assert section.markdown.count("- user #") == 3 and "user #1 (score" in section.markdown
    summary = json.loads(json.dumps(section.summary))  # JSON-safe, round-trips
    assert summary["n_explained"] == 150 and summary["completeness_error_max"] <= TOLERANCE
    assert summary["score_mismatch_max"] < 1e-5
    # the highest probability is user #1's score
    top = section.tables["explain_top_users"].filter(pl.col("rank") == 1)
    assert top["score"][0] == pytest.approx(probabilities.max(), abs=1e-6)
    # no raw user id anywhere in what the section hands out
    keys = set(splits["test"]["user_key"].cast(pl.String).to_list())
    assert not any(key in section.markdown for key in keys)
    for table in section.tables.values():
        assert "user_key" not in table.columns
        assert not any(set(table[c].cast(pl.String).to_list()) & keys for c in table.columns)


def test_report_section_says_which_samples_each_number_covers(tmp_path: Path) -> None:
    """The driver table covers the random subset only; the completeness check covers it plus
    the top users outside it: the text names both counts rather than two unexplained ones."""
    vocabulary, splits, test, model, probabilities = _untrained_section_inputs()
    section = explain_report_section(
        model, test, splits["test"], vocabulary, probabilities, tmp_path, n_explain=40,
        n_top_users=3,
    )  # fmt: skip
    checked, extra = section.summary["n_checked"], section.summary["n_checked"] - 40
    assert section.summary["n_explained"] == 40 and 40 <= checked <= 43
    assert "over 40 random test samples (the driver table and figure; the top users" in (
        section.markdown
    )
    if extra:
        top_users = f"{extra} top user{'s' if extra != 1 else ''}"
        assert f"over all {checked} explained samples (the 40 random ones and {top_users} not" in (
            section.markdown
        )
    else:
        assert "over all 40 explained samples (the random ones; the top users are among" in (
            section.markdown
        )


def test_top_user_lines_count_events_in_the_singular_and_plural() -> None:
    def events(n: int) -> pl.DataFrame:
        return pl.DataFrame(
            {
                "event_type": ["purchase"] * n,
                "channel": ["web"] * n,
                "hours_before_cutoff": [5.0] * n,
                "attribution": [0.1] * n,
                "score": [0.5] * n,
                "baseline_score": [0.2] * n,
            }
        )

    one = _user_lines(events(1), 1, 5)
    assert "1 event)" in one and "1 events" not in one
    assert "other event" not in one
    two = _user_lines(events(2), 2, 1)
    assert "2 events)" in two and "; 1 other event together: +0.10" in two
    assert "1 other events" not in two
    assert "3 other events together" in _user_lines(events(4), 3, 1)


# --- sanity on the synthetic generator (slow tier) ----------------------------------------

DRIVERS = {"add_to_cart", "product_view", "purchase"}
MARKETING = ["email_open", "email_click", "push_open"]


def train_lstm(encoded: EncodedSamples, vocabulary: Vocabulary, epochs: int = 3):
    """A plain AdamW loop (no Lightning): seeded, a few seconds, deterministic on CPU."""
    torch.manual_seed(0)
    model = EngagementModel(
        vocabulary.n_event_ids, vocabulary.n_channel_ids, K, 1, 32, encoder="lstm",
        embed_dim=16, hidden=32, dropout=0.0,
    )  # fmt: skip
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)
    rng = np.random.default_rng(0)
    for _ in range(epochs):
        order = rng.permutation(len(encoded))
        for start in range(0, order.size, 128):
            *inputs, labels = encoded.batch(order[start : start + 128])
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                model(*inputs)[:, 0], labels[:, 0]
            )
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    return model.eval()


@pytest.mark.slow
def test_true_purchase_drivers_rank_at_the_top_on_synthetic_data() -> None:
    """Generator truth: product views raise intent (decaying over days), an open cart raises
    near-term odds (decaying over ~2 days), replenishment members rebuy on a cycle; e-mail and
    push opens change no purchase odds. A model that learned this must credit recent carts,
    views and purchases most, and recent events more than old ones of the same type."""
    vocabulary, splits, encoded = small_split(3000, seed=3)
    model = train_lstm(encoded["train"], vocabulary)
    test = encoded["test"]
    with torch.no_grad():
        probabilities = torch.sigmoid(model(*test.batch(np.arange(len(test)))[:7])[:, 0])
    assert _binary_scores(probabilities, torch.tensor(test.labels[:, 0]))["auroc"] > 0.7

    rows = np.arange(1500)
    frame = explain_samples(model, test, splits["test"], vocabulary, rows, steps=8)
    assert per_sample(frame)["completeness_gap"].abs().max() <= TOLERANCE
    drivers = driver_table(frame).filter(pl.col("count") >= 20)
    cell = {
        (r["event_type"], r["recency"]): r["mean_attribution"]
        for r in drivers.iter_rows(named=True)
    }
    top3 = drivers.head(3)
    assert set(top3["event_type"]) <= DRIVERS, top3
    assert set(top3["recency"].cast(pl.String)) <= {"<1 d", "1-3 d", "3-7 d"}, top3
    marketing = drivers.filter(pl.col("event_type").is_in(MARKETING))["mean_attribution"].max()
    assert cell[("add_to_cart", "<1 d")] > marketing
    for event in ("add_to_cart", "product_view"):
        assert cell[(event, "<1 d")] > cell[(event, "7-30 d")] + 0.005  # intent decays
