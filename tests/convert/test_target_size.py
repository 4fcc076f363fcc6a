"""``--target-size`` / ``--target-bpw``: the budget is met (never exceeded, within 1%) on the Flash and Pro plans
and on a real tiny file; the same inputs give the same mix; the mix round-trips through ``--recipe``; the recipe
is in the GGUF's metadata; budgets outside the ladder's range and malformed inputs fail with clear errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

from dsv4_gguf.config import PRESETS

BUDGETS = {"flash": ["75G", "90GB", "120G"], "pro": ["400G", "450GiB", "600G"]}


def _problem(preset: str, base: str = "SOURCE", **kw):
    from dsv4_gguf.quantize.convert import make_plan
    from dsv4_gguf.quantize.recipes import load_recipe
    from dsv4_gguf.quantize.target import TargetProblem

    from dsv4_gguf.names import gguf_tensors

    args = PRESETS[preset]

    def build(r, kvs):
        return make_plan(args, r, Path("x.gguf"), ckpt_dir=None, extra_kvs=kvs)

    return TargetProblem(args, gguf_tensors(args, mtp=True), load_recipe(base), build, **kw)


def _types(plan) -> dict[tuple[str, str], str]:
    return {(p.tensor.file, p.tensor.name): p.qtype.name for p in plan.entries}


@pytest.fixture(scope="module")
def problems() -> dict:
    return {}


@pytest.mark.parametrize("preset", ["flash", "pro"])
def test_preset_budgets_met_within_one_percent(preset, problems):
    from dsv4_gguf.quantize.target import RECIPE_KEY, format_target, parse_budget

    tp = problems.setdefault(preset, _problem(preset))
    for text in BUDGETS[preset]:
        budget = parse_budget(text)
        plan, rep = tp.solve(budget)
        assert 0.99 * budget.value <= plan.total_bytes <= budget.value, (text, plan.total_bytes)
        assert rep.planned == plan.total_bytes
        assert rep.smallest < plan.total_bytes and plan.total_bytes <= rep.largest
        kv = {k.key: k.value for k in plan.files[0].kvs}
        assert json.loads(kv[RECIPE_KEY])["name"] == plan.recipe.name == f"TARGET-{budget.label}"
        print(f"{preset} {text}: {plan.total_bytes:,} of {int(budget.value):,} ({format_target(rep).splitlines()[0]})")
    # bits are spent where the importance is: routed experts (read by 6 of 256 tokens) get fewer bits per
    # weight than the attention projections, which every token reads
    bpw = {}
    for p in plan.entries:
        for cls in ("ffn_gate_exps", "attn_q_b"):
            if cls in p.tensor.name:
                b = bpw.setdefault(cls, [0, 0])
                b[0], b[1] = b[0] + 8 * p.nbytes, b[1] + p.tensor.n_elements
    assert bpw["ffn_gate_exps"][0] / bpw["ffn_gate_exps"][1] < bpw["attn_q_b"][0] / bpw["attn_q_b"][1]


def test_target_bpw_and_determinism(problems):
    from dsv4_gguf.quantize.target import parse_budget, recipe_to_json

    tp = problems.setdefault("flash", _problem("flash"))
    budget = parse_budget(bpw=2.5)
    plan, rep = tp.solve(budget)
    data = sum(p.nbytes for p in plan.entries)
    assert 0.99 * rep.limit <= data <= rep.limit == int(2.5 * rep.n_weights / 8)
    # a second problem built from scratch (importance, err table, ladder) gives the same mix
    again, _ = _problem("flash").solve(budget)
    assert _types(again) == _types(plan)
    assert recipe_to_json(again.recipe) == recipe_to_json(plan.recipe)


def test_budget_outside_the_ladder(problems):
    from dsv4_gguf.quantize.target import TargetError, parse_budget

    tp = problems.setdefault("flash", _problem("flash"))
    with pytest.raises(TargetError, match=r"below the smallest plan, [\d,]+ bytes \(6\d\.\d\d GB\)"):
        tp.solve(parse_budget("50G"))
    with pytest.raises(TargetError, match=r"above the largest plan, [\d,]+ bytes \(167\.75 GB\)"):
        tp.solve(parse_budget("200G"))
    # a base whose fixed parts are smaller lowers the floor (compressor/indexer Q8_0 instead of BF16)
    lo = {}
    for base in ("SOURCE", "IQ2_XXS-MOE"):
        with pytest.raises(TargetError) as e:
            (tp if base == "SOURCE" else _problem("flash", base)).solve(parse_budget("1G"))
        lo[base] = int(re.search(r"smallest plan, ([\d,]+) bytes", str(e.value)).group(1).replace(",", ""))
    assert lo["IQ2_XXS-MOE"] < lo["SOURCE"]


def test_parse_budget_units():
    from dsv4_gguf.quantize.target import TargetError, parse_budget

    assert parse_budget("90G").value == parse_budget("90GB").value == 90e9
    assert parse_budget("85GiB").value == 85 * 2**30
    assert parse_budget("512MiB").value == 512 * 2**20 and parse_budget("1500").value == 1500
    assert parse_budget(bpw=2.5).kind == "bpw"
    for bad in ("90 apples", "-1G", "G"):
        with pytest.raises(TargetError, match="not a size"):
            parse_budget(bad)
    with pytest.raises(TargetError, match="one of --target-size"):
        parse_budget("90G", 2.0)
    with pytest.raises(TargetError, match="positive"):
        parse_budget(bpw=0.0)


def test_ladder_and_error_table():
    from dsv4_gguf.quantize.target import ladder, type_error

    from dsv4_gguf import _C
    from dsv4_gguf.constants import QTYPES

    plain, with_im = ladder(imatrix=False), ladder(imatrix=True)
    needs = {q for q in with_im if QTYPES[q].needs_imatrix}
    assert needs and not needs & set(plain) and set(plain) | needs == set(with_im)
    registered = {row[1] for row in _C.qtype_table()}
    assert {q.name for q in with_im} <= registered and "Q8_0" in {q.name for q in plain}
    bpw = [QTYPES[q].type_size / QTYPES[q].block_size for q in with_im]
    assert bpw == sorted(bpw)
    errs = {q.name: type_error(q) for q in with_im}
    assert errs["Q8_0"] < errs["Q6_K"] < errs["Q4_K"] < errs["Q3_K"] < errs["Q2_K"] < 0.2
    assert all(type_error(q) == errs[q.name] for q in with_im)  # measured once, deterministic


def test_imatrix_importance_counts_routing(micro_args):
    """With an imatrix, a routed tensor's importance is rows x its summed mean squared inputs weighted by how
    often each expert was routed; sensitivity factors multiply it; unknown sensitivity keys are refused."""
    from dsv4_gguf.quantize.imatrix import RawImatrix
    from dsv4_gguf.quantize.target import TargetError, importance

    from dsv4_gguf.names import gguf_tensors

    ts = {t.name: t for t in gguf_tensors(micro_args, mtp=False)}
    dense, exps = ts["blk.0.attn_q_a.weight"], ts["blk.0.ffn_down_exps.weight"]
    n_exp, rows, cols = exps.shape
    im = RawImatrix(
        sums={dense.name: np.full((1, dense.shape[1]), 2.0 * 100), exps.name: np.zeros((n_exp, cols))},
        counts={dense.name: np.array([100.0]), exps.name: np.zeros(n_exp)},
    )
    im.sums[exps.name][1] = 3.0 * 25  # expert 1: 25 of 100 tokens, mean square 3
    im.counts[exps.name][1] = 25
    groups = {dense.name: [dense], exps.name: [exps]}
    got = importance(groups, micro_args, im)
    assert got[dense.name][0] == pytest.approx(2.0 * dense.n_elements)
    assert got[exps.name][0] == pytest.approx(rows * cols * 3.0 * 25 / 100)
    scaled = importance(groups, micro_args, im, {"blk.N.attn_q_a.weight": 4.0})
    assert scaled[dense.name][0] == pytest.approx(4 * got[dense.name][0])
    # a name outside blk.N. is its own class: its factor applies once, not once as class and once as name
    out = ts["output.weight"]
    plain = importance({out.name: [out]}, micro_args)[out.name][0]
    assert importance({out.name: [out]}, micro_args, None, {out.name: 3.0})[out.name][0] == pytest.approx(3 * plain)
    with pytest.raises(TargetError, match="match no adjustable tensor"):
        importance(groups, micro_args, None, {"blk.N.nonexistent.weight": 2.0})


def test_embedding_counts_like_a_square_projection(micro_args):
    """A token reads one row of token_embd, but that row is the residual stream entering layer 0: without an
    imatrix its importance is that of a dense D x D projection (D^2), not D (the row's elements); with one,
    it is that times the median imatrix/fallback ratio (the imatrix does not see the lookup)."""
    from dsv4_gguf.quantize.imatrix import RawImatrix
    from dsv4_gguf.quantize.target import importance

    from dsv4_gguf.names import gguf_tensors

    ts = {t.name: t for t in gguf_tensors(micro_args, mtp=False)}
    emb, dense = ts["token_embd.weight"], ts["blk.0.attn_q_a.weight"]
    d = micro_args.dim
    assert emb.shape == (micro_args.vocab_size, d)
    got = importance({emb.name: [emb], dense.name: [dense]}, micro_args)
    assert got[emb.name][0] == pytest.approx(d * d)
    assert f"{d} x {d} projection" in got[emb.name][1]
    im = RawImatrix(sums={dense.name: np.full((1, dense.shape[1]), 5.0 * 10)}, counts={dense.name: np.array([10.0])})
    with_im = importance({emb.name: [emb], dense.name: [dense]}, micro_args, im)
    assert with_im[dense.name][0] == pytest.approx(5.0 * dense.n_elements)
    assert with_im[emb.name][0] == pytest.approx(5.0 * d * d)  # the median ratio: 5


def test_cli_dry_run_recipe_round_trip(tmp_path, capsys, monkeypatch):
    """`--dry-run` shows the budget line and the per-class plan; `--write-recipe` then `--recipe FILE` gives
    the same plan (types, total)."""
    from dsv4_gguf.cli import main

    monkeypatch.chdir(tmp_path)
    rj = tmp_path / "mix.json"
    argv = ["convert", "--preset", "flash", "--dry-run", "--no-mtp"]
    assert main([*argv, "--target-size", "90G", "--write-recipe", str(rj)]) == 0
    out = capsys.readouterr().out
    m = re.search(
        r"^target 90G: limit 90,000,000,000 file bytes, planned ([\d,]+) \(([\d.]+)% of the budget\)", out, re.M
    )
    assert m and 99.0 <= float(m.group(2)) <= 100.0
    total = int(re.search(r"^total: ([\d,]+) bytes", out, re.M).group(1).replace(",", ""))
    assert total == int(m.group(1).replace(",", "")) <= 90e9
    assert re.search(r"^  blk\.N\.ffn_gate_exps\.weight +\S+ +x\d+ +[\d,]+ B  90\.00GB: importance", out, re.M)
    assert main([*argv, "--recipe", str(rj)]) == 0
    again = capsys.readouterr().out
    assert "variant TARGET-90.00GB:" in again
    # same tensor lines; the total differs only by the dsv4.recipe key the target plan adds
    lines = lambda s: [ln for ln in s.splitlines() if ln.startswith("  blk.")]  # noqa: E731
    assert lines(again) == lines(out)
    total2 = int(re.search(r"^total: ([\d,]+) bytes", again, re.M).group(1).replace(",", ""))
    assert 0 < total - total2 < 200_000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mix.json"]  # a plan writes nothing else


def test_recipe_file_errors(tmp_path):
    from dsv4_gguf.quantize.recipes import RecipeError, load_recipe_file

    cases = {
        "missing": (None, "no such file"),
        "notjson": ("{", "not a JSON file"),
        "norules": ('{"name": "X", "file_type": 7, "description": "d"}', "needs 'rules' \\(list\\)"),
        "badtype": (
            '{"name": "X", "file_type": 7, "description": "d", "rules": [{"type": "Q7_K", "reason": "r"}]}',
            "rule 0: unsupported type 'Q7_K'",
        ),
        "badre": (
            '{"name": "X", "file_type": 7, "description": "d", "rules": [{"match": "(", "type": "Q8_0", '
            '"reason": "r"}]}',
            "rule 0: bad 'match' pattern",
        ),
        "extra": (
            '{"name": "X", "file_type": 7, "description": "d", "rules": [{"typo": 1, "type": "Q8_0", "reason": "r"}]}',
            "rule 0: unknown fields \\['typo'\\]",
        ),
    }
    for name, (text, msg) in cases.items():
        f = tmp_path / f"{name}.json"
        if text is not None:
            f.write_text(text)
        with pytest.raises(RecipeError, match=msg):
            load_recipe_file(f)


def test_tiny_real_file_meets_budget(tiny_ckpt, tmp_path, capsys):
    """A real conversion of the tiny model to 60 MB (file size on disk, never over, within 1%), with a sensitivity
    file; the recipe in the metadata is the one written, and planning it again gives the file's types."""
    from dsv4_gguf.quantize.convert import make_plan
    from dsv4_gguf.quantize.recipes import load_recipe_file
    from dsv4_gguf.quantize.target import RECIPE_KEY

    from dsv4_gguf import open_gguf
    from dsv4_gguf.cli import main

    sens, rj, out = tmp_path / "sens.json", tmp_path / "mix.json", tmp_path / "t.gguf"
    sens.write_text('{"token_embd.weight": 1000}')
    argv = ["convert", str(tiny_ckpt), "-o", str(out), "--no-mtp", "--target-size", "60M"]
    assert main([*argv, "--dry-run"]) == 0  # the same budget without the sensitivity file: token_embd's type
    cap = capsys.readouterr()
    plain = re.search(r"^  token_embd\.weight +(\w+) ", cap.out, re.M)
    assert plain, "the dry-run plan lists token_embd.weight"
    assert "note: no --sensitivity file" in cap.err  # the user is told the mix lacks the measured importance
    argv += ["--sensitivity", str(sens)]
    assert main([*argv, "--write-recipe", str(rj)]) == 0
    cap = capsys.readouterr()
    assert "--sensitivity" not in cap.err
    print(cap.out.splitlines()[0])
    size = out.stat().st_size
    assert 0.99 * 60e6 <= size <= 60e6, size
    m = open_gguf(out)
    assert json.loads(m.metadata[RECIPE_KEY]) == json.loads(rj.read_text())
    recipe = load_recipe_file(rj)
    plan = make_plan(m.args, recipe, out, ckpt_dir=tiny_ckpt, mtp=False)
    assert {p.tensor.name: p.qtype for p in plan.entries} == {n: m.info(n).qtype for n in m.names()}
    # the sensitivity factor counted: the embedding gets more bits per weight than it does without the file
    emb = m.info("token_embd.weight").qtype
    bpw = {q: GGML_QUANT_SIZES[q][1] / GGML_QUANT_SIZES[q][0] for q in (emb, GGMLQuantizationType[plain[1]])}
    assert bpw[emb] > bpw[GGMLQuantizationType[plain[1]]], (emb.name, plain[1])
    print(f"tiny 60M: file {size:,} bytes")


def test_allocation_window_and_optimality():
    """A coarse synthetic ladder (one tensor whose steps are far larger than the 1% window): the allocation
    lands in the window whenever some mix does, never over the budget, with a loss within 10% of the least loss
    of all mixes in the window (brute force over every combination; measured: max 1.06x, mean 1.005x; the greedy
    is optimal only at the budgets where it stops on the hulls)."""
    import itertools

    from dsv4_gguf.quantize.target import _allocate
    from gguf import GGMLQuantizationType as Q

    rng = np.random.default_rng(5)
    options = {}
    for i, scale in enumerate([40_000, 3_000, 2_000, 1_000, 500]):
        b = np.sort(rng.integers(scale // 4, scale, 4))
        loss = np.sort(rng.uniform(0, 10, 4))[::-1]
        options[f"t{i}"] = [(int(x), float(y), Q.Q8_0) for x, y in zip(b, loss, strict=True)]
    names = sorted(options)
    combos = [dict(zip(names, c, strict=True)) for c in itertools.product(*(options[n] for n in names))]
    lo = sum(min(o[0] for o in v) for v in options.values())
    hi = sum(max(o[0] for o in v) for v in options.values())
    hit, ratios = 0, []
    for budget in range(lo, hi + 1, max(1, (hi - lo) // 60)):
        slack = budget // 100
        got = _allocate(options, budget, slack)
        used = sum(o[0] for o in got.values())
        assert used <= budget
        window = [c for c in combos if budget - slack <= sum(o[0] for o in c.values()) <= budget]
        if window:
            hit += 1
            assert used >= budget - slack, (budget, used)
            best = min(sum(o[1] for o in c.values()) for c in window)
            got_loss = sum(o[1] for o in got.values())
            ratios.append(got_loss / best if best else 1.0)
            assert got_loss <= best * 1.10 + 1e-9, (budget, got_loss, best)
        assert _allocate(options, budget, slack) == got  # deterministic
    assert hit > 10
    print(f"loss / least loss in the window: max {max(ratios):.3f}, mean {np.mean(ratios):.3f}")
