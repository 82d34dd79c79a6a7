"""`engage-quickstart` (what `make train` runs): the whole path once, on the built-in data.

1. ``engage-train -m model=lstm,transformer`` — a real Hydra multirun, one run folder per model;
2. picks the model with the best *validation* AUROC (test is only reported, never used to pick);
3. exports it with `engage-export` (parity-checked TorchScript);
4. prints a table of both models and where everything landed (each run folder holds its
   evaluation report, ``report.md``).

Extra arguments are passed to engage-train as Hydra overrides, e.g.
``engage-quickstart trainer.max_epochs=2 data=synthetic_tiny``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from engage_seq.serving.export import ExportError, export_artifact

SELECT_BY = "val/auroc"


def _format_table(rows: list[dict[str, str]]) -> str:
    headers = list(rows[0])
    widths = {h: max(len(h), *(len(r[h]) for r in rows)) for h in headers}
    lines = ["  ".join(h.ljust(widths[h]) for h in headers)]
    lines.append("  ".join("-" * widths[h] for h in headers))
    lines += ["  ".join(r[h].ljust(widths[h]) for h in headers) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def run_sweep(models: list[str], sweep_dir: Path, overrides: list[str]) -> None:
    command = [
        sys.executable,
        "-m",
        "engage_seq.cli.train",
        "--multirun",
        f"model={','.join(models)}",
        f"hydra.sweep.dir={sweep_dir}",
        "hydra.sweep.subdir=${hydra.job.num}_${hydra:runtime.choices.model}",
        *overrides,
    ]
    print("$ engage-train " + " ".join(command[3:]), flush=True)
    result = subprocess.run(command, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"engage-train exited with {result.returncode}; see its log above")


def collect_runs(sweep_dir: Path) -> dict[str, dict[str, float]]:
    """Run folder name (``<job>_<model>``) -> metrics, for every run of the sweep."""
    runs = {}
    for run in sorted(p for p in sweep_dir.iterdir() if (p / ".hydra").is_dir()):
        path = run / "metrics.json"
        if not path.is_file():
            raise FileNotFoundError(f"run {run} left no metrics.json; see {run / 'train.log'}")
        runs[run.name] = json.loads(path.read_text())
    if not runs:
        raise FileNotFoundError(f"the sweep left no run folders under {sweep_dir}")
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="engage-quickstart",
        description="Train LSTM and Transformer on the built-in synthetic data, evaluate both on "
        "later held-out periods, export the better one (by validation AUROC) to TorchScript.",
    )
    parser.add_argument("--models", default="lstm,transformer", help="comma-separated")
    parser.add_argument("--out", default="outputs/quickstart", help="parent of the sweep folder")
    parser.add_argument("--artifact", default="artifacts/purchase_7d.pt", help="artifact path")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides passed to engage-train")
    args = parser.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    sweep_dir = Path(args.out) / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")

    started = time.perf_counter()
    try:
        run_sweep(models, sweep_dir, args.overrides)
        runs = collect_runs(sweep_dir)
        best = max(runs, key=lambda m: runs[m][SELECT_BY])
        result = export_artifact(sweep_dir / best, args.artifact)
    except (RuntimeError, FileNotFoundError, ExportError) as exc:
        print(f"engage-quickstart: error: {exc}", file=sys.stderr)
        return 1
    elapsed = time.perf_counter() - started

    rows = [
        {
            "run": name + (" *" if name == best else ""),
            "val ROC-AUC": f"{m['val/auroc']:.4f}",
            "val PR-AUC": f"{m['val/auprc']:.4f}",
            "test ROC-AUC": f"{m['test/auroc']:.4f}",
            "test PR-AUC": f"{m['test/auprc']:.4f}",
            "epochs": f"{m['train/epochs']:.0f}",
            "fit s": f"{m['train/fit_seconds']:.0f}",
        }
        for name, m in runs.items()
    ]
    parity = max(result.max_abs_diff.values())
    print()
    print(_format_table(rows))
    print(f"\n* best by {SELECT_BY}: {best}")
    print(f"runs:        {sweep_dir}/<run>/ (metrics.json, checkpoints/, tensorboard/)")
    if (sweep_dir / "leaderboard.md").is_file():
        print(f"leaderboard: {sweep_dir / 'leaderboard.md'} (+ .csv, .png)")
    reports = [name for name in runs if (sweep_dir / name / "report.md").is_file()]
    if reports:
        print(f"reports:     {sweep_dir}/<run>/report.md (+ figures/) for {', '.join(reports)}")
    print(f"artifact:    {result.path}  (TorchScript, parity max abs diff {parity:.1e})")
    print(f"tensorboard: tensorboard --logdir {sweep_dir}")
    print(f"total time:  {elapsed:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
