"""engage_seq.monitoring."""
