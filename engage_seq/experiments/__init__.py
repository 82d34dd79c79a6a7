"""engage_seq.experiments."""
