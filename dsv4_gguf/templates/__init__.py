"""Chat template generators (Jinja for GGUF, Go for Ollama); the single definition lives in dsv4_gguf.chat."""
