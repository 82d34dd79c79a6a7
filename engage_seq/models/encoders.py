"""Event embedding and sequence encoders. Imports only torch: these modules are exported.

Inputs follow the padding contract of `engage_seq.training.batches`: right-padded, oldest event
first,
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


class TimeEncoding(nn.Module):
    """Continuous-time features -> ``dim``: learned Fourier features of the log-time inputs.

    Gaps and ages span seconds to months, so they arrive as log1p(hours); a linear map of that
    cannot express "about a day ago" vs "about a week ago" as separate bumps, but a few learned
    sinusoids of it can (Time2Vec-style: each of the first ``n_log_time`` inputs keeps its raw
    value and adds ``n_frequencies`` sin/cos pairs with learned frequencies and phases). The
    remaining inputs (calendar sin/cos) are already periodic and pass through unchanged.
    ``fourier=False`` gives the plain linear projection, for ablations.
    """

    def __init__(
        self, n_features: int, dim: int, n_log_time: int = 3, n_frequencies: int = 8,
        fourier: bool = True,
    ) -> None:  # fmt: skip
        super().__init__()
        self.n_log_time = min(n_log_time, n_features) if fourier else 0
        self.n_frequencies = n_frequencies
        # log1p(hours) lies in [0, ~9]; initial periods from ~0.6 to ~60 log-units.
        init = torch.logspace(-1.0, 1.0, n_frequencies).repeat(self.n_log_time, 1)
        phase = torch.zeros(self.n_log_time, n_frequencies)
        if self.n_log_time:
            self.frequency = nn.Parameter(init)
            self.phase = nn.Parameter(phase)
        else:  # empty buffers: TorchScript needs the attributes, training does not
            self.register_buffer("frequency", init)
            self.register_buffer("phase", phase)
        width = n_features + 2 * self.n_log_time * n_frequencies
        self.project = nn.Linear(width, dim)

    def forward(self, time_features: torch.Tensor) -> torch.Tensor:  # (B, T, K) -> (B, T, dim)
        if self.n_log_time == 0:
            return self.project(time_features)
        log_time = time_features[:, :, : self.n_log_time].unsqueeze(-1)  # (B, T, n, 1)
        angle = log_time * self.frequency + self.phase  # (B, T, n, n_frequencies)
        waves = torch.cat([angle.sin(), angle.cos()], dim=-1).flatten(2)
        return self.project(torch.cat([time_features, waves], dim=-1))


class EventEmbedding(nn.Module):
    """Sum of event-type, channel, categorical-attribute, numeric and time embeddings.

    Sizes come from the fitted vocabularies; id 0 (padding) embeds to zero. The first three
    time features are log-hours (gap, age, same-type gap; see `TimeEncoding`).
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
        time_encoding: str = "fourier",
    ) -> None:
        super().__init__()
        if time_encoding not in ("fourier", "linear"):
            raise ValueError(f"time_encoding must be 'fourier' or 'linear', got {time_encoding!r}")
        self.event = nn.Embedding(n_event_ids, dim, padding_idx=0)
        self.channel = nn.Embedding(n_channel_ids, dim, padding_idx=0)
        self.attributes = nn.ModuleList(
            nn.Embedding(size, dim, padding_idx=0) for size in attribute_sizes
        )
        self.numeric: nn.Module = nn.Linear(n_numeric, dim) if n_numeric > 0 else _NoNumeric(dim)
        self.time = TimeEncoding(n_time_features, dim, fourier=time_encoding == "fourier")
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


class RecurrentEncoder(nn.Module):
    """Unidirectional LSTM or GRU over right-padded input, read at the last real step.

    Packing was measured slower than running over the padding on CPU (see
    scripts/bench_encoders.py); because the recurrence is causal, the state at
    ``lengths - 1`` never sees the padding that follows it, so the result is exact.
    """

    def __init__(
        self, input_dim: int, hidden: int, num_layers: int, dropout: float, cell: str = "lstm"
    ) -> None:
        super().__init__()
        if cell not in ("lstm", "gru"):
            raise ValueError(f"cell must be 'lstm' or 'gru', got {cell!r}")
        recurrent = nn.LSTM if cell == "lstm" else nn.GRU
        self.rnn = recurrent(
            input_dim,
            hidden,
            num_layers=num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.out_dim = hidden

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        states, _ = self.rnn(x)
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


POOLS = ("mean", "last", "cls")
POSITIONS = ("learned", "time")


class TransformerEncoder(nn.Module):
    """Pre-LN Transformer with a key-padding mask, optional causal mask and mean/last/CLS pool.

    ``positions="learned"`` adds a learned embedding of the recency index, counted back from
    the most recent event (0 = last event), so the meaning of a position does not change when
    a long history is truncated. ``positions="time"`` adds none: order then comes only from
    the continuous age encoding inside the event embedding (events hours apart are not
    "neighbours" just because they are adjacent in the list).

    ``causal=True`` lets each event attend only to itself and older events (useful with
    ``pool="last"`` or for per-step objectives). ``pool="cls"`` prepends a learned summary
    token that attends to every event; it needs ``causal=False`` (a first token under a causal
    mask would see nothing). Every row has at least one real event, so no query ever attends
    to nothing (which would give NaN).
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
        causal: bool = False,
        positions: str = "learned",
    ) -> None:
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
        if positions not in POSITIONS:
            raise ValueError(f"positions must be one of {POSITIONS}, got {positions!r}")
        if hidden % num_heads != 0:
            raise ValueError(f"hidden ({hidden}) must be divisible by num_heads ({num_heads})")
        if causal and pool == "cls":
            raise ValueError("pool='cls' needs causal=False; use pool='last' with a causal mask")
        self.input = nn.Linear(input_dim, hidden) if input_dim != hidden else nn.Identity()
        # Optional parts live in 0-or-1-element ModuleLists: TorchScript compiles the loops
        # over them, and no parameter exists that the configuration does not train.
        learned = positions == "learned"
        self.positions = nn.ModuleList([nn.Embedding(max_len, hidden)] if learned else [])
        self.cls_token = nn.ModuleList([nn.Embedding(1, hidden)] if pool == "cls" else [])
        self.blocks = nn.ModuleList(
            TransformerBlock(hidden, num_heads, dropout) for _ in range(num_layers)
        )
        self.final_norm = nn.LayerNorm(hidden)  # pre-LN stacks need one at the end
        self.max_len = max_len
        self.pool = pool
        self.causal = causal
        self.out_dim = hidden

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        width = x.size(1)
        h = self.input(x)
        for position in self.positions:
            steps = torch.arange(width, device=x.device).unsqueeze(0)
            recency = lengths.unsqueeze(1) - 1 - steps
            h = h + position(recency.clamp(0, self.max_len - 1))
        for cls in self.cls_token:
            token = cls.weight.to(h.dtype).unsqueeze(0).expand(h.size(0), 1, h.size(2))
            h = torch.cat([token, h], dim=1)
            lengths = lengths + 1
            width = width + 1
        pad = padding_mask(lengths, width)
        attend = (~pad).view(pad.size(0), 1, 1, width)
        if self.causal:
            steps = torch.arange(width, device=x.device)
            attend = attend & (steps.view(1, 1, 1, -1) <= steps.view(1, 1, -1, 1))
        for block in self.blocks:
            h = block(h, attend)
        h = self.final_norm(h)
        if self.pool == "cls":
            return h[:, 0]
        if self.pool == "last":
            return gather_last(h, lengths)
        h = torch.where(pad.unsqueeze(-1), torch.zeros_like(h), h)
        return h.sum(1) / lengths.clamp(min=1).unsqueeze(1).to(h.dtype)
