"""engage_seq.cli."""
