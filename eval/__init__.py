"""dsv4_gguf.eval: quantization-quality evaluation (datasets, backends, metrics, reports).

    backends/   Backend + Capabilities; runtime (dsv4_gguf.load), llama-cpp, openai (vLLM/SGLang/llama-server),
                ollama, fake
    datasets/   MRCR parquet trees (current and old layout), SWE-bench json/jsonl/parquet (+ Pro fields)
    metrics/    official + lenient MRCR scores and bins, llama-perplexity KLD statistics, .kld files,
                SWE-bench NLL / flips / patch similarity / predictions
    tasks/      `eval kld|mrcr|swebench` run loops (manifest, resume, sparse reference store)
    report.py   markdown + CSV + PNG across runs;  cli.py  argument parsing;  run.py  run folders

The command line is `dsv4-gguf eval ...`; docs/eval.md shows how to run it on the real models.
"""

from .metrics.mrcr import bin_index, grade, grade_lenient

__all__ = ["bin_index", "grade", "grade_lenient"]
