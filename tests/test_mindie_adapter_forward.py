"""The MindIE adapter served by a CPU copy of MindIE's torch runtime, against the CPU reference.

``mindie_standin.service.MindIEService`` plays MindIE-LLM 3.0.0 (``tests/mindie_standin``, rebuilt from
its source): weights through MindIE's loader (which reads ``model.config``), warm-up on a one-block
pool with all-zero block tables, capture of the decode graphs (sizes 1, 2, 4, 8) on the emulated
``NPUGraph``, then steps where requests join and leave, so decode batches are padded to a captured
size with stale pad rows (3 -> 4, 5 -> 8, and back down), or run eagerly above the largest size. At
every replay MindIE refreshes only ``actual_seq_lengths_kv``, one list for every attention op.

Each request's logits must equal the reference model's own forward over its tokens within a few
bf16 ulps (as in test_npu_model.py) and each token be its greedy pick (up to a tie within that), on
prompts longer than the sliding window and across a block boundary, for both cache geometries
(equal K/V widths, and the 14B's sliding layers twice as wide). In fp32 on the reference backend
the adapter is held to the model's own forward to 1e-4.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from m1_ascend.kernels import ReferenceBackend
from mindie_standin.fixtures import make_mindie_tree, mindie_importable
from mindie_standin.service import Generated, MindIEService, Request

from m1_ascend.checkpoint import save_checkpoint
from m1_ascend.config import preset_config
from m1_ascend.mindie_adapter import install
from m1_ascend.mindie_adapter.geometry import CacheGeometry
from m1_ascend.modeling import BaichuanM1ForCausalLM

pytest_plugins = ["npu_emulator.fixtures"]
pytestmark = [pytest.mark.npu_emulated,
              pytest.mark.filterwarnings("ignore:To copy construct from a tensor:UserWarning")]  # MindIE's to_device

WINDOW = 160
GEOMETRIES = {  # head dims of Baichuan-M1 (global 256, sliding 128: TND) at a CPU-friendly width
    "equal-widths": dict(num_swa_key_value_heads=2),
    "14b-shaped": dict(num_swa_key_value_heads=4),  # sliding layers store twice the global layers' width
}


def build_model(geometry: str, dtype: torch.dtype) -> BaichuanM1ForCausalLM:
    config = preset_config("tiny", hidden_size=512, intermediate_size=512, num_hidden_layers=2, num_attention_heads=2,
                           num_key_value_heads=1, num_swa_attention_heads=4, sliding_window=WINDOW,
                           max_position_embeddings=1024, initializer_range=0.1, **GEOMETRIES[geometry])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return BaichuanM1ForCausalLM(config).eval().to(dtype)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory, tokenizer_dir: Path) -> dict[tuple[str, torch.dtype], Path]:
    made = {}
    for geometry in GEOMETRIES:
        for dtype in (torch.bfloat16, torch.float32):
            directory = tmp_path_factory.mktemp(f"{geometry}-{str(dtype).split('.')[-1]}")
            save_checkpoint(build_model(geometry, dtype), directory)
            for path in tokenizer_dir.iterdir():
                (directory / path.name).write_bytes(path.read_bytes())
            made[geometry, dtype] = directory
    return made


@pytest.fixture
def mindie(tmp_path: Path, torch_npu_emulator: object) -> Iterator[None]:
    """MindIE-LLM 3.0.0 with the adapter installed, importable for one test, on the emulated torch_npu."""
    site = make_mindie_tree(tmp_path)
    install.install(install.locate_mindie(site))
    with mindie_importable(site), torch.no_grad():
        yield


def reference_logits(model: BaichuanM1ForCausalLM, tokens: list[int]) -> torch.Tensor:
    """The reference backend's own forward over the whole sequence (no cache, no paging)."""
    with torch.no_grad():
        return model(torch.tensor([tokens])).logits[0].float()


def assert_matches_reference(model: BaichuanM1ForCausalLM, request: Request, generated: Generated) -> None:
    """Each step's logits within 8 bf16 ulps of the reference forward over the same tokens, and each
    token its greedy pick (up to a tie within that tolerance: bf16 kernels round differently)."""
    expected = reference_logits(model, request.prompt + generated.tokens)[len(request.prompt) - 1:-1]
    atol = 8 * 2 ** -8 * float(expected.abs().max())
    torch.testing.assert_close(torch.stack(generated.logits), expected, rtol=0, atol=atol)
    picked = expected.gather(1, torch.tensor(generated.tokens)[:, None]).squeeze(1)
    assert (expected.max(dim=-1).values - picked <= atol).all(), "a greedy pick differs from the reference's"


def prompts(lengths: list[int], seed: int = 0) -> list[list[int]]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randint(80, 320, (n,), generator=generator).tolist() for n in lengths]


def joining_and_leaving() -> list[Request]:
    """Decode batches of 3 (-> 4), 5 (-> 8), 9 (eager above 8), then shrinking inside 8 and 4 again."""
    lengths = [150, 170, 200, 140, 190, 120, 160, 130, 180]
    arrivals = [0, 0, 0, 4, 4, 8, 8, 8, 8]
    new_tokens = [16, 9, 13, 14, 7, 5, 6, 4, 11]
    return [Request(p, n, a) for p, n, a in zip(prompts(lengths), new_tokens, arrivals, strict=True)]


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_capture_and_replay_under_mindie_equal_the_reference(mindie: None, checkpoints, geometry: str):
    checkpoint = checkpoints[geometry, torch.bfloat16]
    requests = joining_and_leaving()
    with MindIEService(checkpoint, max_batch_size=8, num_blocks=32, max_seq_len=512, max_input_len=256,
                       max_prefill_tokens=2048, max_iter_times=64) as service:
        assert service.captured_sizes == [1, 2, 4, 8]  # the adapter no longer refuses MindIE's capture
        outputs = service.run(requests)
        decodes = [step for step in service.steps if not step.is_prefill]
        assert {(step.batch, step.padded, step.graph) for step in decodes} >= {(3, 4, True), (5, 8, True),
                                                                                 (9, 9, False), (2, 2, True)}
        assert sum(service.replays.values()) == sum(step.graph for step in decodes)
        # One dict for every attention op, holding every row's full length (pad rows 0).
        replayed = [step for step in decodes if step.graph]
        assert [inputs for _, inputs in service.updates] == [
            [{"actual_seq_lengths_kv": step.context_lengths + [0] * (step.padded - step.batch)}] for step in replayed]
        assert service.update_failures == []
    model = build_model(geometry, torch.bfloat16)
    for request, generated in zip(requests, outputs, strict=True):
        assert_matches_reference(model, request, generated)


def test_eager_adapter_on_the_cpu_reference_backend_is_exact(mindie: None, checkpoints, monkeypatch):
    """fp32 and the reference kernels: MindIE's batch layout becomes our metadata without loss."""
    monkeypatch.setattr("m1_ascend.mindie_adapter.model.default_backend", lambda device: ReferenceBackend())
    checkpoint = checkpoints["14b-shaped", torch.float32]
    requests = joining_and_leaving()[:6]
    with MindIEService(checkpoint, max_batch_size=8, num_blocks=32, max_seq_len=512, max_input_len=256,
                       max_prefill_tokens=2048, role="prefill") as service:  # no graphs: every step eager
        assert service.captured_sizes == []
        outputs = service.run(requests)
    model = build_model("14b-shaped", torch.float32)
    for request, generated in zip(requests, outputs, strict=True):
        expected = reference_logits(model, request.prompt + generated.tokens)[len(request.prompt) - 1:-1]
        torch.testing.assert_close(torch.stack(generated.logits), expected, rtol=1e-4, atol=1e-4)


def test_dev_branch_forward_context_serves_too(tmp_path: Path, torch_npu_emulator: object, checkpoints):
    site = make_mindie_tree(tmp_path, forward_context="dev")
    install.install(install.locate_mindie(site))
    checkpoint = checkpoints["equal-widths", torch.bfloat16]
    request = Request(prompts([140])[0], 5)
    with mindie_importable(site), torch.no_grad(), MindIEService(
            checkpoint, max_batch_size=2, num_blocks=8, max_seq_len=512, max_input_len=256,
            max_prefill_tokens=1024) as service:
        [generated] = service.run([request])
    assert_matches_reference(build_model("equal-widths", torch.bfloat16), request, generated)


def test_cache_shape_announced_to_mindie():
    """The 14B geometry: MindIE allocates 41 layers of 8 x 128; global layers use half of each block."""
    geometry = CacheGeometry.from_config(preset_config("baichuan-m1-14b"))
    assert (geometry.num_cache_layers, geometry.kv_heads, geometry.head_dim) == (41, 8, 128)
    assert [p.ratio for p in geometry.layers[:2]] == [2, 1]
    state = torch.zeros(3, 128, 8, 128)
    view, row = geometry.state_cache(state, 38)  # a global layer: rows of 512 values, its row is 38 * 2
    assert view.shape == (3, 256, 512) and row == 76
    with pytest.raises(ValueError, match="one row per decoder layer"):
        geometry.check_cache(torch.zeros(3, 32, 8, 128))
