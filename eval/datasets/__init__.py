"""datasets of the eval harness."""
