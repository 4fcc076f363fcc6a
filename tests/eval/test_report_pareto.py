"""`eval report`: the Pareto front of KLD against size (issue 17 item 4), marked in the table and drawn in
kld_vs_size.png."""

from __future__ import annotations

from dsv4_gguf.eval.report import pareto_front, write_report


def _run(name: str, size: int | None, kld: float, n_params: int = 1000, bpw: float | None = None) -> dict:
    r = {"run": f"/runs/{name}", "task": "kld", "variant": name, "kld_mean": kld, "kld_p999": kld * 10}
    r |= {"n_params": n_params, "bpw": bpw}
    if size is not None:
        r["tensor_bytes"] = size
    return r


def test_front_keeps_exactly_the_undominated_runs():
    runs = [
        _run("SOURCE", 1600, 0.0),
        _run("Q8_0", 850, 0.001),
        _run("Q6_K", 700, 0.004),
        _run("BIG-BAD", 900, 0.01),  # larger than Q8_0 and worse: dominated
        _run("Q4_K_M", 500, 0.02),
        _run("TWIN", 500, 0.03),  # same size as Q4_K_M, worse: dominated
        _run("SAME-KLD", 520, 0.02),  # as good as Q4_K_M but larger: dominated
        _run("Q2_K", 300, 0.2),
    ]
    got = [r["variant"] for r in pareto_front(runs)]
    assert got == ["Q2_K", "Q4_K_M", "Q6_K", "Q8_0", "SOURCE"]


def test_front_per_model_and_bpw_fallback():
    a = [_run("a-small", None, 0.5, n_params=10, bpw=2.0), _run("a-big", None, 0.1, n_params=10, bpw=8.0)]
    b = [_run("b-big", None, 0.9, n_params=20, bpw=8.0)]  # another model: not dominated by model a's runs
    worse = _run("a-worse", None, 0.6, n_params=10, bpw=3.0)
    assert {r["variant"] for r in pareto_front([*a, *b, worse])} == {"a-small", "a-big", "b-big"}


def test_report_marks_the_front_and_draws_size_plot(tmp_path):
    runs = [_run("SOURCE", 1600, 0.0), _run("Q8_0", 850, 0.001), _run("BAD", 900, 0.01), _run("Q2_K", 300, 0.2)]
    files = write_report(runs, tmp_path)
    md = files["report.md"].read_text()
    rows = {line.split("|")[1].strip(): line for line in md.splitlines() if line.startswith("| ") and "|" in line[2:]}
    assert rows["BAD"].rstrip(" |").endswith("no") and rows["Q8_0"].rstrip(" |").endswith("yes")
    assert rows["SOURCE"].rstrip(" |").endswith("yes") and rows["Q2_K"].rstrip(" |").endswith("yes")
    assert "![kld_vs_size.png](kld_vs_size.png)" in md
    assert files["kld_vs_size.png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
