# %% [markdown]
# # engage_seq without Hydra
# The library classes take plain arguments; this walks the whole path in a notebook-sized
# session: synthetic events -> samples -> tensors -> Lightning -> TorchScript.
# Run as a script (`.venv/bin/python notebooks/without_hydra.py`) or cell by cell (Jupytext
# percent format: VS Code, PyCharm and `jupytext --to ipynb` understand it).

# %%
import json
import tempfile
from pathlib import Path

import lightning as L
import torch

from engage_seq.data.cache import prepare_samples
from engage_seq.data.sampling import SPLITS, SamplingConfig
from engage_seq.data.sequences import TIME_FEATURES
from engage_seq.data.tasks import HorizonTask
from engage_seq.models.engagement import EngagementModel, ProbabilityModel
from engage_seq.serving.export import quiet_jit_deprecation
from engage_seq.synthetic import SyntheticEventSource
from engage_seq.training.batches import EventDataModule, encode_samples
from engage_seq.training.lit_module import EngagementLitModule

work = Path(tempfile.mkdtemp(prefix="engage_seq_notebook_"))
source = SyntheticEventSource(n_users=2000, days=90, seed=0)
task = HorizonTask(targets=("purchase",), horizon="7d", name="purchase_7d")
sampling = SamplingConfig(max_len=32, n_train_cutoffs=4)

# %% [markdown]
# Build samples once (cached in `work/`), and look at what the builder counted.

# %%
prepared = prepare_samples(source, task, sampling, cache_dir=work / "cache")
print(json.dumps(prepared.report["splits"], indent=1))
print(prepared.split("train").select("n_history", "event_type", "log_age_h").head(3))

# %% [markdown]
# Encode to padded arrays and train a small LSTM for two epochs.

# %%
vocab = prepared.fitted_vocabulary
encoded = {
    s: encode_samples(
        prepared.split(s), vocab, sampling.max_len, task.label_columns, prepared.numeric_scaling
    )
    for s in SPLITS
}
model = EngagementModel(
    n_event_ids=vocab.n_event_ids,
    n_channel_ids=vocab.n_channel_ids,
    n_time_features=len(TIME_FEATURES),
    n_outputs=len(task.targets),
    max_len=sampling.max_len,
    encoder="lstm",
)
module = EngagementLitModule(model, target_names=list(task.targets))
trainer = L.Trainer(
    max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
    default_root_dir=work,
)  # fmt: skip
datamodule = EventDataModule(**encoded, batch_size=128)
trainer.fit(module, datamodule=datamodule)
trainer.test(module, datamodule=datamodule, verbose=False)
print({k: round(v, 4) for k, v in module.last_metrics.items() if k.startswith("test/")})

# %% [markdown]
# Script it and score one batch of test users.

# %%
with quiet_jit_deprecation():  # TorchScript is deprecated upstream but is our artifact format
    scripted = torch.jit.script(ProbabilityModel(model.eval(), list(task.targets)))
*inputs, labels = encoded["test"].batch(torch.arange(8).numpy())
print(scripted.output_names(), scripted(*inputs).squeeze(1))
