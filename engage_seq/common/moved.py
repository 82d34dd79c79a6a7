"""Where 0.1's classes went: old ``_target_`` paths and imports keep working, with a warning.

After 0.1.0 the flat modules moved into subpackages (docs/architecture.md). Run folders written by
0.1 hold ``config_resolved.yaml`` files that name classes by their old paths
(``engage_seq.model.EngagementModel``), and users' own configs and notebooks do too. A finder on
``sys.meta_path`` answers for the old *modules* (``engage_seq.model``, ``engage_seq.train``, …)
with a stand-in whose attributes are exactly the classes listed in `MOVED`: reading one imports
the class from its new home and issues a `DeprecationWarning` naming that home. Nothing else is
reachable through a stand-in, so the config allow-list (`engage_seq.common.safe_config`) sees
the same classes it always did and an old path can never name anything new. Old module names
that are packages now (``engage_seq.data``, ``engage_seq.serving``, ``engage_seq.cli``,
``engage_seq.metrics``, ``engage_seq.synthetic``, ``engage_seq.baselines``) resolve their old
class names through `legacy_attribute`, which those packages' ``__getattr__`` calls.
Standard library only: it is installed when ``engage_seq`` is imported.

Generated once from the 0.1.0 tree (every public class whose 0.1 path no longer names it
directly; a package that re-exports the class keeps that path current) and kept true by
``tests/unit/common/test_moved.py``, which resolves every entry; to be removed two minor
releases after the move, as the warning says.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings
from collections.abc import Callable
from typing import Any

PACKAGE = "engage_seq"

# 0.1 path -> where the class lives now (generated from the 0.1 tree; see the module docstring)
MOVED: dict[str, str] = {
    "engage_seq.backtest.BacktestError": "engage_seq.monitoring.errors.BacktestError",
    "engage_seq.backtest.BacktestResult": "engage_seq.monitoring.backtest_result.BacktestResult",
    "engage_seq.build.BuildResult": "engage_seq.data.build.BuildResult",
    "engage_seq.build.EventSource": "engage_seq.data.build.EventSource",
    "engage_seq.cli.KeywordArgumentParser": "engage_seq.cli.args.KeywordArgumentParser",
    "engage_seq.data.EventDataModule": "engage_seq.training.batches.EventDataModule",
    "engage_seq.data.LengthBucketBatchSampler": "engage_seq.training.batches.LengthBucketBatchSampler",  # noqa: E501
    "engage_seq.drift.DriftError": "engage_seq.monitoring.errors.DriftError",
    "engage_seq.drift.DriftInput": "engage_seq.monitoring.drift_inputs.DriftInput",
    "engage_seq.drift.DriftReport": "engage_seq.monitoring.drift_verdicts.DriftReport",
    "engage_seq.drift.FeatureDrift": "engage_seq.monitoring.drift_verdicts.FeatureDrift",
    "engage_seq.drift.Window": "engage_seq.monitoring.drift_inputs.Window",
    "engage_seq.encoders.EventEmbedding": "engage_seq.models.encoders.EventEmbedding",
    "engage_seq.encoders.RecurrentEncoder": "engage_seq.models.encoders.RecurrentEncoder",
    "engage_seq.encoders.TimeEncoding": "engage_seq.models.encoders.TimeEncoding",
    "engage_seq.encoders.TransformerBlock": "engage_seq.models.encoders.TransformerBlock",
    "engage_seq.encoders.TransformerEncoder": "engage_seq.models.encoders.TransformerEncoder",
    "engage_seq.encoding.EncodedSamples": "engage_seq.data.encoding.EncodedSamples",
    "engage_seq.encoding.Vocabulary": "engage_seq.data.encoding.Vocabulary",
    "engage_seq.evaluation.EvaluatedSplit": "engage_seq.evaluation.results.EvaluatedSplit",
    "engage_seq.evaluation.EvaluationError": "engage_seq.evaluation.run_folder.EvaluationError",
    "engage_seq.evaluation.ReferenceCache": "engage_seq.evaluation.references.ReferenceCache",
    "engage_seq.evaluation.ReportOptions": "engage_seq.evaluation.options.ReportOptions",
    "engage_seq.evaluation.RunEvaluation": "engage_seq.evaluation.results.RunEvaluation",
    "engage_seq.evaluation.Scorer": "engage_seq.evaluation.results.Scorer",
    "engage_seq.evaluation.SiblingRun": "engage_seq.evaluation.results.SiblingRun",
    "engage_seq.explain.Attributions": "engage_seq.evaluation.attribution.Attributions",
    "engage_seq.export.ExportError": "engage_seq.serving.checkpoint.ExportError",
    "engage_seq.export.ExportResult": "engage_seq.serving.export.ExportResult",
    "engage_seq.ingest.FileEventSource": "engage_seq.data.ingest.FileEventSource",
    "engage_seq.ingest.IngestConfig": "engage_seq.data.ingest.IngestConfig",
    "engage_seq.ingest.ValidatedEvents": "engage_seq.data.validation.ValidatedEvents",
    "engage_seq.jit.ArchiveLimits": "engage_seq.serving.archive.ArchiveLimits",
    "engage_seq.jit.ArtifactIntegrityError": "engage_seq.serving.archive.ArtifactIntegrityError",
    "engage_seq.metrics.HorizonMetrics": "engage_seq.metrics.scores.HorizonMetrics",
    "engage_seq.metrics.NextEventMetrics": "engage_seq.metrics.scores.NextEventMetrics",
    "engage_seq.model.EngagementModel": "engage_seq.models.engagement.EngagementModel",
    "engage_seq.model.ProbabilityModel": "engage_seq.models.engagement.ProbabilityModel",
    "engage_seq.module.EngagementLitModule": "engage_seq.training.lit_module.EngagementLitModule",
    "engage_seq.report.TargetReport": "engage_seq.reporting.horizon.TargetReport",
    "engage_seq.report_figures.Curve": "engage_seq.reporting.figures.Curve",
    "engage_seq.report_section.ReportSection": "engage_seq.reporting.section.ReportSection",
    "engage_seq.safe_config.UnsafeConfigError": "engage_seq.common.safe_config.UnsafeConfigError",
    "engage_seq.safe_config.UnsafeTargetError": "engage_seq.common.safe_config.UnsafeTargetError",
    "engage_seq.sample_cache.CacheEntryDamaged": "engage_seq.data.cache.CacheEntryDamaged",
    "engage_seq.sample_cache.CacheSpaceError": "engage_seq.data.cache.CacheSpaceError",
    "engage_seq.sample_cache.PreparedSamples": "engage_seq.data.cache.PreparedSamples",
    "engage_seq.schema.ColumnMapping": "engage_seq.data.schema.ColumnMapping",
    "engage_seq.schema.EventSchemaError": "engage_seq.data.schema.EventSchemaError",
    "engage_seq.schema.TimestampExprs": "engage_seq.data.timestamps.TimestampExprs",
    "engage_seq.score.ScoringError": "engage_seq.serving.event_table.ScoringError",
    "engage_seq.score_cutoff.FarFutureRows": "engage_seq.serving.cutoff.FarFutureRows",
    "engage_seq.score_outputs.IncompleteOutputsError": "engage_seq.serving.outputs.IncompleteOutputsError",  # noqa: E501
    "engage_seq.sequences.CutoffPlan": "engage_seq.data.sampling.CutoffPlan",
    "engage_seq.sequences.HorizonTask": "engage_seq.data.tasks.HorizonTask",
    "engage_seq.sequences.MultiTask": "engage_seq.data.tasks.MultiTask",
    "engage_seq.sequences.NextEventTask": "engage_seq.data.tasks.NextEventTask",
    "engage_seq.sequences.SamplingConfig": "engage_seq.data.sampling.SamplingConfig",
    "engage_seq.serving.ServingModule": "engage_seq.serving.scripted.ServingModule",
    "engage_seq.signing.SigningError": "engage_seq.serving.signing.SigningError",
    "engage_seq.signing.SigningKey": "engage_seq.serving.signing.SigningKey",
    "engage_seq.sweep_report.PairedComparison": "engage_seq.experiments.sweep_runs.PairedComparison",  # noqa: E501
    "engage_seq.sweep_report.Run": "engage_seq.experiments.sweep_runs.Run",
    "engage_seq.sweep_report.SweepReport": "engage_seq.experiments.sweep_runs.SweepReport",
    "engage_seq.train.ResumeCheckpoint": "engage_seq.training.callbacks.ResumeCheckpoint",
    "engage_seq.train.SweepReportCallback": "engage_seq.experiments.sweep_callback.SweepReportCallback",  # noqa: E501
}


def _old_modules() -> frozenset[str]:
    return frozenset(old.rsplit(".", 1)[0] for old in MOVED)


def legacy_attribute(module: str, name: str) -> Any:
    """``module.name`` by its 0.1 path: the class from its new home, with a warning; otherwise
    the AttributeError Python would raise."""
    new = MOVED.get(f"{module}.{name}")
    if new is None:
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    new_module, _, new_name = new.rpartition(".")
    warnings.warn(
        f"{module}.{name} moved to {new} after engage_seq 0.1; the old path will be removed "
        "(update the config's _target_ or the import)",
        DeprecationWarning,
        stacklevel=3,
    )
    return getattr(importlib.import_module(new_module), new_name)


def package_getattr(package: str) -> Callable[[str], Any]:
    """The ``__getattr__`` of a package whose name was a module in 0.1 (``engage_seq.data``):
    ``__getattr__ = package_getattr(__name__)`` in its ``__init__``."""
    return lambda name: legacy_attribute(package, name)


class _StandIn(types.ModuleType):
    """An old module: its only attributes are the classes that moved out of it."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return legacy_attribute(self.__name__, name)


class _StandInLoader(importlib.abc.Loader):
    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return _StandIn(spec.name)

    def exec_module(self, module: types.ModuleType) -> None:
        """Nothing to run: a stand-in has no code, only `legacy_attribute` lookups."""


class _OldModuleFinder(importlib.abc.MetaPathFinder):
    """Finds only 0.1 module names that no longer exist; everything else is someone else's."""

    def __init__(self, names: frozenset[str]) -> None:
        self.names = names

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname not in self.names:
            return None
        return importlib.machinery.ModuleSpec(fullname, _StandInLoader())


def install() -> None:
    """Put the finder at the *end* of ``sys.meta_path``, once: it is asked only after the
    normal finders found nothing, so an old name that is a real package now
    (``engage_seq.data``) is never shadowed; those packages call `legacy_attribute` from their
    ``__getattr__`` instead."""
    if not any(isinstance(finder, _OldModuleFinder) for finder in sys.meta_path):
        sys.meta_path.append(_OldModuleFinder(_old_modules()))
