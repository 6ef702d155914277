#!/usr/bin/env bash
# The whole GPU job in one command (one call of the GPU machine, ~9 minutes), everything it needs
# in the working tree plus the wheels that scripts/gpu_prepare.sh put in .whl/:
#   1. installs .whl/*.whl into /tmp/site (no index, no dependencies resolved: the set is complete)
#   2. the CUDA tests (test/test_cuda.py)
#   3. bench/bench_gpu.py: LENS-3B-size timings beside their floors
#   4. the demo model with the GPU recipe (scripts/train_demo.sh, OVERLAY=gpu: the stages of
#      config/demo/*_gpu.yaml), evaluated on the held-out test split before and after GRPO
#   5. scripts/gpu/zero3_grpo.sh when present (GRPO under DeepSpeed ZeRO-3)
# Each step runs under `timeout` with its own budget (seconds; BUDGET_<STEP> overrides it); a
# step that fails or overruns is reported and the next one runs. Everything comes back in $OUT
# (at most 8 files, each < 16 MiB):
#   summary.md           steps with status, seconds and budget; the benchmark table; the
#                        before/after GRPO table
#   bench_gpu.json       the benchmark's figures
#   demo_table.md        the held-out per-level table before/after GRPO
#   logs.tar.gz          every log, metrics.jsonl, plots, lens-eval reports, the zero3 summaries
#   demo_model.tar.part-aa, -ab, ...   the trained demo model (the better of before/after GRPO,
#                        fp16), split into 15 MiB parts: cat demo_model.tar.part-* | tar x
#
#   bash scripts/gpu_run.sh              on the GPU machine (OUT set by the machine)
#   bash scripts/gpu_run.sh --dry-run    the same steps on the CPU, tiny sizes, a few minutes
#                                        (PYTHON or VENV picks the interpreter; OUT defaults to a
#                                        temporary folder)
set -uo pipefail
cd "$(dirname "$0")/.."
DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1
OUT=${OUT:-$(mktemp -d /tmp/gpu_run_out.XXXXXX)}
WORK=${WORK:-$(mktemp -d /tmp/gpu_run_work.XXXXXX)}
LOGS="$WORK/logs"
mkdir -p "$OUT" "$LOGS"
SUMMARY="$WORK/summary.md"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
started=$(date +%s)

if [ "$DRY" = 1 ]; then
    PY=${PYTHON:-${VENV:-.venv}/bin/python}
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
    PY=${PYTHON:-python3}
    if compgen -G ".whl/*.whl" > /dev/null; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target /tmp/site .whl/*.whl > "$LOGS/install.log" 2>&1 ||
            echo "wheel install failed (see logs/install.log)" >&2
        export PYTHONPATH="/tmp/site:$PWD"
    else
        echo "no .whl/ folder: run scripts/gpu_prepare.sh first (sam2, pinned transformers...)" >&2
        export PYTHONPATH="$PWD"
    fi
fi
export PYTHON="$PY" PY DRY WORK LOGS

{
    echo "# GPU run $(date -u +%Y-%m-%dT%H:%MZ)$([ "$DRY" = 1 ] && echo ' (DRY RUN, CPU, tiny sizes)')"
    echo
    echo "| step | status | seconds | budget |"
    echo "| --- | --- | --- | --- |"
} > "$SUMMARY"

# run_step NAME BUDGET_SECONDS COMMAND...: the command under timeout, output to logs/NAME.log
run_step() {
    local name=$1 budget=$2 t0 rc status
    shift 2
    local var="BUDGET_${name^^}"
    budget=${!var:-$budget}
    echo "== [$(( $(date +%s) - started )) s] $name (budget ${budget} s)"
    t0=$(date +%s)
    timeout --kill-after=15 "$budget" "$@" > "$LOGS/$name.log" 2>&1
    rc=$?
    case $rc in
        0) status=ok ;;
        124|137) status="TIMED OUT" ;;
        *) status="FAILED (exit $rc)" ;;
    esac
    echo "| $name | $status | $(( $(date +%s) - t0 )) | $budget |" >> "$SUMMARY"
    echo "   $status after $(( $(date +%s) - t0 )) s"
    [ $rc = 0 ] || tail -n 15 "$LOGS/$name.log"
    return 0
}

env_report() {
    nvidia-smi 2>/dev/null || echo "no nvidia-smi"
    "$PY" - <<'EOF'
import importlib, platform, torch
print("python", platform.python_version(), "torch", torch.__version__,
      "cuda", torch.cuda.is_available() and torch.cuda.get_device_name())
for name in ("transformers", "tokenizers", "safetensors", "accelerate", "trl", "sam2",
             "hydra", "pytest"):
    try:
        m = importlib.import_module(name)
        print(name, getattr(m, "__version__", "?"), m.__file__)
    except Exception as err:  # report, never stop the run
        print(name, "MISSING:", err)
EOF
}

demo() {
    local common=(RUN="$WORK/demo" SHIP="$WORK/ship" POOLS="$WORK/pools" REFER="$WORK/refer_seg"
                  PYTHON="$PY")
    if [ "$DRY" = 1 ]; then
        env "${common[@]}" DEVICE=cpu SFT_STEPS=2 MASK_STEPS=2 GRPO_STEPS=1 EVAL_REFS=4 \
            EVAL_SCENES=2 POOL_EASY=16 POOL_NORMAL=16 TEST_SCENES=2 \
            GRPO_EXTRA="--per_device_train_batch_size 8 --num_generations 4 --max_completion_length 24" \
            bash scripts/train_demo.sh
    else
        # the first 100 held-out test-split scenes (200 commands), the same before and after GRPO
        env "${common[@]}" OVERLAY=gpu DEVICE=cuda POOL_WORKERS=16 TEST_SCENES=100 \
            OMP_NUM_THREADS=8 bash scripts/train_demo.sh
    fi
}

zero3() {
    local args=(--out "$WORK/zero3" --wheels .whl)
    [ "$DRY" = 1 ] && args+=(--dry-run)
    bash scripts/gpu/zero3_grpo.sh "${args[@]}"
}

export -f env_report demo zero3
# budget: the GPU one, or the dry run's (generous: a busy CPU machine)
budget() { if [ "$DRY" = 1 ]; then echo "$2"; else echo "$1"; fi; }
run_step env "$(budget 20 120)" bash -c env_report
run_step cuda_tests "$(budget 50 300)" "$PY" -m pytest test/test_cuda.py -q -p no:cacheprovider -rs
if [ "$DRY" = 1 ]; then
    run_step bench 300 "$PY" bench/bench_gpu.py --dry-run --repeats 1 --tokens 1 4 \
        --json "$OUT/bench_gpu.json"
else
    run_step bench 100 "$PY" bench/bench_gpu.py --repeats 3 --json "$OUT/bench_gpu.json"
fi
run_step demo "$(budget 300 900)" bash -c demo
if [ -f scripts/gpu/zero3_grpo.sh ]; then
    run_step zero3 "$(budget 40 300)" bash -c zero3
else
    echo "| zero3 | not present (scripts/gpu/zero3_grpo.sh) | 0 | - |" >> "$SUMMARY"
fi

# ---- what comes back -----------------------------------------------------------------------
{
    echo
    echo "## Benchmark"
    echo
    echo '```'
    sed -n '/^bench_gpu:/,$p' "$LOGS/bench.log" 2>/dev/null
    echo '```'
    echo
    echo "## Demo model: held-out test split before / after GRPO"
    echo
    cat "$WORK/demo/table.md" 2>/dev/null || echo "(no table: see logs/demo.log)"
    echo
    echo "Total: $(( $(date +%s) - started )) s"
} >> "$SUMMARY"
cp "$SUMMARY" "$OUT/summary.md"
[ -f "$WORK/demo/table.md" ] && cp "$WORK/demo/table.md" "$OUT/demo_table.md"
if [ -d "$WORK/ship" ]; then
    tar -C "$WORK" -cf - ship | split -b 15m - "$OUT/demo_model.tar.part-"
fi
# logs, metrics, plots and reports; no weights, states or records
(cd "$WORK" && find logs demo zero3 -type f \( -name '*.log' -o -name '*.md' -o -name '*.json' \
    -o -name '*.jsonl' -o -name '*.png' \) -not -path '*/records/*' -not -path '*/final/*' \
    -not -path '*/best/*' -not -path '*/last/*' -not -path '*/checkpoint-*' 2>/dev/null |
    tar -czf "$OUT/logs.tar.gz" -T -)
echo
cat "$OUT/summary.md"
echo
echo "files in $OUT:"
ls -l "$OUT"
