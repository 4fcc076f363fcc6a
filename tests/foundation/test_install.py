"""A plain (non-editable) install into a fresh venv imports dsv4_gguf, .quantize, .eval and _C.

The same build is configured with DSV4_CUDA=OFF, proving that CPU-only machines build too (the
default AUTO build used by the rest of the suite compiles the CUDA target wherever nvcc exists).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_non_editable_install_without_cuda(tmp_path):
    src = tmp_path / "src"
    skip = (
        "build",
        ".git",
        ".cache",
        "out",
        "__pycache__",
        "*.so",
        ".venv",
        "*.egg-info",
        ".pytest_cache",
        ".ruff_cache",
    )
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(*skip))
    # Build the wheel with this interpreter's build tools, then install it into an isolated venv (no
    # system site-packages, so neither the source tree nor an editable install can shadow it).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    wheels = tmp_path / "wheels"
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-build-isolation",
        "--no-deps",
        "-q",
        "-w",
        str(wheels),
        "-Ccmake.define.DSV4_CUDA=OFF",
        f"-Cbuild-dir={tmp_path / 'build'}",
        str(src),
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1500)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    (wheel,) = wheels.glob("dsv4_gguf-*.whl")
    with zipfile.ZipFile(wheel) as z:
        tops = {n.split("/")[0] for n in z.namelist()}
    assert tops == {"dsv4_gguf", wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info"}, tops
    env_dir = tmp_path / "venv"
    venv.create(env_dir, system_site_packages=False, with_pip=True)
    py = env_dir / "bin" / "python"
    r = subprocess.run(
        [str(py), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    code = (
        "import json, dsv4_gguf, dsv4_gguf.quantize, dsv4_gguf.eval, dsv4_gguf._C as C;"
        "print(json.dumps({'files': [dsv4_gguf.__file__, dsv4_gguf.quantize.__file__, dsv4_gguf.eval.__file__,"
        " C.__file__], 'info': C.build_info()}))"
    )
    out = subprocess.run([str(py), "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path, check=True)
    got = json.loads(out.stdout)
    site = str(env_dir)
    for f in got["files"]:
        assert f.startswith(site), f"{f} was not imported from the venv's own install"
    assert got["files"][1].endswith(os.path.join("dsv4_gguf", "quantize", "__init__.py"))
    assert got["files"][2].endswith(os.path.join("dsv4_gguf", "eval", "__init__.py"))
    assert got["info"]["cuda"] is False
    assert sys.executable != str(py)


def test_demo_installs_only_the_package():
    """scripts/demo.sh installs the package and its C++ core, nothing of the test set-up: no call of
    scripts/setup.sh, no torch, no llama-cpp-python, no extras (`pip install ... -e .` exactly)."""
    root = Path(__file__).resolve().parents[2]
    lines = [ln.split("#", 1)[0] for ln in (root / "scripts" / "demo.sh").read_text().splitlines()]
    code = "\n".join(lines)
    assert "setup.sh" not in code and "torch" not in code and "llama-cpp-python" not in code and "llama_cpp" not in code
    installs = [ln for ln in lines if "pip install" in ln]
    assert any(ln.rstrip().endswith("-e .") for ln in installs), installs
    assert not any("[" in ln for ln in installs), installs  # no extras
