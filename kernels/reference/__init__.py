"""Pure-PyTorch reference backend: the ground truth every other backend is tested against."""

from .attention import dense_attention, paged_attention, write_paged_cache
from .conv_kv import conv_kv
from .elementwise import rms_norm, rotary, silu_and_mul


class ReferenceBackend:
    """Runs anywhere torch runs; what ``device="cpu"`` selects."""

    name = "reference"
    rms_norm = staticmethod(rms_norm)
    silu_and_mul = staticmethod(silu_and_mul)
    rotary = staticmethod(rotary)
    conv_kv = staticmethod(conv_kv)
    dense_attention = staticmethod(dense_attention)
    paged_attention = staticmethod(paged_attention)
    write_paged_cache = staticmethod(write_paged_cache)


__all__ = ["ReferenceBackend", "conv_kv", "dense_attention", "paged_attention", "rms_norm",
           "rotary", "silu_and_mul", "write_paged_cache"]
