"""Serving: everything between a trained run and scores, without Lightning or Hydra.

Owns the typed artifact contract (`contract`: what ``metadata.json`` holds), the scripted
module that is exported (`scripted`, torch only), reading a run folder (`checkpoint`),
export and its parity harness (`export`, `parity`), loading an artifact safely (`archive`
bounds, `loading` sidecar and signature checks, `signing` keys), and the batch-scoring
library (`scoring` with `scoring_artifact`, `event_table`, `ranking`, `cutoff`, `outputs`).
It may import `common`, `data`, `metrics` and `models` (export only: batch scoring loads no
model classes), never `training`, `evaluation`, `reporting`, `monitoring`, `experiments` or
`cli`. Nothing is re-exported here, so importing a light submodule (`contract`, `signing`,
`outputs`) never pulls torch or the model classes.
"""

from __future__ import annotations

from engage_seq.common.moved import package_getattr

__getattr__ = package_getattr(__name__)  # 0.1 class paths: engage_seq.common.moved
