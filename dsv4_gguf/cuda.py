"""CUDA backend selection for the runtime: parses ``device=`` and says plainly why CUDA cannot be used.

``dsv4_gguf.load(path, device="cuda")`` uploads the weights to the GPU (``_C.CudaModel``) and runs sessions
there (``_C.CudaSession``: f32 KV on the device, decode-shaped steps; a prefill is a loop of steps).  The
kernels compute the CPU runtime's exact mode (f32 activations against in-kernel dequantized weights)
whatever ``exact`` says.  Not on the GPU yet: bf16/fp8 KV, taps, MTP, session save/restore, batched
prefill.  Checks happen before the GGUF is opened, so a missing backend fails fast.
``available_backends()`` lists the backends usable here.
"""

from __future__ import annotations

from typing import Any

__all__ = ["parse_device", "require_cuda", "unavailable_reason", "cuda_info", "available_backends"]


def cuda_info() -> dict[str, Any]:
    """``compiled`` (the CUDA target was built), ``devices`` (visible devices), versions when compiled."""
    from . import _C

    b = _C.build_info()
    return {
        "compiled": bool(b["cuda"]),
        "devices": int(b["cuda_devices"]),
        "cuda_version": b.get("cuda_version"),
        "archs": b.get("cuda_archs"),
    }


def parse_device(device: str) -> int | None:
    """``"cpu"`` -> None; ``"cuda"`` / ``"cuda:N"`` -> device ordinal."""
    if not isinstance(device, str):
        raise TypeError(f"device must be a string ('cpu', 'cuda' or 'cuda:N'), got {type(device).__name__}")
    d = device.strip().lower()
    if d == "cpu":
        return None
    if d == "cuda":
        return 0
    if d.startswith("cuda:") and d[5:].isdigit():
        return int(d[5:])
    raise ValueError(f"unknown device {device!r}; use 'cpu', 'cuda' or 'cuda:N'")


def unavailable_reason(index: int = 0) -> str | None:
    """Why CUDA device ``index`` cannot be used (with the fix), or None when it can."""
    info = cuda_info()
    if not info["compiled"]:
        return (
            "device='cuda' needs the CUDA backend, but this dsv4_gguf build has none (nvcc was not found at "
            "build time, or it was configured with DSV4_CUDA=OFF); rebuild with the CUDA toolkit on PATH: "
            "pip install --no-build-isolation -e . -Ccmake.define.DSV4_CUDA=ON, or use device='cpu'"
        )
    if info["devices"] == 0:
        return (
            "device='cuda': the CUDA backend is built but no CUDA device is visible (no GPU, no driver, or "
            "CUDA_VISIBLE_DEVICES hides them); use device='cpu'"
        )
    if index >= info["devices"]:
        return f"device='cuda:{index}': only {info['devices']} CUDA device(s) are visible"
    return None


def require_cuda(index: int = 0) -> None:
    """Raise RuntimeError naming the reason and the fix when CUDA device ``index`` cannot be used."""
    reason = unavailable_reason(index)
    if reason:
        raise RuntimeError(reason)


def available_backends() -> list[str]:
    """``["cpu"]`` plus ``"cuda"`` when the CUDA target is built and a device is visible."""
    info = cuda_info()
    return ["cpu", "cuda"] if info["compiled"] and info["devices"] > 0 else ["cpu"]
