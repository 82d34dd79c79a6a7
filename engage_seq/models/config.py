"""`EngagementModelConfig`: every `EngagementModel` constructor argument, in one checked value.

The fields mirror `EngagementModel.__init__` one to one (same names, order and defaults): Hydra
configs (``conf/model/*.yaml``) and checkpoints (``model_config``) pass those keyword arguments,
and `engage_seq.serving.checkpoint` checks them against that signature. `as_dict` gives the
``model_config`` that checkpoints and artifacts store. Plain Python, no torch: the values can be
checked before any layer is built.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from engage_seq.models.btyd_spec import check_btyd_spec

SEQUENCE_ENCODERS = ("lstm", "gru", "transformer")  # the encoders that read the events
ENCODERS = (*SEQUENCE_ENCODERS, "none")  # none: the head reads the aggregates only


@dataclass(frozen=True)
class EngagementModelConfig:
    """Sizes of the inputs and outputs, then the architecture (defaults: the small LSTM)."""

    n_event_ids: int  # event-type vocabulary + 2 (0 = pad, 1 = unknown)
    n_channel_ids: int  # channel vocabulary + 2 (0 = pad, 1 = unknown)
    n_time_features: int  # K: log-hour time features per event
    n_outputs: int  # horizon heads: one sigmoid logit per target (0 = none)
    max_len: int  # longest sequence, in events (sizes the Transformer positions)
    attribute_sizes: tuple[int, ...] = ()  # vocabulary + 2 of each categorical attribute
    n_numeric: int = 0  # F: scaled numeric features per event
    encoder: str = "lstm"  # one of ENCODERS
    embed_dim: int = 32  # width of the summed event embedding
    hidden: int = 64  # encoder output width (the Transformer's model width)
    num_layers: int = 1  # stacked recurrent / Transformer layers
    num_heads: int = 4  # attention heads (Transformer only)
    dropout: float = 0.1  # probability, in the embedding, encoder and head
    pool: str = "mean"  # Transformer sequence summary: mean | last | cls
    causal: bool = False  # Transformer: each event attends only to older ones
    positions: str = "learned"  # Transformer: learned recency-index embedding, or time
    time_encoding: str = "fourier"  # learned Fourier features of the log-hours, or linear
    n_next_classes: int = 0  # next-event softmax classes (0 = no next-event head)
    time_to_next: bool = False  # log-normal (mu, log_sigma) head of the hours to the next event
    n_aggregates: int = 0  # A: full-history aggregates joined into the head (0 = none)
    aggregate_dropout: float = 0.5  # training: P(a sample's aggregates are hidden from the head)
    btyd: dict[str, Any] | None = None  # BG/NBD features from the aggregates (models.btyd_spec)

    def __post_init__(self) -> None:
        # a list from Hydra or a checkpoint becomes a tuple, so the config stays immutable
        object.__setattr__(self, "attribute_sizes", tuple(self.attribute_sizes))
        if self.encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {ENCODERS}, got {self.encoder!r}")
        heads = self.n_outputs + self.n_next_classes
        if self.n_outputs < 0 or self.n_next_classes < 0 or heads == 0:
            raise ValueError(
                f"the model needs at least one head: n_outputs={self.n_outputs}, "
                f"n_next_classes={self.n_next_classes}"
            )
        aggregates = self.n_aggregates
        if not isinstance(aggregates, int) or isinstance(aggregates, bool) or aggregates < 0:
            raise ValueError(f"n_aggregates must be an integer >= 0, got {aggregates!r}")
        if self.encoder == "none" and self.n_aggregates == 0:
            raise ValueError(
                "encoder none reads no events: the head needs the aggregates "
                "(model.aggregates=true), or pick an encoder (lstm, gru, transformer)"
            )
        if not 0.0 <= self.aggregate_dropout < 1.0:
            raise ValueError(f"aggregate_dropout must be in [0, 1), got {self.aggregate_dropout}")
        object.__setattr__(
            self, "btyd", check_btyd_spec(self.btyd, self.n_aggregates, self.n_outputs)
        )
        if self.time_to_next and self.n_next_classes == 0:
            raise ValueError("time_to_next needs the next-event head (n_next_classes > 0)")

    @property
    def n_time_outputs(self) -> int:
        """Columns of the time-to-next head: (mu, log_sigma), or none."""
        return 2 if self.time_to_next else 0

    @property
    def n_btyd_features(self) -> int:
        """BG/NBD features appended to the aggregates: two per target, or none."""
        return 2 * len(self.btyd["targets"]) if self.btyd else 0

    @property
    def n_head_inputs(self) -> int:
        """Width the head reads: the encoder state, then the aggregates' projection."""
        sequence = 0 if self.encoder == "none" else self.hidden
        return sequence + (self.hidden if self.n_aggregates else 0)

    @property
    def n_raw_outputs(self) -> int:
        """Width of the model's one output tensor: all heads side by side."""
        return self.n_outputs + self.n_next_classes + self.n_time_outputs

    def as_dict(self) -> dict[str, Any]:
        """The keyword arguments, in field order (``attribute_sizes`` as a list, for JSON):
        the ``model_config`` that checkpoints and artifacts store."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {**values, "attribute_sizes": list(self.attribute_sizes)}
