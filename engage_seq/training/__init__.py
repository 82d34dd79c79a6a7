"""engage_seq.training."""
