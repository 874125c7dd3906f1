"""Air-gapped install: build a bundle of a subset of the stack (plus our wheel) and install it with --no-index."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from deploy_testing import DEPLOY, run_script

PACKAGES = {"m1tiny-alpha": "1.0.1", "m1tiny-beta": "2.0.0"}


def offline_env() -> dict[str, str]:
    """No pip configuration, index or find-links from this machine: only what the bundle carries."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    return {**env, "PIP_CONFIG_FILE": os.devnull, "PIP_INDEX_URL": "http://127.0.0.1:9/unreachable",
            "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


@pytest.fixture(scope="module")
def links(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two tiny pure-Python wheels standing in for the connected machine's package index."""
    root = tmp_path_factory.mktemp("index")
    for name, version in PACKAGES.items():
        module = root / "src" / name / name.replace("-", "_")
        module.mkdir(parents=True)
        (module / "__init__.py").write_text(f"VERSION = {version!r}\n")
        (module.parent / "pyproject.toml").write_text(
            f'[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
            f'[project]\nname = "{name}"\nversion = "{version}"\n')
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                    "--wheel-dir", str(root / "links"), *(str(root / "src" / name) for name in PACKAGES)],
                   check=True, env=offline_env())
    return root / "links"


def test_bundle_builds_and_installs_without_network(links: Path, tmp_path: Path) -> None:
    requirements, constraints = tmp_path / "requirements.txt", tmp_path / "constraints.txt"
    requirements.write_text("".join(f"{name}\n" for name in PACKAGES))
    constraints.write_text("".join(f"{name}=={version}\n" for name, version in PACKAGES.items()))
    built = run_script(DEPLOY / "offline/build-bundle.sh", "--requirements", str(requirements), "--constraints",
                       str(constraints), "--no-index", "--find-links", str(links), "--output", str(tmp_path / "out"),
                       "--python", sys.executable, env=offline_env())
    assert built.returncode == 0, built.stdout + built.stderr
    (tarball,) = (tmp_path / "out").glob("m1-ascend-bundle-*.tar.gz")
    with tarfile.open(tarball) as tar:
        names = tar.getnames()
    top = names[0].split("/")[0]
    for member in ("SHA256SUMS", "BUNDLE-INFO", "install-bundle.sh", "constraints.txt", "deploy/bin/m1-ascendctl"):
        assert f"{top}/{member}" in names
    wheels = sorted(Path(n).name for n in names if n.endswith(".whl"))
    assert [w.split("-")[0] for w in wheels] == ["m1_ascend", "m1tiny_alpha", "m1tiny_beta"]

    # The host: a copy of the tarball and its checksum only, and no index to fall back on.
    host = tmp_path / "host"
    host.mkdir()
    for path in (tarball, tarball.with_name(tarball.name + ".sha256")):
        (host / path.name).write_bytes(path.read_bytes())
    install = [str(DEPLOY / "offline/install-bundle.sh"), "--bundle", str(host / tarball.name),
               "--prefix", str(host / "opt"), "--python", sys.executable, "--allow-incomplete"]
    first = run_script(Path(install[0]), *install[1:], env=offline_env())
    assert first.returncode == 0, first.stdout + first.stderr
    python = host / "opt/venv/bin/python"
    imported = subprocess.run([str(python), "-c", "import m1tiny_alpha, m1tiny_beta, importlib.metadata as m; "
                               "print(m1tiny_alpha.VERSION, m1tiny_beta.VERSION, m.version('m1-ascend'))"],
                              capture_output=True, text=True, check=True).stdout.split()
    assert imported == ["1.0.1", "2.0.0", "0.1.0"]
    assert (host / "opt/deploy/bin/m1-ascendctl").is_file()
    # Our wheel's own dependencies (torch, ...) are not in this subset: a warning with the flag, fatal without.
    assert "dependencies incomplete" in first.stderr
    again = run_script(Path(install[0]), *install[1:-1], env=offline_env())
    assert "Requirement already satisfied: m1tiny-alpha" in again.stdout  # a second run reinstalls nothing new
    assert again.returncode == 1 and "pip check found missing" in again.stderr

    # A tampered bundle is refused before anything is installed.
    bundle_dir = host / top
    wheel = next((bundle_dir / "wheelhouse").glob("m1tiny_alpha-*.whl"))
    wheel.write_bytes(wheel.read_bytes() + b"\0")
    tampered = run_script(Path(install[0]), "--bundle", str(bundle_dir), "--prefix", str(host / "opt2"),
                          "--python", sys.executable, "--allow-incomplete", env=offline_env())
    assert tampered.returncode == 1 and "differs from its SHA256SUMS" in tampered.stderr
    assert not (host / "opt2").exists()


def test_build_refuses_a_tree_that_is_not_m1_ascend(tmp_path: Path) -> None:
    result = run_script(DEPLOY / "offline/build-bundle.sh", "--project", str(tmp_path), "--output", str(tmp_path / "o"))
    assert result.returncode == 1 and "not the m1-ascend source tree" in result.stderr
