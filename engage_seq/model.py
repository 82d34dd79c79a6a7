"""Encoder + head: the nn.Module that is trained and exported. Imports only torch.

`EngagementModel.config` holds every constructor argument, so a checkpoint can rebuild the
model without Hydra or Lightning (vocabulary sizes come from the fitted vocabulary).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from engage_seq.encoders import EventEmbedding, LSTMEncoder, TransformerEncoder

ENCODERS = ("lstm", "transformer")
# Argument order of forward(), for the artifact, the parity batch and the docs.
MODEL_INPUTS = (
    "event_ids",
    "channel_ids",
    "attribute_ids",
    "numeric",
    "time_features",
    "lengths",
)


class EngagementModel(nn.Module):
    """Event sequence -> one logit per output (target event)."""

    def __init__(
        self,
        n_event_ids: int,
        n_channel_ids: int,
        n_time_features: int,
        n_outputs: int,
        max_len: int,
        attribute_sizes: list[int] | tuple[int, ...] = (),
        n_numeric: int = 0,
        encoder: str = "lstm",
        embed_dim: int = 32,
        hidden: int = 64,
        num_layers: int = 1,
        num_heads: int = 4,
        dropout: float = 0.1,
        pool: str = "mean",
    ) -> None:
        super().__init__()
        if encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {ENCODERS}, got {encoder!r}")
        self.config: dict[str, Any] = {
            "n_event_ids": n_event_ids,
            "n_channel_ids": n_channel_ids,
            "n_time_features": n_time_features,
            "n_outputs": n_outputs,
            "max_len": max_len,
            "attribute_sizes": list(attribute_sizes),
            "n_numeric": n_numeric,
            "encoder": encoder,
            "embed_dim": embed_dim,
            "hidden": hidden,
            "num_layers": num_layers,
            "num_heads": num_heads,
            "dropout": dropout,
            "pool": pool,
        }
        self.embedding = EventEmbedding(
            n_event_ids,
            n_channel_ids,
            list(attribute_sizes),
            n_numeric,
            n_time_features,
            embed_dim,
            dropout,
        )
        self.encoder: nn.Module
        if encoder == "lstm":
            self.encoder = LSTMEncoder(embed_dim, hidden, num_layers, dropout)
        else:
            self.encoder = TransformerEncoder(
                embed_dim, hidden, num_layers, num_heads, dropout, max_len, pool
            )
        self.head = nn.Sequential(
            nn.Linear(hidden, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, n_outputs)
        )

    def forward(
        self,
        event_ids: torch.Tensor,  # (B, T) int64, 0 = pad, 1 = unknown
        channel_ids: torch.Tensor,  # (B, T) int64, 0 = pad, 1 = unknown
        attribute_ids: torch.Tensor,  # (B, T, C) int64, 0 = pad, 1 = unknown
        numeric: torch.Tensor,  # (B, T, F) float32, scaled
        time_features: torch.Tensor,  # (B, T, K) float32
        lengths: torch.Tensor,  # (B,) int64, >= 1
    ) -> torch.Tensor:  # (B, n_outputs) logits
        x = self.embedding(event_ids, channel_ids, attribute_ids, numeric, time_features)
        return self.head(self.encoder(x, lengths))


class ProbabilityModel(nn.Module):
    """What the artifact exposes: probabilities, plus the names of the outputs."""

    def __init__(self, model: EngagementModel, output_names: list[str]) -> None:
        super().__init__()
        self.model = model
        self.names = list(output_names)

    def forward(
        self,
        event_ids: torch.Tensor,
        channel_ids: torch.Tensor,
        attribute_ids: torch.Tensor,
        numeric: torch.Tensor,
        time_features: torch.Tensor,
        lengths: torch.Tensor,
    ) -> torch.Tensor:  # (B, n_outputs) probabilities
        logits = self.model(
            event_ids, channel_ids, attribute_ids, numeric.float(), time_features.float(), lengths
        )
        return torch.sigmoid(logits.float())

    @torch.jit.export
    def output_names(self) -> list[str]:
        return self.names
