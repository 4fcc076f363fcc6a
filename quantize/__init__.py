"""dsv4_gguf.quantize: checkpoint -> GGUF conversion (recipes, imatrix, pipeline; the name map is dsv4_gguf.names)."""
