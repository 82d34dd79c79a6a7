"""The artifact contract (`engage_seq.serving.contract.ArtifactMetadata`) against its writer.

Training writes its part of ``metadata.json`` (`engage_seq.training.metadata.data_metadata`,
stored in the checkpoint), export completes it (`engage_seq.serving.export.artifact_metadata`)
and every reader goes through `ArtifactMetadata`. These checks need no training: a
checkpoint's metadata is built from a small vocabulary and cutoff plan, exactly as
`engage_seq.experiments.run` builds it.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from engage_seq.common.times import parse_instant
from engage_seq.data.encoding import Vocabulary
from engage_seq.data.sampling import CutoffPlan
from engage_seq.data.tasks import HorizonTask, MultiTask, NextEventTask
from engage_seq.serving.checkpoint import ExportError
from engage_seq.serving.contract import REQUIRED_METADATA, ArtifactMetadata, ArtifactMetadataError
from engage_seq.serving.export import artifact_metadata
from engage_seq.training.metadata import data_metadata, output_names

DAY = 86400
TASKS = {
    "horizon": HorizonTask(targets=("purchase", "add_to_cart"), horizon="7d", name="p7"),
    "next_event": NextEventTask(max_gap="3d"),
    "multitask": MultiTask(),
}


def _checkpoint_metadata(task: Any) -> dict[str, Any]:
    """What a training run stores under ``checkpoint["engage_seq"]`` (see
    `EngagementLitModule.on_save_checkpoint` and `engage_seq.experiments.run`)."""
    vocabulary = Vocabulary.from_lists(
        {"event_type": ["purchase", "view"], "channel": ["app"], "cat_device": ["ios"]},
        ["cat_device"],
    )
    start = parse_instant("2026-01-05")
    plan = CutoffPlan(
        train=(start,), val=(start + 14 * DAY,), test=(start + 28 * DAY,), horizon_seconds=7 * DAY
    )
    prepared = SimpleNamespace(
        numeric_scaling={"num_order_value": {"mean": 1.5, "std": 0.5}},
        plan=plan,
        cache_dir=Path("cache") / "0123abcd",
    )
    mapping = {"user_id": "customer", "timestamp": "ts", "categorical": ["device"]}
    return {
        "model_config": {"n_event_ids": 4, "n_channel_ids": 3, "encoder": "gru"},
        "target_names": list(task.targets),
        **data_metadata(task, prepared, vocabulary, 16, mapping),
        "output_names": output_names(task, vocabulary),
    }


@pytest.mark.parametrize("kind", sorted(TASKS))
def test_every_key_training_writes_is_a_field_of_the_contract(kind: str) -> None:
    written = _checkpoint_metadata(TASKS[kind])
    meta = ArtifactMetadata.from_dict({"format_version": 2, **written})
    assert "target_names" in meta.extra  # the checkpoint's own key: export drops it
    unknown = sorted(set(meta.extra) - {"target_names"})
    assert not unknown, f"data_metadata writes keys ArtifactMetadata does not name: {unknown}"
    assert not (meta.absent & set(written))


@pytest.mark.parametrize("kind", sorted(TASKS))
def test_exported_metadata_round_trips_exactly(kind: str, tmp_path: Path) -> None:
    (tmp_path / "metrics.json").write_text(json.dumps({"test/auroc": 0.75}))
    config = {"data": {"sampling": {"min_history_events": 2}}}
    meta = artifact_metadata(_checkpoint_metadata(TASKS[kind]), tmp_path, config)
    assert meta.extra == {}  # every key export writes is a field: nothing lands in extra
    text = json.dumps(meta.to_dict(), indent=2, sort_keys=True)  # as export writes it
    again = ArtifactMetadata.from_dict(json.loads(text))
    assert again == meta and again.to_dict() == meta.to_dict()
    assert json.dumps(again.to_dict(), indent=2, sort_keys=True) == text  # byte-identical
    assert meta.metrics == {"test/auroc": 0.75} and meta.recorded_config("data", "sampling")


@pytest.mark.parametrize("key", REQUIRED_METADATA)
def test_an_old_artifact_without_a_required_key_asks_for_a_re_export(key: str) -> None:
    written = {"format_version": 2, **_checkpoint_metadata(TASKS["horizon"])}
    del written[key]
    with pytest.raises(ArtifactMetadataError, match=rf"lacks \['{key}'\].*re-export"):
        ArtifactMetadata.from_dict(written, "old.pt")


def test_a_checkpoint_that_predates_the_contract_is_refused_at_export(tmp_path: Path) -> None:
    meta = _checkpoint_metadata(TASKS["horizon"])
    del meta["max_len"]
    with pytest.raises(ExportError, match=r"lacks \['max_len'\].*retrain"):
        artifact_metadata(meta, tmp_path, None)
