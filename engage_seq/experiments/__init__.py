"""The Hydra-configured run and what surrounds it: `run.train(cfg, run_dir)` (the configured
run, in named steps), the checks a config gets before any work (`config_checks`), the hparams
view (`hparams`), the command-line pre-check of `engage-train` (`hydra_precheck`), and the sweep
leaderboard with its Hydra callback (`leaderboard`, `leaderboard_plot`, `sweep_callback`). May
import every library subpackage below it (common ... monitoring) and Hydra; never `cli`.
"""
