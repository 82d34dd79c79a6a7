"""engage_seq: next-engagement prediction from user event sequences.

Polars builds leakage-safe samples, Lightning trains LSTM / Transformer encoders, Hydra
configures runs and sweeps, and `engage-export` writes self-contained TorchScript artifacts.
Submodules are imported on demand so that data code never pulls in torch.
"""

from engage_seq.common import moved as _moved

__version__ = "0.1.0"

_moved.install()  # 0.1 class paths (old run configs, notebooks) resolve, with a warning
