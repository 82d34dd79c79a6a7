"""engage_seq.models."""
