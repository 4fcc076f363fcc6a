"""`dsv4-gguf sensitivity` on the tiny SOURCE model: the file covers every probe group and loads as a
``--sensitivity`` file, its weights follow from the raw KLDs it records, the in-memory probes give the KLDs of
probe model files bit for bit, runs are deterministic and resumable, a lower probe type costs more KLD than a
higher one, the file changes a ``--target-size`` mix, and bad inputs are refused with exit status 2 before any
probe runs."""

from __future__ import annotations

import json
import math
import random
import re
import statistics
from functools import partial
from pathlib import Path

import pytest
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

from dsv4_gguf.cli import build_parser, main

# one chunk of 32 tokens, its second half scored: 15 positions per probe, ~1 s per probe on 2 cores
FAST = ["--ctx", "32", "--max-tokens", "32", "--threads", "2"]
SUBSET = r"^(blk\.N\.attn_q_a\.weight|blk\.1\.ffn_exps)$"  # a class over all layers, one layer's experts
WORDS = "the a river walks under tree at dawn and dusk forest model token layer expert weight def return import"


@pytest.fixture(scope="module")
def text(tmp_path_factory) -> Path:
    rng = random.Random(3)
    p = tmp_path_factory.mktemp("sens-text") / "text.txt"
    p.write_text(" ".join(rng.choice(WORDS.split()) for _ in range(400)), encoding="utf-8")
    return p


@pytest.fixture(scope="module")
def source(convert_tiny) -> Path:
    return convert_tiny("SOURCE", mtp=False)


@pytest.fixture(scope="module")
def full(source, text, tmp_path_factory) -> tuple[Path, dict]:
    """One full scan at the default low type (Q2_K)."""
    out = tmp_path_factory.mktemp("sens-full") / "tiny.sensitivity.json"
    assert main(["sensitivity", str(source), "--text", str(text), "-o", str(out), *FAST]) == 0
    return out, json.loads(out.read_text(encoding="utf-8"))


def _groups(source: Path) -> tuple:
    from dsv4_gguf.quantize.recipes import Planned
    from dsv4_gguf.quantize.target import adjustable

    from dsv4_gguf import open_gguf

    m = open_gguf(source, mtp=False)
    return m, adjustable([Planned(t, m.info(t.name).qtype, "") for t in m.gtensors()])[1]


def test_file_covers_every_group_and_loads(full, source):
    from dsv4_gguf.quantize.target import importance, load_sensitivity

    path, obj = full
    m, groups = _groups(source)
    exps = {n for n in groups if re.fullmatch(r"blk\.\d+\.ffn_(gate|up|down)_exps\.weight", n)}
    want = exps | {re.sub(r"blk\.\d+\.", "blk.N.", n) for n in set(groups) - exps}
    assert "token_embd.weight" in want and "blk.N.attn_q_a.weight" in want and "blk.4.ffn_down_exps.weight" in want
    assert not any("compressor" in k or "indexer" in k or "ffn_gate_inp" in k for k in want)  # FIXED stays out
    sens = load_sensitivity(path)
    assert set(sens) == want == set(obj) - {"_meta"}
    assert all(math.isfinite(w) and w > 0 for w in sens.values())
    # the file is accepted by the allocation's importance (no key that matches no adjustable tensor)
    imp = importance(groups, m.args, None, sens)
    assert all("sensitivity" in how for _, how in imp.values())

    meta = obj["_meta"]
    probes = meta["probes"]
    assert len(probes) == len(want) - len(exps) + m.args.n_layers  # one class each + one per layer's experts
    assert meta["low_type"] == "Q2_K" and meta["n_positions"] == 15
    assert statistics.median(p["weight"] for p in probes.values()) == pytest.approx(1.0, rel=1e-12)
    for pid, p in probes.items():
        assert math.isfinite(p["kld"]) and p["kld"] > 0, pid  # every group changes the logits at 2 bits
        w = max(p["kld"], meta["kld_floor"]) / p["predicted"] / meta["median_divided_out"]
        assert p["weight"] == pytest.approx(w, rel=1e-12)
        assert all(obj[k] == p["weight"] for k in p["keys"])
    # attn_q_b's rows (q_lora_rank 128) are shorter than a Q2_K block: the recipes' Q8_0 fallback, recorded
    assert probes["blk.N.attn_q_b.weight"]["types"] == {"Q8_0": m.args.n_layers}
    assert probes["blk.2.ffn_exps"]["types"] == {"Q2_K": 3}
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no probe file or partial left


def test_in_memory_probe_equals_the_probe_file(full, source, text, tmp_path):
    """For a class probe and a layer's experts: the probe written as a model file (`_probe_plan` + `convert`, as
    scan did before it swapped weights in memory) and run by a fresh runtime gives the KLD the scan recorded,
    as the same float."""
    from dsv4_gguf.eval.backends.runtime import RuntimeBackend
    from dsv4_gguf.eval.metrics.kld import PositionStats, compare_sparse, summarize
    from dsv4_gguf.eval.metrics.kld_file import scored_first
    from dsv4_gguf.eval.tasks.kld import _chunks
    from dsv4_gguf.quantize.convert import convert
    from dsv4_gguf.quantize.recipes import Planned
    from dsv4_gguf.quantize.requantize import produce_from_gguf
    from dsv4_gguf.quantize.sensitivity import _probe_plan, probes
    from dsv4_gguf.quantize.target import adjustable

    from dsv4_gguf import open_gguf

    ctx, top_k = 32, 64  # FAST, and scan's default top-k
    m = open_gguf(source, mtp=False)
    base = [Planned(t, m.info(t.name).qtype, "stored") for t in m.gtensors()]
    todo = [p for p in probes(adjustable(base)[1]) if re.fullmatch(SUBSET, p.id)]
    assert sorted(p.id for p in todo) == ["blk.1.ffn_exps", "blk.N.attn_q_a.weight"]
    ref = RuntimeBackend(source, n_ctx=ctx, threads=2)
    chunks = _chunks(ref.tokenize(text.read_text(encoding="utf-8")), ctx, ref.bos_id, 1)
    first = scored_first(ctx)
    refs = [ref.prompt_topk(c, first, top_k) for c in chunks]
    ref.close()
    recorded = full[1]["_meta"]["probes"]
    for p in todo:
        path = tmp_path / f"{p.id}.gguf"
        convert(_probe_plan(m, base, p, GGMLQuantizationType.Q2_K, path), m, make=partial(produce_from_gguf, model=m))
        cand = RuntimeBackend(path, n_ctx=ctx, threads=2)
        st = PositionStats.concat([compare_sparse(r, cand.logits(c, first)) for r, c in zip(refs, chunks, strict=True)])
        cand.close()
        kld = summarize(st)["kld_mean"]
        print(f"{p.id}: probe file {kld!r}, in memory {recorded[p.id]['kld']!r}")
        assert kld == recorded[p.id]["kld"] > 0, p.id


def test_deterministic_and_resumable(full, source, text, tmp_path, monkeypatch):
    """A second run, interrupted after its first probe and resumed (measuring only the rest), writes the same
    bytes as the first; the KLDs of both equal the full scan's bit for bit."""
    from dsv4_gguf.runtime import Model

    argv = ["sensitivity", str(source), "--text", str(text), "--only", SUBSET, *FAST]
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    assert main([*argv, "-o", str(a)]) == 0
    sub = json.loads(a.read_text())["_meta"]["probes"]
    assert sorted(sub) == ["blk.1.ffn_exps", "blk.N.attn_q_a.weight"]
    for pid, p in sub.items():
        assert p["kld"] == full[1]["_meta"]["probes"][pid]["kld"], pid

    real, calls = Model.override_weights, []

    def override(self, weights):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, weights)

    monkeypatch.setattr(Model, "override_weights", override)
    assert main([*argv, "-o", str(b)]) == 130
    assert not b.exists() and list(json.loads((tmp_path / "b.json.partial").read_text())["probes"]) == [
        "blk.N.attn_q_a.weight"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.json.partial"]  # nothing else written
    calls.clear()
    monkeypatch.setattr(Model, "override_weights", lambda self, w: (calls.append(1), real(self, w))[1])
    assert main([*argv, "-o", str(b), "--resume"]) == 0
    assert len(calls) == 1  # only the probe the partial file lacked
    assert b.read_bytes() == a.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.json"]


def test_lower_type_costs_more_kld(full, source, text, tmp_path):
    """The same groups dropped to Q4_K instead of Q2_K: a smaller KLD for each (a real property of the runtime's
    logits, not of the file's arithmetic)."""
    out = tmp_path / "q4.json"
    argv = ["sensitivity", str(source), "--text", str(text), "--only", SUBSET, "--low-type", "q4_k", "-o", str(out)]
    assert main([*argv, *FAST]) == 0
    hi = json.loads(out.read_text())["_meta"]
    assert hi["low_type"] == "Q4_K"
    for pid, p in hi["probes"].items():
        lo = full[1]["_meta"]["probes"][pid]
        assert p["types"] == {"Q4_K": sum(lo["types"].values())}
        assert lo["kld"] > p["kld"] > 0, (pid, lo["kld"], p["kld"])
        print(f"{pid}: KLD Q2_K {lo['kld']:.4g} > Q4_K {p['kld']:.4g}")


def test_file_changes_the_target_size_mix(full, source, tmp_path, capsys):
    """requantize --target-size with the file: a different mix, with at least as many bits on the group the file
    weighs most and at most as many on the one it weighs least (per element, the file's extremes)."""
    from dsv4_gguf.quantize.recipes import load_recipe_file

    path, obj = full
    mixes = {}
    for tag, extra in (("plain", []), ("sens", ["--sensitivity", str(path)])):
        rj = tmp_path / f"{tag}.json"
        argv = ["requantize", str(source), str(tmp_path / "o.gguf"), "--type", "SOURCE", "--target-size", "60M"]
        assert main([*argv, "--dry-run", "--write-recipe", str(rj), *extra]) == 0
        rules = load_recipe_file(rj).rules
        mixes[tag] = {}
        for r in rules:  # the mix's own rules come first; the base recipe's after them
            if r.match is not None:
                mixes[tag].setdefault(r.match.pattern, r.type)
    capsys.readouterr()
    assert mixes["plain"] != mixes["sens"]
    probes = obj["_meta"]["probes"]
    single = {pid: p for pid, p in probes.items() if p["keys"] == [pid] and not pid.startswith("blk.N.")}
    top, bottom = max(single, key=lambda k: single[k]["weight"]), min(single, key=lambda k: single[k]["weight"])

    def bpw(tag: str, name: str) -> float:
        block, size = GGML_QUANT_SIZES[GGMLQuantizationType[mixes[tag]["^" + re.escape(name) + "$"]]]
        return 8 * size / block

    assert top != bottom
    assert bpw("sens", top) >= bpw("plain", top) and bpw("sens", bottom) <= bpw("plain", bottom)
    assert (bpw("sens", top), bpw("sens", bottom)) != (bpw("plain", top), bpw("plain", bottom))


def test_bad_inputs_exit_2(source, text, tmp_path, convert_tiny, capsys):
    def run(*argv: str) -> tuple[int, str]:
        rc = main(["sensitivity", *argv, "-o", str(tmp_path / "s.json"), *FAST])
        return rc, capsys.readouterr().err

    cases = [
        ((str(source), "--text", str(tmp_path / "nope.txt")), r"--text .*nope\.txt: no such file"),
        ((str(tmp_path / "nope.gguf"), "--text", str(text)), r"nope\.gguf: no such GGUF file"),
        ((str(convert_tiny("Q8_0", mtp=False)), "--text", str(text)), r"is stored as Q8_0; MODEL must be unquantized"),
        ((str(source), "--text", str(text), "--low-type", "Q9_K"), r"--low-type 'Q9_K': not a quantized type"),
        ((str(source), "--text", str(text), "--low-type", "IQ2_XXS"), r"needs an importance matrix: add --imatrix"),
        ((str(source), "--text", str(text), "--low-type", "mxfp4"), r"holds the FP4 experts exactly"),
        ((str(source), "--text", str(text), "--only", "nothing-matches"), r"--only 'nothing-matches' matches no probe"),
    ]
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n", encoding="utf-8")
    cases.append(((str(source), "--text", str(empty)), r"the file is empty"))
    short = tmp_path / "short.txt"
    short.write_text("the river", encoding="utf-8")
    cases.append(((str(source), "--text", str(short)), r"fewer than one --ctx 32 chunk; lower --ctx"))
    for argv, msg in cases:
        rc, err = run(*argv)
        assert rc == 2, (argv, err)
        assert re.search(r"^dsv4-gguf sensitivity: error: .*" + msg, err), (argv, err)
        assert len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.txt", "short.txt"]  # nothing written
    (tmp_path / "s.json").write_text("{}")
    rc, err = run(str(source), "--text", str(text))
    assert rc == 1 and "s.json: already exists; choose another -o or pass --overwrite" in err


def test_bf16_variant_is_a_reference_a_requantized_lossy_one_is_not(source, text, convert_tiny, tmp_path, capsys):
    """A BF16 file made from SOURCE passes the check; a BF16 file made from a Q8_0 file (float types, lossy
    values, ``dsv4.requantized_from``) is refused with exit status 2."""
    from dsv4_gguf.quantize.sensitivity import check_unquantized

    from dsv4_gguf import open_gguf

    good, bad = tmp_path / "bf16.gguf", tmp_path / "q8-bf16.gguf"
    assert main(["requantize", str(source), str(good), "--type", "BF16"]) == 0
    assert main(["requantize", str(convert_tiny("Q8_0", mtp=False)), str(bad), "--type", "BF16"]) == 0
    capsys.readouterr()
    check_unquantized(open_gguf(good, mtp=False))
    rc = main(["sensitivity", str(bad), "--text", str(text), "-o", str(tmp_path / "s.json"), *FAST])
    err = capsys.readouterr().err
    assert rc == 2 and "was requantized from Q8_0" in err and "weights are lossy" in err, err
    assert not (tmp_path / "s.json").exists()


def test_meta_key_must_be_the_record(tmp_path):
    from dsv4_gguf.quantize.target import TargetError, load_sensitivity

    f = tmp_path / "s.json"
    f.write_text('{"blk.N.attn_q_a.weight": 2.0, "_meta": {"probes": {}}}')
    assert load_sensitivity(f) == {"blk.N.attn_q_a.weight": 2.0}
    f.write_text('{"blk.N.attn_q_a.weight": 2.0, "_meta": 3}')
    with pytest.raises(TargetError, match="'_meta' must be an object"):
        load_sensitivity(f)
    f.write_text('{"_meta": {}, "x": 0}')
    with pytest.raises(TargetError, match="weight of 'x' must be a positive number"):
        load_sensitivity(f)


def test_help_names_options_that_exist_where_it_says():
    """The help's next step names options of requantize/convert (kept out of the part the help test checks
    against this command's own options): each exists on both."""
    from dsv4_gguf.quantize.sensitivity import EPILOG, EPILOG_OPTIONS

    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    assert set(re.findall(r"(?<![\w-])(--[a-z][\w-]*)", EPILOG)) == set(EPILOG_OPTIONS)
    for cmd in ("convert", "requantize"):
        have = {s for a in sub.choices[cmd]._actions for s in a.option_strings}
        assert set(EPILOG_OPTIONS) <= have, cmd
    assert sub.choices["sensitivity"].epilog == EPILOG
