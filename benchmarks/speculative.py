"""Speculative decoding with the MTP block against plain decoding, in the same run, on one GGUF + its MTP sidecar.

    python benchmarks/speculative.py --gguf DIR/flash-slice-MXFP4_MOE.gguf --threads 2 --tokens 64 \
        [--write benchmarks/RESULTS.md]

Per draft count k (and draft="auto"), per forced acceptance rate of an oracle drafter (the plain greedy
continuation, computed first; with k = 1 exactly a fraction a of its drafts right, in an even pattern with a
seeded phase, else each draft right with probability a by a seeded coin; a wrong draft is another token),
and with the MTP block's own drafts: measured acceptance, tokens per verify step, decode tok/s and its ratio
to plain decoding, and weight bytes streamed per generated token.
In the `oracle` rows the MTP block runs in every step (its cost is in every row), whatever token the oracle
then verifies; the `free oracle` rows (--free-accept) skip it, so that a step costs its verification only.
The MTP block consumes the prompt after prefill (as Model.generate does); that time is reported with the
prefill, not in decode.

Validation before timing: every speculative run must produce exactly the plain greedy tokens, or the
benchmark stops.  Bytes: the dense weights once per forward (token embedding: one row per token), each MoE
layer's routed experts as the union over the tokens of one forward (from the router's choices, recorded in a
separate untimed plain run), the MTP block and the head once per draft.  Each round runs plain decoding and
then every case once; the best of --rounds is kept for each.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from llama_peer import cpu_simd  # noqa: E402


def _weights(path: Path, draft_head: str) -> dict:
    """Bytes per forward of the main model: dense (read once per forward), per expert of each MoE layer, per
    embedding row; of the MTP sidecar: per draft step (its routed experts counted at K per token, its head at the
    runtime's draft head type when that copy is smaller than the file's)."""
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    from dsv4_gguf import open_gguf

    with open_gguf(path, mtp=False) as m:
        dense, expert, emb_row, K = 0, {}, 0, int(m.metadata.get("deepseek4.expert_used_count", 0))
        n_exp = int(m.metadata.get("deepseek4.expert_count", 0))
        for name in m.names():
            nb = m.info(name).nbytes
            if name == "token_embd.weight":
                emb_row = nb // m.info(name).shape[0]  # one [vocab, dim] row per token
            elif "_exps." in name:
                layer = int(name.split(".")[1])
                expert[layer] = expert.get(layer, 0) + nb // n_exp
            else:
                dense += nb
    side = path.with_name("mtp-" + path.name)
    mtp = 0
    if side.is_file():
        with open_gguf(side, mtp=False) as s:
            for name in s.names():
                nb = s.info(name).nbytes
                if name == "token_embd.weight":
                    mtp += emb_row  # one row per draft
                elif name == "output.weight" and draft_head != "model":
                    block, size = GGML_QUANT_SIZES[GGMLQuantizationType[draft_head]]
                    mtp += min(nb, s.info(name).shape[0] * s.info(name).shape[1] // block * size)
                else:
                    mtp += nb * K // n_exp if "_exps." in name else nb
    return {"dense": dense, "expert": expert, "emb_row": emb_row, "mtp_step": mtp, "K": K}


def _bytes(w: dict, routes: dict[int, np.ndarray], chunks: list[tuple[int, int]], mtp_steps: int) -> float:
    """Bytes streamed by forwards over position ranges ``chunks`` (start, length) plus ``mtp_steps`` MTP
    draft steps; ``routes[layer][pos]`` = expert ids of the token at pos."""
    total = mtp_steps * w["mtp_step"]
    for p0, n in chunks:
        total += w["dense"] + n * w["emb_row"]
        for layer, per_exp in w["expert"].items():
            total += per_exp * len(np.unique(routes[layer][p0 : p0 + n]))
    return float(total)


def _oracle(plain: list[int], rate: float, seed: int, vocab: int, exact: bool):  # noqa: ANN202
    """The drafter at a forced acceptance rate: each draft is the plain continuation's token (right) or a wrong one.
    ``exact`` (k = 1, where every draft is checked): exactly ``rate`` of the calls are right, in an even pattern
    (0.8: four right, one wrong) whose phase the seed picks, so the realised rate is the nominal one (a coin
    wanders by about +-7 points at 80 % over the ~36 drafts of a 64-token run, and a best-of-rounds would favour
    lucky seeds).  Otherwise a seeded coin per draft: with k > 1 a draft after a wrong one is never checked, and
    an even pattern would line up with the k drafts of a step (at 50 % with k = 2, every first draft wrong)."""
    rng = np.random.default_rng(seed)
    calls = [int(rng.integers(0, 1000))]  # the pattern's phase, in thousandths of a call
    per_mille = round(rate * 1000)

    def draft(i: int, mtp_token: int | None) -> int:
        if i >= len(plain):  # past the generated tokens (the step's output is cut there): any token
            return 0 if mtp_token is None else mtp_token
        if exact:
            j = calls[0]
            calls[0] += 1000
            right = (j + 1000) * per_mille // 10**6 > j * per_mille // 10**6  # floor(rate * calls) went up
        else:
            right = rng.random() < rate
        return plain[i] if right else (plain[i] + 1) % vocab

    return draft


def run(ns: argparse.Namespace) -> dict:
    from dsv4_gguf import runtime
    from dsv4_gguf.speculative import SpecStats, speculate

    m = runtime.load(ns.gguf, threads=ns.threads, draft_head=ns.draft_head)
    V, N = m.vocab_size, ns.tokens
    ids = [int(t) for t in np.random.default_rng(ns.seed).integers(3, V, ns.prompt)]
    ctx = len(ids) + N + 8
    state = Path(ns.work) / "prompt.state"
    s = m.session(ctx=ctx, mtp=True)
    t0 = time.perf_counter()
    first = s.prefill(ids)
    t1 = time.perf_counter()
    s.mtp(ids[1:])  # the MTP block over the prompt, as Model.generate does after prefill (its window KV rows)
    t2 = time.perf_counter()
    t = m.session(ctx=ctx, mtp=True)  # again, timed warm (the first call also makes the draft head copy)
    t3 = time.perf_counter()
    t.prefill(ids)
    t4 = time.perf_counter()
    t.mtp(ids[1:])
    mtp_prompt = (time.perf_counter() - t4, t4 - t3)
    print(
        f"prompt: prefill {t1 - t0:.2f} s, MTP over it {t2 - t1:.2f} s (first, with the draft head copy); warm: "
        f"{mtp_prompt[1]:.2f} s, {mtp_prompt[0]:.2f} s",
        flush=True,
    )
    s.save(state)

    def fresh():  # noqa: ANN202
        t = m.session(ctx=ctx, mtp=True)
        t.load_state(state)
        return t

    # plain greedy: the reference tokens, the router's choices (untimed, taps), then timed rounds
    t = fresh()
    t._s.set_taps(["layers.*.router_idx"])
    plain = [int(np.argmax(first))]
    for _ in range(N - 1):
        plain.append(int(np.argmax(t.decode(plain[-1]))))
    taps = t._s.take_taps()
    routes: dict[int, np.ndarray] = {}
    n_prompt = len(ids)
    for name, arr in taps.items():
        layer = int(name.split(".")[1])
        routes[layer] = np.concatenate([np.full((n_prompt, arr.shape[1]), -1), arr.astype(np.int64)])
    w = _weights(Path(ns.gguf), m.config["draft_head"])

    def plain_round() -> float:
        t = fresh()
        x = plain[0]
        t0 = time.perf_counter()
        for i in range(1, N):
            x = int(np.argmax(t.decode(x)))
            if x != plain[i]:
                raise SystemExit(f"plain decoding is not deterministic at token {i}")
        return (N - 1) / (time.perf_counter() - t0)

    def spec_round(draft, drafter, run_mtp=True) -> tuple[float, SpecStats, list[tuple[int, int]]]:  # noqa: ANN001
        t = fresh()
        st = SpecStats()
        chunks: list[tuple[int, int]] = []
        orig_prefill = t.prefill

        def prefill(tokens, all_logits=False):  # noqa: ANN001, ANN202 - records each verify chunk
            chunks.append((t.pos, len(tokens)))
            return orig_prefill(tokens, all_logits=all_logits)

        t.prefill = prefill
        out = []
        t0 = time.perf_counter()
        for tok in speculate(
            t,
            ids,
            first,
            temperature=0,
            top_p=1.0,
            rng=np.random.default_rng(0),
            draft=draft,
            stats=st,
            drafter=drafter,
            run_mtp=run_mtp,
        ):
            out.append(tok)
            if len(out) == N:
                break
        dt = time.perf_counter() - t0
        if out != plain:
            bad = next(i for i, (a, b) in enumerate(zip(out, plain, strict=True)) if a != b)
            raise SystemExit(f"speculative output differs from plain greedy at token {bad} (draft={draft}): not timed")
        return (N - 1) / dt, st, chunks

    cases = [("mtp", None, True)] + [(f"oracle {int(a * 100)}%", a, True) for a in ns.accept]
    cases += [(f"free oracle {int(a * 100)}%", a, False) for a in ns.free_accept]
    best: dict[tuple[str, object], tuple] = {}
    best_plain = 0.0
    for r in range(ns.rounds):  # a plain round, then every case once; best of the rounds for each
        tok_s = plain_round()
        best_plain = max(best_plain, tok_s)
        print(f"round {r + 1} plain              {tok_s:.2f} tok/s", flush=True)
        for label, rate, run_mtp in cases:
            for draft in [*ns.drafts, "auto"]:
                drafter = None if rate is None else _oracle(plain, rate, ns.seed + r, V, exact=draft == 1)
                res = spec_round(draft, drafter, run_mtp)
                if (label, draft) not in best or res[0] > best[(label, draft)][0]:
                    best[(label, draft)] = res
                print(f"round {r + 1} {label:12s} k={draft!s:4s} {res[0]:.2f} tok/s", flush=True)
    rows = []
    plain_expert_bytes = sum(w["expert"][ly] * w["K"] for ly in w["expert"])
    for (label, draft), (tok_s, st, chunks) in best.items():
        # the MTP block ran once per draft (draft 1 of a step comes from the previous step's MTP call)
        byts = _bytes(w, routes, chunks, 0 if label.startswith("free") else st.drafted)
        byts += st.plain * (w["dense"] + w["emb_row"] + plain_expert_bytes)
        rows.append(
            {
                "drafts": label,
                "k": draft,
                "acceptance": st.acceptance,
                "steps": st.steps,
                "plain_steps": st.plain,
                "tokens_per_step": (N - 1 - st.plain) / st.steps if st.steps else 0.0,
                "tok_s": tok_s,
                "bytes_per_token": byts / (N - 1),
            }
        )
    plain_bytes = w["dense"] + w["emb_row"] + sum(w["expert"][ly] * w["K"] for ly in w["expert"])
    for r in rows:
        r["ratio"] = r["tok_s"] / best_plain
    return {
        "meta": {
            "gguf": Path(ns.gguf).name,
            "threads": ns.threads,
            "tokens": N,
            "prompt": ns.prompt,
            "rounds": ns.rounds,
            "plain_tok_s": best_plain,
            "draft_head": m.config["draft_head"],
            "prefill_s": mtp_prompt[1],
            "mtp_prompt_s": mtp_prompt[0],
            "plain_bytes_per_token": plain_bytes,
            "cpu": cpu_simd()["model"],
            "loadavg": list(os.getloadavg()),
        },
        "rows": rows,
    }


def format_section(meta: dict, rows: list[dict]) -> str:
    gb = 1e9
    lines = [
        f"### Speculative decoding with the MTP block: {meta['gguf']}, {meta['threads']} threads",
        "",
        f"`benchmarks/speculative.py`: {meta['prompt']}-token prompt, {meta['tokens']} greedy tokens, best of "
        f"{meta['rounds']} rounds (a plain run, then every case, per round); every speculative run produced "
        f"exactly the plain tokens before it counted.  Plain decode: {meta['plain_tok_s']:.2f} tok/s, "
        f"{meta['plain_bytes_per_token'] / gb:.3f} GB of weights per token.  CPU: {meta['cpu']}; 1/5/15-min load "
        f"average at the end {', '.join(f'{x:.2f}' for x in meta['loadavg'])}.",
        "",
        "| drafts | k | acceptance | tokens / verify step | plain steps | decode tok/s | vs plain | GB / token |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['drafts']} | {r['k']} | {r['acceptance']:.2f} | {r['tokens_per_step']:.2f} | {r['plain_steps']} | "
            f"{r['tok_s']:.2f} | {r['ratio']:.2f}x | {r['bytes_per_token'] / gb:.3f} |"
        )
    lines += [
        "",
        "`mtp`: the MTP block's own drafts (random weights: it is a poor drafter).  `oracle a%`: each draft is the "
        "plain continuation's token in exactly a of the drafts with k = 1 (an even pattern, its phase seeded per "
        "round), with probability a (a seeded coin) with k = 2, 3 and auto, else a wrong one; the MTP block still runs "
        "for every draft, so these rows cost what a real drafter costs.  `free oracle a%`: the same drafts with "
        "the MTP block not run (drafts computed beforehand and free: a step costs its verification only).  GB / "
        "token: weights streamed (dense once per forward, the union of the routed experts of a forward's tokens, "
        "the MTP block and draft head per draft) over generated tokens.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gguf", required=True, help="main GGUF; its mtp- sidecar must be next to it")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=64, help="greedy tokens generated per run")
    ap.add_argument("--prompt", type=int, default=64, help="random prompt tokens")
    ap.add_argument("--accept", type=float, nargs="*", default=[0.0, 0.5, 0.8, 1.0])
    ap.add_argument("--drafts", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument(
        "--free-accept",
        type=float,
        nargs="*",
        default=[0.8, 1.0],
        help="oracle acceptance rates run without the MTP block (drafts cost nothing: the curve's upper bound)",
    )
    ap.add_argument("--draft-head", default="q8_0", choices=["q8_0", "q4_0", "model"], help="runtime.load's draft_head")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default="/tmp", help="folder for the prompt's saved session state")
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--write", type=Path, help="put the table into this RESULTS.md (between its markers)")
    ns = ap.parse_args(argv)
    if not Path(ns.gguf).with_name("mtp-" + Path(ns.gguf).name).is_file():
        ap.error(f"{ns.gguf}: no MTP sidecar mtp-{Path(ns.gguf).name} next to it")
    res = run(ns)
    import results_md

    name = "speculative-" + Path(ns.gguf).stem
    results_md.publish(name, format_section(res["meta"], res["rows"]), res, json_path=ns.json, md=ns.write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
