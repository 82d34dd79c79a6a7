"""Training that does not break: determinism, SIGKILL + resume, DDP on CPU, every model/task.

Each test drives the real `engage-train` command in a subprocess, as a user (or a cluster
scheduler) would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from helpers import VENV_BIN

from engage_seq.models.engagement import MODEL_INPUTS
from engage_seq.serving.export import export_artifact, load_artifact

pytestmark = pytest.mark.slow
# ~36 steps per epoch on the tiny data; a wider LSTM so an epoch lasts long enough to be
# killed in the middle of it.
RESUMABLE = [
    "data=synthetic_tiny",
    "trainer.max_epochs=3",
    "trainer.enable_progress_bar=false",
    "batch_size=32",
    "patience=5",
    "model.hidden=256",
    "model.num_layers=2",
    "checkpoint_every_n_steps=4",
]
TIMING_KEYS = ("train/fit_seconds", "data/prepare_seconds")


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "ENGAGE_SEQ_CACHE_DIR": str(tmp_path / "cache")}


def _train(
    run_dir: Path, args: list[str], env: dict[str, str], output: list[str] | None = None
) -> dict[str, float]:
    """Run engage-train; its metrics without timings (``output`` collects stdout + stderr)."""
    command = [str(VENV_BIN / "engage-train"), *args, f"hydra.run.dir={run_dir}"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{command}:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    if output is not None:
        output.append(result.stdout + result.stderr)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {k: v for k, v in metrics.items() if k not in TIMING_KEYS}


def _step_of(checkpoint: Path) -> int:
    return int(torch.load(checkpoint, map_location="cpu", weights_only=False)["global_step"])


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict[str, float]:
    """One uninterrupted run for both kill points: how often checkpoints are saved does not
    change what is trained."""
    root = tmp_path_factory.mktemp("uninterrupted")
    return _train(root / "reference", RESUMABLE, _env(root))


@pytest.mark.parametrize("saved_at", ["mid_epoch", "epoch_end"])
def test_sigkill_then_resume_matches_an_uninterrupted_run(
    tmp_path: Path, saved_at: str, uninterrupted: dict[str, float]
) -> None:
    env = _env(tmp_path)
    # epoch_end: no step checkpoints, so the run resumes from the end-of-epoch save
    args = RESUMABLE if saved_at == "mid_epoch" else [*RESUMABLE, "checkpoint_every_n_steps=0"]
    reference = uninterrupted
    steps_per_epoch = reference["train/steps"] / reference["train/epochs"]

    run_dir = tmp_path / "killed"
    command = [str(VENV_BIN / "engage-train"), *args, f"hydra.run.dir={run_dir}"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    resume = run_dir / "checkpoints" / "resume.ckpt"
    killed_at = None
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if resume.is_file():
            step = _step_of(resume)  # safe to read: it is replaced atomically
            inside = step % steps_per_epoch != 0
            if step >= steps_per_epoch and inside == (saved_at == "mid_epoch"):
                process.send_signal(signal.SIGKILL)
                killed_at = step
                break
        time.sleep(0.02)
    process.wait(timeout=60)
    assert killed_at is not None, "the run ended before it could be killed mid-epoch"
    assert process.returncode == -signal.SIGKILL
    assert not (run_dir / "metrics.json").exists()

    output: list[str] = []
    resumed = _train(run_dir, [*args, "resume=true"], env, output)
    assert resumed["train/steps"] == reference["train/steps"]
    # random draws are keyed by (seed, epoch, batch) and the data order by (seed, epoch), so
    # the resumed run is the uninterrupted run
    assert resumed == pytest.approx(reference, rel=1e-6, abs=1e-7)
    # the loader is declared resumable, so Lightning has no "may be unreliable" warning
    assert "not resumable" not in output[0]

    if saved_at == "epoch_end":
        # resume=true on a finished run: it says so, evaluates the best checkpoint again, exit 0
        again = _train(run_dir, [*args, "resume=true"], env, output)
        assert "had already finished training" in output[1]
        assert again == pytest.approx(reference, rel=1e-6, abs=1e-7)


def test_same_seed_gives_identical_metrics(tmp_path: Path) -> None:
    env = _env(tmp_path)
    args = ["data=synthetic_tiny", "trainer=smoke", "batch_size=64", "model=transformer"]
    first = _train(tmp_path / "a", args, env)
    second = _train(tmp_path / "b", args, env)
    assert first == second
    other_seed = _train(tmp_path / "c", [*args, "seed=8"], env)
    assert other_seed["val/auroc"] != first["val/auroc"]


def test_ddp_on_cpu_gathers_metrics_over_both_ranks(tmp_path: Path) -> None:
    env = _env(tmp_path)
    args = ["data=synthetic_tiny", "trainer=smoke", "batch_size=64", "trainer.accelerator=cpu"]
    single = _train(tmp_path / "single", args, env)
    # with the run report on: it runs on rank 0 after the ranks have left the process group
    ddp_env = {**env, "ENGAGE_SEQ_REPORT": "true"}
    ddp = _train(tmp_path / "ddp", [*args, "trainer.strategy=ddp", "trainer.devices=2"], ddp_env)
    assert (tmp_path / "ddp" / "report.md").is_file()
    assert ddp["train/world_size"] == 2
    # every val/test sample scored exactly once across the two ranks
    assert ddp["val/n_samples"] == single["val/n_samples"]
    assert ddp["test/n_samples"] == single["test/n_samples"]
    assert ddp["val/positive_rate"] == pytest.approx(single["val/positive_rate"])
    assert 0.0 <= ddp["test/auroc"] <= 1.0
    assert (tmp_path / "ddp" / "checkpoints" / "best.ckpt").is_file()


MODEL_TASKS = [
    ("model=gru", "task=purchase_7d"),
    ("model=transformer", "task=next_event"),
    ("model=lstm", "task=purchase_7d_next_event"),
    ("model=rfm_logreg", "task=purchase_7d"),
    ("model=gbm", "task=engagement_7d"),
    ("model=bgnbd", "task=purchase_7d"),
    ("model=markov", "task=next_event"),
    ("model=most_frequent", "task=next_event"),
]


@pytest.mark.parametrize(("model", "task"), MODEL_TASKS, ids=[f"{m},{t}" for m, t in MODEL_TASKS])
def test_every_model_and_task_trains_and_reports_its_metrics(
    tmp_path: Path, model: str, task: str
) -> None:
    metrics = _train(
        tmp_path / "run", ["data=synthetic_tiny", "trainer=smoke", model, task], _env(tmp_path)
    )
    for split in ("val", "test"):
        if "next_event" in task:
            assert 0 <= metrics[f"{split}/accuracy"] <= metrics[f"{split}/top3_accuracy"] <= 1
            assert metrics[f"{split}/nll"] > 0
        if task != "task=next_event":
            assert 0 <= metrics[f"{split}/auroc"] <= 1
            assert metrics[f"{split}/lift_top10"] >= 0
    if model in ("model=rfm_logreg", "model=gbm", "model=bgnbd"):
        assert json.loads((tmp_path / "run" / "baseline.json").read_text())["type"] in model
    if task == "task=purchase_7d_next_event":  # both heads in one artifact
        result = export_artifact(tmp_path / "run", tmp_path / "multi.pt")
        artifact, meta = load_artifact(result.path)
        names = artifact.output_names()
        assert names[0] == "purchase" and names[1] == "next_event/<unknown>"
        assert meta["task"]["type"] == "MultiTask"
        golden = torch.load(tmp_path / "run" / "golden_batch.pt", weights_only=True)
        with torch.inference_mode():
            probs = artifact(*[golden[n] for n in MODEL_INPUTS])
        assert torch.allclose(probs[:, 1:].sum(1), torch.ones(len(probs)), atol=1e-5)
        assert torch.allclose(probs, golden["probabilities"], atol=1e-5)
