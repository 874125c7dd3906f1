"""Air-gapped install: target profiles, the builder's refusals, the installer's host checks and isolation.

A local wheelhouse of small fake wheels stands in for the package indexes: right and wrong platform
tags, a CPU and a CUDA torch, nvidia-* and NVIDIA Triton dependencies. Nothing here uses the network
except the slow check at the end, which resolves the real `ascend` aarch64 profile.
"""

from __future__ import annotations

import base64
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import urllib.request
import warnings
import zipfile
from pathlib import Path

import pytest
from deploy_testing import DEPLOY, REPO, run_script

BUILD = DEPLOY / "offline/build-bundle.sh"
INSTALL = DEPLOY / "offline/install-bundle.sh"
HOST_ARCH = "aarch64" if platform.machine() in ("aarch64", "arm64") else "x86_64"
OTHER_ARCH = "x86_64" if HOST_ARCH == "aarch64" else "aarch64"
PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


def fake_wheel(directory: Path, name: str, version: str, platform_tag: str = "any", requires: tuple[str, ...] = (),
               files: dict[str, str] | None = None) -> Path:
    """A minimal valid wheel: one module reporting ``VERSION``, METADATA with ``requires``, a RECORD."""
    directory.mkdir(parents=True, exist_ok=True)
    dist = name.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    contents = {f"{dist}/__init__.py": f"VERSION = {version!r}\n", **(files or {}),
                f"{info}/METADATA": "Metadata-Version: 2.1\n" f"Name: {name}\nVersion: {version}\n"
                                    + "".join(f"Requires-Dist: {r}\n" for r in requires),
                f"{info}/WHEEL": f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-{platform_tag}\n"}

    def digest(text: str) -> str:
        return base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()

    record = "".join(f"{path},sha256={digest(text)},{len(text.encode())}\n" for path, text in contents.items())
    path = directory / f"{dist}-{version}-py3-none-{platform_tag}.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for member, text in {**contents, f"{info}/RECORD": record + f"{info}/RECORD,,\n"}.items():
            archive.writestr(member, text)
    return path


def offline_env(**extra: str) -> dict[str, str]:
    """No pip configuration, index or find-links from this machine: only what the test provides."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    return {**env, "PIP_CONFIG_FILE": os.devnull, "PIP_INDEX_URL": "http://127.0.0.1:9/unreachable",
            "PIP_DISABLE_PIP_VERSION_CHECK": "1", **extra}


def write_lists(directory: Path, pins: dict[str, str]) -> tuple[Path, Path]:
    requirements, constraints = directory / "requirements.txt", directory / "constraints.txt"
    requirements.write_text("".join(f"{name}\n" for name in pins))
    constraints.write_text("".join(f"{name}=={version}\n" for name, version in pins.items()))
    return requirements, constraints


def build(tmp_path: Path, links: Path, pins: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    requirements, constraints = write_lists(tmp_path, pins)
    return run_script(BUILD, "--requirements", str(requirements), "--constraints", str(constraints), "--no-index",
                      "--find-links", str(links), "--output", str(tmp_path / "out"), "--python", sys.executable,
                      "--python-version", PYTHON, *args, env=offline_env(), inherit_env=False)


def install(bundle: Path, prefix: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_script(INSTALL, "--bundle", str(bundle), "--prefix", str(prefix), "--python", sys.executable, *args,
                      env=env or offline_env(), inherit_env=False)


def copy_to_host(tarball: Path, host: Path) -> Path:
    """What reaches the air-gapped host: the tarball and its checksum file, nothing else."""
    host.mkdir()
    for path in (tarball, tarball.with_name(tarball.name + ".sha256")):
        shutil.copy2(path, host / path.name)
    return host / tarball.name


def bundle_members(out: Path) -> tuple[str, list[str], dict[str, str]]:
    (tarball,) = out.glob("m1-ascend-bundle-*.tar.gz")
    with tarfile.open(tarball) as tar:
        names = tar.getnames()
        top = names[0].split("/")[0]
        info_file = tar.extractfile(f"{top}/BUNDLE-INFO")
        assert info_file is not None
        info = dict(line.split("=", 1) for line in info_file.read().decode().splitlines())
    return top, sorted(Path(n).name for n in names if n.endswith(".whl")), info


def test_other_arch_bundle_takes_every_manylinux_tag_and_the_cpu_torch_then_is_refused_here(tmp_path: Path) -> None:
    links, torch_index = tmp_path / "links", tmp_path / "torch-cpu-index"
    # Published only as manylinux2014 for the target (pip's single --platform tag used to reject it).
    fake_wheel(links, "m1tiny-alpha", "1.0.1", f"manylinux_2_17_{OTHER_ARCH}.manylinux2014_{OTHER_ARCH}")
    fake_wheel(links, "m1tiny-alpha", "1.0.1", f"manylinux_2_28_{HOST_ARCH}")
    fake_wheel(links, "m1tiny-beta", "2.0.0")
    # PyPI's torch for the target is a CUDA build; the CPU index has the +cpu one the bundle must take.
    fake_wheel(links, "torch", "2.13.0", f"manylinux_2_28_{OTHER_ARCH}", requires=("nvidia-cublas-cu12",),
               files={"torch/lib/libtorch_cuda.so": ""})
    fake_wheel(torch_index, "torch", "2.13.0+cpu", f"manylinux_2_28_{OTHER_ARCH}")
    built = build(tmp_path, links, {"m1tiny-alpha": "1.0.1", "m1tiny-beta": "2.0.0", "torch": "2.13.0"},
                  "--profile", "cpu", "--arch", OTHER_ARCH, "--torch-index", str(torch_index))
    assert built.returncode == 0, built.stdout + built.stderr
    top, wheels, info = bundle_members(tmp_path / "out")
    assert wheels == [f"m1_ascend-{info['m1_ascend_version']}-py3-none-any.whl",
                      f"m1tiny_alpha-1.0.1-py3-none-manylinux_2_17_{OTHER_ARCH}.manylinux2014_{OTHER_ARCH}.whl",
                      "m1tiny_beta-2.0.0-py3-none-any.whl", f"torch-2.13.0+cpu-py3-none-manylinux_2_28_{OTHER_ARCH}.whl"]
    assert (info["profile"], info["arch"], info["python_version"]) == ("cpu", OTHER_ARCH, PYTHON)
    assert f"manylinux2014_{OTHER_ARCH}" in info["platform_tags"].split()
    assert "[3/4] checking every wheel" in built.stdout and "build-bundle: 4 wheels" in built.stdout
    assert top.endswith(f"-cpu-{OTHER_ARCH}-py{PYTHON}")

    # On this host the bundle is refused before anything is unpacked or created.
    (tarball,) = (tmp_path / "out").glob("*.tar.gz")
    host = copy_to_host(tarball, tmp_path / "host")
    refused = install(host, tmp_path / "host" / "opt")
    assert refused.returncode == 1
    assert f"this bundle is for {OTHER_ARCH}, this host is {HOST_ARCH}" in refused.stderr
    assert sorted(p.name for p in host.parent.iterdir()) == [tarball.name, tarball.name + ".sha256"]


@pytest.mark.parametrize("case", ["cuda-torch", "nvidia-dependency", "nvidia-triton-on-ascend"])
def test_build_refuses_wheels_that_do_not_fit_the_target(tmp_path: Path, case: str) -> None:
    links, torch_index = tmp_path / "links", tmp_path / "torch-cpu-index"
    fake_wheel(torch_index, "torch", "2.13.0+cpu", f"manylinux_2_28_{HOST_ARCH}")
    pins = {"m1tiny-beta": "2.0.0", "torch": "2.13.0"}
    fake_wheel(links, "m1tiny-beta", "2.0.0")
    args = ["--profile", "ascend" if case == "nvidia-triton-on-ascend" else "cpu", "--torch-index", str(torch_index)]
    if case == "cuda-torch":
        args[-1] = "none"  # torch then comes from the plain index: the CUDA build
        fake_wheel(links, "torch", "2.13.0", f"manylinux_2_28_{HOST_ARCH}", requires=("nvidia-cublas-cu12",),
                   files={"torch/lib/libtorch_cuda.so": ""})
        fake_wheel(links, "nvidia-cublas-cu12", "12.9.1", f"manylinux_2_27_{HOST_ARCH}")
        expected = ["torch-2.13.0-py3-none", "is a CUDA build (libtorch_cuda.so, requires nvidia-cublas-cu12)",
                    "--torch-index https://download.pytorch.org/whl/cpu"]
    elif case == "nvidia-dependency":
        fake_wheel(links, "m1tiny-gamma", "3.0.0", requires=("nvidia-nccl-cu12",))
        fake_wheel(links, "nvidia-nccl-cu12", "2.27.3", f"manylinux_2_18_{HOST_ARCH}")
        pins["m1tiny-gamma"] = "3.0.0"
        expected = ["nvidia_nccl_cu12-2.27.3", "is a CUDA library (required by m1tiny-gamma)"]
    elif case == "nvidia-triton-on-ascend":
        fake_wheel(links, "m1tiny-gamma", "3.0.0", requires=("triton",))
        fake_wheel(links, "triton", "3.9.0", f"manylinux_2_27_{HOST_ARCH}")
        pins["m1tiny-gamma"] = "3.0.0"
        expected = ["triton-3.9.0", "is NVIDIA Triton (required by m1tiny-gamma)", "triton-ascend"]
    built = build(tmp_path, links, pins, *args)
    assert built.returncode == 1, built.stdout + built.stderr
    refusals = [line for line in built.stderr.splitlines() if "refused" in line]
    assert len(refusals) == 1, built.stderr
    for part in expected:
        assert part in refusals[0]
    assert not list((tmp_path / "out").glob("m1-ascend-bundle-*"))  # nothing half-built is left


@pytest.fixture
def host_bundle(tmp_path: Path) -> Path:
    """A bundle for this host (two fake packages + our wheel), built offline."""
    links = tmp_path / "links"
    fake_wheel(links, "m1tiny-alpha", "1.0.1", f"manylinux_2_17_{HOST_ARCH}")
    fake_wheel(links, "m1tiny-beta", "2.0.0")
    built = build(tmp_path, links, {"m1tiny-alpha": "1.0.1", "m1tiny-beta": "2.0.0"}, "--profile", "cpu",
                  "--torch-index", "none")
    assert built.returncode == 0, built.stdout + built.stderr
    (tarball,) = (tmp_path / "out").glob("m1-ascend-bundle-*.tar.gz")
    return copy_to_host(tarball, tmp_path / "host")


def test_install_uses_only_the_bundle_whatever_pip_is_configured_with(host_bundle: Path, tmp_path: Path) -> None:
    # This machine offers a "newer" alpha through every channel pip reads: config file, find-links, index.
    intruder = tmp_path / "intruder"
    fake_wheel(intruder, "m1tiny-alpha", "1.0.1+intruder")
    pip_conf = tmp_path / "pip.conf"
    pip_conf.write_text(f"[global]\nfind-links = {intruder}\nno-index = false\n")
    env = offline_env(PIP_CONFIG_FILE=str(pip_conf), PIP_FIND_LINKS=str(intruder), PIP_EXTRA_INDEX_URL=intruder.as_uri())
    prefix = tmp_path / "opt"
    first = install(host_bundle, prefix, "--allow-incomplete", env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "matches this host" in first.stdout and "intruder" not in first.stdout
    python = prefix / "venv/bin/python"
    imported = subprocess.run([str(python), "-c", "import m1tiny_alpha, m1tiny_beta, importlib.metadata as m; "
                               "print(m1tiny_alpha.VERSION, m1tiny_beta.VERSION, m.version('m1-ascend'))"],
                              capture_output=True, text=True, check=True).stdout.split()
    assert imported == ["1.0.1", "2.0.0", "0.1.0"]
    assert (prefix / "deploy/bin/m1-ascendctl").is_file()
    # m1-ascend's own dependencies (torch, ...) are not in this subset: warnings with the flag, fatal without.
    assert "dependencies incomplete" in first.stderr and "doctor could not run" in first.stderr
    again = install(host_bundle, prefix, env=env)
    assert "Requirement already satisfied: m1tiny-alpha" in again.stdout
    assert again.returncode == 1 and "pip check found missing" in again.stderr
    assert (prefix / "venv").is_dir()  # an existing installation is never removed by a failed upgrade

    # A tampered bundle is refused before anything is installed.
    bundle_dir = host_bundle.parent / host_bundle.name[:-len(".tar.gz")]
    wheel = next((bundle_dir / "wheelhouse").glob("m1tiny_alpha-*.whl"))
    wheel.write_bytes(wheel.read_bytes() + b"\0")
    tampered = install(bundle_dir, tmp_path / "opt2", "--allow-incomplete")
    assert tampered.returncode == 1 and "differs from its SHA256SUMS" in tampered.stderr
    assert not (tmp_path / "opt2").exists()


def test_a_failed_install_removes_what_it_created(host_bundle: Path, tmp_path: Path) -> None:
    with tarfile.open(host_bundle) as tar:
        tar.extractall(host_bundle.parent, filter="data")
    bundle_dir = host_bundle.parent / host_bundle.name[:-len(".tar.gz")]
    # A mis-built bundle: it asks for a package its wheelhouse lacks (re-signed, so only pip can notice).
    with (bundle_dir / "requirements.txt").open("a") as f:
        f.write("m1tiny-missing\n")
    subprocess.run("find . -type f ! -name SHA256SUMS -printf '%P\\n' | LC_ALL=C sort | xargs sha256sum > SHA256SUMS",
                   shell=True, cwd=bundle_dir, check=True)
    prefix = tmp_path / "opt"
    failed = install(bundle_dir, prefix, "--allow-incomplete")
    assert failed.returncode == 1
    assert "removing what this run created" in failed.stderr and "m1tiny-missing" in failed.stdout + failed.stderr
    assert not prefix.exists()


def test_install_refuses_another_profile_and_python(host_bundle: Path, tmp_path: Path) -> None:
    other = install(host_bundle, tmp_path / "opt", "--profile", "ascend")
    assert other.returncode == 1 and "has the cpu profile, --profile asked for ascend" in other.stderr
    fake_python = tmp_path / "python3.7"
    fake_python.write_text("#!/bin/sh\necho 3.7\n")
    fake_python.chmod(0o755)
    old = run_script(INSTALL, "--bundle", str(host_bundle), "--prefix", str(tmp_path / "opt"), "--python",
                     str(fake_python), env=offline_env(), inherit_env=False)
    assert old.returncode == 1 and f"the bundle is for Python {PYTHON} but" in old.stderr
    assert not (tmp_path / "opt").exists()


def test_build_refuses_a_tree_that_is_not_m1_ascend_and_the_old_platform_flag(tmp_path: Path) -> None:
    result = run_script(BUILD, "--project", str(tmp_path), "--output", str(tmp_path / "o"))
    assert result.returncode == 1 and "not the m1-ascend source tree" in result.stderr
    old = run_script(BUILD, "--platform", "manylinux_2_28_aarch64")
    assert old.returncode == 1 and "replaced by --arch and --glibc" in old.stderr


def reachable(url: str) -> bool:
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=15)
    except OSError:
        return False
    return True


@pytest.mark.slow_e2e
def test_the_real_ascend_aarch64_profile_resolves_from_the_public_indexes(tmp_path: Path) -> None:
    """The documented Atlas 800 A2 command against PyPI (and PyTorch's CPU index when it answers).

    It notices the day a pin loses its aarch64 wheel. Where PyTorch's CPU index is unreachable (this
    build machine), torch is replaced by a stand-in wheel with the real CPU torch's dependencies, and
    a warning says the torch download itself went unchecked.
    """
    if not reachable("https://pypi.org/simple/torch-npu/"):
        pytest.skip("PyPI is unreachable from this machine: the real profile cannot be resolved")
    args = ["--profile", "ascend", "--arch", "aarch64", "--python-version", "3.11", "--output", str(tmp_path / "out")]
    if not reachable("https://download.pytorch.org/whl/cpu/torch/"):
        warnings.warn("download.pytorch.org is unreachable: the aarch64 CPU torch wheel was not downloaded; "
                      "a stand-in with the real torch's dependencies was used", stacklevel=1)
        requires = ("filelock", "typing-extensions>=4.10.0", "sympy>=1.13.3", "networkx>=2.5.1", "jinja2", "fsspec>=0.8.5")
        for cpu_torch in sorted(Path("/opt/wheels").glob("torch-2.13.0+cpu-*.whl")):  # the x86_64 wheel, if on disk
            with zipfile.ZipFile(cpu_torch) as archive:
                metadata = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
                requires = tuple(line.split(": ", 1)[1] for line in archive.read(metadata).decode().splitlines()
                                 if line.startswith("Requires-Dist: ") and "extra ==" not in line)
        fake_wheel(tmp_path / "torch-stand-in", "torch", "2.13.0+cpu", "manylinux_2_28_aarch64", requires=requires)
        args += ["--torch-index", str(tmp_path / "torch-stand-in")]
    built = run_script(BUILD, *args, timeout=1800, cwd=REPO)
    assert built.returncode == 0, built.stdout[-4000:] + built.stderr[-4000:]
    _, wheels, info = bundle_members(tmp_path / "out")
    names = {w.split("-")[0].lower() for w in wheels}
    assert {"torch", "torch_npu", "transformers", "safetensors", "tokenizers", "pydantic_core"} <= names
    assert not {n for n in names if n.startswith(("nvidia", "cuda"))} and "triton" not in names
    assert info["arch"] == "aarch64" and info["profile"] == "ascend"
    print(next(line for line in built.stdout.splitlines() if line.startswith("build-bundle: ") and " wheels, " in line))
