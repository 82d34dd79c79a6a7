"""An untrained, seeded serving module over prepared samples: what the serving tests score
with. Weights do not matter to them; the vocabulary, scaling and window do."""

from __future__ import annotations

import torch

from engage_seq.data.cache import PreparedSamples
from engage_seq.data.sequences import TIME_FEATURES
from engage_seq.models.engagement import EngagementModel, ProbabilityModel
from engage_seq.serving.scripted import ServingModule


def untrained_serving_module(
    prepared: PreparedSamples, max_len: int, encoder: str, numeric: str = "num_order_value"
) -> ServingModule:
    """One ``purchase`` output, the samples' vocabulary and the scaling of one numeric column."""
    vocabulary = prepared.fitted_vocabulary
    torch.manual_seed(0)
    model = EngagementModel(
        n_event_ids=vocabulary.n_event_ids,
        n_channel_ids=vocabulary.n_channel_ids,
        n_time_features=len(TIME_FEATURES),
        n_outputs=1,
        max_len=max_len,
        attribute_sizes=vocabulary.attribute_sizes,
        n_numeric=1,
        encoder=encoder,
    ).eval()
    scaling = prepared.numeric_scaling[numeric]
    return ServingModule(
        ProbabilityModel(model, ["purchase"]),
        prepared.vocabulary,
        vocabulary.attributes,
        [(scaling["mean"], scaling["std"])],
        max_len,
        list(TIME_FEATURES),
    ).eval()
