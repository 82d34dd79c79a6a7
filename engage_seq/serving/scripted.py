"""The exported module: the model plus everything that turns raw events into its input.

Two entry points, both scripted into the artifact (DESIGN §7):

* ``forward(event_ids, channel_ids, attribute_ids, numeric, time_features, lengths,
  aggregates)``, for
  callers that build tensors themselves (and for batch scoring, which builds them in Polars);
* ``predict_events(event_types, timestamps, channels, attributes, numeric, cutoffs)``, raw
  events per user: vocabulary lookup, numeric scaling, time features, full-history
  aggregates (`aggregates_scripted`), truncation and padding
  happen inside, by the rules the training data was built with (`engage_seq.data.sequences`,
  `engage_seq.data.encoding`), so a caller never re-implements preprocessing.

Imports only torch: the artifact must load where engage_seq is not installed.
"""

import math

import torch
from torch import nn

from engage_seq.models.engagement import ProbabilityModel
from engage_seq.serving.aggregates_scripted import history_aggregates, standardise_aggregates
from engage_seq.serving.padding_scripted import Inputs, UserRow, pad_rows

# The time features predict_events computes, in this order; an artifact whose model was
# trained on another list cannot be served by this code and is refused at export.
SERVED_TIME_FEATURES = (
    "log_gap_h",
    "log_age_h",
    "log_type_gap_h",
    "hour_sin",
    "hour_cos",
    "dow_sin",
    "dow_cos",
)
# Constants are written inline in scripted code (TorchScript cannot read Python globals):
# unknown id 1 (`engage_seq.data.encoding.UNKNOWN_ID`), numeric clip ±5 (`encode_samples`).


class ServingModule(nn.Module):
    """Model + vocabularies + numeric scaling + max_len, as one scriptable module."""

    # evaluated (no `from __future__ import annotations` here): TorchScript reads class-level
    # annotations as objects
    attribute_vocabs: list[dict[str, int]]
    aggregate_targets: list[str]
    aggregate_windows_days: list[int]

    def __init__(
        self,
        model: ProbabilityModel,
        vocabulary: dict[str, list[str]],
        categorical_attributes: list[str],
        numeric_scaling: list[tuple[float, float]],
        max_len: int,
        time_features: list[str],
        missing_token: str = "none",
        aggregate_targets: list[str] | None = None,
        aggregate_scaling: list[tuple[float, float]] | None = None,
        aggregate_windows_days: list[int] | None = None,
    ) -> None:
        super().__init__()
        if tuple(time_features) != SERVED_TIME_FEATURES:
            raise ValueError(
                f"the model was trained on time features {time_features}; this serving code "
                f"computes {list(SERVED_TIME_FEATURES)}"
            )
        self.model = model
        self.event_vocab = {token: i + 2 for i, token in enumerate(vocabulary["event_type"])}
        self.channel_vocab = {token: i + 2 for i, token in enumerate(vocabulary["channel"])}
        self.attribute_vocabs = [
            {token: i + 2 for i, token in enumerate(vocabulary[name])}
            for name in categorical_attributes
        ]
        self.n_attributes = len(categorical_attributes)
        self.n_numeric = len(numeric_scaling)
        self.n_time_features = len(SERVED_TIME_FEATURES)
        self.max_len = max_len
        # ingest stores a missing channel/category as this token (`engage_seq.data.schema`), so a
        # None here is looked up as that token, exactly as a null in the training table
        self.missing_token = missing_token
        self.register_buffer(
            "numeric_mean", torch.tensor([m for m, _ in numeric_scaling], dtype=torch.float64)
        )
        self.register_buffer(
            "numeric_std", torch.tensor([s for _, s in numeric_scaling], dtype=torch.float64)
        )
        # full-history aggregates (`engage_seq.data.aggregates`); none when the scaling is empty
        scaling = aggregate_scaling or []
        self.n_aggregates = len(scaling)
        self.aggregate_targets = list(aggregate_targets or [])
        self.aggregate_windows_days = list(aggregate_windows_days or [])
        self.register_buffer(
            "aggregate_mean", torch.tensor([m for m, _ in scaling], dtype=torch.float64)
        )
        self.register_buffer(
            "aggregate_std", torch.tensor([s for _, s in scaling], dtype=torch.float64)
        )

    def forward(
        self,
        event_ids: torch.Tensor,  # (B, T) int64, 0 = pad, 1 = unknown
        channel_ids: torch.Tensor,  # (B, T) int64
        attribute_ids: torch.Tensor,  # (B, T, C) int64
        numeric: torch.Tensor,  # (B, T, F) float32, scaled
        time_features: torch.Tensor,  # (B, T, K) float32
        lengths: torch.Tensor,  # (B,) int64, 1..max_len
        aggregates: torch.Tensor,  # (B, A) float32, standardised; A = 0 without aggregates
    ) -> torch.Tensor:  # (B, n_outputs) probabilities, columns as output_names()
        return self.model(
            event_ids, channel_ids, attribute_ids, numeric, time_features, lengths, aggregates
        )

    @torch.jit.export
    def output_names(self) -> list[str]:
        return self.model.output_names()

    @torch.jit.export
    def predict_events(
        self,
        event_types: list[list[str]],  # per user, per event
        timestamps: list[torch.Tensor],  # per user (n,) int64 epoch seconds
        channels: list[list[str | None]],  # per user, per event; None = missing
        attributes: list[list[list[str | None]]],  # per user, attribute, event
        numeric: list[torch.Tensor],  # per user (n, F) float64, NaN = missing
        cutoffs: torch.Tensor,  # (B,) int64 epoch seconds: events at or after are ignored
    ) -> torch.Tensor:  # (B, n_outputs) probabilities
        # Every user needs at least one event strictly before its cutoff (a ValueError naming
        # the user otherwise): with no history there is nothing to score, and a made-up score
        # would look like a real one. (No docstring: TorchScript then fails to compile this.)
        with torch.no_grad():
            inputs = self.preprocess_events(
                event_types, timestamps, channels, attributes, numeric, cutoffs
            )
            return self.forward(
                inputs[0], inputs[1], inputs[2], inputs[3], inputs[4], inputs[5], inputs[6]
            )

    @torch.jit.export
    def preprocess_events(
        self,
        event_types: list[list[str]],
        timestamps: list[torch.Tensor],
        channels: list[list[str | None]],
        attributes: list[list[list[str | None]]],
        numeric: list[torch.Tensor],
        cutoffs: torch.Tensor,
    ) -> Inputs:
        """Raw events -> the seven ``forward`` tensors (what predict_events feeds the model)."""
        n_users = len(event_types)
        if (
            len(timestamps) != n_users
            or len(channels) != n_users
            or len(attributes) != n_users
            or len(numeric) != n_users
            or cutoffs.dim() != 1
            or cutoffs.size(0) != n_users
        ):
            raise ValueError(
                "predict_events: event_types, timestamps, channels, attributes, numeric and "
                "cutoffs must all have one entry per user"
            )
        rows: list[UserRow] = []
        width = 1
        for user in range(n_users):
            row = self._encode_user(
                user,
                event_types[user],
                timestamps[user],
                channels[user],
                attributes[user],
                numeric[user],
                int(cutoffs[user]),
            )
            width = max(width, int(row[0].size(0)))
            rows.append(row)
        return pad_rows(
            rows,
            width,
            self.n_aggregates,
            self.n_attributes,
            self.n_numeric,
            self.n_time_features,
        )

    def _encode_user(
        self,
        user: int,
        types: list[str],
        ts: torch.Tensor,
        channels: list[str | None],
        attributes: list[list[str | None]],
        numeric: torch.Tensor,
        cutoff: int,
    ) -> UserRow:
        """One user's raw events -> (event ids, channel ids, attribute ids, numeric, time
        features) of the last ``max_len`` events before ``cutoff``, oldest first, and the
        aggregates of all events before it (A,)."""
        self._check_user(user, len(types), ts, len(channels), attributes, numeric)
        index, history = self._history(user, ts.to(torch.long), cutoff)
        n_history = int(index.size(0))
        start = max(0, n_history - self.max_len)
        positions: list[int] = index.tolist()
        stamps: list[int] = history.tolist()
        type_gap_seconds, event_id_list, channel_id_list = self._window_ids(
            types, channels, positions, stamps, start
        )
        times = self._time_features(history, start, cutoff, type_gap_seconds)
        kept: list[int] = positions[start:]
        event_ids = torch.tensor(event_id_list, dtype=torch.long)
        channel_ids = torch.tensor(channel_id_list, dtype=torch.long)
        attribute_ids = torch.zeros([len(kept), self.n_attributes], dtype=torch.long)
        for a, vocab in enumerate(self.attribute_vocabs):
            values = attributes[a]
            attribute_ids[:, a] = torch.tensor(
                [_lookup(vocab, values[p], self.missing_token) for p in kept]
            )
        aggregates = self._aggregates(types, positions, history, numeric, index, cutoff)
        if self.n_numeric == 0:
            scaled = torch.zeros([len(kept), 0])
        else:
            scaled = self._scaled(numeric, index[start:])
        return event_ids, channel_ids, attribute_ids, scaled, times, aggregates

    def _aggregates(
        self,
        types: list[str],
        positions: list[int],
        history: torch.Tensor,
        numeric: torch.Tensor,
        index: torch.Tensor,
        cutoff: int,
    ) -> torch.Tensor:
        """The standardised full-history aggregates (A,) float32; (0,) when the model has none."""
        if self.n_aggregates == 0:
            return torch.zeros([0])
        is_target: list[torch.Tensor] = []
        for target in self.aggregate_targets:
            is_target.append(torch.tensor([types[p] == target for p in positions]))
        raw = history_aggregates(
            history,
            is_target,
            numeric.to(torch.float64).index_select(0, index),
            cutoff,
            self.aggregate_windows_days,
        )
        return standardise_aggregates(raw, self.aggregate_mean, self.aggregate_std)

    def _check_user(
        self,
        user: int,
        n: int,
        ts: torch.Tensor,
        n_channels: int,
        attributes: list[list[str | None]],
        numeric: torch.Tensor,
    ) -> None:
        """Every list and tensor of one user must have one entry per event (``n`` event
        types)."""
        if ts.dim() != 1 or ts.size(0) != n or n_channels != n:
            raise ValueError(
                f"predict_events: user {user} has {n} event types but timestamps of shape "
                f"{ts.shape} and {n_channels} channels"
            )
        if len(attributes) != self.n_attributes:
            raise ValueError(
                f"predict_events: user {user} has {len(attributes)} categorical attribute lists; "
                f"the model expects {self.n_attributes}"
            )
        for values in attributes:
            if len(values) != n:
                raise ValueError(f"predict_events: user {user}: attribute list length != {n}")
        if numeric.dim() != 2 or numeric.size(0) != n or numeric.size(1) != self.n_numeric:
            raise ValueError(
                f"predict_events: user {user}: numeric must be ({n}, {self.n_numeric}), got "
                f"{numeric.shape}"
            )

    def _history(
        self, user: int, ts: torch.Tensor, cutoff: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(input positions of the events before ``cutoff`` in time order, ties in input
        order: (H,); their timestamps: (H,)). Raises when there is none."""
        n = int(ts.size(0))
        if n > 0 and int(ts[-1]) < cutoff and bool((ts[1:] >= ts[:-1]).all()):
            before = torch.arange(n)  # the common case: sorted, all before the cutoff
            sorted_input = True
        else:
            before = torch.nonzero(ts < cutoff).flatten()
            sorted_input = False
        if before.numel() == 0:
            hint = ""
            if n > 0 and int(ts.max()) > 100_000_000_000:
                hint = " (timestamps must be epoch seconds; these look like milliseconds)"
            raise ValueError(
                f"predict_events: user {user} has no event before its cutoff; the model scores "
                f"users with at least one{hint}"
            )
        # time order, ties in input order (as the training data's row order)
        if sorted_input:
            index = before
            history = ts
        else:
            order = torch.sort(ts.index_select(0, before), stable=True)[1]
            index = before.index_select(0, order)  # (H,) input positions, oldest first
            history = ts.index_select(0, index)
        return index, history

    def _window_ids(
        self,
        types: list[str],
        channels: list[str | None],
        positions: list[int],
        stamps: list[int],
        start: int,
    ) -> tuple[list[float], list[int], list[int]]:
        """(seconds since the previous event of the same type, event-type ids, channel ids)
        of the window ``start:`` of the history."""
        # one pass over the history (interpreted loops are the raw entry's main cost): the
        # seconds since the previous event of the same type (-1: none; looked up over the whole
        # history, not just the window), and the window's event-type and channel ids
        last_seen: dict[str, int] = {}
        type_gap_seconds: list[float] = []
        event_id_list: list[int] = []
        channel_id_list: list[int] = []
        for i in range(len(positions)):
            position = positions[i]
            kind = types[position]
            if i >= start:
                previous = last_seen.get(kind)
                type_gap_seconds.append(-1.0 if previous is None else float(stamps[i] - previous))
                event_id_list.append(self.event_vocab.get(kind, 1))
                channel = channels[position]
                channel_id_list.append(_lookup(self.channel_vocab, channel, self.missing_token))
            last_seen[kind] = stamps[i]
        return type_gap_seconds, event_id_list, channel_id_list

    def _time_features(
        self, history: torch.Tensor, start: int, cutoff: int, type_gap_seconds: list[float]
    ) -> torch.Tensor:
        """The window's time features: (W, K) float32, in the order of TIME_FEATURES."""
        window = history[start:]
        gap = torch.zeros(window.shape, dtype=torch.float64)
        if int(history.size(0)) > 1:
            gaps = (history[1:] - history[:-1]).to(torch.float64) / 3600.0
            gap = torch.cat([torch.zeros([1], dtype=torch.float64), gaps])[start:]
        type_gap = torch.tensor(type_gap_seconds, dtype=torch.float64)
        type_gap = torch.where(
            type_gap < 0, torch.full_like(type_gap, -1.0), (type_gap / 3600.0).log1p()
        )
        age = ((cutoff - window).to(torch.float64) / 3600.0).log1p()
        hour = torch.remainder(window, 86400).to(torch.float64) / 3600.0
        dow = torch.remainder(torch.div(window, 86400, rounding_mode="floor") + 3, 7).to(
            torch.float64
        )
        return torch.stack(
            [
                gap.log1p(),
                age,
                type_gap,
                (hour * (2.0 * math.pi) / 24).sin(),
                (hour * (2.0 * math.pi) / 24).cos(),
                (dow * (2.0 * math.pi) / 7).sin(),
                (dow * (2.0 * math.pi) / 7).cos(),
            ],
            dim=1,
        ).to(torch.float32)

    def _scaled(self, numeric: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """The kept events' numeric values (rows ``index``), scaled as in training: (W, F)."""
        raw = numeric.to(torch.float64).index_select(0, index)
        # ingest reads a non-finite value (inf, -inf, NaN) as missing, and missing scales to 0
        raw = torch.where(torch.isfinite(raw), raw, torch.full_like(raw, math.nan))
        signed = raw.sign() * raw.abs().log1p()
        scaled = ((signed - self.numeric_mean) / self.numeric_std).clamp(-5.0, 5.0)
        return torch.nan_to_num(scaled, nan=0.0).to(torch.float32)


def _lookup(vocab: dict[str, int], token: str | None, missing_token: str) -> int:
    """Known token -> its id, unseen -> the unknown id 1; None is looked up as the token
    ingest gives missing values, as in training."""
    if token is None:
        return vocab.get(missing_token, 1)
    return vocab.get(token, 1)
