"""engage_seq.baselines."""
