"""Where the package's Hydra configs live: the repo's top-level ``conf/`` in a checkout, the
copy inside the wheel otherwise. One answer for engage-train and for the reference baselines of
a run report, which read ``conf/model/<name>.yaml``."""

from __future__ import annotations

from pathlib import Path


def _conf_dir() -> str:
    """The repo's top-level conf/ in a checkout; the copy inside the wheel otherwise."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here.parent / "conf", here / "conf"):
        if (candidate / "train.yaml").is_file():
            return str(candidate)
    raise FileNotFoundError(f"no conf/train.yaml next to {here}; is the package installed fully?")


CONF_DIR = _conf_dir()
