"""HTTP backends against a loopback stub (127.0.0.1 only): OpenAI-compatible generation, vLLM-style
prompt_logprobs as a reference, llama-server ignoring prompt_logprobs -> CapabilityError, Ollama raw
generation; capability checks before any work; `eval kld --ref-url` end to end."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from dsv4_gguf.eval.backends import BackendError, CapabilityError, SparseRows, log_softmax, open_backend
from dsv4_gguf.eval.backends.fake import FakeBackend

from dsv4_gguf.cli import main


class _Stub(BaseHTTPRequestHandler):
    """Serves canned JSON; prompt_logprobs are computed from a fake model so values are known."""

    model = FakeBackend(seed=0)
    requests: list[tuple[str, dict[str, Any]]] = []
    vllm = True

    def log_message(self, *a: object) -> None:
        pass

    def _send(self, code: int, obj: Any) -> None:
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802
        req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append((self.path, req))
        if self.path == "/tokenize":
            if req.get("add_special_tokens") and not req["prompt"]:
                return self._send(200, {"tokens": [0]})  # BOS alone
            return self._send(200, {"tokens": self.model.tokenize(req.get("prompt") or req["content"])})
        if self.path == "/v1/completions" and "prompt_logprobs" in req:
            if not self.vllm:  # llama-server: ignores the field
                return self._send(200, {"choices": [{"text": "x"}]})
            toks, k = req["prompt"], req["prompt_logprobs"]
            lp = log_softmax(self.model.logits(toks, 0))
            rows: list[Any] = [None]
            for i in range(len(toks) - 1):
                top = np.argsort(-lp[i], kind="stable")[:k]
                entry = {str(int(t)): {"logprob": float(lp[i, t]), "rank": r + 1} for r, t in enumerate(top)}
                entry[str(toks[i + 1])] = {"logprob": float(lp[i, toks[i + 1]]), "rank": 0}
                rows.append(entry)
            return self._send(200, {"choices": [{"text": "", "prompt_logprobs": rows}]})
        if self.path == "/v1/completions":
            return self._send(200, {"choices": [{"text": "completion:" + req["prompt"][-5:]}]})
        if self.path == "/api/generate":
            assert req["raw"] is True and req["stream"] is False
            return self._send(200, {"response": "ollama:" + req["prompt"][-5:], "done": True})
        self._send(404, {"error": f"no route {self.path}"})


@pytest.fixture
def stub() -> Iterator[str]:
    _Stub.requests = []
    _Stub.vllm = True
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()
    t.join()


def test_openai_generate_and_tokenize(stub: str) -> None:
    b = open_backend("openai", "m", url=stub + "/v1")
    assert b.generate("hello world", 8, stop=["<eos>"]) == "completion:world"
    path, req = _Stub.requests[-1]
    assert path == "/v1/completions" and req["temperature"] == 0.0 and req["max_tokens"] == 8
    assert b.tokenize("ab") == FakeBackend().tokenize("ab") and b.bos_id == 0
    with pytest.raises(CapabilityError):
        b.logits([1, 2, 3])
    with pytest.raises(CapabilityError, match="not enabled"):
        b.prompt_topk([1, 2, 3], 0, 4)


def test_vllm_prompt_logprobs_equal_the_model(stub: str) -> None:
    b = open_backend("openai", "m", url=stub, prompt_logprobs=True)
    toks = [0, *FakeBackend().tokenize("the tapir walks")]
    got = b.prompt_topk(toks, 3, 5)
    want = SparseRows.from_logits(FakeBackend(seed=0).logits(toks, 3), toks[4:], 5)
    assert np.array_equal(got.top_ids, want.top_ids) and np.array_equal(got.target, want.target)
    assert np.allclose(got.top_lp, want.top_lp, rtol=0, atol=1e-12)
    assert np.allclose(got.target_lp, want.target_lp, rtol=0, atol=1e-12)


def test_llama_server_rejects_prompt_logprobs(stub: str) -> None:
    _Stub.vllm = False
    b = open_backend("openai", "m", url=stub, prompt_logprobs=True)
    with pytest.raises(CapabilityError, match="ignored 'prompt_logprobs'"):
        b.prompt_topk([0, 1, 2], 0, 4)


def test_ollama_generation_only(stub: str) -> None:
    b = open_backend("ollama", "dsv4", url=stub, n_ctx=8192)
    assert b.generate("abc hello", 4, stop=["x"]) == "ollama:hello"
    req = _Stub.requests[-1][1]
    assert req["options"] == {"temperature": 0, "seed": 0, "num_predict": 4, "stop": ["x"], "num_ctx": 8192}
    for call in (lambda: b.logits([1, 2]), lambda: b.tokenize("x"), lambda: b.prompt_topk([1, 2], 0, 2)):
        with pytest.raises(CapabilityError):
            call()


def test_errors_name_the_fix(stub: str) -> None:
    with pytest.raises(BackendError, match="HTTP 404"):
        open_backend("ollama", "m", url=stub + "/nope").generate("x", 1)
    with pytest.raises(BackendError, match="no answer after"):
        open_backend("ollama", "m", url="http://127.0.0.1:9").generate("x", 1)
    with pytest.raises(BackendError, match="needs --url"):
        open_backend("openai", "m")
    with pytest.raises(BackendError, match="cannot tell which backend"):
        open_backend("auto", "model-name")
    with pytest.raises(ValueError, match="unknown option"):
        open_backend("fake", "seed=0,colour=blue")


def test_eval_kld_with_ref_url(stub: str, text_file: Path, tmp_path: Path) -> None:
    """vLLM as the full-precision reference: identical model behind the server -> KLD 0 within float error."""
    out = tmp_path / "r"
    assert (
        main(
            [
                "eval",
                "kld",
                "--data",
                str(text_file),
                "--backend",
                "fake",
                "--model",
                "seed=0",
                "--ref-url",
                stub,
                "--ref-model",
                "ref",
                "--out",
                str(out),
                "--ctx",
                "64",
                "--chunks",
                "2",
                "--top-k",
                "8",
            ]
        )
        == 0
    )
    r = json.loads((out / "results.json").read_text())
    assert r["kld_mean"] < 1e-12 and r["same_top_p"] == 1.0 and r["n_positions"] == 2 * 31
    toks = np.load(out / "ref" / "tokens.npy")
    assert toks.shape == (2, 64) and list(toks[:, 0]) == [0, 0]  # each chunk starts with the server's BOS
    man = json.loads((out / "manifest.json").read_text())
    assert man["settings"]["reference"] == {"backend": "openai", "url": stub, "model": "ref"}


def test_swebench_generation_only_through_ollama(stub: str, swe_jsonl: Path, tmp_path: Path) -> None:
    out = tmp_path / "o"
    base = [
        "eval",
        "swebench",
        "--data",
        str(swe_jsonl),
        "--backend",
        "ollama",
        "--url",
        stub,
        "--model",
        "dsv4",
        "--limit",
        "2",
        "--out",
        str(out),
    ]
    assert main(base) == 1  # scoring needs logits: refused before any work, naming the capable backends
    assert main([*base, "--generate", "--max-new-tokens", "16", "--overwrite"]) == 0
    r = json.loads((out / "results.json").read_text())
    assert r["swe_n"] == 2 and r["nll_mean"] is None and r["gen_n"] == 2 and r["predictions"] == 2
    preds = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert all(p["model_patch"].startswith("ollama:") for p in preds)
    assert [req["options"]["num_predict"] for path, req in _Stub.requests if path == "/api/generate"] == [16, 16]
