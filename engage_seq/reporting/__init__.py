"""engage_seq.reporting."""
