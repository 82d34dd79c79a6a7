"""The Hydra-configured run and what surrounds it: `run.train(cfg, run_dir)` (the configured
run, in named steps), the checks a config gets before any work (`config_checks`), the hparams
view (`hparams`), the command-line pre-check of `engage-train` (`hydra_precheck`), and the sweep
leaderboard: runs read (`sweep_runs`), pooled and tested (`sweep_statistics`), analysed
(`leaderboard`), rendered (`leaderboard_markdown`, `leaderboard_plot`), written
(`leaderboard_files`) and triggered at the end of a multirun (`sweep_callback`). May import
every library subpackage below it (common ... monitoring) and Hydra; never `cli`.
"""
