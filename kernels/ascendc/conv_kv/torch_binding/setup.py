"""Builds ``m1_ascend_ops``: the NPU kernel of ``torch.ops.m1_ascend.conv_kv`` (run by ../build.sh).

Needs torch_npu and an installed ConvKv op package; ``M1_ASCEND_VENDOR_DIR`` is its vendor
directory (``<prefix>/vendors/m1_ascend``), which holds ``op_api/include`` and ``op_api/lib``.
"""

import os
from pathlib import Path

from setuptools import setup
from torch.utils.cpp_extension import BuildExtension
from torch_npu.utils.cpp_extension import NpuExtension

vendor = Path(os.environ["M1_ASCEND_VENDOR_DIR"])
op_api_lib = vendor / "op_api" / "lib"

setup(
    name="m1-ascend-ops",
    version="0.1.0",
    ext_modules=[
        NpuExtension(
            "m1_ascend_ops",
            sources=["conv_kv_binding.cpp"],
            include_dirs=[str(vendor / "op_api" / "include")],
            library_dirs=[str(op_api_lib)],
            libraries=["cust_opapi"],
            extra_link_args=[f"-Wl,-rpath,{op_api_lib}"],
        )
    ],
    cmdclass={"build_ext": BuildExtension},
)
