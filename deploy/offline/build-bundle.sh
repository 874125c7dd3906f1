#!/usr/bin/env bash
# On a connected machine: collect the exact pinned stack as wheels, plus m1-ascend and this deploy kit,
# into one bundle for an air-gapped hospital host.
set -euo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
readonly REPO_DIR

usage() {
  cat <<'EOF'
Usage: build-bundle.sh [--output DIR] [--requirements FILE] [--constraints FILE] [--project DIR]
                       [--python PYTHON] [--platform TAG] [--python-version X.Y]
                       [--index-url URL] [--extra-index-url URL] [--find-links DIR] [--no-index]

Writes DIR/m1-ascend-bundle-<version>-<platform>-py<X.Y>/ and a .tar.gz of it (+ .tar.gz.sha256):
  wheelhouse/        a wheel for every package of --requirements, at the versions of --constraints,
                     and the m1-ascend wheel built from --project
  requirements.txt, constraints.txt, install-bundle.sh, deploy/ (this kit), BUNDLE-INFO
  SHA256SUMS         of every file above (install-bundle.sh checks it with sha256sum -c)

Defaults: requirements.txt and constraints.txt of the repository, the repository as --project,
output ./dist/offline, the platform and Python of --python (default python3). Only wheels are
collected (an air-gapped host has no compilers). For another target, e.g. an aarch64 (Kunpeng)
910 server: --platform manylinux_2_28_aarch64 --python-version 3.11.
torch comes from the PyTorch CPU index (https://download.pytorch.org/whl/cpu, added unless
--no-index): the default PyPI torch for x86_64 drags in gigabytes of CUDA wheels.
Running it again rebuilds the bundle from scratch (pip's cache makes that quick).
EOF
}

die() { echo "build-bundle: $*" >&2; exit 1; }

output=dist/offline requirements="$REPO_DIR/requirements.txt" constraints="$REPO_DIR/constraints.txt"
project="$REPO_DIR" python=python3 platform="" python_version=""
index_args=() use_torch_index=1
while (($#)); do
  case "$1" in
    --output) output="${2:?}"; shift 2 ;;
    --requirements) requirements="${2:?}"; shift 2 ;;
    --constraints) constraints="${2:?}"; shift 2 ;;
    --project) project="${2:?}"; shift 2 ;;
    --python) python="${2:?}"; shift 2 ;;
    --platform) platform="${2:?}"; shift 2 ;;
    --python-version) python_version="${2:?}"; shift 2 ;;
    --index-url|--extra-index-url|--find-links) index_args+=("$1" "${2:?}"); shift 2 ;;
    --no-index) index_args+=(--no-index); use_torch_index=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
[[ -f "$requirements" ]] || die "no requirements file $requirements"
[[ -f "$constraints" ]] || die "no constraints file $constraints"
[[ -f "$project/setup.py" ]] || die "$project is not the m1-ascend source tree (no setup.py)"
command -v sha256sum >/dev/null || die "sha256sum not found"

host_platform="$("$python" -c 'import sysconfig; print(sysconfig.get_platform().replace("-", "_").replace(".", "_"))')"
[[ -n "$python_version" ]] || python_version="$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
[[ -n "$platform" ]] || platform="$host_platform"

# Our wheel first: its file name gives the version the bundle is named after. It is built from a
# clean copy of the sources, so stale build/ leftovers cannot slip into it.
echo "build-bundle: building the m1-ascend wheel from $project"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/src" "$work/wheel"
tar -C "$project" --exclude=.git --exclude=.venv --exclude=build --exclude=dist --exclude='*.egg-info' \
    --exclude=__pycache__ -cf - . | tar -C "$work/src" -xf -
"$python" -m pip wheel --no-deps --no-build-isolation --quiet --wheel-dir "$work/wheel" "$work/src"
wheel="$(find "$work/wheel" -name 'm1_ascend-*.whl' -print -quit)"
[[ -n "$wheel" ]] || die "building the m1-ascend wheel produced no m1_ascend-*.whl"
version="$(basename "$wheel" | cut -d- -f2)"

name="m1-ascend-bundle-$version-$platform-py$python_version"
mkdir -p "$output"
bundle="$(cd "$output" && pwd)/$name"
rm -rf "$bundle" "$bundle.tar.gz" "$bundle.tar.gz.sha256"
mkdir -p "$bundle/wheelhouse"
cp "$wheel" "$bundle/wheelhouse/"

download=("$python" -m pip download --dest "$bundle/wheelhouse" --only-binary=:all: --python-version "$python_version"
          -r "$requirements" -c "$constraints" "${index_args[@]}")
((use_torch_index)) && download+=(--extra-index-url https://download.pytorch.org/whl/cpu)
# Naming another platform pins the wheels to the target; without it pip picks this machine's.
[[ "$platform" == "$host_platform" ]] || download+=(--platform "$platform")
echo "build-bundle: downloading the pinned stack for $platform, Python $python_version"
"${download[@]}"

cp "$requirements" "$bundle/requirements.txt"
cp "$constraints" "$bundle/constraints.txt"
cp "$REPO_DIR/deploy/offline/install-bundle.sh" "$bundle/install-bundle.sh"
cp -r "$REPO_DIR/deploy" "$bundle/deploy"
{
  echo "name=$name"
  echo "m1_ascend_version=$version"
  echo "platform=$platform"
  echo "python_version=$python_version"
  echo "built=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "source_commit=$(git -C "$project" rev-parse HEAD 2>/dev/null || echo unknown)"
} >"$bundle/BUNDLE-INFO"
(cd "$bundle" && find . -type f -printf '%P\n' | LC_ALL=C sort | xargs -d '\n' sha256sum >"$work/SHA256SUMS")
mv "$work/SHA256SUMS" "$bundle/SHA256SUMS"

tar -C "$(dirname "$bundle")" -czf "$bundle.tar.gz" "$name"
(cd "$(dirname "$bundle")" && sha256sum "$name.tar.gz" >"$name.tar.gz.sha256")
echo "build-bundle: $(find "$bundle/wheelhouse" -name '*.whl' | wc -l) wheels in $bundle.tar.gz"
echo "build-bundle: carry it with $name.tar.gz.sha256; on the host run: ./install-bundle.sh --bundle $name.tar.gz"
