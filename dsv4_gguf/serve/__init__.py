"""``dsv4-gguf serve``: an HTTP server on the C++ runtime with OpenAI-, Ollama- and Anthropic-compatible APIs.

- ``engine``: the model, its slots (sessions), the worker thread that runs every forward, the prompt cache.
- ``text``: tokens -> streamed text, stop strings, the reasoning / content / DSML tool-call split.
- ``app``: the Starlette app (auth, limits, error shapes) and the request helpers the API modules share.
- ``openai``, ``ollama``, ``anthropic``: the request/response mapping of each API.
- ``cli``: ``dsv4-gguf serve`` (argparse wiring).

Starlette and uvicorn are the ``serve`` extra; this package imports them only when a server is built, so
``dsv4_gguf`` and its other commands work without them.
"""
