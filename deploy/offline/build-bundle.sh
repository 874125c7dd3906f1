#!/usr/bin/env bash
# On a connected machine: collect the exact pinned stack of one target profile as wheels, plus
# m1-ascend and this deploy kit, into one bundle for an air-gapped hospital host.
set -euo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
readonly REPO_DIR
readonly CPU_TORCH_INDEX=https://download.pytorch.org/whl/cpu

usage() {
  cat <<'EOF'
Usage: build-bundle.sh [--profile ascend|cpu] [--arch aarch64|x86_64] [--python-version X.Y] [--glibc 2.N]
                       [--with-triton-ascend] [--output DIR] [--python PYTHON]
                       [--index-url URL] [--extra-index-url URL] [--find-links DIR] [--no-index]
                       [--torch-index URL|DIR|none] [--requirements FILE] [--constraints FILE] [--project DIR]

Writes DIR/m1-ascend-bundle-<version>-<profile>-<arch>-py<X.Y>/ and a .tar.gz of it (+ .tar.gz.sha256):
  wheelhouse/        a wheel for every package of the profile at the versions of constraints.txt,
                     and the m1-ascend wheel built from --project
  requirements.txt  the profile's packages in one list (torch as its CPU build)
  constraints.txt, install-bundle.sh, deploy/ (this kit), BUNDLE-INFO
  SHA256SUMS         of every file above (install-bundle.sh checks it with sha256sum -c)

Profiles (requirements/<profile>.txt): `ascend` (default) = the runtime + torch_npu on the CPU
build of torch, for 910B hosts with CANN; `cpu` = the runtime alone. Neither carries test tools,
NVIDIA Triton or CUDA. --with-triton-ascend adds triton-ascend to an ascend bundle.

Target: --arch (default: this machine's), --python-version (default: --python's, python3), and
--glibc, the host's glibc (default 2.28, e.g. openEuler 22.03, Kylin V10, Ubuntu 20.04+): wheels
of every manylinux tag from the oldest up to it are accepted. The Atlas 800 A2 (Kunpeng) command:
  build-bundle.sh --profile ascend --arch aarch64 --python-version 3.11

torch comes from --torch-index (default https://download.pytorch.org/whl/cpu; `none` with
--no-index), pinned to its CPU build (torch==X+cpu); PyPI's aarch64 torch is a CUDA build. With
`--torch-index none` torch comes from the other indexes under its plain version. Every
downloaded wheel is then checked from its metadata: a CUDA torch, any nvidia-*/cuda-* wheel or
NVIDIA Triton in an ascend bundle stops the build.
The other packages come from pip's usual index settings (pip.conf, PIP_INDEX_URL, the flags above).
EOF
}

die() { echo "build-bundle: $*" >&2; exit 1; }

profile=ascend arch="" python_version="" glibc=2.28 with_triton_ascend=0
output=dist/offline requirements="" constraints="$REPO_DIR/constraints.txt" project="$REPO_DIR" python=python3
index_args=() torch_index=""
while (($#)); do
  case "$1" in
    --profile) profile="${2:?}"; shift 2 ;;
    --arch) arch="${2:?}"; shift 2 ;;
    --python-version) python_version="${2:?}"; shift 2 ;;
    --glibc) glibc="${2:?}"; shift 2 ;;
    --with-triton-ascend) with_triton_ascend=1; shift ;;
    --output) output="${2:?}"; shift 2 ;;
    --python) python="${2:?}"; shift 2 ;;
    --index-url|--extra-index-url|--find-links) index_args+=("$1" "${2:?}"); shift 2 ;;
    --no-index) index_args+=(--no-index); shift ;;
    --torch-index) torch_index="${2:?}"; shift 2 ;;
    --requirements) requirements="${2:?}"; shift 2 ;;
    --constraints) constraints="${2:?}"; shift 2 ;;
    --project) project="${2:?}"; shift 2 ;;
    --platform) die "--platform is replaced by --arch and --glibc (one tag alone rejects manylinux2014 wheels)" ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
case "$profile" in ascend|cpu) ;; *) die "--profile must be ascend or cpu, got '$profile'" ;; esac
((with_triton_ascend == 0)) || [[ "$profile" == ascend ]] || die "--with-triton-ascend needs --profile ascend"
[[ -n "$requirements" ]] || requirements="$REPO_DIR/requirements/$profile.txt"
[[ -f "$requirements" ]] || die "no requirements file $requirements"
[[ -f "$constraints" ]] || die "no constraints file $constraints"
[[ -f "$project/setup.py" ]] || die "$project is not the m1-ascend source tree (no setup.py)"
command -v sha256sum >/dev/null || die "sha256sum not found"
if [[ -z "$torch_index" ]]; then
  torch_index="$CPU_TORCH_INDEX"
  [[ " ${index_args[*]} " == *" --no-index "* ]] && torch_index=none
fi
if [[ -z "$arch" ]]; then
  case "$(uname -m)" in aarch64|arm64) arch=aarch64 ;; *) arch=x86_64 ;; esac
fi
case "$arch" in aarch64|x86_64) ;; *) die "--arch must be aarch64 or x86_64, got '$arch'" ;; esac
[[ -n "$python_version" ]] || python_version="$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
tool=("$python" "$REPO_DIR/deploy/offline/bundle_tool.py")
mapfile -t tags < <("${tool[@]}" platform-tags --arch "$arch" --glibc "$glibc")
((${#tags[@]})) || die "no platform tags for $arch with glibc $glibc"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Our wheel first: its file name gives the version the bundle is named after. It is built from a
# clean copy of the sources, so stale build/ leftovers cannot slip into it.
echo "build-bundle: [1/4] building the m1-ascend wheel from $project"
mkdir -p "$work/src" "$work/wheel"
tar -C "$project" --exclude=.git --exclude=.venv --exclude=build --exclude=dist --exclude='*.egg-info' \
    --exclude=__pycache__ -cf - . | tar -C "$work/src" -xf -
"$python" -m pip wheel --no-deps --no-build-isolation --quiet --wheel-dir "$work/wheel" "$work/src"
wheel="$(find "$work/wheel" -name 'm1_ascend-*.whl' -print -quit)"
[[ -n "$wheel" ]] || die "building the m1-ascend wheel produced no m1_ascend-*.whl"
version="$(basename "$wheel" | cut -d- -f2)"

name="m1-ascend-bundle-$version-$profile-$arch-py$python_version"
mkdir -p "$output"
bundle="$(cd "$output" && pwd)/$name"
rm -rf "$bundle" "$bundle.tar.gz" "$bundle.tar.gz.sha256"
mkdir -p "$bundle/wheelhouse"
cp "$wheel" "$bundle/wheelhouse/"

# One flat requirements file: the profile's packages, torch pinned to the CPU build of the CPU index, options.
flags=()
[[ "$torch_index" == none ]] || flags+=(--cpu-torch)
((with_triton_ascend)) && flags+=(--with-triton-ascend)
"${tool[@]}" requirements --requirements "$requirements" --constraints "$constraints" "${flags[@]}" \
  >"$bundle/requirements.txt"
cp "$constraints" "$bundle/constraints.txt"

download=("$python" -m pip download --dest "$bundle/wheelhouse" --only-binary=:all: --python-version "$python_version"
          -r "$bundle/requirements.txt" -c "$constraints" "${index_args[@]}")
for tag in "${tags[@]}"; do download+=(--platform "$tag"); done
case "$torch_index" in
  none) ;;
  http://*|https://*|file://*) download+=(--extra-index-url "$torch_index") ;;
  *) [[ -d "$torch_index" ]] || die "--torch-index $torch_index is neither a URL nor a directory"
     download+=(--find-links "$torch_index") ;;
esac
echo "build-bundle: [2/4] downloading the $profile profile for $arch (manylinux up to glibc $glibc), Python $python_version"
"${download[@]}" || die "pip could not collect the $profile profile for $arch/Python $python_version (see above)"

echo "build-bundle: [3/4] checking every wheel against the target"
"${tool[@]}" check "$bundle/wheelhouse" --profile "$profile" --torch-index "$torch_index" >"$work/summary" \
  || { rm -rf "$bundle"; exit 1; }

echo "build-bundle: [4/4] writing BUNDLE-INFO, SHA256SUMS and the tarball"
cp "$REPO_DIR/deploy/offline/install-bundle.sh" "$bundle/install-bundle.sh"
cp -r "$REPO_DIR/deploy" "$bundle/deploy"
{
  echo "name=$name"
  echo "m1_ascend_version=$version"
  echo "profile=$profile"
  echo "arch=$arch"
  echo "python_version=$python_version"
  echo "glibc=$glibc"
  echo "platform_tags=${tags[*]}"
  echo "torch_index=$torch_index"
  echo "built=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "source_commit=$(git -C "$project" rev-parse HEAD 2>/dev/null || echo unknown)"
} >"$bundle/BUNDLE-INFO"
(cd "$bundle" && find . -type f -printf '%P\n' | LC_ALL=C sort | xargs -d '\n' sha256sum >"$work/SHA256SUMS")
mv "$work/SHA256SUMS" "$bundle/SHA256SUMS"

tar -C "$(dirname "$bundle")" -czf "$bundle.tar.gz" "$name"
(cd "$(dirname "$bundle")" && sha256sum "$name.tar.gz" >"$name.tar.gz.sha256")
cat "$work/summary"
echo "build-bundle: $bundle.tar.gz is $(du -m "$bundle.tar.gz" | cut -f1) MB"
echo "build-bundle: carry it with $name.tar.gz.sha256; on the host run: ./install-bundle.sh --bundle $name.tar.gz"
