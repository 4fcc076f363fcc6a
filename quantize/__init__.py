"""dsv4_gguf.quantize: checkpoint -> GGUF conversion (name map, recipes, imatrix, pipeline)."""
