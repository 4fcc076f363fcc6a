"""metrics of the eval harness."""
