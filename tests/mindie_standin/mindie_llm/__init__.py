"""Stand-in for MindIE-LLM's Python package ``mindie_llm`` (tests only), rebuilt from its open source.

Source: github.com/Ascend/MindIE-LLM at commit 8b4871ad31f592aa863f6255760e4934484d78e4 (master =
branch v3.0.0, 2026-04-23). Every module here mirrors the module of the same path there, with the
real class/function names and signatures (``tests/mindie_standin/manifest.json``, held to them by
``tests/test_mindie_standin_manifest.py``). Bodies restate, in our own words, the behaviour on the path
load -> warm-up -> KV pool -> capture -> serving step -> replay + update, and cite the file and line
they follow; the rest raises ``NotImplementedError("not modelled: ...")`` or is listed as omitted in
the manifest test. MindIE is Mulan PSL v2 (``fia_attention.py`` also Apache-2.0); no code is copied.

Deviations forced by running on a CPU, each documented where it happens:

- the device: ``torch.npu`` is ``torch_npu.npu`` on a real device; here ``_standin.npu()`` reaches
  the emulated ``torch_npu`` that tests put in ``sys.modules`` (``tests/npu_emulator``), and the
  runner's device is ``cpu`` (``set_device``);
- no process group: MindIE initialises HCCL even for one NPU; the stand-in builds the same
  single-rank ``ParallelInfoManager`` without ``torch.distributed``;
- KV caches are filled with NaN (MindIE allocates them uninitialised with ``empty_with_format``), so
  reads of memory nothing wrote show up;
- ``npu_mem`` may be a fractional GiB (MindIE's ``npuMemSize`` is whole GiB) so a test can ask for a
  pool of a few blocks; NPU memory profiling (``npuMemSize: -1``) is not modelled.
"""
