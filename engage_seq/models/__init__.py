"""Models: the sequence encoders (`encoders`: LSTM, GRU and a small Transformer over event,
channel, attribute and time embeddings) and the `EngagementModel` with its heads
(`engagement`). torch only, nothing from engage_seq beyond `common`, because these modules are
what TorchScript exports: an artifact must load and run without Lightning, Hydra or Polars.
"""
