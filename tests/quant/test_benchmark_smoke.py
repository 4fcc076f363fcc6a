"""benchmarks/quant_kernels.py still runs end to end (tiny sizes; no speed assertions here)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_benchmark_runs_and_writes_its_section(ggml, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # its sibling modules, as `python benchmarks/...` has
    spec = importlib.util.spec_from_file_location("quant_kernels_bench", ROOT / "benchmarks" / "quant_kernels.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "RESULTS.md"
    out.write_text("# Benchmark results\n\nother section\n")
    # the peer the tests use (the `ggml` fixture has imported it); the benchmark's default is the native build
    args = "--peer portable --rows 8 --cols 512 --repeat 1 --types Q8_0,Q4_K,IQ2_XXS".split() + ["--write", str(out)]
    assert bench.main(args) == 0
    text = out.read_text()
    assert "other section" in text and text.count(bench.BEGIN) == 1
    assert "| Q4_K | yes |" in text and "| IQ2_XXS | yes |" in text
    assert "CMAKE_ARGS" in text and "SIMD: " in text  # the table names the peer's build and this CPU's
    assert bench.main(args) == 0  # rewriting replaces the section instead of appending
    assert out.read_text().count(bench.BEGIN) == 1
    # the section is its generator's rendering of the inputs recorded next to the file (results/quant_kernels.json)
    import results_md

    record = results_md.read_record(out, bench.SECTION)
    assert results_md.sections(out.read_text())[bench.SECTION] == bench.section_text(record["meta"], record["results"])
