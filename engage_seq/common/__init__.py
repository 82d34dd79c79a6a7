"""engage_seq.common."""
