"""Packaging: ``kernels/`` ships inside our namespace as ``m1_ascend.kernels``."""

from setuptools import find_packages, setup

kernel_packages = ["m1_ascend.kernels" + p[len("kernels"):] for p in find_packages(include=["kernels", "kernels.*"])]

setup(
    name="m1-ascend",
    version="0.1.0",
    description="Baichuan-M1-14B on Huawei Ascend 910: model, NPU runner, OpenAI server, MindIE kit",
    python_requires=">=3.10",
    packages=find_packages(include=["m1_ascend", "m1_ascend.*"]) + kernel_packages,
    package_dir={"m1_ascend.kernels": "kernels"},
    include_package_data=True,
    install_requires=[
        "torch>=2.4",
        "transformers>=4.45",
        "safetensors",
        "sentencepiece",
        "tokenizers",
        "numpy",
        "pyyaml",
        "tqdm",
    ],
    extras_require={
        "serve": ["fastapi", "uvicorn", "httpx", "pydantic>=2", "prometheus-client"],
        "finetune": ["peft", "accelerate", "matplotlib"],
        "ascend": ["torch-npu", "triton-ascend"],
    },
    entry_points={"console_scripts": ["m1-ascend=m1_ascend.cli:main"]},
)
