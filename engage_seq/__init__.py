"""engage_seq: next-engagement prediction from user event sequences.

Polars builds leakage-safe samples, Lightning trains LSTM / Transformer encoders, Hydra
configures runs and sweeps, and `engage-export` writes self-contained TorchScript artifacts.
Submodules are imported on demand so that data code never pulls in torch.
"""

__version__ = "0.1.0"
