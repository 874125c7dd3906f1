"""The real openMind 1.0.0 in a side virtualenv, for the tests that run it (nothing here is a stand-in).

openMind 1.0.0 pins transformers <= 4.45.2, peft <= 0.14, datasets <= 2.21, accelerate <= 1.0.0rc1
and numpy < 2, none of which fit beside this package's stack, so it gets its own venv, built once
and kept under ``$M1_ASCEND_OPENMIND_VENV`` or ``~/.cache/m1-ascend/`` (rebuilt when its pins change).
openMind declares Python < 3.11 but runs on 3.11: it is installed with ``--ignore-requires-python``.
torch is this repository's pinned CPU build instead of openMind's torch 2.1.0 (its ``pt`` extras,
with deepspeed, lm-eval and diffusers that ``train`` never imports, are left out). m1-ascend goes in
as a wheel built from a copy of the sources, so nothing is written into the repository.
``assert_same_tokens`` compares what openMind built (``openmind_dump_tokens.py``) with our data.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from m1_ascend.finetune.data import PaddingCollator, build_dataset, resolve_datasets
from m1_ascend.tokenizer import M1Tokenizer

REPO = Path(__file__).resolve().parents[1]
OPENMIND = "openmind==1.0.0"
# The newest releases within openMind's caps for train (its METADATA), plus two pins its numpy < 2
# needs: the newest pyarrow and pandas need numpy 2 at import time but do not say so.
STACK = ["transformers==4.45.2", "peft==0.14.0", "datasets==2.21.0", "accelerate==1.0.0rc1", "pyarrow==17.0.0",
         "pandas==2.2.3"]
READY = ".m1_ascend_ready"


class IndexUnreachable(RuntimeError):
    """pip could not reach the package index: the test skips instead of failing."""


def torch_pin() -> str:
    """This repository's torch pin (the CPU build), so the venv never pulls CUDA wheels."""
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if line.startswith("torch=="):
            return line.strip()
    raise AssertionError("constraints.txt pins no torch")


def venv_dir() -> Path:
    key = hashlib.sha256("\n".join([OPENMIND, *STACK, torch_pin(), sys.version]).encode()).hexdigest()[:12]
    default = Path.home() / ".cache" / "m1-ascend" / f"openmind-venv-{key}"
    return Path(os.environ.get("M1_ASCEND_OPENMIND_VENV") or default)


def _pip(python: Path, *args: str, timeout: int = 1200) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(python), "-m", "pip", "--disable-pip-version-check", *args], capture_output=True,
                          text=True, timeout=timeout)


def _unreachable(output: str) -> bool:
    return any(sign in output for sign in ("NewConnectionError", "Network is unreachable", "Temporary failure in name",
                                           "No matching distribution found for openmind", "ConnectTimeout"))


def _base_requirements(wheel: Path) -> list[str]:
    """The ``Requires-Dist`` lines of a wheel that belong to no extra."""
    with zipfile.ZipFile(wheel) as archive:
        metadata = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        lines = archive.read(metadata).decode().splitlines()
    return [line.split(":", 1)[1].strip() for line in lines if line.startswith("Requires-Dist:") and "extra ==" not in line]


def _install(python: Path, scratch: Path) -> None:
    downloads = scratch / "openmind-wheels"

    def download(requirement: str) -> list[str]:
        result = _pip(python, "download", "--no-deps", "--ignore-requires-python", "-d", str(downloads), requirement)
        if result.returncode != 0:
            output = result.stdout + result.stderr
            if _unreachable(output):
                raise IndexUnreachable(f"cannot download {requirement}: {output.strip().splitlines()[-1]}")
            raise AssertionError(f"pip download {requirement} failed:\n{output[-3000:]}")
        name = requirement.split("==")[0].replace("-", "_")
        return _base_requirements(next(downloads.glob(f"{name}-*.whl")))

    requirements = download(OPENMIND)
    hub = next(r for r in requirements if r.startswith("openmind-hub"))
    requirements += download(hub)
    # openMind pins setuptools==69.5.1, torch 2.13 needs >= 77; the openMind wheels go in without deps below.
    requirements = [r for r in requirements if not r.startswith(("openmind-hub", "setuptools"))]
    constraints = scratch / "constraints.txt"
    constraints.write_text(torch_pin() + "\n")
    for args in (("-c", str(constraints), *requirements, *STACK, torch_pin()),
                 ("--no-deps", "--ignore-requires-python", *map(str, downloads.glob("*.whl")))):
        result = _pip(python, "install", *args)
        if result.returncode != 0:
            output = result.stdout + result.stderr
            if _unreachable(output):
                raise IndexUnreachable(f"cannot install openMind's requirements: {output.strip().splitlines()[-1]}")
            raise AssertionError(f"pip install failed:\n{output[-4000:]}")


def openmind_venv() -> Path:
    """The venv's python with openMind 1.0.0 installed (built on first use); raises IndexUnreachable offline."""
    venv = venv_dir()
    python = venv / "bin" / "python"
    if (venv / READY).is_file():
        return python
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    try:
        with tempfile.TemporaryDirectory() as scratch:
            _install(python, Path(scratch))
    except BaseException:
        shutil.rmtree(venv, ignore_errors=True)
        raise
    (venv / READY).write_text("\n".join([OPENMIND, *STACK, torch_pin()]) + "\n")
    return python


def install_m1_ascend(python: Path, scratch: Path) -> None:
    """Build m1-ascend's wheel from a copy of the sources and install it (no dependencies) into the venv."""
    source = scratch / "m1-ascend-src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("m1_ascend", "kernels", "requirements"):
        shutil.copytree(REPO / name, source / name, ignore=ignore)
    for name in ("setup.py", "pyproject.toml", "MANIFEST.in", "constraints.txt", "README.md"):
        shutil.copy2(REPO / name, source / name)
    wheels = scratch / "wheels"
    built = _pip(Path(sys.executable), "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(source),
                 timeout=600)
    assert built.returncode == 0, built.stderr[-3000:]
    wheel = next(wheels.glob("m1_ascend-*.whl"))
    installed = _pip(python, "install", "--no-deps", "--force-reinstall", str(wheel), timeout=600)
    assert installed.returncode == 0, installed.stderr[-3000:]


def assert_same_tokens(recording: dict, run: dict, tokenizer: M1Tokenizer, pad_token_id: int) -> None:
    """Our dataset and collated batch equal openMind's, from the current directory (where its paths start)."""
    specs = resolve_datasets(recording["dataset"], recording["custom_dataset_info"])
    data = build_dataset(specs, tokenizer, run["cutoff_len"])
    ours = [{"input_ids": ex.input_ids, "labels": ex.labels, "attention_mask": [1] * len(ex.input_ids)}
            for ex in data.examples]
    assert len(ours) == len(run["examples"])
    for index, (mine, theirs) in enumerate(zip(ours, run["examples"], strict=True)):
        assert mine == theirs, f"example {index} differs at cutoff_len {run['cutoff_len']}"
    batch = PaddingCollator(pad_token_id=pad_token_id)([data[0], data[len(data) - 1]])
    assert {k: v.tolist() for k, v in batch.items()} == run["collated_first_and_last"]
