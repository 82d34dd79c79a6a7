"""Monitoring an exported model in production: has the data drifted away from what it was
trained on (`drift`: PSI and Jensen-Shannon distance per feature, built from `drift_inputs`,
`drift_features`, `histograms`, `distances`, `drift_verdicts` and written by `drift_report`),
and how do its metrics age at later cutoffs (`backtest`, with `backtest_schedule`,
`backtest_result`, `backtest_report`); `figures` draws both (matplotlib, lazily). Library
functions only, with plain typed arguments, raising `errors.DriftError` / `BacktestError`;
their command lines live in `engage_seq.cli.drift` and `engage_seq.cli.backtest`. It may import
common, data, metrics, serving (batch scoring, output writing) and reporting (JSON and
plotting helpers), never training, experiments or cli; torch is loaded only by the backtest
and by drift's artifact scores. Kept to this docstring: re-exporting here would make importing
the torch-free drift modules load the backtest's torch.
"""
