"""The artifact contract: what ``metadata.json`` inside an exported artifact holds, typed.

engage-export writes it (the training run's data metadata, `engage_seq.training.metadata`, plus the
keys export adds); engage-score, engage-drift and engage-backtest read it. `ArtifactMetadata`
names every key once, so a reader uses attributes (``meta.max_len``) rather than string keys,
and a malformed file is refused in one place (`ArtifactMetadata.from_dict`) with the key it
lacks, instead of a ``KeyError`` deep in scoring.

The JSON itself does not change: `ArtifactMetadata.to_dict` gives back exactly the keys and
values it was built from (keys an older artifact lacked stay absent, keys this version does
not know are kept as they were), so ``metadata.json`` is byte-identical for the same run and
`ARTIFACT_FORMAT_VERSION` only changes with the entry points. Standard library only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from engage_seq.common.errors import EngageSeqError

# 2: predict_events / preprocess_events (raw events in); 3: forward's 7th input, aggregates
ARTIFACT_FORMAT_VERSION = 3
# what a scorer cannot work without; every other key is optional (older or hand-made artifacts)
REQUIRED_METADATA = (
    "format_version",
    "output_names",
    "vocabulary",
    "categorical_attributes",
    "numeric_attributes",
    "numeric_scaling",
    "max_len",
    "task",
)


class ArtifactMetadataError(EngageSeqError, ValueError):
    """The artifact's metadata.json lacks a key or holds a value of the wrong type."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _is_mapping(value: Any) -> bool:
    return isinstance(value, dict)


def _is_vocabulary(value: Any) -> bool:
    return isinstance(value, dict) and all(_is_strings(v) for v in value.values())


def _is_scaling(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(v, dict) for v in value.values())


def _is_text(value: Any) -> bool:
    return isinstance(value, str)


def _optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: value is None or check(value)


# a field's annotation -> (check, what the value must be)
_TYPE_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "int": (_is_int, "an integer"),
    "str": (_is_text, "a string"),
    "list[str]": (_is_strings, "a list of strings"),
    "dict[str, list[str]]": (_is_vocabulary, "a mapping of name -> list of strings"),
    "dict[str, dict[str, float]]": (_is_scaling, "a mapping of column -> {mean, std}"),
    "dict[str, Any]": (_is_mapping, "a mapping"),
    "dict[str, str]": (_is_mapping, "a mapping"),
}


@dataclass(frozen=True)
class ArtifactMetadata:
    """Every key of an artifact's ``metadata.json``. Optional keys are None when the file
    lacks them (listed in ``absent``, so `to_dict` leaves them out again); keys this version
    does not know (``program`` of a ``.pt2``, anything newer) ride along in ``extra``."""

    # what the scorer needs (REQUIRED_METADATA)
    format_version: int
    output_names: list[str]  # score columns, in the module's output order
    vocabulary: dict[str, list[str]]  # column -> tokens; id = index + 2 (0 pad, 1 unknown)
    categorical_attributes: list[str]  # the order of attribute_ids' last axis
    numeric_attributes: list[str]  # the order of numeric's last axis
    numeric_scaling: dict[str, dict[str, float]]  # column -> {"mean", "std"} after log1p
    max_len: int  # events per user kept (the most recent)
    task: dict[str, Any]  # type, name, targets, horizon(_seconds), next_event_* (training)
    # what export records about itself
    created_at: str | None = None
    engage_seq_version: str | None = None
    torch_version: str | None = None
    inputs: dict[str, Any] | None = None  # both entry points' arguments, in words
    metrics: dict[str, Any] | None = None  # the run's metrics.json
    config: dict[str, Any] | None = None  # the run's resolved configuration
    model_config: dict[str, Any] | None = None  # EngagementModel's keyword arguments
    # what the training run recorded about its data (training.metadata.data_metadata)
    time_features: list[str] | None = None
    feature_definitions: dict[str, str] | None = None
    missing_category_token: str | None = None  # what a null channel/category was read as
    column_mapping: dict[str, Any] | None = None  # how the raw table's columns were named
    padding: str | None = None
    truncation: str | None = None
    cutoffs: dict[str, list[str]] | None = None  # split -> ISO cutoffs
    data_fingerprint: str | None = None
    # post-hoc calibration applied inside the module (engage_seq.models.calibration)
    calibration: dict[str, Any] | None = None
    # the hybrid model's full-history aggregates (engage_seq.data.aggregates); [] or absent: none
    aggregate_names: list[str] | None = None  # the order of the aggregates input's last axis
    aggregate_scaling: dict[str, dict[str, float]] | None = None  # name -> {"mean", "std"}
    aggregate_definitions: dict[str, str] | None = None  # how each aggregate is computed
    # bookkeeping for an exact round trip
    absent: frozenset[str] = field(default=frozenset(), compare=False)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "the artifact") -> ArtifactMetadata:
        """Validate and wrap a parsed ``metadata.json``; ``where`` names the file in errors.
        The values are kept as they are (no copies, no conversions)."""
        if not isinstance(data, Mapping):
            raise ArtifactMetadataError(f"{where}: metadata.json is not a JSON object; {_REDO}")
        missing = [key for key in REQUIRED_METADATA if key not in data]
        if missing:
            raise ArtifactMetadataError(f"{where}: metadata lacks {missing}; {_REDO}")
        for key, (check, expected) in _CHECKS.items():
            if key in data and not check(data[key]):
                raise ArtifactMetadataError(
                    f"{where}: metadata key {key!r} should be {expected}, got "
                    f"{type(data[key]).__name__}; {_REDO}"
                )
        known = {k: v for k, v in data.items() if k in _CHECKS}  # the rest: extra
        return cls(
            **known,
            absent=frozenset(k for k in _CHECKS if k not in data),
            extra={k: v for k, v in data.items() if k not in _CHECKS},
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON object, exactly as it was read or will be written (same keys, values)."""
        keys = [key for key in _CHECKS if key not in self.absent]
        return {**{key: getattr(self, key) for key in keys}, **self.extra}

    @property
    def targets(self) -> list[str]:
        """The horizon targets (ranked by engage-score); next_event/<type> columns are not."""
        return [n for n in self.output_names if not n.startswith("next_event/")]

    @property
    def category_token(self) -> str:
        """What a missing channel or category is read as (older artifacts: ``none``)."""
        return self.missing_category_token or "none"

    def recorded_config(self, *path: str) -> dict[str, Any]:
        """A section of the run's configuration (``"data", "ingest"``), {} where absent."""
        section: Any = self.config or {}
        for key in path:
            section = (section.get(key) if isinstance(section, dict) else None) or {}
        return section


def _checks() -> dict[str, tuple[Callable[[Any], bool], str]]:
    """Every metadata key (a field of ArtifactMetadata) -> its check, from the field's
    annotation; an optional field may also be null."""
    checks = {}
    for f in fields(ArtifactMetadata):
        if f.name in ("absent", "extra"):
            continue
        annotation = str(f.type)
        check, what = _TYPE_CHECKS[annotation.removesuffix(" | None")]
        optional = annotation.endswith(" | None")
        checks[f.name] = (_optional(check), f"{what} or null") if optional else (check, what)
    return checks


_CHECKS = _checks()  # in field order: the keys scoring needs first
_REDO = "re-export the artifact with this version of engage-export"
