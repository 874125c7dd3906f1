"""Packaging: ``kernels/`` ships inside our namespace as ``m1_ascend.kernels``.

Dependencies come from ``requirements/`` (one file per target profile) so the wheel, ``make``
and the offline bundle read the same lists; versions live only in ``constraints.txt``.
"""

from pathlib import Path

from setuptools import find_packages, setup

REQUIREMENTS = Path(__file__).resolve().parent / "requirements"


def requirements(name: str) -> list[str]:
    """The requirement lines of ``requirements/<name>.txt`` with its ``-r`` includes expanded."""
    lines: list[str] = []
    for raw in (REQUIREMENTS / f"{name}.txt").read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith("-r "):
            lines += requirements(Path(line[3:].strip()).stem)
        elif line:
            lines.append(line)
    return lines


def extra(name: str, base: str) -> list[str]:
    """What profile ``name`` adds on top of ``base``."""
    inherited = set(requirements(base))
    return [line for line in requirements(name) if line not in inherited]


kernel_packages = ["m1_ascend.kernels" + p[len("kernels"):] for p in find_packages(include=["kernels", "kernels.*"])]

setup(
    name="m1-ascend",
    version="0.1.0",
    description="Baichuan-M1-14B on Huawei Ascend 910: model, NPU runner, OpenAI server, MindIE kit",
    python_requires=">=3.10",
    packages=find_packages(include=["m1_ascend", "m1_ascend.*"]) + kernel_packages,
    package_dir={"m1_ascend.kernels": "kernels"},
    include_package_data=True,
    install_requires=requirements("runtime"),
    extras_require={
        "ascend": extra("ascend", "runtime"),
        "triton-ascend": ["triton-ascend"],
        "dev": extra("dev", "cpu"),
    },
    entry_points={"console_scripts": ["m1-ascend=m1_ascend.cli:main"]},
)
