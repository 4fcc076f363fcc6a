"""Chat template generators (Jinja for GGUF, Go for Ollama); the single definition of the format lives in
dsv4_gguf.chat, which these modules read (chat imports nothing from here)."""

from .jinja import jinja_template
from .ollama_go import ollama_template

__all__ = ["jinja_template", "ollama_template"]
