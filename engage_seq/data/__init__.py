"""engage_seq.data."""
