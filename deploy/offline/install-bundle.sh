#!/usr/bin/env bash
# On the air-gapped host: check a bundle from build-bundle.sh and install it into a virtual environment
# without any network access (pip --no-index).
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: install-bundle.sh --bundle DIR|FILE.tar.gz [--venv DIR] [--python PYTHON] [--prefix DIR]
                         [--allow-incomplete]

  --bundle            the bundle directory, or its .tar.gz (checked against FILE.tar.gz.sha256 when present)
  --venv              virtual environment to create or update (default: PREFIX/venv)
  --prefix            install root (default /opt/m1-ascend): the deploy kit is copied to PREFIX/deploy
  --python           interpreter for a new venv (default python3); must match the bundle's Python
  --allow-incomplete  report `pip check` problems instead of failing (partial bundles only)

Steps: verify SHA256SUMS with sha256sum -c; create the venv if missing; install the pinned stack
and m1-ascend from the bundle's wheelhouse with pip --no-index; copy the deploy kit; run pip check.
Running it again with the same bundle gives the same installation; a newer bundle upgrades in place
(keep the previous bundle to roll back: install it again).
EOF
}

die() { echo "install-bundle: $*" >&2; exit 1; }

bundle="" venv="" python=python3 prefix=/opt/m1-ascend allow_incomplete=0
while (($#)); do
  case "$1" in
    --bundle) bundle="${2:?}"; shift 2 ;;
    --venv) venv="${2:?}"; shift 2 ;;
    --python) python="${2:?}"; shift 2 ;;
    --prefix) prefix="${2:?}"; shift 2 ;;
    --allow-incomplete) allow_incomplete=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
[[ -n "$bundle" ]] || die "--bundle is required (see --help)"
[[ -n "$venv" ]] || venv="$prefix/venv"
command -v sha256sum >/dev/null || die "sha256sum not found"

if [[ -f "$bundle" && "$bundle" == *.tar.gz ]]; then
  if [[ -f "$bundle.sha256" ]]; then
    (cd "$(dirname "$bundle")" && sha256sum --check --quiet "$(basename "$bundle").sha256") \
      || die "$bundle does not match $bundle.sha256 (damaged or altered in transit)"
  fi
  unpack_dir="$(dirname "$bundle")"
  top="$(tar -tzf "$bundle" | awk -F/ 'NR == 1 {print $1}')"  # awk reads it all: no SIGPIPE
  [[ -n "$top" ]] || die "$bundle is empty"
  tar -C "$unpack_dir" -xzf "$bundle"
  bundle="$unpack_dir/$top"
fi
[[ -f "$bundle/SHA256SUMS" && -d "$bundle/wheelhouse" ]] || die "$bundle is not a bundle (no SHA256SUMS or wheelhouse/)"
bundle="$(cd "$bundle" && pwd)"

echo "install-bundle: checking $bundle against its SHA256SUMS"
(cd "$bundle" && sha256sum --check --quiet --strict SHA256SUMS) || die "$bundle differs from its SHA256SUMS"

bundle_python="$(sed -n 's/^python_version=//p' "$bundle/BUNDLE-INFO")"
if [[ ! -x "$venv/bin/python" ]]; then
  have="$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
  [[ "$have" == "$bundle_python" ]] || die "the bundle is for Python $bundle_python but $python is $have (use --python)"
  echo "install-bundle: creating $venv"
  "$python" -m venv "$venv"
fi
venv_python="$("$venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
[[ "$venv_python" == "$bundle_python" ]] || die "$venv runs Python $venv_python, the bundle is for $bundle_python"

pip=("$venv/bin/python" -m pip install --no-index --find-links "$bundle/wheelhouse" --disable-pip-version-check)
echo "install-bundle: installing the pinned stack (no network)"
"${pip[@]}" -c "$bundle/constraints.txt" -r "$bundle/requirements.txt"
# requirements.txt is the whole pinned stack, so m1-ascend's own dependencies are already there.
wheel="$(find "$bundle/wheelhouse" -name 'm1_ascend-*.whl' -print -quit)"
[[ -n "$wheel" ]] || die "no m1_ascend wheel in $bundle/wheelhouse"
"${pip[@]}" --no-deps --force-reinstall "$wheel"

mkdir -p "$prefix"
rm -rf "$prefix/deploy.new"
cp -r "$bundle/deploy" "$prefix/deploy.new"
rm -rf "$prefix/deploy"
mv "$prefix/deploy.new" "$prefix/deploy"
cp "$bundle/BUNDLE-INFO" "$prefix/BUNDLE-INFO"

if ! "$venv/bin/python" -m pip check --disable-pip-version-check; then
  ((allow_incomplete)) || die "pip check found missing or conflicting dependencies (listed above)"
  echo "install-bundle: warning: dependencies incomplete (allowed by --allow-incomplete)" >&2
fi
echo "install-bundle: installed $(sed -n 's/^name=//p' "$bundle/BUNDLE-INFO") into $venv"
echo "install-bundle: next: $venv/bin/m1-ascend verify-weights <model dir>, then docs/deployment.md"
