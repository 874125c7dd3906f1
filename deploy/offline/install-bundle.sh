#!/usr/bin/env bash
# On the air-gapped host: check a bundle from build-bundle.sh against this host, then install it into a
# virtual environment with pip cut off from the network and from this machine's pip settings.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: install-bundle.sh --bundle DIR|FILE.tar.gz [--venv DIR] [--python PYTHON] [--prefix DIR]
                         [--profile ascend|cpu] [--allow-incomplete]

  --bundle            the bundle directory, or its .tar.gz (checked against FILE.tar.gz.sha256 when present)
  --venv              virtual environment to create or update (default: PREFIX/venv)
  --prefix            install root (default /opt/m1-ascend): the deploy kit is copied to PREFIX/deploy
  --python            interpreter for a new venv (default python3); must match the bundle's Python
  --profile           refuse a bundle of another profile (ascend: 910B hosts, cpu: hosts without NPUs)
  --allow-incomplete  report `pip check` and `m1-ascend doctor` problems instead of failing (partial bundles only)

Before anything is created: SHA256SUMS (sha256sum -c), and the bundle's architecture, Python and
profile against this host. Then: create the venv if missing; install the stack and m1-ascend from the
bundle's wheelhouse only (pip --isolated --no-index, no pip.conf, no PIP_* variables: a find-links
or index configured on this machine is never used); copy the deploy kit; pip check; and
`m1-ascend doctor --expect npu|cpu`, whose verdict ends the output.
If a step fails, what this run created (the venv, the prefix) is removed again.
Exit codes: 0 installed and ready; 1 refused or failed (nothing left behind); 3 installed, but the
doctor says this host is not ready (e.g. CANN not installed yet): fix what it names, then run
PREFIX/venv/bin/m1-ascend doctor --expect npu.
Running it again with the same bundle gives the same installation; a newer bundle upgrades in place
(keep the previous bundle to roll back: install it again).
EOF
}

die() { echo "install-bundle: $*" >&2; exit 1; }

bundle="" venv="" python=python3 prefix=/opt/m1-ascend allow_incomplete=0 expect_profile=""
while (($#)); do
  case "$1" in
    --bundle) bundle="${2:?}"; shift 2 ;;
    --venv) venv="${2:?}"; shift 2 ;;
    --python) python="${2:?}"; shift 2 ;;
    --prefix) prefix="${2:?}"; shift 2 ;;
    --profile) expect_profile="${2:?}"; shift 2 ;;
    --allow-incomplete) allow_incomplete=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
[[ -n "$bundle" ]] || die "--bundle is required (see --help)"
[[ -n "$venv" ]] || venv="$prefix/venv"
command -v sha256sum >/dev/null || die "sha256sum not found"

# -- what the bundle is for, read before anything is unpacked or created ---------------------------------
if [[ -f "$bundle" && "$bundle" == *.tar.gz ]]; then
  if [[ -f "$bundle.sha256" ]]; then
    (cd "$(dirname "$bundle")" && sha256sum --check --quiet "$(basename "$bundle").sha256") \
      || die "$bundle does not match $bundle.sha256 (damaged or altered in transit)"
  fi
  top="$(tar -tzf "$bundle" | awk -F/ 'NR == 1 {print $1}')"  # awk reads it all: no SIGPIPE
  [[ -n "$top" ]] || die "$bundle is empty"
  info="$(tar -xzOf "$bundle" "$top/BUNDLE-INFO" 2>/dev/null)" || die "$bundle has no BUNDLE-INFO (not a bundle)"
else
  [[ -f "$bundle/BUNDLE-INFO" ]] || die "$bundle is not a bundle (no BUNDLE-INFO)"
  info="$(cat "$bundle/BUNDLE-INFO")"
fi
field() { sed -n "s/^$1=//p" <<<"$info"; }
bundle_arch="$(field arch)" bundle_python="$(field python_version)" bundle_profile="$(field profile)"
[[ -n "$bundle_arch" && -n "$bundle_profile" ]] || die "the bundle's BUNDLE-INFO has no arch/profile (built by an older build-bundle.sh; rebuild it)"

case "$(uname -m)" in aarch64|arm64) host_arch=aarch64 ;; x86_64|amd64) host_arch=x86_64 ;; *) host_arch="$(uname -m)" ;; esac
[[ "$host_arch" == "$bundle_arch" ]] \
  || die "this bundle is for $bundle_arch, this host is $host_arch: build one with build-bundle.sh --arch $host_arch"
[[ -z "$expect_profile" || "$expect_profile" == "$bundle_profile" ]] \
  || die "this bundle has the $bundle_profile profile, --profile asked for $expect_profile"
if [[ -x "$venv/bin/python" ]]; then
  have="$("$venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
  [[ "$have" == "$bundle_python" ]] || die "$venv runs Python $have, the bundle is for Python $bundle_python"
else
  have="$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" || die "cannot run $python"
  [[ "$have" == "$bundle_python" ]] || die "the bundle is for Python $bundle_python but $python is $have (use --python)"
fi
echo "install-bundle: $(field name): profile $bundle_profile, $bundle_arch, Python $bundle_python -- matches this host"

# -- from here on, undo what this run creates if a step fails ---------------------------------------------
created=()
cleanup() {
  local status=$?
  if ((status != 0 && status != 3)) && ((${#created[@]})); then
    echo "install-bundle: failed; removing what this run created: ${created[*]}" >&2
    rm -rf "${created[@]}"
  fi
}
trap cleanup EXIT

if [[ -f "$bundle" ]]; then
  unpack_dir="$(dirname "$bundle")"
  [[ -e "$unpack_dir/$top" ]] || created+=("$unpack_dir/$top")
  tar -C "$unpack_dir" -xzf "$bundle"
  bundle="$unpack_dir/$top"
fi
[[ -f "$bundle/SHA256SUMS" && -d "$bundle/wheelhouse" ]] || die "$bundle is not a bundle (no SHA256SUMS or wheelhouse/)"
bundle="$(cd "$bundle" && pwd)"
echo "install-bundle: checking $bundle against its SHA256SUMS"
(cd "$bundle" && sha256sum --check --quiet --strict SHA256SUMS) || die "$bundle differs from its SHA256SUMS"

[[ -e "$prefix" ]] || created+=("$prefix")
if [[ ! -x "$venv/bin/python" ]]; then
  [[ -e "$venv" ]] || created+=("$venv")
  echo "install-bundle: creating $venv"
  "$python" -m venv "$venv"
fi

# pip sees the bundle and nothing else: no config files (PIP_CONFIG_FILE=/dev/null skips them all),
# no PIP_* variables (--isolated, and they are unset), no user site (python -I).
while read -r variable; do unset "$variable"; done < <(compgen -e | grep '^PIP_' || true)
export PIP_CONFIG_FILE=/dev/null
pip=("$venv/bin/python" -I -m pip --isolated install --no-index --find-links "$bundle/wheelhouse"
     --disable-pip-version-check)
echo "install-bundle: installing the $bundle_profile stack from the bundle (no network, no local pip settings)"
"${pip[@]}" -c "$bundle/constraints.txt" -r "$bundle/requirements.txt"
# requirements.txt is the whole stack of the profile, so m1-ascend's own dependencies are already there.
wheel="$(find "$bundle/wheelhouse" -name 'm1_ascend-*.whl' -print -quit)"
[[ -n "$wheel" ]] || die "no m1_ascend wheel in $bundle/wheelhouse"
"${pip[@]}" --no-deps --force-reinstall "$wheel"

mkdir -p "$prefix"
rm -rf "$prefix/deploy.new"
cp -r "$bundle/deploy" "$prefix/deploy.new"
rm -rf "$prefix/deploy"
mv "$prefix/deploy.new" "$prefix/deploy"
cp "$bundle/BUNDLE-INFO" "$prefix/BUNDLE-INFO"

if ! "$venv/bin/python" -I -m pip --isolated check --disable-pip-version-check; then
  ((allow_incomplete)) || die "pip check found missing or conflicting dependencies (listed above)"
  echo "install-bundle: warning: dependencies incomplete (allowed by --allow-incomplete)" >&2
fi
echo "install-bundle: installed $(field name) into $venv"

expect=cpu
[[ "$bundle_profile" == ascend ]] && expect=npu
echo "install-bundle: m1-ascend doctor --expect $expect"
set +e
"$venv/bin/m1-ascend" doctor --expect "$expect"
doctor_status=$?
set -e
case "$doctor_status" in
  0) echo "install-bundle: ready; next: $venv/bin/m1-ascend verify-weights <model dir>, then docs/deployment.md" ;;
  3) echo "install-bundle: installed, but this host is not ready (the doctor's verdict above)" >&2; exit 3 ;;
  *) ((allow_incomplete)) || die "m1-ascend doctor could not run (exit $doctor_status): the installation is broken"
     echo "install-bundle: warning: m1-ascend doctor could not run (allowed by --allow-incomplete)" >&2 ;;
esac
