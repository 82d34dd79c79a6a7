"""The hybrid model's parts: the full-history aggregates' projection, and the stand-ins for
the embedding and encoder when the head reads the aggregates only (``encoder: none``, a neural
RFM model). Imports only torch: these modules are exported.
"""

from __future__ import annotations

import torch
from torch import nn


class AggregateProjection(nn.Module):
    """(B, A) standardised aggregates -> (B, hidden), joined to the encoder state in the head.

    One linear layer and a GELU: the aggregates are a few dozen standardised numbers, so a
    small projection gives the head its own view of them.

    ``drop_rate``: in training, each sample's whole projection is zeroed with this
    probability (no rescaling; never at evaluation). The aggregates are a shortcut: they reach
    most of their ROC-AUC in the first epoch, and without this the encoder, which learns
    slower, stops improving (measured in docs/results.md); a sample without its aggregates can
    only be scored from its sequence, so the encoder keeps learning.
    """

    def __init__(self, n_aggregates: int, hidden: int, drop_rate: float = 0.0) -> None:
        super().__init__()
        self.linear = nn.Linear(n_aggregates, hidden)
        self.activation = nn.GELU()
        self.drop_rate = drop_rate

    def forward(self, aggregates: torch.Tensor) -> torch.Tensor:  # (B, A) -> (B, hidden)
        projected = self.activation(self.linear(aggregates))
        if self.training and self.drop_rate > 0:
            keep = torch.rand(projected.shape[0], 1, device=projected.device) >= self.drop_rate
            projected = projected * keep.to(projected.dtype)  # (B, hidden), whole rows zeroed
        return projected


class NoAggregates(nn.Module):
    """Stands in for the projection when the model reads no aggregates: (B, 0) -> (B, 0)."""

    def forward(self, aggregates: torch.Tensor) -> torch.Tensor:
        return aggregates.new_zeros(aggregates.shape[0], 0)


class NoEmbedding(nn.Module):
    """``encoder: none``: no event embedding, no parameters; (B, T) ids -> (B, T, 0)."""

    def forward(
        self,
        event_ids: torch.Tensor,
        channel_ids: torch.Tensor,
        attribute_ids: torch.Tensor,
        numeric: torch.Tensor,
        time_features: torch.Tensor,
    ) -> torch.Tensor:  # (B, T, 0)
        return numeric.new_zeros(event_ids.shape[0], event_ids.shape[1], 0)


class NoEncoder(nn.Module):
    """``encoder: none``: the sequence contributes nothing to the head; -> (B, 0)."""

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:  # (B, 0)
        return x.new_zeros(x.shape[0], 0)
