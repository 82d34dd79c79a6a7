"""train -> export -> reload without engage_seq, through the real command-line entry points."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import torch
from helpers import REPO, VENV_BIN
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from engage_seq.common.config_dir import CONF_DIR
from engage_seq.experiments.run import train
from engage_seq.serving.export import ExportError, export_artifact, load_artifact

pytestmark = pytest.mark.slow
REPO = REPO
MODELS = ("lstm", "transformer")
TINY = ["data=synthetic_tiny", "trainer=smoke", "batch_size=64"]

# Loads an artifact in a fresh interpreter that is *forbidden* to import engage_seq: the
# artifact must carry everything it needs.
RELOAD = r"""
import importlib.abc, json, sys, warnings

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "engage_seq":
            raise ImportError("engage_seq must not be needed to use an artifact")

sys.meta_path.insert(0, Block())
import torch
warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated")
extra = {"metadata.json": ""}
module = torch.jit.load(sys.argv[1], _extra_files=extra)
golden = torch.load(sys.argv[2], weights_only=True)
names = ["event_ids", "channel_ids", "attribute_ids", "numeric", "time_features", "lengths",
         "aggregates"]
with torch.inference_mode():
    probs = module(*[golden[n] for n in names])
    raw = module.predict_events(
        [["purchase", "page_view"]], [torch.tensor([1000, 5000])], [["web", None]],
        [[]], [torch.zeros(2, 0, dtype=torch.float64)], torch.tensor([9000]),
    )
print(json.dumps({
    "raw_shape": list(raw.shape),
    "max_diff": float((probs - golden["probabilities"]).abs().max()),
    "shape": list(probs.shape),
    "output_names": module.output_names(),
    "metadata": json.loads(extra["metadata.json"]),
    "engage_seq_loaded": sorted(m for m in sys.modules if m.startswith("engage_seq")),
}))
"""


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (
        f"{args} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    )
    return result


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """One real `engage-train -m model=lstm,transformer` multirun on tiny data, with
    ``training.refit=true``, Platt calibration and the hybrid's full-history aggregates:
    everything below (export parity, the artifact, the report) then runs on the refit model,
    the run's final model, through the calibration fitted on the held-out selected model."""
    root = tmp_path_factory.mktemp("sweep")
    env = {
        **__import__("os").environ,
        "ENGAGE_SEQ_CACHE_DIR": str(root / "cache"),
        "CUDA_VISIBLE_DEVICES": "",
        "ENGAGE_SEQ_REPORT": "true",  # run reports on: the raw-id check below reads them too
    }
    _run(
        [
            str(VENV_BIN / "engage-train"),
            "-m",
            "model=lstm,transformer",
            *TINY,
            "training.refit=true",
            "calibration.method=platt",  # issue 21: the artifact applies it, parity covers it
            "model.aggregates=true",  # and the hybrid's aggregates input, through all three
            f"hydra.sweep.dir={root / 'multirun'}",
            "hydra.sweep.subdir=${hydra:runtime.choices.model}",
        ],
        cwd=root,
        env=env,
    )
    return root / "multirun"


@pytest.mark.parametrize("model", MODELS)
def test_run_folder_has_everything(sweep: Path, model: str) -> None:
    run = sweep / model
    for name in (
        "config_resolved.yaml",
        "metrics.json",
        "data_report.json",
        "golden_batch.pt",
        "calibration.json",
        "checkpoints/best.ckpt",
        "checkpoints/refit.ckpt",
        "report.md",
        "report.json",
    ):
        assert (run / name).is_file(), name
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    metrics = json.loads((run / "metrics.json").read_text())
    for split in ("val", "test"):
        for name in ("auroc", "auprc", "logloss", "brier", "positive_rate", "n_samples"):
            assert f"{split}/{name}" in metrics
        assert 0.0 <= metrics[f"{split}/auroc"] <= 1.0
        assert f"{split}_uncalibrated/brier" in metrics
    assert f"encoder: {model}" in (run / "config_resolved.yaml").read_text()
    # refit: a fresh model on train + validation for the selected epoch count
    assert metrics["train/refit"] == 1.0
    assert metrics["train/refit_epochs"] == metrics["train/best_epoch"] + 1
    assert metrics["train/refit_n_samples"] == metrics["train/n_samples"] + metrics["val/n_samples"]
    refit = torch.load(run / "checkpoints/refit.ckpt", map_location="cpu", weights_only=True)
    assert refit["engage_seq"]["training"]["epochs"] == metrics["train/refit_epochs"]
    assert (
        "training"
        not in torch.load(run / "checkpoints/best.ckpt", map_location="cpu", weights_only=True)[
            "engage_seq"
        ]
    )
    _check_platt_calibration(run, metrics)


@pytest.mark.parametrize("model", MODELS)
def test_refit_report_keeps_validation_held_out(sweep: Path, model: str) -> None:
    """The report scores validation with the selected checkpoint and test with the refit,
    exactly as metrics.json records them, and says what every row was trained on."""
    run = sweep / model
    report = json.loads((run / "report.json").read_text())
    recorded = json.loads((run / "metrics.json").read_text())
    own = report["metrics"][model]
    for key in ("val/auroc", "val/brier", "test/auroc", "test/brier"):
        assert own[key] == pytest.approx(recorded[key], abs=1e-4), key
    notes = " ".join(report["notes"])
    assert "Training data of each row" in notes and "Recomputed" not in notes
    assert f"for {int(recorded['train/refit_epochs'])} epochs (training.refit)" in notes
    if model == MODELS[-1]:  # the first run of the sweep, also refitted, is its sibling
        assert report["siblings"] and "(refit on train + validation), run " in notes
    assert "RFM logistic regression: test from a refit on train + validation" in notes


def _check_platt_calibration(run: Path, metrics: dict[str, float]) -> None:
    """The golden reference (what export checks parity against) is the final (refit) model's
    logit through the Platt curve fitted on the held-out selected model's val predictions,
    where its mean prediction is the observed rate (the bias's first-order condition)."""
    from engage_seq.serving.calibration_file import read_calibration
    from engage_seq.serving.checkpoint import load_model

    calibration = read_calibration(run)
    assert calibration is not None and calibration.method == "platt"
    assert calibration.fitted_on == {"split": "val", "n_samples": int(metrics["val/n_samples"])}
    assert metrics["val/mean_prediction"] == pytest.approx(metrics["val/positive_rate"], abs=2e-3)
    assert metrics["val/logloss"] <= metrics["val_uncalibrated/logloss"] + 1e-6
    model, _ = load_model(run / "checkpoints" / "refit.ckpt")  # the final model
    golden = torch.load(run / "golden_batch.pt", weights_only=True)
    from engage_seq.models.engagement import MODEL_INPUTS

    with torch.inference_mode():
        logits = model(*[golden[n] for n in MODEL_INPUTS])[:, :1]
    (output,) = calibration.outputs
    expected = torch.sigmoid(logits * output.scale + output.bias)
    assert torch.allclose(golden["probabilities"], expected, atol=1e-6)
    assert not torch.allclose(golden["probabilities"], torch.sigmoid(logits), atol=1e-3)


@pytest.mark.parametrize("model", MODELS)
def test_export_then_reload_without_engage_seq(sweep: Path, model: str, tmp_path: Path) -> None:
    artifact = tmp_path / f"{model}.pt"
    _run(
        [str(VENV_BIN / "engage-export"), str(sweep / model), "--out", str(artifact)],
        cwd=tmp_path,
        env=None,
    )  # type: ignore[arg-type]
    out = _run(
        [sys.executable, "-c", RELOAD, str(artifact), str(sweep / model / "golden_batch.pt")],
        cwd=tmp_path,
        env=None,
    )  # type: ignore[arg-type]
    report = json.loads(out.stdout)
    assert report["engage_seq_loaded"] == []
    assert report["raw_shape"] == [1, 1]  # the raw entry point works without engage_seq
    assert report["max_diff"] <= 1e-5
    assert report["output_names"] == ["purchase"]
    meta = report["metadata"]
    assert meta["vocabulary"]["event_type"] and meta["max_len"] == 32
    assert meta["padding"] == "right" and meta["truncation"] == "keep_most_recent"
    assert meta["model_config"]["encoder"] == model
    assert "test/auroc" in meta["metrics"]
    assert meta["training"]["refit"] is True  # the artifact is the refit model
    assert meta["training"]["trained_on"] == ["train", "val"]
    assert meta["config"]["model"]["encoder"] == model and meta["format_version"] == 3
    calibration = json.loads((sweep / model / "calibration.json").read_text())
    assert meta["calibration"] == calibration and calibration["method"] == "platt"


def test_no_raw_user_id_in_text_outputs(sweep: Path) -> None:
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=TINY)
    events = instantiate(cfg.data.source).scan().collect()  # exactly what the sweep trained on
    ids = set(events["user_id"].unique().to_list())
    for path in sweep.rglob("*"):
        if path.suffix in {".json", ".yaml", ".log", ".md", ".csv"}:
            text = path.read_text(errors="ignore")
            leaked = [i for i in ids if i in text]
            assert not leaked, f"{path} contains raw user ids {leaked[:3]}"


def test_export_refuses_a_model_that_disagrees(sweep: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "best.ckpt").write_bytes(
        (sweep / "lstm/checkpoints/best.ckpt").read_bytes()
    )
    (run / "calibration.json").write_bytes((sweep / "lstm/calibration.json").read_bytes())
    with pytest.raises(ExportError, match="no parity reference"):
        export_artifact(run, tmp_path / "bad.pt")
    golden = torch.load(sweep / "lstm" / "golden_batch.pt", weights_only=True)
    for key in ("probabilities", "complete_probabilities"):  # as if Lightning saw another model
        golden[key] = golden[key] + 1e-3
    torch.save(golden, run / "golden_batch.pt")
    with pytest.raises(ExportError, match="no raw-event parity reference"):
        export_artifact(run, tmp_path / "bad.pt")
    events = pl.read_parquet(sweep / "lstm" / "golden_events.parquet")
    events.write_parquet(run / "golden_events.parquet")
    with pytest.raises(ExportError, match=r"parity check failed.*raw_vs_lightning"):
        export_artifact(run, tmp_path / "bad.pt")
    # raw events that are not the ones training saw (one event an hour later) fail too
    torch.save(
        torch.load(sweep / "lstm" / "golden_batch.pt", weights_only=True), run / "golden_batch.pt"
    )
    shifted = events.with_columns(
        pl.when(pl.int_range(pl.len()) == 0).then(pl.col("ts") + 3600).otherwise(pl.col("ts"))
    )
    shifted.write_parquet(run / "golden_events.parquet")
    with pytest.raises(ExportError, match="raw_inputs_vs_training"):
        export_artifact(run, tmp_path / "bad.pt")
    # a raw entry point that cannot be checked is not exported either
    events.head(0).write_parquet(run / "golden_events.parquet")
    with pytest.raises(ExportError, match="cannot be checked against training"):
        export_artifact(run, tmp_path / "bad.pt")
    # the reference is calibrated: the same run exported without its calibration disagrees
    events.write_parquet(run / "golden_events.parquet")
    (run / "calibration.json").unlink()
    with pytest.raises(ExportError, match=r"parity check failed.*eager_vs_lightning"):
        export_artifact(run, tmp_path / "bad.pt")
    assert not list(tmp_path.glob("*.pt")) and not list(tmp_path.glob(".bad.pt*"))


def test_export_refuses_nan_figures(sweep: Path, tmp_path: Path, monkeypatch) -> None:
    import engage_seq.serving.export as export

    monkeypatch.setattr(export, "full_parity", lambda *args: {"raw_vs_lightning": float("nan")})
    with pytest.raises(ExportError, match="raw_vs_lightning"):
        export.export_artifact(sweep / "lstm", tmp_path / "nan.pt")
    assert not (tmp_path / "nan.pt").exists()


def test_export_refuses_foreign_files(tmp_path: Path) -> None:
    torch.save({"state_dict": {}}, tmp_path / "foreign.ckpt")
    with pytest.raises(ExportError, match="not an engage_seq checkpoint"):
        export_artifact(tmp_path / "foreign.ckpt", tmp_path / "x.pt")
    result = subprocess.run(
        [str(VENV_BIN / "engage-export"), str(tmp_path / "nowhere")], capture_output=True, text=True
    )
    assert result.returncode == 1 and "no checkpoint" in result.stderr
    assert "Traceback" not in result.stderr  # a clear one-line error, not a crash


def test_training_is_deterministic(tmp_path: Path) -> None:
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[*TINY, f"cache_dir={tmp_path / 'cache'}"])
    first = train(cfg, tmp_path / "a")
    second = train(cfg, tmp_path / "b")

    def without_timings(metrics: dict[str, float]) -> dict[str, float]:
        return {k: v for k, v in metrics.items() if not k.endswith("_seconds")}

    assert without_timings(first) == without_timings(second)
    artifact, meta = None, None
    result = export_artifact(tmp_path / "a", tmp_path / "a.pt")
    artifact, meta = load_artifact(result.path)
    assert meta["output_names"] == ["purchase"] and artifact.output_names() == ["purchase"]


def test_quickstart_prints_the_table_and_leaves_the_artifact(tmp_path: Path, isolated_env) -> None:
    artifact = tmp_path / "artifacts" / "quick.pt"
    out = _run(
        [
            str(VENV_BIN / "engage-quickstart"),
            "--out",
            str(tmp_path / "qs"),
            "--artifact",
            str(artifact),
            *TINY,
        ],
        cwd=tmp_path,
        env=isolated_env,
    )
    assert artifact.is_file()
    text = out.stdout
    for needle in (
        "val ROC-AUC",
        "test PR-AUC",
        "lstm",
        "transformer",
        "best by val/auroc",
        f"artifact:    {artifact}",
        "tensorboard --logdir",
        "leaderboard: ",
    ):
        assert needle in text, needle


def test_notebook_runs_without_hydra(tmp_path: Path) -> None:
    out = _run(
        [sys.executable, str(REPO / "notebooks" / "without_hydra.py")], cwd=tmp_path, env=None
    )  # type: ignore[arg-type]
    assert "test/auroc" in out.stdout and "['purchase']" in out.stdout


@pytest.mark.parametrize("model", MODELS)
def test_torch_export_program_matches(sweep: Path, model: str, tmp_path: Path) -> None:
    from engage_seq.serving.export import export_artifact

    result = export_artifact(sweep / model, tmp_path / "m.pt", pt2=tmp_path / "m.pt2")
    assert max(result.max_abs_diff[k] for k in ("pt2_vs_eager", "pt2_vs_lightning")) <= 1e-5
    extra = {"metadata.json": ""}
    program = torch.export.load(str(tmp_path / "m.pt2"), extra_files=extra).module()
    golden = torch.load(sweep / model / "golden_batch.pt", weights_only=True)
    width = json.loads(extra["metadata.json"])["max_len"]
    names = ["event_ids", "channel_ids", "attribute_ids", "numeric", "time_features"]
    inputs = [
        torch.nn.functional.pad(
            golden[n], (0, 0) * (golden[n].dim() - 2) + (0, width - golden[n].shape[1])
        )
        for n in names
    ]
    with torch.inference_mode():
        probabilities = program(*inputs, golden["lengths"], golden["aggregates"])
    assert torch.allclose(probabilities, golden["probabilities"], atol=1e-5)
