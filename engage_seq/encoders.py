"""Event embedding and sequence encoders. Imports only torch: these modules are exported.

Inputs follow the padding contract of `engage_seq.data`: right-padded, oldest event first,
last real event at ``lengths - 1``. Every forward takes plain tensors so it scripts cleanly.
"""

from __future__ import annotations

import torch
from torch import nn


def padding_mask(lengths: torch.Tensor, width: int) -> torch.Tensor:
    """(B, T) bool, True at padded positions."""
    positions = torch.arange(width, device=lengths.device).unsqueeze(0)
    return positions >= lengths.unsqueeze(1)


def gather_last(states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """states (B, T, H) -> (B, H) at the last real position of each row."""
    index = (lengths - 1).clamp(min=0).view(-1, 1, 1).expand(-1, 1, states.size(-1))
    return states.gather(1, index).squeeze(1)


class _NoNumeric(nn.Module):
    """Stands in for the numeric projection when no numeric attribute is declared."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, numeric: torch.Tensor) -> torch.Tensor:
        return numeric.new_zeros(numeric.shape[0], numeric.shape[1], self.dim)


class EventEmbedding(nn.Module):
    """Sum of event-type, channel, categorical-attribute, numeric and time embeddings.

    Sizes come from the fitted vocabularies; id 0 (padding) embeds to zero.
    """

    def __init__(
        self,
        n_event_ids: int,
        n_channel_ids: int,
        attribute_sizes: list[int],
        n_numeric: int,
        n_time_features: int,
        dim: int,
        dropout: float,
    ) -> None:
        super().__init__()
        self.event = nn.Embedding(n_event_ids, dim, padding_idx=0)
        self.channel = nn.Embedding(n_channel_ids, dim, padding_idx=0)
        self.attributes = nn.ModuleList(
            nn.Embedding(size, dim, padding_idx=0) for size in attribute_sizes
        )
        self.numeric: nn.Module = nn.Linear(n_numeric, dim) if n_numeric > 0 else _NoNumeric(dim)
        self.time = nn.Linear(n_time_features, dim)
        self.norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        event_ids: torch.Tensor,  # (B, T) int64
        channel_ids: torch.Tensor,  # (B, T) int64
        attribute_ids: torch.Tensor,  # (B, T, C) int64
        numeric: torch.Tensor,  # (B, T, F) float
        time_features: torch.Tensor,  # (B, T, K) float
    ) -> torch.Tensor:  # (B, T, dim)
        x = self.event(event_ids) + self.channel(channel_ids) + self.time(time_features)
        for i, embedding in enumerate(self.attributes):
            x = x + embedding(attribute_ids[:, :, i])
        x = x + self.numeric(numeric)
        return self.dropout(self.norm(x))


class LSTMEncoder(nn.Module):
    """Unidirectional LSTM over right-padded input, read at the last real step.

    Packing was measured slower than running over the padding on CPU (see
    scripts/bench_encoders.py); because the LSTM is causal, the state at
    ``lengths - 1`` never sees the padding that follows it, so the result is exact.
    """

    def __init__(self, input_dim: int, hidden: int, num_layers: int, dropout: float) -> None:
        super().__init__()
        self.lstm = nn.LSTM(
            input_dim,
            hidden,
            num_layers=num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.out_dim = hidden

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        states, _ = self.lstm(x)
        return gather_last(states, lengths)


class TransformerBlock(nn.Module):
    """Pre-LN block: x + Attn(LN(x)), then x + FF(LN(x)).

    Dropout sits on the residual branches only, not on the attention weights: on CPU,
    drawing a (B·heads, T, T) dropout mask cost a third of the step time
    (scripts/bench_encoders.py) and buys little in a model this small.
    """

    def __init__(self, dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.attn_norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.ff_norm = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, attend: torch.Tensor) -> torch.Tensor:
        """x (B, T, D); attend (B, 1, 1, T) bool, True where a key is a real event."""
        b, t, d = x.shape
        qkv = self.qkv(self.attn_norm(x)).view(b, t, 3, self.num_heads, d // self.num_heads)
        qkv = qkv.permute(2, 0, 3, 1, 4)  # (3, B, heads, T, head_dim)
        attended = nn.functional.scaled_dot_product_attention(
            qkv[0], qkv[1], qkv[2], attn_mask=attend
        )
        x = x + self.dropout(self.out(attended.transpose(1, 2).reshape(b, t, d)))
        return x + self.dropout(self.ff(self.ff_norm(x)))


class TransformerEncoder(nn.Module):
    """Pre-LN Transformer with a key-padding mask, recency positions and mean/last pooling.

    Positions count back from the most recent event (0 = last event), so the meaning of a
    position does not change when a long history is truncated. Every row has at least one
    real event, so no query ever attends to nothing (which would give NaN).
    """

    def __init__(
        self,
        input_dim: int,
        hidden: int,
        num_layers: int,
        num_heads: int,
        dropout: float,
        max_len: int,
        pool: str = "mean",
    ) -> None:
        super().__init__()
        if pool not in ("mean", "last"):
            raise ValueError(f"pool must be 'mean' or 'last', got {pool!r}")
        if hidden % num_heads != 0:
            raise ValueError(f"hidden ({hidden}) must be divisible by num_heads ({num_heads})")
        self.input = nn.Linear(input_dim, hidden) if input_dim != hidden else nn.Identity()
        self.position = nn.Embedding(max_len, hidden)
        self.blocks = nn.ModuleList(
            TransformerBlock(hidden, num_heads, dropout) for _ in range(num_layers)
        )
        self.final_norm = nn.LayerNorm(hidden)  # pre-LN stacks need one at the end
        self.max_len = max_len
        self.pool_last = pool == "last"
        self.out_dim = hidden

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        width = x.size(1)
        pad = padding_mask(lengths, width)
        recency = lengths.unsqueeze(1) - 1 - torch.arange(width, device=x.device).unsqueeze(0)
        h = self.input(x) + self.position(recency.clamp(0, self.max_len - 1))
        attend = (~pad).view(pad.size(0), 1, 1, width)
        for block in self.blocks:
            h = block(h, attend)
        h = self.final_norm(h)
        if self.pool_last:
            return gather_last(h, lengths)
        h = torch.where(pad.unsqueeze(-1), torch.zeros_like(h), h)
        return h.sum(1) / lengths.clamp(min=1).unsqueeze(1).to(h.dtype)
