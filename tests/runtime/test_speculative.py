"""Speculative decoding with the MTP block (dsv4_gguf/speculative.py) on the converter's tiny GGUFs + MTP sidecar.

- ``Session.checkpoint`` / ``rollback``: after a verify chunk of 1 + k tokens and a rollback to any accepted
  prefix, continuing gives the logits (main and MTP) of a session that never saw the rejected tokens, bit
  for bit, at positions where the rejected tokens wrap the attention window and complete m = 4 (CSA,
  indexer) and m = 128 (HCA) compressed blocks.
- Greedy speculative == greedy plain, token for token, over 600 tokens on every converter variant: with an
  oracle drafter (the plain continuation, kept or spoiled by a fixed rule, so that accepted and rejected
  drafts both occur and rejected drafts land on block-completing positions) and with the MTP block's own
  drafts.
- Sampling: the acceptance rule gives the target distribution (chi-square over enough draws to see a 2 %
  shift, with the shifted and the always-accept controls rejected), and runtime draws follow the target.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from dsv4_gguf.quantize.recipes import recipe_names

from dsv4_gguf import runtime, speculative
from dsv4_gguf.speculative import (
    PROBE_BUDGET,
    PROBE_EVERY,
    PROBE_MAX,
    SHADOW,
    SpecStats,
    _Auto,
    accept_or_resample,
    probs,
    speculate,
)

VARIANTS = recipe_names()  # every recipe the converter ships
PROMPT = "Speculative decoding: the tapir walks at dawn, one, two, three."


@pytest.fixture(scope="module")
def mxfp4(convert_tiny):
    return runtime.load(convert_tiny("MXFP4_MOE"), threads=2)


def _clone(model, path, ctx=800):
    s = model.session(ctx=ctx, mtp=True)
    s.load_state(path)
    return s


@pytest.mark.parametrize("p0", [126, 127, 253, 254, 255])
def test_rollback_is_exact(mxfp4, p0, tmp_path):
    rng = np.random.default_rng(p0)
    V = mxfp4.vocab_size
    toks = rng.integers(0, V, p0 + 1).astype(np.int32)
    base = mxfp4.session(ctx=800, mtp=True)
    base.prefill(toks[:p0])
    base.save(tmp_path / "prefix.state")
    cont = rng.integers(0, V, 6).astype(np.int32)
    for k in (1, 3):
        drafts = rng.integers(0, V, k).astype(np.int32)
        for acc in (0, k - 1, k):
            a = _clone(mxfp4, tmp_path / "prefix.state")
            a.checkpoint()
            a.prefill(np.concatenate([toks[p0 : p0 + 1], drafts]), all_logits=True)
            a.rollback(p0 + 1 + acc)
            assert a.pos == p0 + 1 + acc and a.mtp_pos == 0
            b = _clone(mxfp4, tmp_path / "prefix.state")
            b.prefill(np.concatenate([toks[p0 : p0 + 1], drafts[:acc]]), all_logits=True)
            got, want = a.prefill(cont, all_logits=True), b.prefill(cont, all_logits=True)
            assert np.array_equal(got, want), f"p0 {p0} k {k} accepted {acc}: main logits differ after rollback"
            n = a.pos - a.mtp_pos
            nxt = rng.integers(0, V, n).astype(np.int32)
            assert np.array_equal(a.mtp(nxt, all_logits=True), b.mtp(nxt, all_logits=True)), (p0, k, acc)


def test_mtp_self_steps_are_provisional(mxfp4, tmp_path):
    """Drafts 2..k come from the MTP block applied to its own output; those positions are undone exactly by
    mtp_discard, by the next mtp call and by rollback: the MTP block continues as if they never ran."""
    rng = np.random.default_rng(7)
    V = mxfp4.vocab_size
    toks = rng.integers(0, V, 140).astype(np.int32)
    a = mxfp4.session(ctx=300, mtp=True)
    a.prefill(toks[:130])
    a.save(tmp_path / "p.state")
    b = _clone(mxfp4, tmp_path / "p.state", ctx=300)
    first_a = a.mtp(toks[1:131])
    assert np.array_equal(first_a, b.mtp(toks[1:131]))
    d1 = int(np.argmax(first_a))
    s1 = a.mtp_self(d1)
    s2 = a.mtp_self(int(np.argmax(s1)))
    assert a.mtp_pos == 132 and np.isfinite(s2).all() and not np.array_equal(s1, s2)
    with pytest.raises(ValueError, match="provisional"):
        a.save(tmp_path / "no.state")
    a.mtp_discard()
    assert a.mtp_pos == 130
    assert np.array_equal(a.mtp_self(d1), s1)  # the same provisional step again, bit for bit
    # a verify chunk, a rollback with provisional positions pending, then both sessions continue alike
    for s in (a, b):
        s.checkpoint()
        s.prefill(toks[130:133], all_logits=True)
    a.mtp_self(int(toks[131]))
    a.rollback(131)
    b.rollback(131)
    assert a.mtp_pos == b.mtp_pos == 130
    assert np.array_equal(a.mtp(toks[131:132]), b.mtp(toks[131:132]))
    assert np.array_equal(a.prefill(toks[131:136], all_logits=True), b.prefill(toks[131:136], all_logits=True))


def test_mtp_catch_up_equals_position_by_position(mxfp4):
    """An mtp() call over many positions computes only the window KV rows of those before the last (nobody
    reads their draft): its last logits, and every draft after it, equal feeding the positions one at a time
    and computing every position whole (all_logits), bit for bit, with the catch-up longer than the 128-row
    window so that the ring wraps inside it."""
    rng = np.random.default_rng(3)
    V = mxfp4.vocab_size
    toks = rng.integers(0, V, 320).astype(np.int32)
    a, b, c = (mxfp4.session(ctx=400, mtp=True) for _ in range(3))
    for s in (a, b, c):
        s.prefill(toks[:300])
    got = a.mtp(toks[1:200])  # 199 positions, 198 of them KV rows only
    one = [b.mtp(toks[i : i + 1]) for i in range(1, 200)]
    whole = c.mtp(toks[1:200], all_logits=True)
    assert np.array_equal(got, one[-1]) and np.array_equal(got, whole[-1])
    for s in (a, b, c):
        assert s.mtp_pos == 199
    nxt = [a.mtp(toks[200:260]), b.mtp(toks[200:260], all_logits=True)[-1], c.mtp(toks[200:260])]
    assert np.array_equal(nxt[0], nxt[1]) and np.array_equal(nxt[0], nxt[2])
    d = int(np.argmax(nxt[0]))
    assert np.array_equal(a.mtp_self(d), b.mtp_self(d))


def test_speculation_continues_a_session(mxfp4):
    """A prompt appended to a session that holds an earlier turn: the MTP block catches up from where it stopped
    (the earlier turn's tokens are not given again) and greedy speculation equals plain greedy over the whole
    context; a session whose MTP block stopped before the earlier turn's end is refused with the fix."""
    rng = np.random.default_rng(5)
    t1, t2 = (rng.integers(3, mxfp4.vocab_size, n).astype(np.int32) for n in (40, 9))
    plain = mxfp4.session(ctx=200)
    lg = plain.prefill(np.concatenate([t1, t2]))
    want = [int(np.argmax(lg))]
    for _ in range(39):
        want.append(int(np.argmax(plain.decode(want[-1]))))
    s = mxfp4.session(ctx=200, mtp=True)
    s.prefill(t1)
    s.mtp(t1[1:])  # positions 0..38; position 39 waits for t2[0]
    lg = s.prefill(t2)
    got = []
    for tok in speculate(s, list(t2), lg, temperature=0, top_p=1.0, rng=np.random.default_rng(0), draft=2):
        got.append(tok)
        if len(got) == 40:
            break
    assert got == want
    behind = mxfp4.session(ctx=200, mtp=True)
    behind.prefill(t1)
    lg = behind.prefill(t2)
    with pytest.raises(ValueError, match="session.mtp"):
        next(iter(speculate(behind, list(t2), lg, temperature=0, top_p=1.0, rng=np.random.default_rng(0))))


@pytest.mark.parametrize("variant", ["MXFP4_MOE", "Q4_K_M"])
def test_chunk_logits_equal_decode_logits(convert_tiny, variant):
    """What greedy speculation rests on: a verify chunk's logits are those of one-token decode steps, bit for
    bit, in the default (fast) mode too: BF16 head (MXFP4_MOE, several tokens per converted row) and Q6_K head."""
    m = runtime.load(convert_tiny(variant), threads=2)
    toks = np.random.default_rng(11).integers(0, m.vocab_size, 160).astype(np.int32)
    a, b = m.session(ctx=256), m.session(ctx=256)
    a.prefill(toks[:100])
    b.prefill(toks[:100])
    dec = np.stack([a.decode(int(t)) for t in toks[100:160]])
    got, p = [], 100
    for n in (2, 3, 4, 5, 1, 7, 2, 4, 4, 16, 12):
        got.append(b.prefill(toks[p : p + n], all_logits=True))
        p += n
    assert p == 160
    assert np.array_equal(np.concatenate(got), dec)


def test_cli_speculative_prints_the_plain_text(convert_tiny, capsys):
    """`run --speculative mtp` (k = 2, a Q4_0 draft head) prints the plain greedy text, and its stats line counts the
    drafts; `--draft-head` accepts only the listed choices."""
    from dsv4_gguf.cli import main

    path = str(convert_tiny("MXFP4_MOE"))
    base = ["run", path, "-p", PROMPT, "-n", "40", "--temperature", "0", "-c", "256"]
    assert main(base) == 0
    plain = capsys.readouterr().out
    assert main([*base, "--speculative", "mtp", "--draft", "2", "--draft-head", "q4_0"]) == 0
    out = capsys.readouterr()
    assert out.out == plain and plain.strip()
    assert "drafts accepted" in out.err
    with pytest.raises(SystemExit) as e:
        main([*base, "--draft-head", "q2_k"])
    assert e.value.code == 2


def test_rollback_errors(mxfp4):
    s = mxfp4.session(ctx=512, mtp=True)
    s.prefill(list(range(10)))
    with pytest.raises(ValueError, match="no checkpoint"):
        s.rollback(9)
    s.checkpoint()
    assert s.checkpoint_pos == 10
    s.prefill([1, 2, 3], all_logits=True)
    with pytest.raises(ValueError, match="outside the checkpoint range"):
        s.rollback(9)
    with pytest.raises(ValueError, match="outside the checkpoint range"):
        s.rollback(14)
    s.mtp(list(range(1, 13)))  # the MTP block consumes positions up to 11
    with pytest.raises(ValueError, match="already consumed"):
        s.rollback(11)
    s.rollback(12)
    assert s.pos == 12
    s.prefill(list(range(200)))  # longer than the attention window: the checkpoint is dropped
    assert s.checkpoint_pos == -1
    with pytest.raises(ValueError, match="no checkpoint"):
        s.rollback(s.pos - 1)


def _plain(model, n):
    out = list(model.generate(PROMPT, max_tokens=n, temperature=0, ctx=len(model.encode(PROMPT)) + n + 2))
    assert out and model.last_stats.stop_reason == "max_tokens"
    return list(model.last_stats.tokens)


def _spec(model, n, **kw):
    """Greedy speculative decoding through the public API (``generate(speculative="mtp")``)."""
    list(
        model.generate(
            PROMPT, max_tokens=n, temperature=0, ctx=len(model.encode(PROMPT)) + n + 2, speculative="mtp", **kw
        )
    )
    return list(model.last_stats.tokens), model.last_stats.spec


def _spec_drafter(model, n, drafter, draft=1):
    """Greedy speculative decoding with a drafter override (``speculate``, what ``generate`` runs)."""
    ids = model.encode(PROMPT)
    sess = model.session(ctx=len(ids) + n + 2, mtp=True)
    first = sess.prefill(ids)
    st, out = SpecStats(), []
    rng = np.random.default_rng(0)
    for tok in speculate(sess, ids, first, temperature=0, top_p=1.0, rng=rng, stats=st, drafter=drafter, draft=draft):
        out.append(tok)
        if len(out) == n:
            break
    return out, st


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
def test_greedy_speculative_equals_plain(convert_tiny, variant, monkeypatch):
    m = runtime.load(convert_tiny(variant), threads=2)
    n, n_prompt = 600, len(m.encode(PROMPT))
    plain = _plain(m, n)

    def oracle(decided: dict[int, bool]):  # noqa: ANN202
        def draft(i: int, mtp_token: int) -> int:
            p = n_prompt + i  # where output token i is fed
            keep = (p + 1) % 128 != 0 and (p * 2654435761) % 7 < 5  # ~70 % kept, never at an HCA block end
            decided[p] = keep
            return plain[i] if keep else (plain[i] + 1) % m.vocab_size

        return draft

    for k in (1, 2, 3):
        decided: dict[int, bool] = {}  # position of a verified draft -> kept
        got, st = _spec_drafter(m, n, oracle(decided), draft=k)
        assert got == plain, f"{variant} k={k}: speculative output differs from plain greedy"
        assert st.steps > 100 and 0.3 < st.acceptance < 0.9, (k, st)
        rejected = [p for p, keep in decided.items() if not keep]
        assert any((p + 1) % 128 == 0 for p in rejected), f"k={k}: no rejected draft completed an m=128 block"
        assert any((p + 1) % 4 == 0 for p in rejected), f"k={k}: no rejected draft completed an m=4 block"
        assert any((p + 1) % 4 == 0 for p, keep in decided.items() if keep), f"k={k}: no kept draft ended an m=4 block"
    if variant in ("MXFP4_MOE", "Q4_K_M"):
        # draft="auto" with a good drafter: probes, verify steps and plain steps alternate (the MTP block catches
        # up after plain stretches).  On the tiny model an MTP pass costs about a decode step, so the policy would
        # rightly never verify; an optimistic prior for the untimed k = 1 step makes it try.
        with monkeypatch.context() as mp:
            mp.setattr(speculative, "VERIFY_PRIOR", 0.0)
            got, st = _spec_drafter(m, n, oracle({}), draft="auto")
        assert got == plain, f"{variant} draft=auto: speculative output differs from plain greedy"
        assert st.steps > 0 and st.probes > 0, st
        for draft in (1, 2, 3, "auto"):
            got, st = _spec(m, n, draft=draft)
            assert got == plain, f"{variant} draft={draft}: MTP-drafted output differs from plain greedy"
            if draft == "auto":  # the random MTP block is a poor drafter: probes only, no verify step
                assert st.probes > 0 and st.plain == n - 1 and st.steps == 0, st
            else:
                assert st.steps > 0 and st.plain == 0, st


def _chi2(counts: np.ndarray, p: np.ndarray) -> tuple[float, int]:
    """Chi-square statistic of `counts` against `p`, bins with expected count < 5 pooled into one."""
    exp = p * counts.sum()
    small = exp < 5
    o = np.append(counts[~small], counts[small].sum())
    e = np.append(exp[~small], exp[small].sum())
    o, e = o[e > 0], e[e > 0]
    return float((((o - e) ** 2) / e).sum()), int(e.size - 1)


def _crit(df: int) -> float:
    """Upper 0.1 % point of chi-square(df) (Wilson-Hilferty)."""
    z = 3.0902
    return df * (1 - 2 / (9 * df) + z * np.sqrt(2 / (9 * df))) ** 3


def test_acceptance_rule_gives_the_target_distribution():
    rng = np.random.default_rng(0)
    V, N = 40, 100_000
    p = rng.dirichlet(np.full(V, 0.7))
    q = rng.dirichlet(np.full(V, 0.7))  # a poor drafter: acceptance well below 1
    draws = np.empty(N, np.int64)
    kept = 0
    for i in range(N):
        d = int(rng.choice(V, p=q))
        ok, draws[i] = accept_or_resample(p, q, d, rng)
        kept += ok
    counts = np.bincount(draws, minlength=V)
    stat, df = _chi2(counts, p)
    assert stat < _crit(df), f"speculative draws do not follow p: chi2 {stat:.1f} (df {df})"
    assert 0.3 < kept / N < 0.9
    # the test has the power to see a 2 % shift of mass, and a rule that always accepts
    shifted = p.copy()
    i, j = np.argsort(p)[-2:]
    shifted[i] -= 0.02
    shifted[j] += 0.02
    assert _chi2(counts, shifted)[0] > _crit(df), "chi-square cannot tell a 2% shift at this N"
    assert _chi2(np.bincount(rng.choice(V, N, p=q), minlength=V), p)[0] > _crit(df)


@pytest.mark.parametrize("k", [1, 3])
def test_runtime_speculative_sampling_follows_the_target(mxfp4, tmp_path, k):
    """Second token of a speculative run from a fixed context, drawn many times: its distribution is the
    target's (the logits of a plain decode of the first token), over the bins the target puts mass on."""
    ids = mxfp4.encode("one two three")
    s = mxfp4.session(ctx=64, mtp=True)
    first = s.prefill(ids)
    x = int(np.argmax(first))
    s.save(tmp_path / "ctx.state")
    ref = mxfp4.session(ctx=64)
    ref.prefill(ids)
    temp = 2.0  # spread the random-weight logits: the top token ~22 %, the next seven ~14 % together
    p = probs(ref.decode(x), temp, 1.0)
    onehot = np.full_like(first, -1e9)
    onehot[x] = 0.0  # the first token is x for every draw
    N, counts, st = 400, np.zeros(p.size, np.int64), SpecStats()
    rng = np.random.default_rng(1)
    for _ in range(N):
        sess = _clone(mxfp4, tmp_path / "ctx.state", ctx=64)
        it = speculate(sess, ids, onehot, temperature=temp, top_p=1.0, rng=rng, stats=st, draft=k)
        assert next(it) == x
        counts[next(it)] += 1
    top = np.argsort(p)[-8:]
    binned = np.append(counts[top], N - counts[top].sum())
    pb = np.append(p[top], 1 - p[top].sum())
    stat, df = _chi2(binned, pb)
    assert stat < _crit(df), f"runtime speculative sampling: chi2 {stat:.1f} (df {df}), counts {binned}, p {pb}"
    assert st.steps == N and 0 < st.accepted < N * k


@pytest.mark.parametrize(
    ("acc", "t_step", "want"),
    [
        (0.0, [1.0, 2.5, 3.5, 4.5], 0),  # a useless drafter: plain decoding, rare probes
        (0.9, [1.0, 1.3, 1.5, 1.7], 3),  # a good drafter and cheap verify steps: the most drafts
        (0.9, [1.0, 1.3, 2.6, 3.9], 1),  # costly extra drafts: one
        (0.3, [1.0, 1.5, 2.0, 2.5], 0),  # (1 + 0.3) / 1.5 < 1: plain
        (0.7, [1.0, 1.3, 1.9, 2.5], 1),  # t(1) above the estimate before it is timed: still found
    ],
)
def test_auto_policy_picks_the_fastest(acc, t_step, want):
    """The policy settles on the k with the most tokens per second; acceptance comes from probes (plain steps that
    check the MTP draft, costing t_mtp) and from real steps.  A useless drafter never gets a verify step after the
    first probe, and its probes back off to one per PROBE_MAX / 2 tokens or fewer."""
    rng = np.random.default_rng(0)
    a = _Auto()
    picks = []
    for _ in range(2000):
        k = a.choose()
        picks.append(k)
        if k == SHADOW:
            a.probe(float(rng.random() < acc), 0.3, t_step[0])
        elif k == 0:
            a.plain_step(t_step[0])
        else:
            kept = 0
            while kept < k and rng.random() < acc:
                kept += 1
            a.spec_step(k, kept, t_step[k])
    assert picks[0] == SHADOW
    tail = np.array(picks[1000:])
    assert np.bincount(tail[tail >= 0], minlength=4).argmax() == want, np.bincount(tail[tail >= 0], minlength=4)
    if want == 0:
        assert (tail > 0).sum() == 0, "verify steps for a drafter that loses"
        assert (tail == SHADOW).sum() <= 2 * len(tail) // PROBE_MAX + 1, (tail == SHADOW).sum()
    if acc == 0.0:
        assert all(k <= 0 for k in picks), "a drafter with no hits never gets a verify step"


@pytest.mark.parametrize("t_mtp", [0.15, 0.3, 0.8, 9.0])
def test_auto_probes_keep_to_their_budget(t_mtp):
    """With a drafter that never hits, the plain tokens between probes are PROBE_EVERY, doubling up to PROBE_MAX,
    but never fewer than t_mtp / (PROBE_BUDGET * t_plain) (itself capped at PROBE_MAX): an MTP pass that costs 0.8
    of a decode step waits 80 tokens, one that costs 15 % of it PROBE_EVERY (the t(1) prior keeps all four plain)."""
    a = _Auto()
    picks = []
    for _ in range(1200):
        k = a.choose()
        picks.append(k)
        if k == SHADOW:
            a.probe(0.0, t_mtp, 1.0)
        else:
            a.plain_step(1.0)
    at = [i for i, k in enumerate(picks) if k == SHADOW]
    gaps = [b - a - 1 for a, b in itertools.pairwise(at)]
    floor = min(PROBE_MAX, int(np.ceil(t_mtp / PROBE_BUDGET)))
    assert at[0] == 0
    assert gaps == [max(floor, min(PROBE_MAX, PROBE_EVERY << i)) for i in range(len(gaps))], gaps
    if floor < PROBE_MAX:  # every gap's probe costs at most the budget of the plain steps before it
        assert all(t_mtp <= PROBE_BUDGET * g for g in gaps), gaps
    assert {0.15: 16, 0.3: 30, 0.8: 80, 9.0: PROBE_MAX}[t_mtp] == gaps[0]
    assert all(k <= 0 for k in picks)
