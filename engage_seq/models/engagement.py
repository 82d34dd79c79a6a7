"""Encoder + head: the nn.Module that is trained and exported. Imports only torch.

Read top to bottom: the constructor takes the keyword arguments that Hydra configs and
checkpoints pass, checks them into one `EngagementModelConfig` (`config.py`) and hands that to
small builders (embedding, encoder, head); `forward` runs them in that order.
`EngagementModel.config` holds every constructor argument as a plain dict, so a checkpoint can
rebuild the model without Hydra or Lightning (vocabulary sizes come from the fitted vocabulary).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from engage_seq.models.aggregate_head import (
    AggregateProjection,
    NoAggregates,
    NoEmbedding,
    NoEncoder,
)
from engage_seq.models.btyd_features import BTYDFeatures
from engage_seq.models.calibration import Calibration, CalibrationLayer
from engage_seq.models.config import ENCODERS, SEQUENCE_ENCODERS, EngagementModelConfig
from engage_seq.models.encoders import EventEmbedding, RecurrentEncoder, TransformerEncoder

__all__ = [
    "ENCODERS",
    "MODEL_INPUTS",
    "SEQUENCE_ENCODERS",
    "EngagementModel",
    "EngagementModelConfig",
    "ProbabilityModel",
]

# Argument order of forward(), for the artifact, the parity batch and the docs.
MODEL_INPUTS = (
    "event_ids",
    "channel_ids",
    "attribute_ids",
    "numeric",
    "time_features",
    "lengths",
    "aggregates",
)


class EngagementModel(nn.Module):
    """Event sequence -> raw outputs of up to three heads on one encoder.

    ``forward`` returns one (B, n_raw_outputs) tensor, columns in this order:
    ``n_outputs`` horizon logits (one per target, sigmoid), ``n_next_classes`` next-event
    logits (softmax; class 0 = unknown type, class i = event id i + 1), and, with
    ``time_to_next``, the log-normal parameters (mu, log_sigma) of the hours to the next event.
    One tensor keeps the exported signature trivial; `split_outputs` slices it.
    """

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
        causal: bool = False,
        positions: str = "learned",
        time_encoding: str = "fourier",
        n_next_classes: int = 0,
        time_to_next: bool = False,
        n_aggregates: int = 0,
        aggregate_dropout: float = 0.5,
        btyd: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self._build(
            EngagementModelConfig(
                n_event_ids=n_event_ids,
                n_channel_ids=n_channel_ids,
                n_time_features=n_time_features,
                n_outputs=n_outputs,
                max_len=max_len,
                attribute_sizes=tuple(attribute_sizes),
                n_numeric=n_numeric,
                encoder=encoder,
                embed_dim=embed_dim,
                hidden=hidden,
                num_layers=num_layers,
                num_heads=num_heads,
                dropout=dropout,
                pool=pool,
                causal=causal,
                positions=positions,
                time_encoding=time_encoding,
                n_next_classes=n_next_classes,
                time_to_next=time_to_next,
                n_aggregates=n_aggregates,
                aggregate_dropout=aggregate_dropout,
                btyd=btyd,
            )
        )

    @classmethod
    def from_config(cls, config: EngagementModelConfig) -> EngagementModel:
        """The model a checked config describes (the same as passing its fields as keywords)."""
        return cls(**config.as_dict())

    def _build(self, config: EngagementModelConfig) -> None:
        """Layers in a fixed order (embedding, encoder, head, aggregate projection): the order
        fixes both the state_dict keys and which random draws each layer's initial weights take
        (the projection comes last, so a model without aggregates draws as before)."""
        self.config: dict[str, Any] = config.as_dict()
        self.embedding: nn.Module = self._build_embedding(config)
        self.encoder: nn.Module = self._build_encoder(config)
        self.n_outputs = config.n_outputs
        self.n_next_classes = config.n_next_classes
        self.n_time_outputs = config.n_time_outputs
        self.n_aggregates = config.n_aggregates
        self.head = self._build_head(config)
        self.btyd_features = BTYDFeatures(config.btyd)  # no parameters, no random draws
        self.btyd_offset = bool(config.btyd and config.btyd["offset"])
        self.aggregate_projection: nn.Module = (
            AggregateProjection(
                config.n_aggregates + config.n_btyd_features,
                config.hidden,
                # aggregates only: nothing else to score from, so never hidden
                0.0 if config.encoder == "none" else config.aggregate_dropout,
            )
            if config.n_aggregates
            else NoAggregates()
        )

    @staticmethod
    def _build_embedding(config: EngagementModelConfig) -> nn.Module:
        """(B, T) ids + (B, T, F) numeric + (B, T, K) time features -> (B, T, embed_dim)."""
        if config.encoder == "none":
            return NoEmbedding()
        return EventEmbedding(
            config.n_event_ids,
            config.n_channel_ids,
            list(config.attribute_sizes),
            config.n_numeric,
            config.n_time_features,
            config.embed_dim,
            config.dropout,
            config.time_encoding,
        )

    @staticmethod
    def _build_encoder(config: EngagementModelConfig) -> nn.Module:
        """(B, T, embed_dim) + lengths -> (B, hidden): one summary vector per sequence."""
        if config.encoder == "none":
            return NoEncoder()
        if config.encoder == "transformer":
            return TransformerEncoder(
                config.embed_dim,
                config.hidden,
                config.num_layers,
                config.num_heads,
                config.dropout,
                config.max_len,
                config.pool,
                config.causal,
                config.positions,
            )
        return RecurrentEncoder(
            config.embed_dim, config.hidden, config.num_layers, config.dropout, cell=config.encoder
        )

    @staticmethod
    def _build_head(config: EngagementModelConfig) -> nn.Sequential:
        """(B, hidden [+ hidden]) -> (B, n_raw_outputs): every head's raw outputs side by side,
        from the encoder state and the aggregates' projection."""
        hidden = config.hidden
        return nn.Sequential(
            nn.Linear(config.n_head_inputs, hidden),
            nn.GELU(),
            nn.Dropout(config.dropout),
            nn.Linear(hidden, config.n_raw_outputs),
        )

    def forward(
        self,
        event_ids: torch.Tensor,  # (B, T) int64, 0 = pad, 1 = unknown
        channel_ids: torch.Tensor,  # (B, T) int64, 0 = pad, 1 = unknown
        attribute_ids: torch.Tensor,  # (B, T, C) int64, 0 = pad, 1 = unknown
        numeric: torch.Tensor,  # (B, T, F) float32, scaled
        time_features: torch.Tensor,  # (B, T, K) float32
        lengths: torch.Tensor,  # (B,) int64, >= 1
        aggregates: torch.Tensor,  # (B, A) float32, standardised; A = 0 without aggregates
    ) -> torch.Tensor:  # (B, n_raw_outputs), see the class docstring
        x = self.embedding(event_ids, channel_ids, attribute_ids, numeric, time_features)
        return self.read_out(self.encoder(x, lengths), aggregates)

    def read_out(self, state: torch.Tensor, aggregates: torch.Tensor) -> torch.Tensor:
        """Encoder state (B, hidden or 0) + aggregates (B, A) -> (B, n_raw_outputs)."""
        aggregates = aggregates.float()  # (B, A)
        btyd = self.btyd_features(aggregates)  # (B, 2n): per target logit P(any), log P(alive)
        if self.n_aggregates > 0:
            joined = torch.cat([aggregates, btyd], dim=-1)  # (B, A + 2n)
            state = torch.cat([state, self.aggregate_projection(joined)], dim=-1)
        raw = self.head(state)  # (B, n_raw_outputs)
        if self.btyd_offset:  # the horizon logits start from BG/NBD's: the head learns a residual
            n = self.n_outputs
            raw = torch.cat([raw[:, :n] + btyd[:, 0::2], raw[:, n:]], dim=1)
        return raw

    def split_outputs(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """raw -> (horizon logits (B, n_outputs), next-event logits (B, n_next_classes),
        time-to-next (mu, log_sigma) (B, 0 or 2)); absent heads give zero-width tensors."""
        a = self.n_outputs
        b = a + self.n_next_classes
        return raw[:, :a], raw[:, a:b], raw[:, b:]

    def probabilities(self, raw: torch.Tensor) -> torch.Tensor:
        """raw outputs -> (B, n_outputs + n_next_classes): horizon sigmoids, then one softmax
        over next-event classes (the time-to-next parameters are left out)."""
        horizon, next_event, _ = self.split_outputs(raw.float())
        return torch.cat([torch.sigmoid(horizon), torch.softmax(next_event, dim=-1)], dim=-1)


class ProbabilityModel(nn.Module):
    """What the artifact exposes: probabilities, plus the names of the outputs.

    Horizon outputs are independent sigmoids; next-event outputs are one softmax over event
    types (summing to 1). The time-to-next head, if trained, is not part of the probabilities.
    A fitted ``calibration`` (`engage_seq.models.calibration`) is applied to both.
    """

    def __init__(
        self,
        model: EngagementModel,
        output_names: list[str],
        calibration: Calibration | None = None,
    ) -> None:
        super().__init__()
        expected = model.n_outputs + model.n_next_classes
        if len(output_names) != expected:
            raise ValueError(f"{len(output_names)} output names for {expected} outputs")
        self.model = model
        self.names = list(output_names)
        self.calibration = CalibrationLayer(calibration, model.n_outputs)

    def forward(
        self,
        event_ids: torch.Tensor,
        channel_ids: torch.Tensor,
        attribute_ids: torch.Tensor,
        numeric: torch.Tensor,
        time_features: torch.Tensor,
        lengths: torch.Tensor,
        aggregates: torch.Tensor,
    ) -> torch.Tensor:  # (B, n_outputs) probabilities
        raw = self.model(
            event_ids,
            channel_ids,
            attribute_ids,
            numeric.float(),
            time_features.float(),
            lengths,
            aggregates.float(),
        )
        horizon, next_event, _ = self.model.split_outputs(raw.float())
        return self.calibration(horizon, next_event)

    @torch.jit.export
    def output_names(self) -> list[str]:
        return self.names
