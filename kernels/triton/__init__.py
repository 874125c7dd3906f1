"""Triton kernels (portable subset: GPU natively, Ascend through triton-ascend, CPU via TRITON_INTERPRET=1).

Submodules import ``triton``; import them only where a Triton kernel is wanted.
"""
