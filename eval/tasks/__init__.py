"""tasks of the eval harness."""
