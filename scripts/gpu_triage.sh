#!/usr/bin/env bash
# The first minutes on a GPU, most important facts first, in one command that fits one 10-minute
# run with no network and no C++ build (the package runs from the tree):
#   env -> correctness of every GPU kernel (liif, dconv; backends triton and, when built, cuda)
#   -> speed through the benchmark engine -> compute-sanitizer memcheck (racecheck for the cuda
#   backend) -> every autotune configuration at real sizes -> the GPU-marked tests, one
#   configuration per kernel -> summary.
# Every step has a time cap (timeout), a failing step does not stop the later ones, a step whose
# cap no longer fits the budget is skipped (and says so), and every result is appended to
# DIR/triage.jsonl as it is produced (schema: scripts/gpu_triage.py). Output: DIR/triage.jsonl,
# DIR/triage.log (every step's output), DIR/bench/bench.{md,json}, DIR/cuda_backend: few files,
# so that all of them come back from a machine that returns only a handful.
#
#   bash scripts/gpu_triage.sh [DIR]          on a GPU (DIR default: $OUT, else triage_out); BUDGET=570 s
#   SMOKE=1 bash scripts/gpu_triage.sh DIR    the same steps on CPU through the Triton interpreter, tiny shapes
#   STEPS="env liif" ...                      only these steps (env liif dconv speed san_liif san_dconv
#                                             racecheck tune pytest_gpu); the summary always runs
set -u
cd "$(dirname "$0")/.."
D=${1:-${OUT:-triage_out}}
mkdir -p "$D/tmp"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD:$PWD/scripts${PYTHONPATH:+:$PYTHONPATH}
export TRITON_CACHE_DIR=${TRITON_CACHE_DIR:-/tmp/fastliif-triton-cache}
[ -e fastliif/kernels ] || ln -s ../kernels fastliif/kernels  # the package maps it via package-dir
PY="${PYTHON:-python3} scripts/gpu_triage.py ${SMOKE:+--smoke} --out $D"
DEADLINE=$((SECONDS + ${BUDGET:-570}))
wanted() { [ -z "${STEPS:-}" ] || [[ " ${STEPS//,/ } " == *" $1 "* ]]; }
fits() { [ $((DEADLINE - SECONDS)) -ge "$1" ]; }
record() {  # record NAME RC SECONDS: one JSON line per step, the step's output into triage.log
    local name=$1 rc=$2 s=$3 status=ok san=""
    case $rc in 0) ;; 124|137) status=timeout ;; skip) status=skipped; rc=0 ;; *) status=failed ;; esac
    if [ -f "$D/tmp/$name.log" ]; then
        san=$(grep -o "ERROR SUMMARY: [0-9]*" "$D/tmp/$name.log" | tail -n 1 | grep -o "[0-9]*$")
        { echo "=== $name (rc=$rc, ${s}s)"; cat "$D/tmp/$name.log"; } >> "$D/triage.log"
        echo "== $name $status rc=$rc ${s}s"
        grep -v -i "warn" "$D/tmp/$name.log" | tail -n 15 | cut -c1-400
        rm -f "$D/tmp/$name.log"
    fi
    printf '{"step": "%s", "status": "%s", "rc": %d, "seconds": %d, "sanitizer_errors": "%s"}\n' \
        "$name" "$status" "$rc" "$s" "$san" >> "$D/triage.jsonl"
}
skip() {  # skip NAME WHY
    echo "== $1 SKIPPED ($2)"; echo "=== $1 SKIPPED ($2)" >> "$D/triage.log"; record "$1" skip 0
}
step() {  # step CAP NAME CMD...
    local cap=$1 name=$2; shift 2
    wanted "$name" || return 0
    fits "$cap" || { skip "$name" "cap ${cap}s > $((DEADLINE - SECONDS))s left"; return 0; }
    local t=$SECONDS
    timeout -k 5 "$cap" "$@" > "$D/tmp/$name.log" 2>&1
    record "$name" $? $((SECONDS - t))
}
pair() {  # pair CAP NAME1 "CMD1" NAME2 "CMD2": two compile-bound steps side by side (16 cores there)
    local cap=$1 n1=$2 c1=$3 n2=$4 c2=$5
    if ! wanted "$n1"; then step "$cap" "$n2" bash -c "$c2"; return 0; fi
    if ! wanted "$n2"; then step "$cap" "$n1" bash -c "$c1"; return 0; fi
    fits "$cap" || { skip "$n1" "cap ${cap}s"; skip "$n2" "cap ${cap}s"; return 0; }
    local t=$SECONDS r1 r2
    timeout -k 5 "$cap" bash -c "$c1" > "$D/tmp/$n1.log" 2>&1 & local p1=$!
    timeout -k 5 "$cap" bash -c "$c2" > "$D/tmp/$n2.log" 2>&1 & local p2=$!
    wait $p1; r1=$?; wait $p2; r2=$?
    record "$n1" $r1 $((SECONDS - t)); record "$n2" $r2 $((SECONDS - t))
}

SAN="" RACE=""
if [ -z "${SMOKE:-}" ]; then
    if command -v compute-sanitizer > /dev/null; then
        # without caching, PyTorch allocates every tensor on its own, so an access past a tensor's
        # end is outside any allocation and memcheck reports it (defect 9)
        SAN="env PYTORCH_NO_CUDA_MEMORY_CACHING=1 compute-sanitizer --tool memcheck --error-exitcode 9 --print-limit 20"
        RACE="env PYTORCH_NO_CUDA_MEMORY_CACHING=1 compute-sanitizer --tool racecheck --error-exitcode 9 --print-limit 20"
    else
        echo "compute-sanitizer not found: the sanitize steps run without it" | tee -a "$D/triage.log"
    fi
    step 30 env bash -c "nvidia-smi -L; command -v compute-sanitizer && compute-sanitizer --version | tail -n 1; $PY env"
else
    step 60 env $PY env
fi
pair 130 liif "$PY liif" dconv "$PY dconv"                        # correctness: vs torch backend and float64
step 150 speed $PY speed                                           # the benchmark engine (fastliif bench)
pair 120 san_liif "$SAN $PY sanitize_liif" san_dconv "$SAN $PY sanitize_dconv"
if wanted racecheck; then
    if [ "$(cat "$D/cuda_backend" 2>/dev/null)" = "1" ]; then
        step 60 racecheck bash -c "$RACE $PY sanitize_cuda"
    else
        skip racecheck "backend cuda not available (see the env row)"
    fi
fi
step 80 tune $PY tune                                              # every config at real sizes, autotune's pick
if [ -z "${SMOKE:-}" ]; then
    step 100 pytest_gpu python3 -m pytest -p gpu_triage -m gpu -q -rfs tests/
else  # the GPU tests skip on CPU: this checks that the plugin loads and they collect
    step 100 pytest_gpu python3 -m pytest -p gpu_triage -m gpu -q -rs tests/test_liif_query_triton.py \
        tests/test_dynamic_conv_triton.py
fi
$PY summary 2>&1 | tee -a "$D/triage.log"
rmdir "$D/tmp" 2> /dev/null
echo "== total ${SECONDS}s; results in $D/triage.jsonl, output in $D/triage.log"
