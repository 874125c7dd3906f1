#!/usr/bin/env bash
# Run `openmind-cli train RECIPE` and fail unless the run left a finished adapter (openmind-cli exits 0 on failure).
set -euo pipefail

usage() {
  cat <<'EOF_USAGE'
Usage: openmind-train.sh RECIPE.yaml

Runs `openmind-cli train RECIPE.yaml` in openMind's environment, then checks its output_dir with
`m1-ascend finetune RECIPE.yaml --check-output`: openMind 1.0.0's launcher ignores the training
process's exit status, so a crashed run still ends with status 0. This script ends with:
  0  the run wrote a LoRA adapter this run, max_steps steps, finite losses (the loss line is printed)
  1  training failed (openMind's log above says why) or left no usable adapter
  64 usage error

Run it from the directory the recipe's paths are relative to (openMind reads them from there).
Tracebacks are shown in full (OPENMIND_HIDE_STACKTRACE=FALSE). Multi-card runs are launched by
openmind-cli itself: choose cards with ASCEND_RT_VISIBLE_DEVICES, and set NPROC_PER_NODE, NNODES,
RANK, MASTER_ADDR, MASTER_PORT as openMind documents. Commands: $OPENMIND_CLI (default
openmind-cli) and $M1_ASCEND (default m1-ascend), both from openMind's environment.
EOF_USAGE
}

case "${1:-}" in
  -h|--help) usage; exit 0 ;;
  ""|-*) usage >&2; exit 64 ;;
esac
if (($# != 1)); then
  usage >&2
  exit 64
fi
recipe="$1"
if [[ ! -f "$recipe" ]]; then
  echo "openmind-train.sh: $recipe: no such recipe file" >&2
  exit 64
fi

start="$(date +%s)"
OPENMIND_HIDE_STACKTRACE=FALSE "${OPENMIND_CLI:-openmind-cli}" train "$recipe"
if ! "${M1_ASCEND:-m1-ascend}" finetune "$recipe" --check-output --since "$start"; then
  echo "openmind-train.sh: openmind-cli train did not finish (its exit status is always 0); see its log above" >&2
  exit 1
fi
