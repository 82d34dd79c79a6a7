"""The Hydra callback (``hydra.callbacks`` in conf/train.yaml) that writes a multirun's
leaderboard when the sweep ends."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback as HydraCallback
from omegaconf import DictConfig

log = logging.getLogger(__name__)


class SweepReportCallback(HydraCallback):
    """Writes the sweep leaderboard when a multirun ends, so ``engage-train -m ...`` goes
    from question to answer in one command (``engage-sweep-report`` rebuilds it by hand)."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if not self.enabled:
            return
        from engage_seq.experiments.leaderboard import analyse_sweep
        from engage_seq.experiments.leaderboard_files import write_report
        from engage_seq.experiments.leaderboard_markdown import winner_line

        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            report = analyse_sweep(sweep_dir)
            files = write_report(report)
        except (ValueError, FileNotFoundError) as error:  # e.g. runs optimising other metrics
            log.warning("sweep report not written: %s", error)
            return
        except Exception:  # the runs are done and saved: a report bug must not hide that
            log.exception("sweep report failed; rebuild it with engage-sweep-report %s", sweep_dir)
            return
        log.info("%s", winner_line(report))
        log.info("sweep leaderboard: %s", files["markdown"])
