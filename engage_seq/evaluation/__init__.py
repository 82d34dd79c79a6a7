"""engage_seq.evaluation."""
