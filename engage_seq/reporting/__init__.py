"""engage_seq.reporting: markdown, tables and figures from evaluation results. `report` writes a
run's ``report.md``/``report.json``/``figures``/``tables`` from an
`engage_seq.evaluation.run_evaluation.RunEvaluation`, in parts (`horizon`, `horizon_summary`,
`horizon_figures`, `next_event`, `reproduce`, `page`, `report_files`, with shared `curves` and
`wording`); `figures`, `explain_figures` and `plotting` draw (matplotlib, optional, imported on
first use); `section` is the plain-data contract other modules' sections follow. May import
every layer below it (common, data, metrics, models, evaluation, ...), never monitoring,
experiments or cli; nothing here is re-exported, so importing one module stays light."""
