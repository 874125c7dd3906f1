"""The MindIE adapter's model, driven the way MindIE's runner drives it, against the CPU reference.

A small driver plays MindIE's part: it allocates the KV caches from the shape the adapter's config
announces, binds them through MindIE's attention registry, lays out each step's flat batch (slots,
block tables, sequence lengths, positions), publishes it in either of MindIE's forward-context
shapes and reads logits at ``lm_head_indices``. Greedy tokens must equal the reference model's (in
bf16, up to ties within rounding), on prompts longer than the sliding window, through batched and
chunked prefill, prefix-shared blocks and blocks moved to new ids mid-generation, with the CPU
reference backend and with the NPU backend on the torch_npu emulator.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import torch
from mindie_standin.fixtures import make_mindie_tree, mindie_importable

from m1_ascend.checkpoint import load_checkpoint, save_checkpoint
from m1_ascend.config import preset_config
from m1_ascend.mindie_adapter import install
from m1_ascend.mindie_adapter.geometry import CacheGeometry
from m1_ascend.modeling import BaichuanM1ForCausalLM

pytest_plugins = ["npu_emulator.fixtures"]

BLOCK_SIZE = 16
NUM_BLOCKS = 24
GEOMETRIES = {
    "equal-widths": {},  # the small presets: global and sliding layers store 32 values per token
    "14b-shaped": {"num_swa_key_value_heads": 4},  # sliding layers twice as wide, as in the 14B model
}


@dataclass
class Sequence:
    tokens: list[int]
    prompt_len: int
    blocks: list[int] = field(default_factory=list)
    computed: int = 0
    logits: list[torch.Tensor] = field(default_factory=list)  # one row per generated token


class MindIEDriver:
    """Allocates, binds and feeds caches like MindIE's model runner (eager mode)."""

    def __init__(self, router, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
                 block_size: int = BLOCK_SIZE, num_blocks: int = NUM_BLOCKS, runner: str = "exp") -> None:
        from mindie_llm.runtime.config.mindie_llm_config import MindIELLMConfig
        from mindie_llm.runtime.layers.attention import get_global_attn_dict
        from mindie_llm.runtime.utils.loader.default_model_loader import DefaultModelLoader

        config = router.config
        path = router.load_config.model_name_or_path
        default_dtype = torch.get_default_dtype()
        torch.set_default_dtype(dtype)  # MindIE builds the model under the checkpoint dtype, on the device
        try:
            with torch.device(device):
                self.model = router.model_cls(MindIELLMConfig(path, config, None, router.generation_config))
        finally:
            torch.set_default_dtype(default_dtype)
        DefaultModelLoader().load_weights(self.model, path)
        shape = (num_blocks, block_size, config.num_key_value_heads, config.head_dim)
        self.kv_caches = [(torch.zeros(shape, dtype=dtype, device=device), torch.zeros(shape, dtype=dtype, device=device))
                          for _ in range(config.num_hidden_layers)]
        for i, layer in enumerate(get_global_attn_dict().values()):
            layer.key_cache, layer.value_cache = self.kv_caches[i]
        self.block_size, self.device, self.runner = block_size, device, runner
        self.free = list(range(num_blocks))

    def step(self, work: list[tuple[Sequence, int]]) -> torch.Tensor:
        """Run ``n`` new tokens of each listed sequence; return the logits of each one's last token."""
        ids, positions, slots, lens, last = [], [], [], [], []
        size = self.block_size
        for seq, n in work:
            span = range(seq.computed, seq.computed + n)
            while len(seq.blocks) * size < span.stop:
                seq.blocks.append(self.free.pop(0))
            ids += seq.tokens[span.start:span.stop]
            positions += span
            slots += [seq.blocks[p // size] * size + p % size for p in span]
            lens.append(span.stop)
            last.append(len(ids) - 1)
            seq.computed = span.stop
        width = max(len(seq.blocks) for seq, _ in work)
        tables = [seq.blocks + [0] * (width - len(seq.blocks)) for seq, _ in work]
        device = self.device
        batch = dict(slot_mapping=torch.tensor(slots, dtype=torch.int32, device=device),
                     seq_lens=torch.tensor(lens, dtype=torch.int32, device=device),
                     block_tables=torch.tensor(tables, dtype=torch.int32, device=device),
                     attn_mask=None, seq_lens_list=lens)
        self.set_forward_context(batch, torch.tensor(last, device=device), any(n > 1 for _, n in work))
        hidden = self.model(torch.tensor(ids, device=device), torch.tensor(positions, device=device))
        return self.model.compute_logits(hidden).float().cpu()

    def set_forward_context(self, batch: dict, lm_head_indices: torch.Tensor, is_prefill: bool) -> None:
        """What MindIE's runner publishes before calling the model: ModelRunnerExp's context, or the older one's."""
        if self.runner == "exp":
            from mindie_llm.runtime.model_runner import forward_context_exp as fc
            from mindie_llm.runtime.model_runner.forward_metadata.attn_metadata import AttentionMetadata

            fc.set_forward_context(fc.ForwardContext(
                is_prefill=is_prefill, lm_head_indices=lm_head_indices, attn_metadata=AttentionMetadata(**batch),
                num_actual_tokens=int(lm_head_indices[-1]) + 1))
        else:
            from mindie_llm.runtime.model_runner import forward_context as fc

            metadata = fc.AttentionMetadata(**batch, cos_table=None, sin_table=None)
            per_layer = {f"model.layers.{i}.self_attn": metadata for i in range(len(self.kv_caches))}
            fc.set_forward_context(fc.ForwardContext(
                attn_metadata=per_layer, lmhead_metadata=fc.LMHeadMetadata(lm_head_indices), mtp_metadata=None,
                is_prefill=is_prefill, num_tokens_across_dp_cpu=torch.tensor([int(lm_head_indices[-1]) + 1])))

    def generate(self, work: list[tuple[Sequence, int]]) -> None:
        """One step; every sequence whose prompt is now complete gets its greedy next token."""
        for (seq, _), row in zip(work, self.step(work), strict=True):
            if seq.computed == len(seq.tokens):
                seq.tokens.append(int(row.argmax()))
                seq.logits.append(row)

    def decode(self, seqs: list[Sequence], steps: int) -> None:
        for _ in range(steps):
            self.generate([(seq, 1) for seq in seqs])

    def move_blocks(self, seq: Sequence) -> None:
        """Copy a sequence's blocks to fresh ids in every cache layer, as a swap out and in would."""
        new_blocks = [self.free.pop() for _ in seq.blocks]
        for key_cache, value_cache in self.kv_caches:
            for cache in (key_cache, value_cache):
                cache[new_blocks] = cache[seq.blocks]
                cache[seq.blocks] = float("nan")  # stale copies must never be read again
        seq.blocks = new_blocks


def assert_matches_reference(reference: BaichuanM1ForCausalLM, seq: Sequence, atol: float = 1e-5) -> None:
    """Each step's logits match a reference pass over the same tokens, and each token is the greedy pick.

    A pick may differ from the reference's only where the two are tied within ``atol`` (bf16 runs).
    """
    with torch.no_grad():
        expected = reference(torch.tensor([seq.tokens]), use_cache=False).logits[0, seq.prompt_len - 1:-1].float()
    torch.testing.assert_close(torch.stack(seq.logits), expected, rtol=0, atol=atol)
    picked = torch.tensor(seq.tokens[seq.prompt_len:])
    best = expected.max(-1).values
    shortfall = best - expected.gather(1, picked[:, None]).squeeze(1)
    assert (shortfall <= 2 * atol).all(), f"greedy picks differ from the reference's: {shortfall.tolist()}"


@pytest.fixture(scope="module", params=list(GEOMETRIES))
def checkpoint(request, tmp_path_factory):
    torch.manual_seed(0)
    model = BaichuanM1ForCausalLM(preset_config("tiny", **GEOMETRIES[request.param])).eval()
    directory = tmp_path_factory.mktemp(request.param)
    save_checkpoint(model, directory, max_shard_size="200KB")  # several shards, like the real checkpoint
    return directory, load_checkpoint(directory)


@pytest.fixture
def router_factory(tmp_path):
    """Install the adapter into a fresh MindIE-like tree; route checkpoints through MindIE's discovery."""
    site = make_mindie_tree(tmp_path)
    install.install(install.locate_mindie(site))
    with mindie_importable(site), torch.no_grad():
        from mindie_llm.runtime.config.load_config import LoadConfig
        from mindie_llm.runtime.models import get_router_ins

        yield lambda directory: get_router_ins(LoadConfig(model_name_or_path=str(directory), load_tokenizer=False))


@pytest.fixture
def driver(checkpoint, router_factory):
    return MindIEDriver(router_factory(checkpoint[0]))


@pytest.fixture(params=["exp", "legacy"])
def any_runner_driver(request, checkpoint, router_factory):
    """Both forward-context shapes in MindIE's public code: ModelRunnerExp's and the older ModelRunner's."""
    return MindIEDriver(router_factory(checkpoint[0]), runner=request.param)


def prompts(vocab: int, lengths: list[int], seed: int = 1) -> list[list[int]]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randint(3, vocab, (n,), generator=generator).tolist() for n in lengths]


def test_cache_shape_announced_to_mindie():
    """The 14B geometry: MindIE allocates 41 layers of 8 x 128; global layers use half of each block."""
    geometry = CacheGeometry.from_config(preset_config("baichuan-m1-14b"))
    assert (geometry.num_cache_layers, geometry.kv_heads, geometry.head_dim) == (41, 8, 128)
    assert [p.ratio for p in geometry.layers[:2]] == [2, 1]
    assert geometry.state_width == 20 * 512 + 20 * 1024
    geometry.check_cache(torch.empty(2, 128, 8, 128))
    with pytest.raises(ValueError, match="cacheBlockSize 16 is too small"):
        geometry.check_cache(torch.empty(2, 16, 8, 128))
    with pytest.raises(ValueError, match="NZ layout"):
        geometry.check_cache(torch.empty(2, 128, 1024))


def test_batched_prefill_then_decode_matches_reference(checkpoint, any_runner_driver):
    _, reference = checkpoint
    driver = any_runner_driver
    window = reference.config.sliding_window
    seqs = [Sequence(p, len(p)) for p in prompts(reference.config.vocab_size, [3 * window - 3, 2 * window + 1])]
    driver.generate([(seq, len(seq.tokens)) for seq in seqs])
    driver.decode(seqs, steps=7)
    for seq in seqs:
        assert len(seq.tokens) == seq.prompt_len + 8
        assert_matches_reference(reference, seq)


def test_chunked_prefill_and_moved_blocks_match_reference(checkpoint, driver):
    _, reference = checkpoint
    [prompt] = prompts(reference.config.vocab_size, [BLOCK_SIZE + 9], seed=2)
    seq = Sequence(list(prompt), len(prompt))
    driver.generate([(seq, 11)])  # the first chunk ends inside the first block
    driver.generate([(seq, len(prompt) - 11)])  # the second crosses into the next block
    driver.decode([seq], steps=3)
    driver.move_blocks(seq)  # conv state and K/V must travel with the blocks
    driver.decode([seq], steps=4)
    assert_matches_reference(reference, seq)


def test_prefix_shared_block_matches_reference(checkpoint, driver):
    _, reference = checkpoint
    [shared, tail_a, tail_b] = prompts(reference.config.vocab_size, [BLOCK_SIZE, 5, 7], seed=3)
    first = Sequence(shared + tail_a, BLOCK_SIZE + 5)
    driver.generate([(first, first.prompt_len)])
    # The second prompt reuses the first one's full block, as MindIE's prefix cache does.
    second = Sequence(shared + tail_b, BLOCK_SIZE + 7, blocks=[first.blocks[0]], computed=BLOCK_SIZE)
    driver.generate([(second, 7)])
    driver.decode([first, second], steps=5)
    assert_matches_reference(reference, first)
    assert_matches_reference(reference, second)


def test_npu_backend_through_mindie_inputs_matches_reference(npu_target, checkpoint, router_factory):
    """bf16 through the NPU backend (fused FIA paths need 128-token blocks), checked against bf16 CPU reference."""
    directory, _ = checkpoint
    reference = load_checkpoint(directory, dtype=torch.bfloat16)
    driver = MindIEDriver(router_factory(directory), torch.bfloat16, npu_target.device, block_size=128, num_blocks=8)
    backend = npu_target.backend()
    driver.model.set_kernel_backend(backend)
    long, short = (Sequence(p, len(p)) for p in prompts(reference.config.vocab_size, [150, 40], seed=4))
    driver.generate([(long, 100)])
    driver.generate([(long, 50), (short, 40)])  # a chunk across a block boundary, batched with a whole prompt
    driver.decode([long, short], steps=3)
    driver.move_blocks(long)
    driver.decode([long, short], steps=3)
    assert "paged_attention" not in backend.fallbacks  # MindIE's cache views went through fused FIA
    for seq in (long, short):
        assert_matches_reference(reference, seq, atol=0.04)


def test_refuses_graph_capture_and_unloaded_weights(checkpoint, router_factory):
    from mindie_llm.runtime.config.mindie_llm_config import MindIELLMConfig
    from mindie_llm.runtime.model_runner.forward_context_exp import get_forward_context

    router = router_factory(checkpoint[0])
    driver = MindIEDriver(router)
    [prompt] = prompts(router.config.vocab_size, [4])
    seq = Sequence(prompt, 4)
    driver.generate([(seq, 4)])
    get_forward_context().capturing = True  # what MindIE's AclGraphBackend sets while capturing decode graphs
    with pytest.raises(RuntimeError, match="cannot be captured into an ACL graph"):
        driver.model(torch.tensor([seq.tokens[-1]]), torch.tensor([4]))
    unloaded = router.model_cls(MindIELLMConfig(router.load_config.model_name_or_path, router.config, None,
                                                router.generation_config))  # MindIE's loader never ran
    with pytest.raises(RuntimeError, match=r"left \d+ tensors unloaded, e\.g\. lm_head\.weight"):
        unloaded(torch.tensor([1]), torch.tensor([0]))
