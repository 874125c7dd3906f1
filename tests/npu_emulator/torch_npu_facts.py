"""What the emulator reproduces of torch_npu 2.13.0, recorded from its wheel (facts, not code).

Read on 2026-11-30 from torch_npu-2.13.0-cp311-cp311-manylinux_2_28_x86_64.whl (sha256 ``WHEEL_SHA256``,
git ``c798c65``). Each group names the file it was read from. ``tests/test_npu_emulator_graphs.py``
holds the emulator to these facts in ``make test``; its slow check reads the wheel again (downloaded
with ``pip download torch-npu==2.13.0 --no-deps``, never installed) and holds these facts to it, so
a drift in either direction fails a test.
"""

from __future__ import annotations

WHEEL = "torch-npu==2.13.0"
WHEEL_SHA256 = "0deb809cf447d3fce636ccfdc9c9f874950f1fe76f18f4aaab31e2d345f7dac0"

# Dispatcher schemas, as registered by torch_npu/lib/libtorch_npu.so (namespace ``npu``). The FIA
# ``.out`` overload takes ``Tensor? workspace=None, Tensor[] out`` there (the shipped yaml is stale).
_FIA_ARGS = (
    "Tensor query, Tensor key, Tensor value, *, Tensor? pse_shift=None, Tensor? atten_mask=None, "
    "SymInt[]? actual_seq_lengths=None, SymInt[]? actual_seq_lengths_kv=None, Tensor? dequant_scale1=None, "
    "Tensor? quant_scale1=None, Tensor? dequant_scale2=None, Tensor? quant_scale2=None, Tensor? quant_offset2=None, "
    "Tensor? antiquant_scale=None, Tensor? antiquant_offset=None, Tensor? key_antiquant_scale=None, "
    "Tensor? key_antiquant_offset=None, Tensor? value_antiquant_scale=None, Tensor? value_antiquant_offset=None, "
    "Tensor? block_table=None, Tensor? query_padding_size=None, Tensor? kv_padding_size=None, "
    "Tensor? key_shared_prefix=None, Tensor? value_shared_prefix=None, SymInt[]? actual_shared_prefix_len=None, "
    "Tensor? query_rope=None, Tensor? key_rope=None, Tensor? key_rope_antiquant_scale=None, int num_heads=1, "
    "float scale=1.0, int pre_tokens=2147483647, int next_tokens=2147483647, str input_layout=\"BSH\", "
    "int num_key_value_heads=0, int sparse_mode=0, int inner_precise=0, int block_size=0, int antiquant_mode=0, "
    "int key_antiquant_mode=0, int value_antiquant_mode=0, bool softmax_lse_flag=False"
)
SCHEMAS = {
    "npu_fused_infer_attention_score": f"npu_fused_infer_attention_score({_FIA_ARGS}) -> (Tensor, Tensor)",
    "npu_fused_infer_attention_score.out": (
        f"npu_fused_infer_attention_score.out({_FIA_ARGS}, Tensor? workspace=None, Tensor[] out) -> (Tensor, Tensor)"),
    "_npu_fused_infer_attention_score_get_max_workspace": (
        f"_npu_fused_infer_attention_score_get_max_workspace({_FIA_ARGS}) -> Tensor"),
    "_npu_fused_infer_attention_score_infer_output": (
        "_npu_fused_infer_attention_score_infer_output(Tensor query, Tensor value, *, str input_layout=\"BSH\", "
        "Tensor? quant_scale2=None, Tensor? block_table=None, int num_heads=1, int num_key_value_heads=0, "
        "bool softmax_lse_flag=False, Tensor? query_rope=None) -> (Tensor, Tensor)"),
    "npu_scatter_pa_kv_cache": (
        "npu_scatter_pa_kv_cache(Tensor key, Tensor value, Tensor(a!) key_cache, Tensor(b!) value_cache, "
        "Tensor slot_mapping, *, Tensor? compress_lens=None, Tensor? compress_seq_offsets=None, "
        "Tensor? seq_lens=None, str? cache_mode='PA_NZ') -> ()"),
    "npu_apply_rotary_pos_emb": (
        "npu_apply_rotary_pos_emb(Tensor query, Tensor key, Tensor cos, Tensor sin, str layout='BSND', "
        "str rotary_mode='half') -> (Tensor, Tensor)"),
    "npu_rotary_mul": "npu_rotary_mul(Tensor input, Tensor r1, Tensor r2, str rotary_mode='half', Tensor? rotate=None) -> Tensor",
    "npu_rms_norm": "npu_rms_norm(Tensor input, Tensor gamma, float epsilon=1e-06) -> (Tensor, Tensor)",
    "npu_swiglu": "npu_swiglu(Tensor input, int dim=-1) -> Tensor",
    "npu_fusion_attention": (
        "npu_fusion_attention(Tensor query, Tensor key, Tensor value, int head_num, str input_layout, "
        "Tensor? pse=None, Tensor? padding_mask=None, Tensor? atten_mask=None, float scale=1., float keep_prob=1., "
        "int pre_tockens=2147483647, int next_tockens=2147483647, int inner_precise=0, int[]? prefix=None, "
        "int[]? actual_seq_qlen=None, int[]? actual_seq_kvlen=None, int sparse_mode=0, bool gen_mask_parallel=True, "
        "bool sync=False, str softmax_layout=\"\", Tensor? sink=None, Tensor? dropout_mask=None, int seed=0, "
        "int offset=0) -> (Tensor, Tensor, Tensor, Tensor, int, int, int)"),
}

# torch_npu/npu/graphs.py: signatures of the graph API (NPUGraph at 590-842, class graph at 844-932).
SIGNATURES = {
    "NPUGraph.capture_begin": "(self, pool=None, capture_error_mode='global')",
    "NPUGraph.update": "(self, cpu_update_input)",
    "graph.__init__": "(self, npu_graph, pool=None, stream=None, auto_dispatch_capture=False, capture_error_mode='global')",
}

# torch_npu/npu/_npugraph_handlers/ifa_handler.py:33-83: the op names the FIA v1 handler intercepts
# under auto_dispatch_capture, the positional update slots it declares (they never fire: every FIA
# argument after ``value`` is keyword-only), and the keywords it forwards to ``_infer_output``.
FIA_V1_HANDLED_OPS = ("npu_fused_infer_attention_score", "npu_fused_infer_attention_score.default",
                      "npu_fused_infer_attention_score.out")
FIA_V1_UPDATE_SPECS = (("arg", 5, "actual_seq_lengths"), ("arg", 6, "actual_seq_lengths_kv"))
FIA_V1_OUT_KWARGS_KEYS = ("input_layout", "quant_scale2", "block_table", "num_heads", "num_key_value_heads",
                          "softmax_lse_flag", "query_rope")

# torch_npu/npu/graphs.py:534-552 (update_capture_record) and 655-663 (NPUGraph.update): the
# Python messages; C++ TORCH_CHECK messages are strings of libtorch_npu.so.
UPDATE_NOT_AUTO = ("The current graph configuration does not support update,"
                   "Try to capture by setting auto_dispatch_capture=True during capture")
UPDATE_COUNT = ("Currently, there are {records} operators that need to be updated by capture, and there are only "
                "{given} elements in the incoming cpu_update_input list")
REPLAY_BEFORE_CAPTURE = "Called NPUGraph::replay without a preceding successful capture."
CAPTURE_TWICE = ("This NPUGraph instance already owns a captured graph. To capture a new graph, "
                 "create a new instance.")
CAPTURE_ERROR_MODES = ("global", "thread_local", "relaxed")
UNKNOWN_CAPTURE_MODE = "Unknown capture error mode. Expected `global`, `thread_local`, or `relaxed`, got "
