"""engage_seq.synthetic."""
