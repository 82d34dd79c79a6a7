"""engage_seq.metrics."""
