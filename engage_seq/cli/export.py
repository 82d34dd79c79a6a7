"""`engage-export RUN`: a run's best checkpoint -> one self-contained TorchScript artifact.

Parses the flags, calls `engage_seq.serving.export.export_artifact` (which writes nothing
unless the parity checks pass) and prints what it wrote; exit code 1 (and one line on
stderr) when the run cannot be exported.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engage_seq.serving.export import ExportError, export_artifact, find_checkpoint, run_dir_of
from engage_seq.serving.loading import sidecar_path
from engage_seq.serving.signing import SIGNING_KEY_ENV, signature_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="engage-export",
        description="Export an engage-train run to a self-contained TorchScript artifact, "
        "refusing to write it unless parity checks pass.",
    )
    parser.add_argument("run", help="run folder written by engage-train, or its .ckpt file")
    parser.add_argument("--out", help="artifact path (default: <run>/artifact.pt)", default=None)
    parser.add_argument("--atol", type=float, default=1e-5, help="max abs difference allowed")
    parser.add_argument(
        "--pt2", help="also write a torch.export program of the tensor entry point here (.pt2)"
    )
    args = parser.parse_args(argv)
    run = Path(args.run)
    try:
        out = Path(args.out) if args.out else run_dir_of(find_checkpoint(run)) / "artifact.pt"
        result = export_artifact(run, out, atol=args.atol, pt2=args.pt2)
    except ExportError as exc:
        print(f"engage-export: error: {exc}", file=sys.stderr)
        return 1
    diffs = ", ".join(f"{k}={v:.2e}" for k, v in result.max_abs_diff.items())
    print(f"wrote {result.path} (outputs: {', '.join(result.metadata.output_names)})")
    print(f"wrote {sidecar_path(result.path)} (checked by engage-score; sha256sum -c works)")
    if signature_path(result.path).is_file():
        print(f"wrote {signature_path(result.path)} (signed with {SIGNING_KEY_ENV})")
    if args.pt2:
        print(f"wrote {args.pt2} (torch.export program of the tensor entry point)")
    print(f"parity on {result.n_checked} test samples: {diffs}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
