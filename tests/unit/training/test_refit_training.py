"""The refit's data and epoch count: train + validation samples in that order, encoded once
with the training vocabulary, for the selected checkpoint's epoch + 1."""

from __future__ import annotations

import numpy as np
import pytest

from engage_seq.training.batches import EncodedSamples
from engage_seq.training.refit import (
    RefitError,
    RefitPlan,
    concat_encoded,
    refit_datamodule,
    refit_epochs,
)


def encoded(n: int, start: int, width: int = 4) -> EncodedSamples:
    """``n`` samples whose event ids and labels say which sample they are (start, start+1...)."""
    ids = np.arange(start, start + n, dtype=np.int64)
    return EncodedSamples(
        event_ids=np.repeat(ids[:, None], width, axis=1),
        channel_ids=np.ones((n, width), dtype=np.int64),
        attribute_ids=np.zeros((n, width, 0), dtype=np.int64),
        numeric=np.zeros((n, width, 1), dtype=np.float32),
        time_features=np.zeros((n, width, 2), dtype=np.float32),
        lengths=np.full(n, width, dtype=np.int64),
        labels=ids[:, None].astype(np.float32),
        aggregates=np.stack([ids, -ids], axis=1).astype(np.float32),  # (n, 2) hybrid inputs
    )


def test_refit_data_is_train_then_validation() -> None:
    train, val, test = encoded(5, 0), encoded(3, 100), encoded(2, 200)
    module = refit_datamodule({"train": train, "val": val, "test": test}, 4, 8, seed=0)
    joined = module.splits["train"]
    assert len(joined) == 8
    np.testing.assert_array_equal(joined.labels[:, 0], [0, 1, 2, 3, 4, 100, 101, 102])
    np.testing.assert_array_equal(joined.event_ids[:, 0], joined.labels[:, 0].astype(np.int64))
    assert joined.numeric.dtype == np.float32 and joined.attribute_ids.shape == (8, 4, 0)
    np.testing.assert_array_equal(joined.aggregates[:, 0], joined.labels[:, 0])  # rows aligned
    assert module.splits["test"] is test  # test is never trained on
    seen = np.concatenate([b[-1][:, 0].numpy() for b in module.train_dataloader()])
    assert sorted(seen.tolist()) == [0, 1, 2, 3, 4, 100, 101, 102]  # every sample, once


def test_splits_of_different_widths_are_refused() -> None:
    with pytest.raises(ValueError, match="same max_len"):
        concat_encoded(encoded(2, 0, width=4), encoded(2, 0, width=5))


@pytest.mark.parametrize(("epoch", "epochs"), [(0, 1), (3, 4)])
def test_epochs_are_the_selected_epoch_plus_one(epoch: int, epochs: int) -> None:
    assert refit_epochs({"epoch": epoch}) == epochs


@pytest.mark.parametrize("bad", [None, -1, 2.0, True, "3"])
def test_a_checkpoint_without_a_usable_epoch_is_refused(bad: object) -> None:
    with pytest.raises(RefitError, match="epochs to refit"):
        refit_epochs({"epoch": bad})


def test_the_plan_is_recorded_in_metrics_and_checkpoint() -> None:
    plan = RefitPlan(epochs=4, n_samples=1558, selected_epoch=3)
    assert plan.metrics() == {
        "train/refit": 1.0,
        "train/refit_epochs": 4.0,
        "train/refit_n_samples": 1558.0,
    }
    assert plan.metadata()["refit"] is True and plan.metadata()["trained_on"] == ["train", "val"]
