"""dsv4_gguf.eval: quantization-quality evaluation (datasets, backends, metrics, reports)."""
