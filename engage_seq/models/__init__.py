"""The sequence models: what is trained and exported (nanoGPT style, one file read top to bottom).

`config` holds `EngagementModelConfig`, every constructor argument with its default, checked in
one place (plain Python); `encoders` the event embedding and the recurrent / Transformer
encoders; `engagement` the `EngagementModel` (encoder + heads) built from that config, and the
`ProbabilityModel` wrapper that TorchScript export scripts. This subpackage imports only torch
(`engage_seq.common` is the one package layer it may use; never polars, Lightning or Hydra), so
the exported module stays self-contained. This `__init__` re-exports nothing: importing
`engage_seq.models.config` stays free of torch, and batch scoring can check that no model class
is loaded.
"""
