"""Backends behind one interface (`Backend`), chosen by name; see base.py for the capability flags."""

from __future__ import annotations

from pathlib import Path

from .base import Backend, BackendError, Capabilities, CapabilityError, SparseRows, log_softmax

__all__ = [
    "Backend",
    "BackendError",
    "Capabilities",
    "CapabilityError",
    "SparseRows",
    "log_softmax",
    "BACKENDS",
    "open_backend",
]

BACKENDS = ("auto", "runtime", "llama-cpp", "openai", "ollama", "fake")


def open_backend(
    kind: str,
    model: str,
    *,
    url: str | None = None,
    n_ctx: int = 4096,
    threads: int | None = None,
    prompt_logprobs: bool = False,
    seed: int = 0,
) -> Backend:
    """Open `model` with backend `kind`. `auto`: a .gguf path goes to the in-process runtime (the C++ core
    of this package; `llama-cpp` runs it through llama-cpp-python instead); a model name with `url` goes to
    the OpenAI-compatible client."""
    if kind == "auto":
        if url:
            kind = "openai"
        elif Path(model).suffix == ".gguf":
            kind = "runtime"
        else:
            raise BackendError(
                f"cannot tell which backend serves {model!r}: give a .gguf path, or --backend "
                f"with one of {', '.join(BACKENDS[1:])}"
            )
    if kind == "fake":
        from .fake import FakeBackend, parse_fake_spec

        return FakeBackend(**parse_fake_spec(model))
    if kind == "llama-cpp":
        from .llama_cpp import LlamaCppBackend

        return LlamaCppBackend(model, n_ctx=n_ctx, n_threads=threads, seed=seed)
    if kind == "runtime":
        from .runtime import RuntimeBackend

        return RuntimeBackend(model, n_ctx=n_ctx, threads=threads)
    if kind in ("openai", "ollama"):
        if not url:
            raise BackendError(f"--backend {kind} needs --url http://HOST:PORT (and --model NAME)")
        if kind == "openai":
            from .http import OpenAIBackend

            return OpenAIBackend(url, model, prompt_logprobs=prompt_logprobs, seed=seed)
        from .http import OllamaBackend

        return OllamaBackend(url, model, seed=seed, num_ctx=n_ctx)
    raise BackendError(f"unknown backend {kind!r}; choose one of {', '.join(BACKENDS)}")
