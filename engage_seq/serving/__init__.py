"""engage_seq.serving."""
