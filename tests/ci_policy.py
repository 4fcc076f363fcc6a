"""The suite's one skip policy: under CI a skipped test is a failure unless the reason is that no CUDA device is
present.  This module says when CI is on and gives the CUDA skip markers; tests/conftest.py applies the policy to
every test and collection report, so no test decides "fail under CI" itself.  A test that needs a GPU skips
through ``needs_cuda_device``, whose reason starts with NO_CUDA_DEVICE: the only reason CI accepts.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import pytest

from dsv4_gguf.cuda import cuda_info

NO_CUDA_DEVICE = "no CUDA device:"
CUDA_NOT_BUILT = "CUDA backend not compiled (no nvcc at build time, or configured with DSV4_CUDA=OFF)"
_CI_OFF = ("", "0", "false", "no")


def ci_enabled(environ: Mapping[str, str] | None = None) -> bool:
    """CI is on when CI is set to anything but empty, 0, false or no (any case)."""
    value = (os.environ if environ is None else environ).get("CI", "")
    return value.strip().lower() not in _CI_OFF


def allowed_under_ci(reason: str) -> bool:
    """Whether CI accepts a skip with this reason: only the absence of a CUDA device."""
    return reason.startswith(NO_CUDA_DEVICE)


def cuda_device_skip_reason() -> str | None:
    """Why a test cannot run kernels on CUDA device 0 here, or None when it can.  A build without the CUDA target
    is not a missing device: its reason is CUDA_NOT_BUILT, which CI refuses (nvcc belongs to the set-up)."""
    info = cuda_info()
    if not info["compiled"]:
        return CUDA_NOT_BUILT
    if info["devices"] == 0:
        return (
            f"{NO_CUDA_DEVICE} the CUDA backend is built but no device is visible (no GPU, no driver, or "
            "CUDA_VISIBLE_DEVICES hides them)"
        )
    return None


_DEVICE_REASON = cuda_device_skip_reason()
needs_cuda_build = pytest.mark.skipif(not cuda_info()["compiled"], reason=CUDA_NOT_BUILT)
needs_cuda_device = pytest.mark.skipif(_DEVICE_REASON is not None, reason=str(_DEVICE_REASON))
