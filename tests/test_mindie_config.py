"""``m1-ascend mindie-config``: the generated MindIE config, its memory-plan numbers, the checker, bad input."""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path

import pytest
from deploy_testing import mindie_ready_copy, sparse_checkpoint

from m1_ascend.cli import main
from m1_ascend.config import preset_config
from m1_ascend.engine.memory_plan import (
    analytic_kv_bytes,
    check_tensor_parallel,
    kv_cache_bytes_per_sequence,
    plan_memory,
    weight_bytes,
)
from m1_ascend.mindie.checkpoint_info import GIB
from m1_ascend.mindie.generator import choose_layout
from m1_ascend.mindie.schema import MindIEConfig, parse_config
from m1_ascend.mindie.sizing import preset_info

SCHEDULE = "BackendConfig.ScheduleConfig"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """The tiny checkpoint as MindIE reads it: config.json must say torch_dtype (transformers 5 writes 'dtype')."""
    return mindie_ready_copy(tiny_model_dir, tmp_path_factory.mktemp("mindie") / "Baichuan-M1-tiny")


@pytest.fixture(autouse=True)
def four_npus(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test sees the same NPU listing: logical ids 0..3."""
    monkeypatch.setenv("ASCEND_RT_VISIBLE_DEVICES", "4,5,6,7")


def generate(model_dir: Path, out: Path, *extra: str) -> int:
    return main(["mindie-config", "--model-path", str(model_dir), "-o", str(out), "--port", str(free_port()),
                 "--management-port", str(free_port()), "--metrics-port", str(free_port()), *extra])


def check(path: Path, *extra: str) -> int:
    return main(["mindie-config", "--check", str(path), *extra])


def test_one_card_config_is_complete_valid_and_sized_by_the_plan(model_dir: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "config.json"
    assert generate(model_dir, out, "--npus", "0", "--max-seq-len", "512", "--max-input-len", "400") == 0
    summary = capsys.readouterr().out
    assert out.stat().st_mode & 0o777 == 0o640
    data = json.loads(out.read_text())
    config, problems = parse_config(data)
    assert config is not None and problems == []
    server, backend = data["ServerConfig"], data["BackendConfig"]
    deploy, schedule = backend["ModelDeployConfig"], backend["ScheduleConfig"]
    model = deploy["ModelConfig"][0]
    assert server["httpsEnabled"] is True and server["allowAllZeroIpListening"] is False
    assert backend["npuDeviceIds"] == [[0]] and model["worldSize"] == 1 and backend["modelInstanceNumber"] == 1
    assert model["modelWeightPath"] == str(model_dir) and model["modelName"] == "Baichuan-M1-tiny"
    assert (deploy["maxSeqLen"], deploy["maxInputTokenLen"], schedule["maxIterTimes"]) == (512, 400, 112)
    assert schedule["cacheBlockSize"] == 128 and schedule["maxPrefillTokens"] >= 400
    # Every field of every section is written, so MindIE's defaults never decide anything silently.
    assert set(data["ServerConfig"]) == set(MindIEConfig.model_fields["ServerConfig"].annotation.model_fields)
    plan = plan_memory(preset_config("tiny"), 512, 128, 4, 64 * GIB, 0.2, 1, schedule["maxPrefillTokens"])
    assert schedule["maxBatchSize"] == plan.max_concurrent_sequences
    assert f"maxBatchSize {plan.max_concurrent_sequences} per instance" in summary
    assert "headroom 12.80 GiB" in summary
    assert check(out) == 0
    assert "0 error(s), 0 warning(s)" in capsys.readouterr().out


def test_cards_the_heads_cannot_split_over_become_several_instances(model_dir: Path, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    # The tiny model has 2 global-layer query heads, so 4 cards run as 2 instances of 2 cards.
    out = tmp_path / "config.json"
    assert generate(model_dir, out, "--npus", "0,1,2,3") == 0
    assert "2 instances of 2 cards each" in capsys.readouterr().out
    backend = json.loads(out.read_text())["BackendConfig"]
    assert backend["npuDeviceIds"] == [[0, 1], [2, 3]] and backend["modelInstanceNumber"] == 2
    assert backend["ModelDeployConfig"]["ModelConfig"][0]["worldSize"] == 2
    assert check(out) == 0


def test_14b_memory_plan_matches_the_architecture_contract() -> None:
    config = preset_config("baichuan-m1-14b")
    assert weight_bytes(config) == 2 * 14_470_764_320  # 14,470,763,520 parameters + 800 conv scalars, bf16
    assert analytic_kv_bytes(config, 32768) == 2_013_265_920  # 1.875 GiB (architecture.md §4)
    assert analytic_kv_bytes(config, 8192) == 1_006_632_960
    # Block rounding: the window of 8192 tokens touches 65 blocks of 128 in sliding-window layers.
    assert kv_cache_bytes_per_sequence(config, 32768) == 2_013_265_920 + 20 * 128 * 4096
    # 4 cards: each card keeps 2 of 8 sliding-window KV heads (2x128) but 1 of 2 global ones (1x256, replicated),
    # so a global layer costs as much per card as a sliding one: 1024 B per token, not 2048 / 4.
    assert kv_cache_bytes_per_sequence(config, 8192, tensor_parallel=4) == 64 * 128 * (20 * 1024 + 20 * 1024)
    with pytest.raises(ValueError, match="num_attention_heads=20 cannot be split over 8 cards"):
        check_tensor_parallel(config, 8)
    info = preset_info(config)
    assert choose_layout(info, 8, None)[0] == 4 and choose_layout(info, 2, None) == (2, [])
    one_card = plan_memory(config, 32768, 128, 2, 64 * GIB, 0.2, 1, 24576)
    assert one_card.max_concurrent_sequences == 10  # spec anchor: "about 11 at 32k" before activations


def test_real_14b_geometry_on_one_and_eight_cards(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """The full-size checkpoint layout (sparse files): what a 910 server with 64 GiB cards gets."""
    weights = sparse_checkpoint(tmp_path / "Baichuan-M1-14B-Instruct", preset_config("baichuan-m1-14b"))
    monkeypatch.setenv("ASCEND_RT_VISIBLE_DEVICES", "0,1,2,3,4,5,6,7")
    one, eight = tmp_path / "one.json", tmp_path / "eight.json"
    assert generate(weights, one, "--npus", "0") == 0
    assert generate(weights, eight, "--npus", "0,1,2,3,4,5,6,7") == 0
    assert "weights 26.95 GiB" in capsys.readouterr().out
    for path, devices, world, batch in ((one, [[0]], 1, 24), (eight, [[0, 1, 2, 3], [4, 5, 6, 7]], 4, 140)):
        backend = json.loads(path.read_text())["BackendConfig"]
        assert backend["npuDeviceIds"] == devices and backend["ModelDeployConfig"]["ModelConfig"][0]["worldSize"] == world
        schedule = backend["ScheduleConfig"]
        assert (schedule["maxBatchSize"], schedule["maxPrefillTokens"], schedule["cacheBlockSize"]) == (batch, 8192, 128)
        assert check(path) == 0


def test_sizing_table_shows_what_the_bounded_window_buys(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["mindie-config", "--table"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| 8k") or line.startswith("| 32k")]
    assert len(rows) == 8
    cells = {tuple(c.strip() for c in row.strip("|").split("|")[:3]): row for row in rows}
    one_card_32k = cells[("32k", "1", "1 x TP1")].strip("|").split("|")
    assert [c.strip() for c in one_card_32k[-2:]] == ["10", "5"]  # 2x more sequences than an unbounded window
    assert ("8k", "8", "2 x TP4") in cells


@pytest.mark.parametrize("extra, message", [
    (["--npus", "0,0"], "NPU id 0 is listed twice"),
    (["--npus", "0,7"], "NPU id 7 does not exist on this host (logical ids 0,1,2,3 from ASCEND_RT_VISIBLE_DEVICES=4,5,6,7)"),
    (["--npus", "0", "--max-seq-len", "1024"], "--max-seq-len 1024 exceeds the model's max_position_embeddings 512"),
    (["--npus", "0", "--max-input-len", "512", "--max-seq-len", "512"], "--max-input-len 512 must be between 1 and"),
    (["--npus", "0", "--npu-memory-gib", "0.00001"], "sequence does not fit"),
    (["--npus", "0", "--tensor-parallel", "2"], "--tensor-parallel 2 must divide the 1 NPUs"),
])
def test_bad_input_is_one_line_and_leaves_the_old_file(model_dir: Path, tmp_path: Path, extra: list[str], message: str,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "config.json"
    out.write_text("previous config\n")
    assert generate(model_dir, out, *extra) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("m1-ascend mindie-config: error: ") and message in err and "\n" not in err
    assert out.read_text() == "previous config\n"
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]  # no temporary file left behind


def test_missing_or_partial_model_directory_is_refused(model_dir: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "config.json"
    assert generate(tmp_path / "nowhere", out, "--npus", "0") == 1
    assert "no such model directory" in capsys.readouterr().err
    partial = tmp_path / "partial"
    shutil.copytree(model_dir, partial)
    shard = sorted(partial.glob("model-*.safetensors"))[-1]
    shard.unlink()
    assert generate(partial, out, "--npus", "0") == 1
    assert f"{shard.name}: listed in model.safetensors.index.json but missing" in capsys.readouterr().err
    transformers5 = tmp_path / "no-torch-dtype"
    shutil.copytree(model_dir, transformers5)
    config = json.loads((transformers5 / "config.json").read_text())
    del config["torch_dtype"]
    (transformers5 / "config.json").write_text(json.dumps(config))
    assert generate(transformers5, out, "--npus", "0") == 1
    assert "no torch_dtype, which MindIE reads (found dtype='float32'" in capsys.readouterr().err
    assert not out.exists()


def test_port_in_use_is_refused(model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["mindie-config", "--model-path", str(model_dir), "--npus", "0", "-o", str(tmp_path / "c.json"),
                     "--port", str(port), "--management-port", str(free_port()), "--metrics-port", str(free_port())]) == 1
    assert f"port {port} on 127.0.0.1 is already in use" in capsys.readouterr().err
    assert not (tmp_path / "c.json").exists()


def test_cert_dir_must_hold_the_tls_files(model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    certs = tmp_path / "security"
    out = tmp_path / "config.json"
    assert generate(model_dir, out, "--npus", "0", "--cert-dir", str(certs)) == 1
    assert f"ServerConfig.tlsCert: {certs}/certs/server.pem does not exist" in capsys.readouterr().err
    for relative in ("ca/ca.pem", "certs/server.pem", "keys/server.key.pem"):
        (certs / relative).parent.mkdir(parents=True, exist_ok=True)
        (certs / relative).write_text("PEM\n")
    os.chmod(certs / "keys/server.key.pem", 0o600)
    assert generate(model_dir, out, "--npus", "0", "--cert-dir", str(certs)) == 0
    # The checker finds the same files through the install-dir layout (<home>/security).
    capsys.readouterr()
    assert check(out, "--mindie-home", str(tmp_path)) == 0
    assert "0 error(s)" in capsys.readouterr().out


def mutate(path: Path, edit) -> Path:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    os.chmod(path, 0o640)
    return path


def test_checker_names_each_problem_by_json_path(model_dir: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "config.json"
    assert generate(model_dir, out, "--npus", "0,1") == 0

    def edit(data: dict) -> None:
        backend = data["BackendConfig"]
        backend["npuDeviceIds"] = [[0, 1, 9]]
        backend["ScheduleConfig"]["maxPrefillTokens"] = 16
        backend["ScheduleConfig"]["cacheBlockSize"] = 64
        backend["ScheduleConfig"]["maxBatchsize"] = 10
        backend["ModelDeployConfig"]["maxSeqLen"] = 4096
        backend["ModelDeployConfig"]["ModelConfig"][0]["npuMemSize"] = "8"
        data["ServerConfig"]["ipAddress"] = "0.0.0.0"

    mutate(out, edit)
    capsys.readouterr()
    assert check(out) == 1
    printed = capsys.readouterr().out
    # Types first: a string where MindIE wants an int stops the deeper checks.
    assert "error: BackendConfig.ModelDeployConfig.ModelConfig[0].npuMemSize: Input should be a valid integer" in printed
    assert f"warning: {SCHEDULE}.maxBatchsize: unknown field" in printed

    mutate(out, lambda d: d["BackendConfig"]["ModelDeployConfig"]["ModelConfig"][0].update(npuMemSize=-1))
    capsys.readouterr()
    assert check(out) == 1
    printed = capsys.readouterr().out
    for expected in (
        "error: ServerConfig.ipAddress: binding to all interfaces needs allowAllZeroIpListening=true",
        f"error: {SCHEDULE}.maxPrefillTokens: 16 is below maxInputTokenLen",
        "error: BackendConfig.npuDeviceIds[0]: 3 NPUs but ModelConfig[0].worldSize is 2",
        "error: BackendConfig.npuDeviceIds[0]: NPU 9 does not exist (logical ids 0,1,2,3",
        "error: BackendConfig.ModelDeployConfig.maxSeqLen: 4096 exceeds max_position_embeddings 512",
        f"error: {SCHEDULE}.cacheBlockSize: must be 128 for Baichuan-M1",
    ):
        assert expected in printed, expected


def test_checker_reports_weights_tls_and_file_problems(model_dir: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "mindie-service"
    (home / "conf").mkdir(parents=True)
    out = home / "conf" / "config.json"
    assert generate(model_dir, out, "--npus", "0") == 0
    mutate(out, lambda d: d["BackendConfig"]["ModelDeployConfig"]["ModelConfig"][0].update(
        modelWeightPath=str(tmp_path / "gone")))
    os.chmod(out, 0o644)
    capsys.readouterr()
    assert check(out) == 1  # the install dir is found from <home>/conf/config.json
    printed = capsys.readouterr().out
    assert f"error: ServerConfig.tlsCert: {home}/security/certs/server.pem does not exist" in printed
    assert "warning: ServerConfig.tlsPkPwd:" in printed and "will ask for the key password" in printed
    assert f"error: BackendConfig.ModelDeployConfig.ModelConfig[0].modelWeightPath: {tmp_path}/gone: no such" in printed
    assert "warning: $: file mode 644; the MindIE-LLM 2.x server starts only with mode 640" in printed

    out.write_text('{"Version": "1.0.0",\n  "ServerConfig": {,}}')
    capsys.readouterr()
    assert check(out) == 1
    assert "error: $: not valid JSON: Expecting property name enclosed in double quotes at line 2" in capsys.readouterr().out


def test_memory_warning_when_max_batch_size_exceeds_the_plan(model_dir: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "config.json"
    assert generate(model_dir, out, "--npus", "0", "--npu-memory-gib", "0.05") == 0
    batch = json.loads(out.read_text())["BackendConfig"]["ScheduleConfig"]["maxBatchSize"]
    capsys.readouterr()
    assert check(out, "--npu-memory-gib", "0.05") == 0
    assert check(out, "--npu-memory-gib", "0.04") == 0  # a warning, not an error: MindIE queues by blocks
    assert f"warning: {SCHEDULE}.maxBatchSize: {batch} exceeds the" in capsys.readouterr().out
