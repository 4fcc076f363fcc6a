"""The benchmarks' own checks, exercised without running a benchmark: every generated section of
benchmarks/RESULTS.md is exactly what its generator renders from the recorded inputs (a hand edit between
markers fails here), section writes leave everything outside their markers alone, and each validator that
decides whether a benchmark may time anything passes on agreeing outputs and stops on disagreeing ones.
Benchmarks never import tests/; these tests load the benchmark modules from their files."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks"


@pytest.fixture(scope="module")
def bench():
    """``bench(stem)``: benchmarks/<stem>.py as a module, its sibling imports resolved as when it runs."""
    sys.path.insert(0, str(BENCH))
    mods: dict[str, object] = {}

    def load(stem: str):
        if stem not in mods:
            spec = importlib.util.spec_from_file_location(f"bench_{stem}", BENCH / f"{stem}.py")
            mod = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = mod
            spec.loader.exec_module(mod)
            mods[stem] = mod
        return mods[stem]

    yield load
    sys.path.remove(str(BENCH))


# ---- benchmarks import nothing from tests/


def test_benchmarks_use_nothing_from_tests():
    import ast

    tests_dir = ROOT / "tests"

    def from_tests(name: str) -> bool:  # tests/ is on sys.path here: support.*, hardening.*, ci_policy, ...
        if name == "tests":
            return True
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            return False
        where = [spec.origin] if spec and spec.origin else list(spec.submodule_search_locations or []) if spec else []
        return any(tests_dir in Path(w).resolve().parents for w in where)

    assert from_tests("support") and from_tests("ci_policy") and not from_tests("gguf")  # the check can fail
    for f in sorted(BENCH.glob("*.py")):
        tree = ast.parse(f.read_text(), str(f))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for n in names:
                assert not from_tests(n.split(".")[0]), f"{f.name} imports {n} from tests/"
            # a path built into tests/ (what loading a tests module by file needs)
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                assert node.value != "tests" and not node.value.startswith("tests/"), f"{f.name}: {node.value!r}"
    for f in sorted(BENCH.glob("*.sh")):
        for i, line in enumerate(f.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if "tests/" in code:  # only running the suite (device_check.sh: pytest tests/cuda) is allowed
                assert "pytest tests/" in code, f"{f.name}:{i} uses tests/: {line.strip()}"


# ---- RESULTS.md: generated sections


def _render(bench, name: str, record: dict) -> str:
    if name == "quant_kernels":
        return bench("quant_kernels").section_text(record["meta"], record["results"])
    if name.startswith("convert"):
        return bench("convert").format_section(record["meta"], record["rows"])
    if name.startswith("speculative"):
        return bench("speculative").format_section(record["meta"], record["rows"])
    if name in ("serve_load", "rpc_split"):
        return bench(name).format_section(record["meta"], record["rows"])
    if name.startswith("variants_kld"):
        return bench("variants_kld").format_section(record["meta"], record["rows"])
    if name.startswith("target_size"):
        return bench("target_size").format_section(record["meta"], record["rows"])
    raise AssertionError(f"RESULTS.md section {name!r}: no benchmark generates it (hand-written text has no markers)")


def test_every_generated_section_is_its_generators_output(bench):
    rmd = bench("results_md")
    md = BENCH / "RESULTS.md"
    found = rmd.sections(md.read_text())
    assert "quant_kernels" in found
    for name, text in found.items():
        assert _render(bench, name, rmd.read_record(md, name)) == text, f"section {name!r} was edited by hand"


def test_write_section_touches_only_its_markers(bench, tmp_path):
    rmd = bench("results_md")
    md = tmp_path / "RESULTS.md"
    head, tail = "# Benchmark results\n\nhand-written, before\n\n", "\n\nhand-written, after\n"
    md.write_text(head + "<!-- other:begin -->\nkept\n<!-- other:end -->" + tail)
    rmd.write_section(md, "x", "first", {"v": 1})
    rmd.write_section(md, "x", "second", {"v": 2})
    text = md.read_text()
    assert text.startswith(head + "<!-- other:begin -->\nkept\n<!-- other:end -->" + tail.rstrip("\n"))
    assert rmd.sections(text) == {"other": "kept", "x": "second"}
    assert rmd.read_record(md, "x") == {"v": 2}
    for bad in ("<!-- a:begin -->\n", "<!-- a:end -->\n", "<!-- a:begin -->\n<!-- b:begin -->\n<!-- b:end -->\n"):
        with pytest.raises(ValueError):
            rmd.sections(bad)


def test_publish_prints_and_writes_only_what_is_asked(bench, tmp_path, capsys):
    rmd = bench("results_md")
    md, js = tmp_path / "RESULTS.md", tmp_path / "r.json"
    rmd.publish("x", "the table", {"v": 3}, json_path=None, md=None)
    assert capsys.readouterr().out == "the table\n" and not md.exists() and not js.exists()
    rmd.publish("x", "the table", {"v": 3}, json_path=js, md=md)
    assert json.loads(js.read_text()) == {"v": 3}
    assert rmd.sections(md.read_text()) == {"x": "the table"} and rmd.read_record(md, "x") == {"v": 3}


def test_quant_kernel_targets_and_verdict(bench):
    qk = bench("quant_kernels")
    text = qk.targets_text()
    for t, v in qk.TARGET.items():
        assert f">= {v} for" in text and t.name in text
    results = [
        {"type": "Q8_0", "q_mbps_ours": 9.0, "q_mbps_ggml": 10.0, "qmt_mbps_ours": 11.0, "qmt_mbps_ggml": 10.0},
        {"type": "Q2_K", "q_mbps_ours": 8.0, "q_mbps_ggml": 10.0, "qmt_mbps_ours": 7.0, "qmt_mbps_ggml": 10.0},
    ]
    checks = qk.target_checks(results, 2)
    assert [c["met"] for c in checks] == [False, True, True, False]
    assert qk.verdict_text(checks) == "Missed in this run (2 of 4): Q8_0 1T (0.90 < 1.0), Q2_K 2T (0.70 < 0.8)."
    assert qk.verdict_text([c for c in checks if c["met"]]) == "All 2 met in this run."


def test_convert_section_states_what_was_measured(bench):
    cv = bench("convert")
    meta = {
        "command": "python benchmarks/convert.py --preset tiny",
        "machine": "x86_64",
        "cpus": 2,
        "load": [1.0, 1.5],
        "preset": "tiny",
        "dim": 256,
        "n_layers": 5,
        "n_mtp_layers": 1,
        "experts": 8,
        "total_bytes": 150e6,
        "generated_s": 2.0,
        "reused": False,
        "validated": ["SOURCE on `x`: 28 lossless tensors bit-exact, 0 lossy ones finite"],
        "two_step": None,
        "t_q4": 2.0,
        "t_q4e": None,
    }
    rows = [
        {"what": "plain copy of the shard bytes", "s": 0.5, "rss": None, "cached": 1.0},
        {"what": "dsv4-gguf convert --type SOURCE", "s": 1.0, "rss": 0.25, "cached": 0.4},
    ]
    text = cv.format_section(meta, rows)
    assert "| plain copy of the shard bytes | 0.5 | 0.30 | 1.00x | — | 100 % |" in text
    assert "| dsv4-gguf convert --type SOURCE | 1.0 | 0.15 | 2.00x | 0.25 | 40 % |" in text
    assert "generated in 2 s." in text and "Page cache warm" not in text and "two-step" not in text
    assert "28 lossless tensors bit-exact" in text
    assert "(generated in 2 s by an earlier run, reused via --workdir)" in cv.format_section(
        {**meta, "reused": True}, rows
    )
    assert "(generated by an earlier run, reused via --workdir)" in cv.format_section(
        {**meta, "reused": True, "generated_s": None}, rows
    )


def test_page_cache_fraction_is_measured(bench, tmp_path):
    cv = bench("convert")
    f = tmp_path / "sparse.bin"
    with open(f, "wb") as fh:
        fh.truncate(1 << 20)  # a hole: no page was ever read
    assert cv.page_cache_fraction([f]) == 0.0
    f.write_bytes(os.urandom(1 << 20))
    f.read_bytes()
    assert cv.page_cache_fraction([f]) == 1.0


def test_convert_output_check_stops_on_a_changed_lossless_tensor(bench, tiny_ckpt, tmp_path):
    from dsv4_gguf.quantize.convert import convert, make_plan
    from dsv4_gguf.quantize.recipes import load_recipe

    from dsv4_gguf.checkpoint import Checkpoint
    from dsv4_gguf.gguf_model import open_gguf

    cv = bench("convert")
    out = tmp_path / "t.gguf"
    with Checkpoint(tiny_ckpt) as ck:
        plan = make_plan(ck.args, load_recipe("MXFP4_MOE"), out, ckpt_dir=ck.path, mtp=False, only=None)
        convert(plan, ck)
    summary = cv.check_outputs(out, tiny_ckpt, "MXFP4_MOE", r"blk\.1\.", exact_all=False)
    assert "lossless tensors bit-exact" in summary and "lossy ones finite" in summary
    with pytest.raises(SystemExit, match="tensors off the checkpoint"):  # not all of MXFP4_MOE is lossless
        cv.check_outputs(out, tiny_ckpt, "MXFP4_MOE", r"blk\.1\.", exact_all=True)
    with open_gguf(out, mtp=False) as m:
        r = m.info("blk.1.ffn_up_exps.weight")  # MXFP4 experts: stored losslessly from the FP4 checkpoint
    with open(out, "r+b") as fh:
        fh.seek(r.offset + 1)
        b = fh.read(1)
        fh.seek(r.offset + 1)
        fh.write(bytes([b[0] ^ 0x11]))
    with pytest.raises(SystemExit, match="blk.1.ffn_up_exps.weight"):
        cv.check_outputs(out, tiny_ckpt, "MXFP4_MOE", r"blk\.1\.", exact_all=False)


# ---- validators that gate the timings


def test_cuda_bench_logit_check(bench):
    cb = bench("cuda_bench")
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((4, 1000)) * 3
    ref[np.arange(4), rng.integers(0, 1000, 4)] = 20.0  # a clear top-1 per position
    res = cb.check_logits(ref + 1e-4 * rng.standard_normal(ref.shape), ref, "ok")
    assert res["top1_equal"] and res["min_corr"] > 0.999 and res["worst_vs_chunking_qat"] < 1
    with pytest.raises(AssertionError, match="chunking_qat"):  # correlated and same top-1, but off the bound
        cb.check_logits(ref + 0.05 * rng.standard_normal(ref.shape), ref, "off")
    swapped = ref.copy()
    swapped[2, swapped[2].argmax()] = -20.0
    with pytest.raises(AssertionError, match="top-1 differs .* position 2"):
        cb.check_logits(swapped, ref, "flip")
    with pytest.raises(AssertionError, match="non-finite"):
        cb.check_logits(np.where(ref > 19, np.nan, ref), ref, "nan")


def test_cuda_bench_gemv_check(bench):
    from dsv4_gguf import _C

    cb = bench("cuda_bench")
    rng = np.random.default_rng(1)
    w = cb.random_blocks(8, 16, 512, rng)  # Q8_0
    x = rng.standard_normal((2, 512)).astype(np.float32)
    ref = cb.gemv_reference(8, w, x)
    wd = _C.dequantize_rows(8, w).reshape(16, 512)
    assert cb.check_gemv(x @ wd.T, ref, "fp32 product") < 1  # float32 sums: well inside the bound
    assert np.allclose(cb.gemv_reference(8, w, x, np.array([3, 9]))[:, 1], ref[:, 9])
    with pytest.raises(AssertionError, match="cuda_gemv bound"):
        cb.check_gemv(ref + 1e-3 * np.abs(ref).max(), ref, "off by 1e-3")


def test_runtime_bench_matvec_check(bench):
    from dsv4_gguf import _C

    rt = bench("runtime")
    rng = np.random.default_rng(2)
    w = rng.standard_normal((64, 512)).astype(np.float32)
    x = rng.standard_normal(512).astype(np.float32)
    for qt in (8, 12, 39):  # Q8_0, Q4_K, MXFP4
        q = _C.quantize_rows(qt, w)
        got = _C.matvec(qt, q, x)
        assert rt.check_matvec(qt, q, x, got, str(qt)) <= 1.0
        off = got.copy()
        off[5] += 1e-3 * np.abs(got).max()
        with pytest.raises(AssertionError, match="nothing was timed"):
            rt.check_matvec(qt, q, x, off, str(qt))


def test_runtime_bench_flags_matvec_above_its_roof(bench):
    rt = bench("runtime")
    mv = {f"matvec_{n}_pct": 90.0 for n, _ in rt.MATVEC_TYPES}
    assert rt.matvec_roof_note(mv) == ""
    mv["matvec_Q8_0_pct"] = 254.0
    assert "Q8_0 above 100 % of the read stream" in rt.matvec_roof_note(mv)


def test_first_token_runs_must_print_the_same_text(bench):
    ft = bench("first_token")
    assert ft.same_output([(0.5, b"ab"), (0.4, b"ab")], b"ab") == [0.5, 0.4]
    with pytest.raises(SystemExit, match="validation failed"):
        ft.same_output([(0.5, b"ab"), (0.4, b"ac")], b"ab")


def test_serve_load_accounts_for_every_request(bench):
    sl = bench("serve_load")
    R = sl.Result
    alone = ["abc def", "xyz uvw"]
    good = [R(0, 0, "plain", text="abc def"), R(1, 1, "stream", text="xyz uvw"), R(0, 1, "cancel", text="xyz")]
    counts = {"plain": 1, "stream": 1, "cancel": 1}
    assert sl.check_responses(alone, good, 3) == {"counts": counts, "equal": 3, "diverged_at": []}
    with pytest.raises(SystemExit, match="2 results for 3 requests"):
        sl.check_responses(alone, good[:2], 3)
    with pytest.raises(SystemExit, match="1 requests lost.*HTTP 500"):
        sl.check_responses(alone, [*good[:2], R(0, 1, "cancel", error="HTTP 500")], 3)
    for bad, why in (
        (R(0, 0, "plain", text="xyz uvw"), "prompt 1's answer"),  # another client's answer
        (R(0, 0, "cancel", text="xy"), "prompt 1's answer"),  # a cancelled stream of another prompt's answer
        (R(0, 0, "plain", text="abc deg"), "an answer of no prompt"),
        (R(0, 0, "plain", text="abc"), "an answer of no prompt"),  # cut short without being cancelled
        (R(0, 0, "cancel", text=""), "an answer of no prompt"),
    ):
        with pytest.raises(SystemExit, match=why):
            sl.check_responses(alone, [bad, *good[1:]], 3)
    # a peer that is not batch-invariant: an answer that left its own is counted, one closer to another's stops
    loose = sl.check_responses(alone, [R(0, 0, "plain", text="abc deg"), *good[1:]], 3, exact=False)
    assert loose == {"counts": counts, "equal": 2, "diverged_at": [6]}
    for bad in (R(0, 0, "plain", text="xyz uvw"), R(0, 0, "stream", text="xyz"), R(0, 0, "cancel", text="")):
        with pytest.raises(SystemExit, match="validation failed"):
            sl.check_responses(alone, [bad, *good[1:]], 3, exact=False)
    sched = sl.plan(8, 20, 8)
    modes = [m for reqs in sched for _, m in reqs]
    assert (modes.count("plain"), modes.count("stream"), modes.count("cancel")) == (80, 64, 16)
    assert {p for reqs in sched for p, _ in reqs} == set(range(8))


def test_rpc_split_compares_tokens_and_logprobs(bench):
    rs = bench("rpc_split")
    run = {"tokens": [5, 7], "top": [{5: -0.1, 9: -2.5}, {7: -0.3, 1: -1.9}]}
    near = {"tokens": [5, 7], "top": [{5: -0.1 + 4e-6, 9: -2.5}, {7: -0.3, 1: -1.9}]}
    assert rs.compare_runs([run], [run], 1e-5) == {"tokens": 2, "logprobs": 4, "max_abs_diff": 0.0, "bound": 1e-5}
    assert rs.compare_runs([run], [near], 1e-5)["max_abs_diff"] == pytest.approx(4e-6)
    with pytest.raises(SystemExit, match="logprob .* > 1e-05"):
        rs.compare_runs([run], [{**near, "top": [{5: -0.1 + 2e-5, 9: -2.5}, near["top"][1]]}], 1e-5)
    with pytest.raises(SystemExit, match="greedy tokens differ from step 1"):
        rs.compare_runs([run], [{**run, "tokens": [5, 8]}], 1e-5)
    with pytest.raises(SystemExit, match="top-K ids"):
        rs.compare_runs([run], [{**run, "top": [{5: -0.1, 8: -2.5}, run["top"][1]]}], 1e-5)
