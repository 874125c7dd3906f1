#!/usr/bin/env python3
"""Helpers for build-bundle.sh: target platform tags, the CPU torch pin, and the wheelhouse check.

Standard library only: it runs with whatever Python builds the bundle, before anything of
m1-ascend is installed. The check reads each wheel's own metadata (not its file name alone)
so a CUDA torch or a CUDA library that a resolver pulled in is caught whatever index served it.
"""

from __future__ import annotations

import argparse
import re
import sys
import zipfile
from email.parser import HeaderParser
from pathlib import Path

CPU_TORCH_INDEX = "https://download.pytorch.org/whl/cpu"
# The oldest manylinux glibc each architecture has wheels for (manylinux2014 = glibc 2.17 on aarch64).
OLDEST_GLIBC = {"x86_64": 5, "aarch64": 17}
LEGACY_ALIASES = {"x86_64": {5: "manylinux1", 12: "manylinux2010", 17: "manylinux2014"},
                  "aarch64": {17: "manylinux2014"}}
CUDA_LIBRARY = re.compile(r"^(nvidia|cuda)[-_.]", re.IGNORECASE)


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def platform_tags(arch: str, max_glibc: str) -> list[str]:
    """Every manylinux tag a host of ``arch`` with glibc ``max_glibc`` accepts, newest first.

    pip takes ``--platform`` as one exact tag, so a single ``manylinux_2_28`` would reject the
    many wheels published only as ``manylinux_2_17``/``manylinux2014``.
    """
    major, minor = (int(part) for part in max_glibc.split("."))
    if major != 2 or minor < OLDEST_GLIBC[arch]:
        raise SystemExit(f"bundle_tool: glibc {max_glibc} is older than any manylinux tag for {arch}")
    tags = []
    for glibc in range(minor, OLDEST_GLIBC[arch] - 1, -1):
        tags.append(f"manylinux_2_{glibc}_{arch}")
        if glibc in LEGACY_ALIASES[arch]:
            tags.append(f"{LEGACY_ALIASES[arch][glibc]}_{arch}")
    return tags


def requirement_lines(path: Path) -> list[str]:
    """The requirement lines of a requirements file, following ``-r`` includes."""
    lines: list[str] = []
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith("-r "):
            lines += requirement_lines(path.parent / line[3:].strip())
        elif line and not line.startswith("-"):
            lines.append(line)
    return lines


def project_name(requirement: str) -> str:
    return normalize(re.split(r"[\s<>=!~;\[@(]", requirement, maxsplit=1)[0])


def bundle_requirements(requirements: Path, constraints: Path, cpu_torch: bool, with_triton_ascend: bool) -> list[str]:
    """The profile's requirements in one flat list; ``cpu_torch`` pins torch to its CPU build (``torch==X+cpu``)."""
    lines = requirement_lines(requirements)
    if cpu_torch and any(project_name(line) == "torch" for line in lines):
        version = pinned_version(constraints, "torch")
        if version is None:
            raise SystemExit(f"bundle_tool: {constraints} does not pin torch (torch==X.Y.Z)")
        lines.append(f"torch=={version.split('+')[0]}+cpu")
    if with_triton_ascend:
        lines.append("triton-ascend")
    return lines


def pinned_version(constraints: Path, project: str) -> str | None:
    for raw in constraints.read_text().splitlines():
        match = re.fullmatch(r"\s*([A-Za-z0-9_.-]+)\s*==\s*([^\s;#]+).*", raw)
        if match and normalize(match.group(1)) == project:
            return match.group(2)
    return None


class Wheel:
    """One downloaded wheel: its project name, version, platform tags, dependencies and files."""

    def __init__(self, path: Path) -> None:
        self.path = path
        parts = path.name[:-len(".whl")].split("-")
        self.platforms = parts[-1].split(".")
        with zipfile.ZipFile(path) as archive:
            self.files = archive.namelist()
            metadata = next(n for n in self.files if n.count("/") == 1 and n.endswith(".dist-info/METADATA"))
            headers = HeaderParser().parsestr(archive.read(metadata).decode("utf-8", "replace"))
        self.name = normalize(headers["Name"])
        self.version = headers["Version"]
        self.requires = [project_name(r) for r in headers.get_all("Requires-Dist") or [] if "extra ==" not in r]

    def cuda_evidence(self) -> list[str]:
        """Why this wheel is a CUDA build: CUDA libraries inside, CUDA wheels required, a +cu version."""
        evidence = [Path(f).name for f in self.files if re.search(r"lib(torch_cuda|cudart|cublas|nccl)[^/]*\.so", f)]
        evidence += [f"requires {r}" for r in self.requires if CUDA_LIBRARY.match(r)]
        if re.search(r"\+cu\d+", self.version):
            evidence.append(f"version {self.version}")
        return evidence


def check_wheelhouse(wheelhouse: Path, profile: str, torch_index: str) -> list[str]:
    """One line per refused wheel (empty: the wheelhouse fits the target)."""
    wheels = [Wheel(p) for p in sorted(wheelhouse.glob("*.whl"))]
    pulled_by: dict[str, list[str]] = {}
    for wheel in wheels:
        for requirement in wheel.requires:
            pulled_by.setdefault(requirement, []).append(wheel.name)
    use_index = f"take torch from PyTorch's CPU index (--torch-index {torch_index if torch_index != 'none' else CPU_TORCH_INDEX})"
    problems = []
    cuda_torch = next((w for w in wheels if w.name == "torch" and w.cuda_evidence()), None)
    if cuda_torch is not None:
        problems.append(f"{cuda_torch.path.name} is a CUDA build ({', '.join(cuda_torch.cuda_evidence()[:3])}); "
                        f"Ascend and CPU hosts need the CPU build: {use_index}")
    for wheel in wheels:
        who = ", ".join(sorted(set(pulled_by.get(wheel.name, [])))) or "the requirements"
        if CUDA_LIBRARY.match(wheel.name) and cuda_torch is None:
            problems.append(f"{wheel.path.name} is a CUDA library (required by {who}); hosts of this bundle have no "
                            f"NVIDIA GPU: {use_index} and drop packages that need CUDA")
        elif wheel.name == "triton" and profile == "ascend":
            problems.append(f"{wheel.path.name} is NVIDIA Triton (required by {who}); on an Ascend host the `triton` "
                            "module comes from triton-ascend (--with-triton-ascend)")
    return problems


def summary(wheelhouse: Path, largest: int = 5) -> str:
    wheels = sorted(wheelhouse.glob("*.whl"), key=lambda p: p.stat().st_size, reverse=True)
    total = sum(p.stat().st_size for p in wheels)
    top = ", ".join(f"{p.name.split('-')[0]} {p.stat().st_size / 1e6:.0f} MB" for p in wheels[:largest])
    return f"{len(wheels)} wheels, {total / 1e6:.0f} MB (largest: {top})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    tags = commands.add_parser("platform-tags", help="pip --platform tags of a target")
    tags.add_argument("--arch", required=True, choices=sorted(OLDEST_GLIBC))
    tags.add_argument("--glibc", required=True)
    reqs = commands.add_parser("requirements", help="the bundle's flat requirements, torch pinned to the CPU build")
    reqs.add_argument("--requirements", type=Path, required=True)
    reqs.add_argument("--constraints", type=Path, required=True)
    reqs.add_argument("--cpu-torch", action="store_true", help="pin torch to X+cpu (PyTorch's CPU index names it so)")
    reqs.add_argument("--with-triton-ascend", action="store_true")
    check = commands.add_parser("check", help="refuse wheels that do not fit the target; print a size summary")
    check.add_argument("wheelhouse", type=Path)
    check.add_argument("--profile", required=True, choices=["cpu", "ascend"])
    check.add_argument("--torch-index", default=CPU_TORCH_INDEX)
    args = parser.parse_args(argv)

    if args.command == "platform-tags":
        print("\n".join(platform_tags(args.arch, args.glibc)))
    elif args.command == "requirements":
        print("\n".join(bundle_requirements(args.requirements, args.constraints, args.cpu_torch, args.with_triton_ascend)))
    else:
        problems = check_wheelhouse(args.wheelhouse, args.profile, args.torch_index)
        for problem in problems:
            print(f"build-bundle: refused: {problem}", file=sys.stderr)
        if problems:
            return 1
        print(f"build-bundle: {summary(args.wheelhouse)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
