"""Weight integrity: the SHA256SUMS manifest, ``verify-weights``, and the server refusing altered weights."""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from m1_ascend.cli import main
from m1_ascend.server.settings import ServerSettings
from m1_ascend.server.startup import load_model
from m1_ascend.weights import (
    MANIFEST,
    WeightIntegrityError,
    parse_manifest,
    verify_or_refuse,
    verify_weights,
    write_manifest,
)

needs_sha256sum = pytest.mark.skipif(shutil.which("sha256sum") is None, reason="coreutils sha256sum not installed")


@pytest.fixture
def weights(tmp_path: Path, tiny_model_dir: Path) -> Path:
    """A copy of the tiny checkpoint (sharded safetensors, config, tokenizer) with its manifest."""
    directory = tmp_path / "weights"
    shutil.copytree(tiny_model_dir, directory)
    write_manifest(directory, progress=False)
    return directory


def flip_one_byte(path: Path, offset: int = 100) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(data)


def sha256sum_check(directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sha256sum", "-c", MANIFEST], cwd=directory, capture_output=True, text=True)


def test_manifest_lists_every_file_in_sha256sum_format(weights: Path) -> None:
    lines = (weights / MANIFEST).read_text().splitlines()
    files = sorted(p.relative_to(weights).as_posix() for p in weights.rglob("*") if p.is_file() and p.name != MANIFEST)
    assert [line[66:] for line in lines] == files  # sorted, relative, the manifest itself left out
    assert all(re.fullmatch(r"[0-9a-f]{64}  \S.*", line) for line in lines)
    assert any(name.endswith(".safetensors") for name in files) and "config.json" in files
    assert verify_weights(weights, progress=False).intact


@needs_sha256sum
def test_standard_tools_agree(weights: Path) -> None:
    assert sha256sum_check(weights).returncode == 0
    flip_one_byte(next(weights.glob("model-*.safetensors")))
    result = sha256sum_check(weights)
    assert result.returncode == 1 and "FAILED" in result.stdout


@needs_sha256sum
def test_names_needing_escapes_round_trip_through_sha256sum(tmp_path: Path) -> None:
    (tmp_path / "sub dir").mkdir()
    (tmp_path / "sub dir" / "a\\b.txt").write_text("backslash")
    (tmp_path / "plain.txt").write_text("plain")
    write_manifest(tmp_path, progress=False)
    assert sha256sum_check(tmp_path).returncode == 0
    assert verify_weights(tmp_path, progress=False).intact
    # A manifest made by sha256sum itself (binary mode, ' *' separator) is read the same way.
    made = subprocess.run(["sha256sum", "-b", "plain.txt", "sub dir/a\\b.txt"], cwd=tmp_path, capture_output=True,
                          text=True, check=True).stdout
    assert parse_manifest(made) == parse_manifest((tmp_path / MANIFEST).read_text())


def test_one_flipped_byte_missing_and_extra_files_are_each_named(weights: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shard = sorted(weights.glob("model-*.safetensors"))[0]
    flip_one_byte(shard)
    (weights / "tokenizer_config.json").unlink()
    (weights / "modeling_extra.py").write_text("import os\n")
    assert main(["verify-weights", str(weights), "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert f"altered: {shard.name}" in out and "missing: tokenizer_config.json" in out and "extra: modeling_extra.py" in out
    assert "FAILED: 3 file(s) differ" in out


def test_server_refuses_altered_weights_unless_overridden(weights: Path, caplog: pytest.LogCaptureFixture) -> None:
    flip_one_byte(sorted(weights.glob("model-*.safetensors"))[-1])
    with pytest.raises(WeightIntegrityError, match=r"1 altered.*refusing to start"):
        load_model(ServerSettings(model=str(weights), device="cpu"))
    with caplog.at_level(logging.WARNING, logger="m1_ascend.weights"):
        result = verify_or_refuse(weights, allow_mismatch=True)
    assert not result.intact and "starting anyway because the check was overridden" in caplog.text


def test_without_a_manifest_start_warns_and_the_command_exits_2(tmp_path: Path, tiny_model_dir: Path,
                                                                caplog: pytest.LogCaptureFixture,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    with caplog.at_level(logging.WARNING, logger="m1_ascend.weights"):
        result = verify_or_refuse(tiny_model_dir, allow_mismatch=False)
    assert not result.manifest_found and "no SHA256SUMS; weights not verified" in caplog.text
    assert main(["verify-weights", str(tiny_model_dir), "--no-progress"]) == 2
    assert "record one with --write" in capsys.readouterr().err


def test_write_refuses_to_replace_a_manifest_without_force(weights: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = (weights / MANIFEST).read_text()
    (weights / "adapter.safetensors").write_bytes(b"new")
    assert main(["verify-weights", str(weights), "--write", "--no-progress"]) == 1
    assert "exists; verify against it, or pass --force" in capsys.readouterr().err
    assert (weights / MANIFEST).read_text() == before
    assert main(["verify-weights", str(weights), "--write", "--force", "--no-progress"]) == 0
    assert "adapter.safetensors" in (weights / MANIFEST).read_text()
    assert main(["verify-weights", str(weights), "--no-progress"]) == 0
