#!/usr/bin/env bash
# Build and install the fused conv-K/V Ascend C operator and its PyTorch binding.
# Runs on a CANN host only (toolkit sourced, torch_npu installed); nothing here runs on CPU machines.
#
#   bash kernels/ascendc/conv_kv/build.sh [--soc Ascend910B1] [--prefix DIR]
#
# 1. msOpGen generates the operator project for the SoC from conv_kv.json;
# 2. our op_host/op_kernel sources replace its stubs, the vendor is renamed to m1_ascend
#    (so it does not overwrite other "customize" packages) and the project's build.sh
#    produces build_out/custom_opp_<os>_<arch>.run;
# 3. the package is installed under PREFIX/vendors/m1_ascend;
# 4. the binding (torch_binding/) is pip-installed as the m1_ascend_ops extension.
# Afterwards export ASCEND_CUSTOM_OPP_PATH as printed; `m1-ascend doctor` shows whether it is picked up.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
soc="${SOC_VERSION:-Ascend910B1}"
prefix="${M1_ASCEND_OPP_PREFIX:-$HOME/.cache/m1-ascend/opp}"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --soc) soc="$2"; shift 2 ;;
    --prefix) prefix="$2"; shift 2 ;;
    *) echo "usage: $0 [--soc Ascend910B1] [--prefix DIR]" >&2; exit 2 ;;
  esac
done

die() { echo "build.sh: $*" >&2; exit 1; }
[[ -n "${ASCEND_HOME_PATH:-}" ]] || die "ASCEND_HOME_PATH is unset: source <CANN>/ascend-toolkit/set_env.sh first"
command -v msopgen >/dev/null || die "msopgen not found (it ships with the CANN toolkit)"
python -c "import torch_npu" 2>/dev/null || die "torch_npu does not import; install the wheel matching torch and CANN"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
project="$work/ConvKv"
msopgen gen -i "$here/conv_kv.json" -c "ai_core-${soc}" -lan cpp -out "$project"
cp "$here"/op_host/* "$project/op_host/"
cp "$here"/op_kernel/* "$project/op_kernel/"
sed -i 's/"value": "customize"/"value": "m1_ascend"/' "$project/CMakePresets.json"
(cd "$project" && bash build.sh)

package="$(ls "$project"/build_out/custom_opp_*.run)"
mkdir -p "$prefix"
"$package" --quiet --install-path="$prefix"
vendor="$prefix/vendors/m1_ascend"
[[ -f "$vendor/op_api/include/aclnn_conv_kv.h" ]] || die "no aclnn_conv_kv.h under $vendor/op_api/include"

M1_ASCEND_VENDOR_DIR="$vendor" python -m pip install --no-build-isolation "$here/torch_binding"
echo "installed; now run:"
echo "  export ASCEND_CUSTOM_OPP_PATH=$vendor\${ASCEND_CUSTOM_OPP_PATH:+:\$ASCEND_CUSTOM_OPP_PATH}"
