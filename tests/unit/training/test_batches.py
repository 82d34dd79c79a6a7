"""Samples -> padded arrays -> batches."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from engage_seq.data.sequences import TIME_FEATURES
from engage_seq.training.batches import (
    PAD_ID,
    UNKNOWN_ID,
    EncodedSamples,
    EventDataModule,
    LengthBucketBatchSampler,
    Vocabulary,
    encode_samples,
)


def hand_samples() -> pl.DataFrame:
    seqs = {
        "event_type": [["view", "cart"], ["never_seen"], ["view", "view", "purchase"]],
        "channel": [["web", "app"], ["web"], ["fax", "web", "web"]],
    }
    lengths = [2, 1, 3]
    cols = {f: [[float(i + 1)] * n for i, n in enumerate(lengths)] for f in TIME_FEATURES}
    attrs = {
        "cat_device": [["ios", "ios"], ["tv"], ["web", "ios", "web"]],
        "num_value": [[None, 9.0], [0.0], [1.0, -1.0, 1e9]],
    }
    return pl.DataFrame({**seqs, **cols, **attrs, "label_purchase": [True, False, True]})


VOCAB = Vocabulary.from_lists(
    {"event_type": ["cart", "purchase", "view"], "channel": ["app", "web"],
     "cat_device": ["ios", "web"]},
    ["cat_device"],
)  # fmt: skip
SCALING = {"num_value": {"mean": 1.0, "std": 2.0}}


def test_encode_pads_right_and_maps_unknowns() -> None:
    enc = encode_samples(hand_samples(), VOCAB, 4, ["label_purchase"], SCALING)
    cart, purchase, view = 2, 3, 4
    app, web = 2, 3
    assert enc.event_ids.tolist() == [
        [view, cart, PAD_ID, PAD_ID],
        [UNKNOWN_ID, PAD_ID, PAD_ID, PAD_ID],
        [view, view, purchase, PAD_ID],
    ]
    assert enc.channel_ids.tolist() == [
        [web, app, 0, 0],
        [web, 0, 0, 0],
        [UNKNOWN_ID, web, web, 0],
    ]
    assert enc.lengths.tolist() == [2, 1, 3]
    assert enc.time_features.shape == (3, 4, len(TIME_FEATURES))
    assert enc.time_features[2, :, 0].tolist() == [3.0, 3.0, 3.0, 0.0]
    assert enc.labels.tolist() == [[1.0], [0.0], [1.0]]
    ios, web = 2, 3
    assert enc.attribute_ids[:, :, 0].tolist() == [
        [ios, ios, 0, 0], [UNKNOWN_ID, 0, 0, 0], [web, ios, web, 0]
    ]  # fmt: skip
    # (sign(x) log1p|x| - 1) / 2, clipped to [-5, 5]; missing -> 0; pads 0
    expected = [[0.0, (np.log1p(9.0) - 1) / 2], [-0.5], [(np.log1p(1) - 1) / 2,
                (-np.log1p(1) - 1) / 2, 5.0]]  # fmt: skip
    for row, values in enumerate(expected):
        assert enc.numeric[row, : len(values), 0] == pytest.approx(values, abs=1e-6)
        assert (enc.numeric[row, len(values) :, 0] == 0).all()
    events = enc.batch(np.array([0, 1]))[0]
    assert events.shape == (2, 2)  # trimmed to the longest sequence in the batch


def test_bucket_sampler_covers_every_index_once_and_is_seeded() -> None:
    lengths = np.random.default_rng(0).integers(1, 64, size=1003)
    sampler = LengthBucketBatchSampler(
        lengths, batch_size=32, shuffle=True, seed=5, bucket_factor=4
    )
    first = [b.tolist() for b in sampler]
    assert sorted(i for b in first for i in b) == list(range(1003))
    assert len(first) == len(sampler)
    again = LengthBucketBatchSampler(lengths, batch_size=32, shuffle=True, seed=5, bucket_factor=4)
    assert [b.tolist() for b in again] == first
    assert [b.tolist() for b in sampler] == first  # same epoch: same order
    sampler.set_epoch(1)
    assert [b.tolist() for b in sampler] != first  # next epoch: a new order
    # bucketing: within-batch length spread is far below the global spread
    spread = np.mean([np.ptp(lengths[b]) for b in first])
    assert spread < 0.5 * np.ptp(lengths)


@pytest.mark.parametrize("shuffle", [True, False])
def test_ranks_split_batches_without_duplicates(shuffle: bool) -> None:
    lengths = np.random.default_rng(1).integers(1, 64, size=1003)  # 32 batches of 32 (last 11)
    ranks = [
        LengthBucketBatchSampler(lengths, 32, shuffle, seed=3, rank=r, world_size=3)
        for r in range(3)
    ]
    per_rank = [[i for b in sampler for i in b.tolist()] for sampler in ranks]
    seen = [i for indices in per_rank for i in indices]
    assert len(seen) == len(set(seen))  # no sample on two ranks
    counts = [len(list(sampler)) for sampler in ranks]
    assert counts == [len(sampler) for sampler in ranks]
    if shuffle:  # DDP steps in lockstep: equal batch counts, at most world_size-1 left out
        assert counts == [10, 10, 10]
    else:  # evaluation keeps everything
        assert sorted(seen) == list(range(1003))


def test_resume_skips_the_batches_already_done_once() -> None:
    lengths = np.random.default_rng(2).integers(1, 64, size=500)
    full = LengthBucketBatchSampler(lengths, 50, True, seed=4)
    full.set_epoch(2)
    expected = [b.tolist() for b in full]
    resumed = LengthBucketBatchSampler(lengths, 50, True, seed=4)
    resumed.set_epoch(2)
    resumed.skip_epoch, resumed.skip = 2, 3
    assert len(resumed) == len(full)  # Lightning counts the skipped batches as done
    assert [b.tolist() for b in resumed] == expected[3:]
    assert [b.tolist() for b in resumed] == expected  # only once


def test_eval_loader_is_length_sorted_and_complete() -> None:
    enc = encode_samples(hand_samples(), VOCAB, 4, ["label_purchase"], SCALING)
    dm = EventDataModule(enc, enc, enc, batch_size=2, eval_batch_size=2)
    batches = list(dm.val_dataloader())
    assert sum(b[5].shape[0] for b in batches) == 3
    assert batches[0][5].tolist() == [1, 2]  # lengths, shortest first
    assert isinstance(enc, EncodedSamples)
