#!/usr/bin/env bash
# Every GPU measurement of the project in one run on a CUDA machine: the benchmarks,
# `pv verify` (contracts and falsifiers, GPU ones included, in a clean-room export of the
# commit) with signed evidence, `pv vacuity` for the GPU falsifiers, and `pv gate --release`
# over the CPU evidence plus this run's GPU evidence, both bound to the commit checked out.
# Run it from anywhere; it works in the repository, which must be a git checkout of the
# commit to release with no uncommitted changes (else the evidence says dirty and no
# release accepts it).
#
# usage: bench/run_gpu.sh OUT [--wheelhouse DIR] [--cpu-report PATH] [--stages LIST]
#                             [--device DEV] [--quick]
#
#   OUT           folder for everything (created): log.txt (all output), stages.txt (each
#                 stage's exit status), the benchmarks' JSON (hardware-*, kd-*, teacher-*,
#                 distill_steps-*, dequant-*), gpu/ (pv verify's output: the evidence
#                 gate-report.intoto.jsonl signed by a key made on this host for the run,
#                 summary.md, junit.xml, gate.json), vacuity-gpu.txt, <host>-<key id>.pub
#                 (the public half of that key), gate.txt (the release gate)
#   --wheelhouse  first install the wheels built by scripts/wheelhouse.py (air-gapped hosts)
#   --cpu-report  the CPU run's evidence (signed) to gate together with this one, made
#                 by `pv verify` on a CPU host from a commit with the same input files
#                 (default: reports/gate/cpu/gate-report.intoto.jsonl; its key: the *.pub beside it)
#   --stages      comma-separated subset, in this order:
#                 setup,hardware,kd,teacher,distill,dequant,falsifiers,vacuity,gate (default: all)
#   --device      passed to the benchmarks (default auto: CUDA when present)
#   --quick       tiny sizes everywhere: checks the script itself in a minute, measures nothing
#
# Every stage runs even when an earlier one failed; the exit status is 0 only when all passed.
# Environment: PYTHON (default python3), PV_WORKERS (pytest workers of pv verify, default 4).

set -u -o pipefail

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }

case ${1:-} in -h|--help) usage; exit 0 ;; esac
[ $# -ge 1 ] && [ "${1#-}" = "$1" ] || { usage >&2; exit 2; }
OUT=$1
shift
WHEELHOUSE="" CPU_REPORT="reports/gate/cpu/gate-report.intoto.jsonl" STAGES="setup,hardware,kd,teacher,distill,dequant,falsifiers,vacuity,gate"
DEVICE=auto QUICK=0
while [ $# -gt 0 ]; do
    case $1 in
        --wheelhouse) WHEELHOUSE=${2:?--wheelhouse needs a folder}; shift 2 ;;
        --cpu-report) CPU_REPORT=${2:?--cpu-report needs a file}; shift 2 ;;
        --stages) STAGES=${2:?--stages needs a list}; shift 2 ;;
        --device) DEVICE=${2:?--device needs a name}; shift 2 ;;
        --quick) QUICK=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "run_gpu.sh: error: unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
done
for stage in ${STAGES//,/ }; do
    case $stage in
        setup|hardware|kd|teacher|distill|dequant|falsifiers|vacuity|gate) ;;
        *) echo "run_gpu.sh: error: unknown stage '$stage' in --stages" >&2; exit 2 ;;
    esac
done
if [ -n "$WHEELHOUSE" ] && [ ! -f "$WHEELHOUSE/requirements.txt" ]; then
    echo "run_gpu.sh: error: --wheelhouse $WHEELHOUSE: no requirements.txt (build it with scripts/wheelhouse.py)" >&2
    exit 2
fi

PY=${PYTHON:-python3}
REPO=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$OUT" || exit 2
OUT=$(cd "$OUT" && pwd)
cd "$REPO" || exit 2
export PYTHONUNBUFFERED=1
exec > >(tee -a "$OUT/log.txt") 2>&1
: > "$OUT/stages.txt"

if [ "$QUICK" = 1 ]; then
    KD_ARGS=(--rows 64 --vocab 4096 --repeats 2 --warmup 1)
    TEACHER_ARGS=(--teacher-preset tiny --batch 2 --seq 32 --repeats 2)
    DISTILL_ARGS=(--teacher-preset tiny --student-preset tiny --steps 3 --batch 2 --seq 32)
    DEQUANT_ARGS=(--rows 256 --cols 1024 --repeats 2)
else
    KD_ARGS=() TEACHER_ARGS=() DISTILL_ARGS=() DEQUANT_ARGS=()
fi

wants() { [[ ",$STAGES," == *",$1,"* ]]; }
FAILED=0
stage() {  # stage NAME COMMAND...: run it, log its status, remember a failure
    local name=$1 status start
    shift
    wants "$name" || return 0
    echo "=== $name: $* ($(date -u +%Y-%m-%dT%H:%M:%SZ))"
    start=$SECONDS
    "$@"
    status=$?
    echo "$name $status $((SECONDS - start))s" >> "$OUT/stages.txt"
    echo "=== $name: exit $status after $((SECONDS - start)) s"
    [ "$status" = 0 ] || FAILED=1
}

setup() {
    if [ -n "$WHEELHOUSE" ]; then
        "$PY" -m pip install --no-index --find-links "$WHEELHOUSE" -r "$WHEELHOUSE/requirements.txt" || return 1
    fi
    if ! "$PY" -c "import pv.plugins.report, distill.kd" 2>/dev/null; then
        "$PY" -m pip install --no-index --no-deps --no-build-isolation -e . || return 1
    fi
    "$PY" - <<'EOF'
import importlib.util, torch
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, device: "
      f"{torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}")
missing = [m for m in ("gguf", "jsonschema", "crosshair", "hypothesis", "xdist", "safetensors", "yaml", "tqdm",
                       "securesystemslib", "tokenizers", "matplotlib")
           if importlib.util.find_spec(m) is None]
print("liger-kernel:", "installed" if importlib.util.find_spec("liger_kernel") else "not installed")
raise SystemExit(f"missing packages: {', '.join(missing)} (use --wheelhouse)" if missing else 0)
EOF
}

# The GPU report is signed by a key made on this host for this run: the private half stays in
# a folder outside the repository and the output, the public half is written to the output,
# to be reviewed and committed to keys/ before a release trusts it.
export PV_KEY_DIR=${PV_KEY_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/pv-host-key.XXXXXX")}

falsifiers() {  # pv verify: a clean-room run of the committed tree, every test this GPU can run
    if [ ! -f "$PV_KEY_DIR/signing-key.pem" ]; then
        "$PY" -m pv key generate --publish "$OUT" || return 1
    fi
    "$PY" -m pv verify --out "$OUT/gpu" -n "${PV_WORKERS:-4}"
}

vacuity() {  # every GPU falsifier must fail under each of its mutants
    "$PY" -m pv vacuity -m gpu falsifiers/ > "$OUT/vacuity-gpu.txt" 2>&1
    local status=$?
    cat "$OUT/vacuity-gpu.txt"
    return $status
}

gate() {
    if [ ! -f "$CPU_REPORT" ]; then
        echo "run_gpu.sh: the CPU gate report $CPU_REPORT is missing (pass --cpu-report)"
        return 1
    fi
    if [ ! -f "$OUT/gpu/gate-report.intoto.jsonl" ]; then
        echo "run_gpu.sh: no GPU evidence in $OUT/gpu (run the falsifiers stage)"
        return 1
    fi
    # the release of the commit checked out, over both, trusting the CPU evidence's key (beside
    # it) and this host's; the verdict is also written as a signed verification summary
    local cpu_keys
    cpu_keys=$(dirname "$CPU_REPORT")
    "$PY" -m pv gate --release --trusted-keys "$cpu_keys" --trusted-keys "$OUT" \
        "$CPU_REPORT" "$OUT/gpu/gate-report.intoto.jsonl" --attest "$OUT/release.intoto.jsonl" -o "$OUT/gate.txt"
    local status=$?
    cat "$OUT/gate.txt" 2>/dev/null
    return $status
}

dequant() {
    if [ ! -f bench/dequant.py ]; then
        echo "bench/dequant.py is not in this checkout"
        return 1
    fi
    "$PY" bench/dequant.py --device "$DEVICE" --out "$OUT" ${DEQUANT_ARGS[@]+"${DEQUANT_ARGS[@]}"}
}

echo "run_gpu.sh: $(git rev-parse --short HEAD 2>/dev/null || echo 'no git') $(git status --porcelain 2>/dev/null | head -c1 | sed 's/./(dirty)/'), stages $STAGES, out $OUT"
stage setup setup
stage hardware "$PY" bench/hardware.py --device "$DEVICE" --out "$OUT"
stage kd "$PY" bench/kd.py --device "$DEVICE" --out "$OUT" ${KD_ARGS[@]+"${KD_ARGS[@]}"}
stage teacher "$PY" bench/teacher.py --device "$DEVICE" --out "$OUT" ${TEACHER_ARGS[@]+"${TEACHER_ARGS[@]}"}
stage distill "$PY" bench/distill_steps.py --device "$DEVICE" --out "$OUT" ${DISTILL_ARGS[@]+"${DISTILL_ARGS[@]}"}
stage dequant dequant
stage falsifiers falsifiers
stage vacuity vacuity
stage gate gate
echo "=== stages (name, exit status, seconds):"
cat "$OUT/stages.txt"
exit $FAILED
