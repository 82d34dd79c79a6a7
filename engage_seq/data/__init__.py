"""Raw events to samples: the data layer (DESIGN §4, layer 2).

Owns the event schema and column mapping (`schema`), reading event files (`listing`,
`ingest`), validation with every dropped row counted (`validation`), opt-out lists
(`id_lists`), tasks and their labels (`tasks`), cutoff planning (`sampling`), per-user
sequences and samples (`sequences`), what is fitted on the training period (`vocabulary`),
eligibility and per-split figures (`splits`), user-hash sharding (`shards`), the in-memory
and sharded builders (`build`), the sample cache (`cache`) and encoding
samples as arrays (`encoding`). It may import only `engage_seq.common`, Polars and numpy:
never torch, Lightning or Hydra, so it runs in Polars-only jobs. The public, light names
are re-exported here, so configs name them by short, stable paths
(``_target_: engage_seq.data.HorizonTask``); submodules import each other directly, never
through this package.
"""

from __future__ import annotations

from engage_seq.common.moved import package_getattr
from engage_seq.data.ingest import FileEventSource, IngestConfig
from engage_seq.data.sampling import SamplingConfig
from engage_seq.data.schema import ColumnMapping, EventSchemaError
from engage_seq.data.sequences import build_samples
from engage_seq.data.tasks import HorizonTask, MultiTask, NextEventTask, Task

__all__ = [
    "ColumnMapping",
    "EventSchemaError",
    "FileEventSource",
    "HorizonTask",
    "IngestConfig",
    "MultiTask",
    "NextEventTask",
    "SamplingConfig",
    "Task",
    "build_samples",
]

__getattr__ = package_getattr(__name__)  # 0.1 class paths: engage_seq.common.moved
