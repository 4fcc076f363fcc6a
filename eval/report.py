"""`eval report RUN...`: one markdown + CSV table across runs (variants), and PNG plots with matplotlib
(Agg): KLD (mean and p99.9) vs bits per weight, MRCR score by context bin (one line per variant), and
gold-patch NLL vs bits per weight. Reads only results.json / manifest.json; recomputes nothing.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path
from typing import Any

from .run import write_text

__all__ = ["load_runs", "pareto_front", "write_report", "COLUMNS"]

# (results key, header, format) per task; the CSV carries every scalar, the markdown these columns.
COLUMNS: dict[str, list[tuple[str, str, str]]] = {
    "kld": [
        ("kld_mean", "KLD mean", ".6f"),
        ("kld_median", "KLD median", ".6f"),
        ("kld_p99", "KLD p99", ".6f"),
        ("kld_p999", "KLD p99.9", ".6f"),
        ("same_top_p", "same top p", ".2%"),
        ("rms_dp", "RMS Δp", ".3%"),
        ("ppl_ratio", "PPL(Q)/PPL(base)", ".5f"),
        ("n_positions", "positions", ".0f"),
        ("pareto", "Pareto front", "s"),
    ],
    "mrcr": [
        ("mrcr_score", "MRCR (official)", ".4f"),
        ("mrcr_score_lenient", "lenient", ".4f"),
        ("mrcr_8needle_all_bins", "8-needle all bins", ".4f"),
        ("mrcr_8needle_upto_128k", "8-needle ≤128K", ".4f"),
        ("mrcr_8needle_1m", "8-needle 1M", ".4f"),
        ("mrcr_prefix_hit_rate", "prefix hits", ".1%"),
        ("mrcr_n", "n", ".0f"),
        ("mrcr_skipped", "skipped", ".0f"),
    ],
    "swebench": [
        ("nll_mean", "gold NLL", ".4f"),
        ("nll_delta_mean", "ΔNLL vs ref", "+.4f"),
        ("flip_rate", "flip rate", ".1%"),
        ("kld_mean", "KLD mean (patch)", ".6f"),
        ("line_f1_mean", "line F1", ".3f"),
        ("swe_n", "n", ".0f"),
        ("swe_skipped", "skipped", ".0f"),
    ],
}


# What each markdown column means, printed under the tables of the tasks present.
LEGEND: dict[str, list[str]] = {
    "kld": [
        "KLD: per scored position (the second half of each --ctx chunk) KL(reference || candidate) of the "
        "next-token distributions in nats, as llama-perplexity --kl-divergence; mean, median, 99th and 99.9th "
        "percentile over the positions; 0 means identical logits. same top p: share of positions where both "
        "rank the same token first. RMS Δp: root mean square of p_candidate(token) − p_reference(token) of the "
        "actual next token. PPL(Q)/PPL(base): perplexity ratio on the same positions. Pareto front: no other run "
        "of the same model is at most as large (tensor bytes; bpw where a run has no GGUF) and at most as far in "
        "mean KLD, one of the two strictly (kld_vs_size.png marks them).",
    ],
    "mrcr": [
        "MRCR (official): the official grader (SequenceMatcher ratio after the required prefix, 0 without it) "
        "averaged over the scored rows; lenient: reasoning dropped, prefix accepted anywhere (reported apart). "
        "8-needle columns: all bins (DeepSeek-style), cumulative up to 128K (Google-style), the 1M bin alone. "
        "n: rows scored; skipped: rows outside the bins or over --n-ctx (each row's reason is in items.jsonl).",
    ],
    "swebench": [
        "gold NLL: mean over instances of the per-token negative log-likelihood (nats) of the gold patch given "
        "the issue; ΔNLL and flip rate (share with |ΔNLL| above --flip-threshold) against the reference; KLD "
        "over the patch positions; line F1 of generated patches (--generate) against the gold patch.",
    ],
}
LEGEND_BPW = (
    "bpw (all): bytes x 8 / elements over every tensor of the GGUF; bpw (blocks): the same over the repeating "
    "blocks' weights only (`blk.*`), the figure the plots use."
)


def _digest(d: Any) -> str:
    if not isinstance(d, dict) or not d:
        return "–"
    if "file" in d:
        return _digest(d["file"]) + (f" ({d['backend']})" if d.get("backend") else "")
    if "name" in d:
        h = d.get("sha256") or d.get("quick_sha256") or ""
        kind = "sha256" if d.get("sha256") else "quick sha256"
        return f"`{d['name']}` ({d.get('size', 0):,} B, {kind} {h[:12]})" if h else f"`{d['name']}`"
    return ", ".join(f"{k}={v}" for k, v in d.items())


def _provenance(runs: list[dict[str, Any]]) -> list[str]:
    """How each run was made, from its manifest: task, model, reference, data, settings, versions."""
    md = ["## How these runs were made", ""]
    for r in runs:
        man = r.get("manifest") or {}
        st = dict(man.get("settings") or {})
        model, ref = st.pop("model", None), st.pop("reference", None)
        data = st.pop("data", None) or (st.pop("dataset", None) or {}).get("files")
        ver = (man.get("versions") or {}).get("dsv4_gguf", "?")
        md.append(f"- `{r['run']}`: {man.get('task', r.get('task'))} of **{_label(r)}**, model {_digest(model)}")
        if ref:
            md.append(f"  - reference: {_digest(ref)}")
        if data:
            files = data if isinstance(data, list) else [data]
            md.append("  - data: " + ", ".join(_digest(f) for f in files))
        scalars = {k: v for k, v in st.items() if isinstance(v, (int, float, str, bool, list)) or v is None}
        if scalars:
            md.append("  - settings: " + ", ".join(f"{k}={v}" for k, v in sorted(scalars.items())))
        md.append(f"  - dsv4-gguf {ver}; everything else in `{r['run']}/manifest.json`")
    return md + [""]


def load_runs(paths: list[str | Path]) -> list[dict[str, Any]]:
    runs = []
    for p in map(Path, paths):
        res = p / "results.json"
        if not p.is_dir():
            raise FileNotFoundError(f"{p}: no such run folder (give the --out folder of an eval kld|mrcr|swebench run)")
        if not (p / "manifest.json").is_file():
            raise FileNotFoundError(f"{p}: not an eval run folder (no manifest.json; give an eval run's --out folder)")
        if not res.is_file():
            raise FileNotFoundError(f"{p}: no results.json (the run is unfinished: rerun the same command to resume)")
        r = json.loads(res.read_text(encoding="utf-8"))
        man = json.loads((p / "manifest.json").read_text(encoding="utf-8"))
        runs.append({"run": str(p), **r, "manifest": man})
    return runs


def _fmt(v: Any, f: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return format(v, f)


def _label(r: dict[str, Any]) -> str:
    return str(r.get("variant") or Path(r["run"]).name)


def _x(r: dict[str, Any]) -> float | None:
    """Plot position: bits per weight of the repeating blocks when known (see run.gguf_info), else all."""
    return r.get("bpw_blocks") or r.get("bpw")


def _cost(r: dict[str, Any]) -> float | None:
    """What a variant costs: its tensor bytes (the file without metadata), else its bits per weight."""
    return r.get("tensor_bytes") or r.get("bpw")


def pareto_front(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The kld runs no other run of the same model dominates: none is at most as large (`_cost`) and at most as
    far in mean KLD, one of the two strictly.  Runs of different models (parameter counts) are compared only
    among themselves; runs without a cost or a mean KLD are left out.  In order of cost."""
    groups: dict[Any, list[dict[str, Any]]] = {}
    for r in runs:
        if r.get("task") == "kld" and _cost(r) is not None and r.get("kld_mean") is not None:
            groups.setdefault(r.get("n_params"), []).append(r)
    front = []
    for rs in groups.values():
        best = math.inf
        for r in sorted(rs, key=lambda r: (_cost(r), r["kld_mean"])):
            if r["kld_mean"] < best:  # smaller than every cheaper (or equally cheap) run's KLD
                front.append(r)
                best = r["kld_mean"]
    return sorted(front, key=_cost)  # type: ignore[arg-type]


def _plot_kld_size(runs: list[dict[str, Any]], path: Path) -> bool:
    pts = [r for r in runs if r["task"] == "kld" and r.get("tensor_bytes") and r.get("kld_mean") is not None]
    if not pts:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    front = {id(r) for r in pareto_front(pts)}
    nonzero = [r["kld_mean"] for r in pts if r["kld_mean"] > 0]
    floor = min(nonzero) / 10 if nonzero else 1e-6  # an exact 0 (the reference) one decade below, as kld_vs_bpw

    def y(r: dict[str, Any]) -> float:
        return r["kld_mean"] if r["kld_mean"] > 0 else floor

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    on = sorted((r for r in pts if id(r) in front), key=lambda r: r["tensor_bytes"])
    off = [r for r in pts if id(r) not in front]
    ax.plot([r["tensor_bytes"] / 1e9 for r in on], [y(r) for r in on], "o-", label="Pareto front")
    if off:
        ax.plot([r["tensor_bytes"] / 1e9 for r in off], [y(r) for r in off], "o", mfc="none", label="dominated")
    for r in pts:
        ax.annotate(_label(r), (r["tensor_bytes"] / 1e9, y(r)), textcoords="offset points", xytext=(4, 6), fontsize=8)
    ax.set_yscale("log")
    ax.set_xlabel("tensor bytes (GB)")
    zero = " (an exact 0 drawn a decade below)" if any(r["kld_mean"] == 0 for r in pts) else ""
    ax.set_ylabel("mean KL divergence vs reference (nats)" + zero)
    ax.set_title("Quant quality: mean KLD vs size")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return True


def _plot_kld(runs: list[dict[str, Any]], path: Path) -> bool:
    pts = sorted((r for r in runs if r["task"] == "kld" and _x(r) is not None), key=_x)  # type: ignore[arg-type]
    if not pts:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    # A log axis cannot show an exact 0 (the reference against itself): such points sit one decade
    # below the smallest non-zero value, drawn apart (triangle, "= 0") and not joined to the curve.
    nonzero = [r[k] for r in pts for k in ("kld_mean", "kld_p999") if r[k] > 0]
    floor = min(nonzero) / 10 if nonzero else 1e-6
    for key, style, name in (("kld_mean", "o-", "mean KLD"), ("kld_p999", "s--", "99.9% KLD")):
        nz = [r for r in pts if r[key] > 0]
        ax.plot([_x(r) for r in nz], [r[key] for r in nz], style, label=name)
    zero = [r for r in pts if r["kld_mean"] == 0]
    if zero:
        ax.plot([_x(r) for r in zero], [floor] * len(zero), "kv", label="KLD = 0 (reference)")
    for r in pts:
        ax.annotate(
            _label(r),
            (_x(r), r["kld_mean"] if r["kld_mean"] > 0 else floor),
            textcoords="offset points",
            xytext=(4, 6),
            fontsize=8,
        )
    ax.set_yscale("log")
    ax.set_xlabel("bits per weight (repeating blocks)" if pts[0].get("bpw_blocks") else "bits per weight")
    ax.set_ylabel("KL divergence vs reference (nats)")
    ax.set_title("Quant quality: KLD vs bits per weight")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return True


def _plot_mrcr(runs: list[dict[str, Any]], path: Path) -> bool:
    pts = [r for r in runs if r["task"] == "mrcr" and r.get("table")]
    if not pts:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = pts[0].get("bin_labels") or []
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    for r in pts:
        for needles in sorted({c["n_needles"] for c in r["table"]}):
            cells = sorted((c for c in r["table"] if c["n_needles"] == needles), key=lambda c: c["bin"])
            ax.plot([c["bin"] for c in cells], [c["score"] for c in cells], "o-", label=f"{_label(r)} {needles}-needle")
    # the bins present, with half a bin of margin: a single bin sits in the middle, not at the frame
    present = sorted({c["bin"] for r in pts for c in r["table"]})
    ax.set_xticks(present, [labels[b] if b < len(labels) else str(b) for b in present])
    pad = 0.5 if len(present) > 1 else 1.0
    ax.set_xlim(present[0] - pad, present[-1] + pad)
    ax.set_ylim(-0.02, 1.04)
    ax.set_xlabel("context bin (o200k prompt+answer tokens)")
    ax.set_ylabel("MRCR mean match ratio (official)")
    ax.set_title("MRCR by context bin")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return True


def _plot_vs_bpw(runs: list[dict[str, Any]], path: Path, task: str, key: str, ylabel: str) -> bool:
    """A task's headline metric against bits per weight, one point per variant (needs two or more)."""
    pts = sorted((r for r in runs if r["task"] == task and _x(r) is not None and r.get(key) is not None), key=_x)
    if len(pts) < 2:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    ax.plot([_x(r) for r in pts], [r[key] for r in pts], "o-")
    for r in pts:
        ax.annotate(_label(r), (_x(r), r[key]), textcoords="offset points", xytext=(4, 6), fontsize=8)
    ax.set_xlabel("bits per weight (repeating blocks)" if pts[0].get("bpw_blocks") else "bits per weight")
    ax.set_ylabel(ylabel)
    ax.set_title(f"{task}: {ylabel} vs bits per weight")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return True


def _save(fig: Any, path: Path) -> None:
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    fig.savefig(tmp)
    os.replace(tmp, path)


def write_report(runs: list[dict[str, Any]], out: str | Path) -> dict[str, Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    md = ["# dsv4-gguf eval report", ""]
    front = {id(r) for r in pareto_front(runs)}
    runs = [
        {**r, "pareto": None if _cost(r) is None else "yes" if id(r) in front else "no"} if r["task"] == "kld" else r
        for r in runs
    ]
    for task, cols in COLUMNS.items():
        rows = sorted((r for r in runs if r["task"] == task), key=lambda r: -(_x(r) or 0))
        if not rows:
            continue
        md += [
            f"## {task}",
            "",
            "| variant | bpw (all) | bpw (blocks) | " + " | ".join(h for _, h, _ in cols) + " |",
            "|---|---:|---:|" + "---:|" * len(cols),
        ]
        for r in rows:
            md.append(
                f"| {_label(r)} | {_fmt(r.get('bpw'), '.3f')} | {_fmt(r.get('bpw_blocks'), '.3f')} | "
                + " | ".join(_fmt(r.get(k), f) for k, _, f in cols)
                + " |"
            )
        md += ["", f"*{LEGEND_BPW}*", ""] + [f"*{line}*" for line in LEGEND.get(task, [])] + [""]
    plots = {
        "kld_vs_bpw.png": _plot_kld,
        "kld_vs_size.png": _plot_kld_size,
        "mrcr_by_bin.png": _plot_mrcr,
        "mrcr_vs_bpw.png": lambda rs, p: _plot_vs_bpw(rs, p, "mrcr", "mrcr_score", "MRCR (official)"),
        "swebench_nll_vs_bpw.png": lambda rs, p: _plot_vs_bpw(
            rs, p, "swebench", "nll_mean", "gold-patch NLL (nats/token)"
        ),
    }
    for name, fn in plots.items():
        if fn(runs, out / name):
            files[name] = out / name
            md += [f"![{name}]({name})", ""]
    md += _provenance(runs)
    write_text(out / "report.md", "\n".join(md))
    files["report.md"] = out / "report.md"
    keys = sorted({k for r in runs for k, v in r.items() if isinstance(v, (int, float, str)) or v is None} - {"run"})
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow(["run", *keys])
    for r in runs:
        w.writerow([r["run"], *(r.get(k, "") for k in keys)])
    tmp = out / "report.csv.tmp"
    with open(tmp, "w", newline="", encoding="utf-8") as f:  # newline="": the csv module's own \r\n stay
        f.write(buf.getvalue())
    os.replace(tmp, out / "report.csv")
    files["report.csv"] = out / "report.csv"
    return files
