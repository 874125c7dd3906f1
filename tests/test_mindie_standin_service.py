"""The MindIE stand-in and its harness, end to end on a toy model: MindIE's behaviours the adapter meets.

A 2-layer toy model (``mindie_standin/toy_llm``) goes through the real start-up order (load,
warm-up on a one-block pool, real pool, capture) and serves requests that join and leave, so decode
batches pad to capture sizes (3 -> 4, 5 -> 8, 9 -> 16) or exceed the largest (eager). Its logits
must equal a dense reference computed from scratch. Around that: the static-buffer padding with
stale tails, what a model that writes through them does to live requests, the loader's reading of
``model.config`` and its process-wide parameter reuse, swallowed graph-update failures, and NaN
showing up wherever a model reads cache memory nothing wrote.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from mindie_standin.fixtures import RELEASE_VERSIONS, make_mindie_tree, mindie_importable
from mindie_standin.service import Generated, MindIEService, Request
from mindie_standin.toy import TOY_MODEL_DIR, reference_logits, write_toy_checkpoint

pytest_plugins = ["npu_emulator.fixtures"]
pytestmark = [pytest.mark.npu_emulated,
              pytest.mark.filterwarnings("ignore:To copy construct from a tensor:UserWarning")]  # MindIE's to_device


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("toy")
    return {"toy": write_toy_checkpoint(root / "toy"),
            "other": write_toy_checkpoint(root / "other", seed=1),
            "naive": write_toy_checkpoint(root / "naive", inert_pad_rows=False),
            "no_config": write_toy_checkpoint(root / "no_config", set_config=False),
            "past_end": write_toy_checkpoint(root / "past_end", read_past_end=True)}


@pytest.fixture
def mindie(tmp_path: Path, torch_npu_emulator: object) -> Iterator[None]:
    """A MindIE install with the toy model folder, importable for one test, with the emulated torch_npu."""
    with mindie_importable(make_mindie_tree(tmp_path, models=[TOY_MODEL_DIR])), torch.no_grad():
        yield


def assert_matches_reference(checkpoint: Path, request: Request, generated: Generated, atol: float = 0.1) -> None:
    """Each step's logits equal the dense reference's at that position, and each token is their argmax.

    ``atol`` allows a few bf16 roundings (logits reach ~8, where bf16 steps by 1/32): paged, gathered
    and dense attention sum in different orders. A pick may differ only where the reference ties within it.
    """
    expected = reference_logits(checkpoint, request.prompt + generated.tokens)[len(request.prompt) - 1:-1]
    torch.testing.assert_close(torch.stack(generated.logits), expected, rtol=0, atol=atol)
    picked = expected.gather(1, torch.tensor(generated.tokens)[:, None]).squeeze(1)
    assert (expected.max(-1).values - picked <= atol).all(), "greedy picks differ from the reference's"


def toy_service(checkpoint: Path, **options: object) -> MindIEService:
    """The toy checkpoint has no tokenizer files, so MindIE must not load one."""
    return MindIEService(checkpoint, load_tokenizer=False, **options)


def prompts(lengths: list[int], seed: int = 0) -> list[list[int]]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randint(2, 62, (n,), generator=generator).tolist() for n in lengths]


def test_capture_sizes_and_padded_sizes_follow_mindie(mindie: None):
    from mindie_llm.runtime.compilation.aclgraph_backend import AclGraphBackend

    sizes = AclGraphBackend._get_capture_sizes
    assert (sizes(20), sizes(9), sizes(5), sizes(3), sizes(1)) == ([1, 2, 4, 8, 16, 20], [1, 2, 4, 8, 9], [1, 2, 4, 5],
                                                                   [1, 2, 3], [1])
    with pytest.raises(ValueError, match="must be >= 1"):
        sizes(0)
    backend = AclGraphBackend(model=None, max_num_tokens_per_batch=16)
    assert [backend.get_padded_graph_size(n) for n in (1, 3, 5, 9, 16, 17)] == [1, 4, 8, 16, 16, 17]


def test_fia_metadata_pads_into_static_buffers_and_leaves_stale_tails(mindie: None):
    """fia_attention.py:70-103: zero-initialised tables, -1 slots, [:a] copies, whole table handed on."""
    import numpy as np
    from mindie_llm._standin import reset_process_state
    from mindie_llm.runtime.layers.attention.backend.fia_attention import FiaAttentionMetadata
    from mindie_llm.runtime.model_runner.input_buffer import input_buffer

    reset_process_state()
    FiaAttentionMetadata.register_buffer(8, torch.device("cpu"), 4)
    assert input_buffer.get("block_tables").eq(0).all() and input_buffer.get("slot_mapping").eq(-1).all()

    def step(slots: list[int], lengths: list[int], table: list[list[int]], padded: int) -> FiaAttentionMetadata:
        metadata = FiaAttentionMetadata(slot_mapping=np.array(slots, dtype=np.int32),
                                        seq_lens=np.array(lengths, dtype=np.int32),
                                        block_tables=np.array(table, dtype=np.int32), attn_mask=None,
                                        max_seq_len=max(lengths))
        metadata.to_device(torch.device("cpu"))
        assert isinstance(metadata.seq_lens_list, np.ndarray)  # the TG's host array until padding
        metadata.copy(len(slots), padded)
        return metadata

    step([10, 11, 12, 13], [200, 3, 3, 3], [[5, 6], [7, -1], [8, -1], [9, -1]], 4)
    metadata = step([20, 21], [3, 4], [[1], [2]], 4)
    assert metadata.slot_mapping.tolist() == [20, 21, 12, 13]  # rows 2-3 still the previous step's slots
    assert metadata.seq_lens.tolist() == [3, 4, 0, 0] and metadata.seq_lens_list == [3, 4, 0, 0]
    assert metadata.block_tables is input_buffer.get("block_tables")  # the whole buffer, not the batch
    # ceil(max_seq_len / 128) = 1 column kept; rows 2-3 keep their stale column 0; all else zeroed.
    assert metadata.block_tables.tolist() == [[1, 0, 0, 0], [2, 0, 0, 0], [8, 0, 0, 0], [9, 0, 0, 0]] + [[0] * 4] * 4


def test_attention_registry_and_soc_layout_rules(mindie: None):
    """layers/attention/__init__.py:12-23, attention_layer.py:60-81, kvcache_settings.py:41-48."""
    from mindie_llm._standin import reset_process_state
    from mindie_llm.runtime.layers.attention import get_global_attn_dict
    from mindie_llm.runtime.layers.attention.attention_layer import Attention
    from mindie_llm.text_generator.utils.kvcache_settings import NPUSocInfo

    reset_process_state()
    assert get_global_attn_dict() is None  # until the first Attention is built
    layers = [Attention(2, 32, 0.1, num_kv_heads=1, prefix=f"layers.{i}.attn") for i in (1, 0)]
    assert list(get_global_attn_dict().items()) == [("layers.1.attn", layers[0]), ("layers.0.attn", layers[1])]
    assert [name for name, _ in layers[0].named_children()] == ["attn_quant"]  # never a leaf of the loader's walk
    with pytest.raises(ValueError, match="divisible"):
        Attention(3, 32, 0.1, num_kv_heads=2)
    info = NPUSocInfo()
    assert info.need_nz is False  # the emulator's name, like Ascend910B1..B4 and A3, does not end in a NZ name

    def needs_nz(soc_name: str) -> bool:
        info.soc_name = soc_name
        return info.support_nz()

    assert [needs_nz(n) for n in ("Ascend910B", "Ascend910ProB", "Ascend310P3", "Ascend910B3", "Ascend910_9392")] == [
        True, True, True, False, False]


def test_tg_model_inputs(mindie: None):
    """What the TG sends per step (tg_infer_context_store.py:514-571, batch_context.py:866-945, input_metadata.py:170-187)."""
    from mindie_llm.text_generator.generator import _compose_model_inputs, _TGSequence

    sequences = [_TGSequence(list(range(1, 131)), [4, 2]), _TGSequence([7, 8, 9], [0])]
    prefill = _compose_model_inputs(sequences, True, 128, lambda ids: range(len(ids)))
    assert prefill.block_tables.tolist() == [[4, 2], [0, -1]] and prefill.block_tables.dtype == "int32"
    assert prefill.context_length.tolist() == [130, 3] and prefill.context_length.dtype == "int32"
    assert prefill.prefill_head_indices.tolist() == [129, 132] and prefill.max_seq_len == 130
    assert prefill.slots[[0, 127, 128, 129, 130, 132]].tolist() == [512, 639, 256, 257, 0, 2]
    warmup = _compose_model_inputs(sequences, True, 128, lambda ids: range(len(ids)), warmup=True)
    assert warmup.slots[0] == 0 and (warmup.slots[1:] == -1).all()  # only the batch's first token writes
    decode = _compose_model_inputs(sequences, False, 128, lambda ids: range(len(ids)))
    assert (decode.input_ids.tolist(), decode.position_ids.tolist(), decode.slots.tolist()) == ([130, 9], [129, 2],
                                                                                               [257, 2])
    assert decode.context_length.tolist() == [130, 3] and decode.prefill_head_indices is None


def test_quantization_is_rediscovered_from_the_model_directory(mindie: None, checkpoints: dict[str, Path], tmp_path: Path):
    """mindie_llm_config.py:78-120: quant_config is whatever msModelSlim description files the directory holds."""
    import shutil

    from mindie_llm.runtime.config.mindie_llm_config import MindIELLMConfig

    directory = shutil.copytree(checkpoints["toy"], tmp_path / "model")
    assert MindIELLMConfig(str(directory), None, None, None, quant_config="ignored").quant_config is None
    (directory / "quant_model_description.json").write_text("{}")
    with pytest.raises(NotImplementedError, match="quantized weights"):
        MindIELLMConfig(str(directory), None, None, None)
    (directory / "quant_model_description_w8a8.json").write_text("{}")
    with pytest.raises(ValueError, match="multiple config files"):
        MindIELLMConfig(str(directory), None, None, None)


def test_serves_through_warmup_capture_and_graph_replays(mindie: None, checkpoints: dict[str, Path]):
    from mindie_llm.runtime.layers.attention import get_global_attn_dict
    from mindie_llm.runtime.model_runner.input_buffer import input_buffer

    with toy_service(checkpoints["toy"], max_batch_size=16, num_blocks=24) as service:
        assert service.captured_sizes == service.runner.model.capture_sizes == [1, 2, 4, 8, 16]
        # Warm-up: one eager prefill of dummy requests, one decode padded eagerly; its cache reads were never written.
        prefill, decode = service.warmup_steps
        assert (prefill.is_prefill, decode.is_prefill, prefill.graph, decode.graph) == (True, False, False, False)
        assert decode.padded == service.runner.model.get_padded_graph_size(decode.batch)
        assert torch.isfinite(prefill.logits).all() and torch.isnan(decode.logits).all()
        # The real pool is new and unwritten: the captures ran on inert dummy inputs (slots -1, lengths 0).
        pairs = list(get_global_attn_dict().values())
        assert len(pairs) == len(service.npu_cache) == 2
        for holder, (key, value) in zip(pairs, service.npu_cache, strict=True):
            assert holder.key_cache is key and holder.value_cache is value and key.shape == (24, 128, 1, 32)
            assert key.isnan().all() and value.isnan().all()
        assert [d.num_tokens for d in service.runner.model.graphs] == [16, 8, 4, 2, 1]  # captured largest first
        buffers = {key: input_buffer.get(key) for key in ("input_ids", "position_ids", "slot_mapping", "seq_lens",
                                                         "block_tables")}
        assert {k: (tuple(v.shape), v.dtype) for k, v in buffers.items()} == {
            "input_ids": ((16,), torch.int32), "position_ids": ((16,), torch.int64), "slot_mapping": ((16,), torch.int32),
            "seq_lens": ((16,), torch.int32), "block_tables": ((16, 2 + 5), torch.int32)}  # ceil(256 / 128) + 5
        assert buffers["slot_mapping"].eq(-1).all() and all(buffers[k].eq(0).all() for k in buffers if k != "slot_mapping")

        groups = [(3, 0, 12), (2, 3, 10), (4, 6, 6), (8, 9, 3)]  # (count, arrival step, max new tokens)
        lengths = iter([5, 9, 17, 3, 12, 20, 4, 8, 6, 11, 7, 13, 2, 15, 9, 10, 6])
        requests = [Request(prompt, new, arrival) for count, arrival, new in groups
                    for prompt in prompts([next(lengths) for _ in range(count)], seed=arrival)]
        generated = service.run(requests)

        for request, result in zip(requests, generated, strict=True):
            assert len(result.tokens) == request.max_new_tokens
            assert_matches_reference(checkpoints["toy"], request, result)
        decodes = [step for step in service.steps if not step.is_prefill]
        assert [step.batch for step in decodes] == [3, 3, 5, 5, 9, 9, 17, 17, 9, 5, 5]
        assert [(step.padded, step.graph) for step in decodes] == [(4, True)] * 2 + [(8, True)] * 2 + [(16, True)] * 2 + [
            (17, False)] * 2 + [(16, True), (8, True), (8, True)]
        assert not any(step.graph for step in service.steps if step.is_prefill)
        # Each replay got one update: every request's full KV length, zeros for the pad rows, in one dict.
        graph_steps = [step for step in decodes if step.graph]
        assert service.updates == [(step.padded, [{"actual_seq_lengths_kv": step.context_lengths
                                                   + [0] * (step.padded - step.batch)}]) for step in graph_steps]
        assert service.replays == {4: 2, 8: 4, 16: 3} and service.update_failures == []
        # torch_npu applies the one dict to every captured FIA op: both layers hold the last lengths sent.
        records = service.runner.model.graphs[(8, False)].graph_dispatch_mode.graph_dispatch_records
        assert [r.kwargs["actual_seq_lengths_kv"] for r in records] == [graph_steps[-1].context_lengths + [0] * 3] * 2


def test_pad_rows_keep_stale_slots_that_a_model_must_not_write(mindie: None, checkpoints: dict[str, Path]):
    """When a batch shrinks within a capture size, pad rows carry the slots of requests that moved up.

    The third request finishes first; the fourth moves from row 3 to row 2, and row 3 (padding)
    keeps its previous slot. A model that writes K/V for pad rows overwrites that live request's
    cache there (layer 0 rewrites the same values, layer 1 does not); one that treats rows with
    ``seq_lens == 0`` as inert serves every request like the reference.
    """
    from mindie_llm.runtime.model_runner.input_buffer import input_buffer

    requests = [Request(prompt, new) for prompt, new in zip(prompts([5, 6, 7, 8], seed=3), [6, 6, 2, 6], strict=True)]
    for name in ("toy", "naive"):
        with toy_service(checkpoints[name], max_batch_size=4, num_blocks=8) as service:
            generated = service.run(requests)
            assert [(s.batch, s.padded, s.graph) for s in service.steps[1:]] == [(4, 4, True)] + [(3, 4, True)] * 4
            fourth_at_step_1 = 3 * 128 + len(requests[3].prompt)  # its block is 3; it fed its first new token
            assert input_buffer.get("slot_mapping")[3] == fourth_at_step_1
        for i, (request, result) in enumerate(zip(requests, generated, strict=True)):
            if name == "naive" and i == 3:
                with pytest.raises(AssertionError):
                    assert_matches_reference(checkpoints[name], request, result)
            else:
                assert_matches_reference(checkpoints[name], request, result)


def test_update_failures_are_only_logged_and_the_next_replay_would_hang(mindie: None, checkpoints: dict[str, Path],
                                                                        monkeypatch: pytest.MonkeyPatch):
    from mindie_llm.runtime.model_runner.forward_context_exp import BatchDescriptor

    with toy_service(checkpoints["toy"], max_batch_size=4, num_blocks=8) as service:
        def failing_update(cpu_update_input: list) -> None:
            raise RuntimeError("boom")

        monkeypatch.setattr(service.runner.model.graphs[BatchDescriptor(2, False)], "update", failing_update)
        with pytest.raises(RuntimeError, match="would hang"):
            service.run([Request(prompt, 4) for prompt in prompts([5, 6])])
        assert service.update_failures == ["Ignore graph update failure: boom."]


def test_prefill_role_runs_eagerly_and_reads_of_unwritten_cache_show_as_nan(mindie: None, checkpoints: dict[str, Path]):
    """role "prefill" never captures; a model reading one position past what it wrote gets NaN logits."""
    requests = [Request(prompt, 3) for prompt in prompts([4, 9])]
    with toy_service(checkpoints["toy"], role="prefill", num_blocks=8) as service:
        assert service.captured_sizes == [] and [s.is_prefill for s in service.warmup_steps] == [True]
        for request, result in zip(requests, service.run(requests), strict=True):
            assert_matches_reference(checkpoints["toy"], request, result)
        assert not any(step.graph for step in service.steps)
    with toy_service(checkpoints["past_end"], role="prefill", num_blocks=8) as service:
        generated = service.run(requests)
    assert all(torch.isfinite(result.logits[0]).all() and result.logits[1].isnan().all() for result in generated)


def test_loader_needs_model_config(mindie: None, checkpoints: dict[str, Path]):
    with pytest.raises(AttributeError, match="object has no attribute 'config'"):
        toy_service(checkpoints["no_config"], num_blocks=8)


def test_weight_files_follow_the_index_and_names_are_unique(mindie: None, checkpoints: dict[str, Path], tmp_path: Path):
    """weight_utils.py:59-112: ``*.safetensors`` filtered by the index's weight_map; a name lives in one file."""
    import shutil

    from mindie_llm.runtime.utils.loader.weight_utils import WeightsFileHandler
    from safetensors.torch import save_file

    directory = shutil.copytree(checkpoints["toy"], tmp_path / "model")
    save_file({"lm_head.weight": torch.zeros(1)}, str(directory / "stray.safetensors"))  # not in the index
    handler = WeightsFileHandler(str(directory), ".safetensors")
    assert handler.get_tensor("lm_head.weight").shape == (64, 64)
    with pytest.raises(ValueError, match="Weight file was not found for tensor named with nope."):
        handler.get_tensor("nope")
    (directory / "model.safetensors.index.json").unlink()
    with pytest.raises(ValueError, match="Weight was found in multiple files."):
        WeightsFileHandler(str(directory), ".safetensors")


def test_loader_reuses_parameters_by_name_for_the_life_of_the_process(mindie: None, checkpoints: dict[str, Path]):
    """default_model_loader.py:170-184: a second model with the same names gets the first one's tensors."""
    from mindie_llm._standin import reset_process_state
    from mindie_llm.runtime.model_runner.model_runner_exp import ModelRunnerExp

    def load(name: str) -> torch.nn.Module:
        runner = ModelRunnerExp(str(checkpoints[name]), rank=0, world_size=1, load_tokenizer=False, max_batch_size=1,
                                max_seq_len=64, block_size=128, num_speculative_tokens=0, role="prefill")
        runner.load_weights()
        return runner.model

    reset_process_state()
    first, second = load("toy"), load("other")
    assert second.lm_head.weight.data_ptr() == first.lm_head.weight.data_ptr()
    reset_process_state()
    fresh = load("other")
    assert not torch.equal(fresh.lm_head.weight, first.lm_head.weight)


@pytest.mark.parametrize("version", RELEASE_VERSIONS)
def test_trees_look_like_releases_and_carry_the_torch_runtime(tmp_path: Path, version: str):
    site = make_mindie_tree(tmp_path, version=version)
    assert (site / f"mindie_llm-{version}.dist-info/METADATA").read_text().splitlines()[1:] == ["Name: mindie_llm",
                                                                                                 f"Version: {version}"]
    package = site / "mindie_llm"
    markers = {"runtime/model_runner/model_runner_exp.py": ["class ModelRunnerExp", "def _bind_kv_cache",
                                                            "def _padding_forward_context", "def compile"],
               "runtime/model_runner/forward_context_exp.py": ["def get_forward_context", "def set_forward_context",
                                                               "class BatchDescriptor", "class ForwardContext"],
               "runtime/compilation/aclgraph_backend.py": ["class AclGraphBackend", "def _get_capture_sizes"],
               "runtime/model_runner/input_buffer.py": ["input_buffer = InputBuffer()"],
               "runtime/layers/attention/backend/fia_attention.py": ["def register_buffer(max_num_token: int, device"],
               "runtime/utils/loader/default_model_loader.py": ['getattr(model.config, "quantize", None)'],
               "modeling/model_wrapper/aclgraph/aclgraph_model_wrapper_exp.py": ["class AclGraphModelWrapperExp"],
               "text_generator/generator.py": ["ENV.model_runner_exp = True"]}
    for path, needles in markers.items():
        text = (package / path).read_text()
        assert all(needle in text for needle in needles), path
    bare = make_mindie_tree(tmp_path / "bare", version=None, without=["runtime/compilation/aclgraph_backend.py"])
    assert not list(bare.glob("*.dist-info")) and not (bare / "mindie_llm/runtime/compilation/aclgraph_backend.py").exists()
    assert json.loads((package / "runtime/conf/config.json").read_text())["chat_template"] == ""
