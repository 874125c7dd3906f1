#!/usr/bin/env bash
# The check a hospital runs after installing or upgrading: doctor -> verify-weights -> start -> health
# -> fixed greedy prompt against the stored answer -> stop.
set -euo pipefail

KIT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly KIT_DIR

usage() {
  cat <<'EOF'
Usage: acceptance.sh --target serve|mindie (--expected FILE | --record FILE) [--etc DIR] [--skip-doctor]
                     [--allow-cpu] [--keep-running]

  --expected FILE  the greedy answer recorded on the approved install; the run fails if it differs
  --record FILE    first install only: record the answer (after the other steps passed)
  --etc DIR        settings directory of m1-ascendctl (default $M1_ASCEND_ETC or /etc/m1-ascend)
  --skip-doctor    skip `m1-ascend doctor`
  --allow-cpu      accept a host where doctor finds no NPU (trying the kit on a CPU machine)
  --keep-running   leave the service running at the end

Steps (each printed as PASS, FAIL or SKIP; the first failure stops the run):
  1 doctor          m1-ascend doctor runs, and finds what the target needs: CANN for mindie, a usable
                    NPU backend for serve
  2 verify-weights  the weights match their SHA256SUMS (a missing manifest fails)
  3 start           m1-ascendctl start TARGET, waiting until healthy
  4 health          deploy/healthcheck answers healthy
  5 greedy          the fixed greedy prompt gives the stored answer
  6 stop            m1-ascendctl stop TARGET (only when this run started it)
Exit status 0 when every step passed.
EOF
}

die() { echo "acceptance: $*" >&2; exit 64; }

target="" expected="" record="" skip_doctor=0 allow_cpu=0 keep_running=0 ctl_args=()
while (($#)); do
  case "$1" in
    --target) target="${2:?}"; shift 2 ;;
    --expected) expected="${2:?}"; shift 2 ;;
    --record) record="${2:?}"; shift 2 ;;
    --etc) ctl_args+=(--etc "${2:?}"); shift 2 ;;
    --skip-doctor) skip_doctor=1; shift ;;
    --allow-cpu) allow_cpu=1; shift ;;
    --keep-running) keep_running=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
[[ "$target" == serve || "$target" == mindie ]] || die "--target must be serve or mindie"
[[ -n "$expected" || -n "$record" ]] || die "give --expected FILE (or --record FILE on the approved install)"
[[ -z "$expected" || -z "$record" ]] || die "--expected and --record exclude each other"
[[ -z "$expected" || -f "$expected" ]] || die "no such file: $expected"

ctl() { "$KIT_DIR/bin/m1-ascendctl" "${ctl_args[@]}" "$@"; }
started=0

report() { printf '%-16s %s\n' "$1" "$2"; }

finish() {
  local rc=$?
  if ((started && !keep_running)); then
    if ctl stop "$target" >/dev/null; then report "6 stop" PASS; else report "6 stop" FAIL; rc=1; fi
  fi
  if ((rc == 0)); then echo "ACCEPTANCE PASSED"; else echo "ACCEPTANCE FAILED"; fi
  exit "$rc"
}
trap finish EXIT

step() {
  local name="$1"
  shift
  if "$@"; then report "$name" PASS; else report "$name" FAIL; exit 1; fi
}

# Locates m1-ascend the way m1-ascendctl does (its venv first).
m1_ascend="${M1_ASCEND_BIN:-${M1_ASCEND_HOME:-/opt/m1-ascend}/venv/bin/m1-ascend}"
[[ -x "$m1_ascend" ]] || m1_ascend="$(command -v m1-ascend)" || die "m1-ascend not found (set M1_ASCEND_BIN)"

# The report, then what the target cannot run without (from the report's JSON form).
doctor() {
  "$m1_ascend" doctor || return 1
  ((allow_cpu)) && return 0
  "$m1_ascend" doctor --json | python3 -c 'import json, sys
report, target = json.load(sys.stdin), sys.argv[1]
if target == "mindie" and not report["cann"]["home"]:
    sys.exit("doctor: CANN not found; MindIE cannot run here")
if target == "serve" and report["backend"]["auto"].startswith("reference"):
    sys.exit("doctor: no usable NPU (" + report["backend"].get("reason", "") + "); --allow-cpu to accept")' "$target"
}

if ((skip_doctor)); then
  report "1 doctor" "SKIP (--skip-doctor)"
else
  step "1 doctor" doctor
fi

step "2 verify-weights" ctl verify "$target"

status_rc=0
ctl status "$target" >/dev/null 2>&1 || status_rc=$?
if ((status_rc != 3)); then  # 3: not running
  report "3 start" "SKIP (already running; left running)"
else
  started=1
  step "3 start" ctl start "$target"
fi

step "4 health" ctl status "$target"

if [[ -n "$record" ]]; then
  step "5 greedy" ctl probe "$target" --record "$record"
else
  step "5 greedy" ctl probe "$target" --expected "$expected"
fi
