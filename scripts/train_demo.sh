#!/usr/bin/env bash
# Reproduce the shipped demo model from scratch (the body of `make train-demo`):
#   scene pools -> demo.train sft -> demo.train mask -> lens-eval (before GRPO)
#   -> lens-train grpo -> lens-eval (after GRPO) -> the better model, fp16, to models/lens-demo.
# Every budget is a number of steps (not minutes), with the seed in the configs, so a rerun on
# the same machine type trains the same weights; two CPU threads (the 2-core budget).
# Progress bars/logs on stdout, metrics.jsonl and plots/ in each stage's run folder.
#   bash scripts/train_demo.sh            (SEED=0 RUN=runs/demo SHIP=models/lens-demo by default)
#   SFT_STEPS=40 MASK_STEPS=20 GRPO_STEPS=3 EVAL_REFS=20 RUN=/tmp/r SHIP=/tmp/s \
#       bash scripts/train_demo.sh                      (a few-minute smoke run of every stage)
# Interrupted? Run the same command again: the supervised and mask stages continue from the
# resumable state in their run folder (saved every state_every_steps steps), lens-eval from its
# records, and a finished stage is not run again.
#   FROM=mask bash scripts/train_demo.sh    (start at a stage: sft | mask | grpo; the earlier
#       stages' outputs in $RUN are reused as they are)
# Other knobs: PYTHON (interpreter; default $VENV/bin/python), OVERLAY=gpu (layer the
# config/demo/*_gpu.yaml recipe over each stage's config; see docs/gpu.md), DEVICE (lens-eval's
# device, default cpu), POOL_WORKERS (processes drawing the pools), POOL_EASY / POOL_NORMAL /
# TEST_SCENES (pool and test-split sizes), SFT_EXTRA / MASK_EXTRA / GRPO_EXTRA (more flags).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-${VENV:-.venv}/bin/python}
SEED=${SEED:-0}
RUN=${RUN:-runs/demo}
SHIP=${SHIP:-models/lens-demo}
POOLS=${POOLS:-data/demo_pool}
REFER=${REFER:-data/refer_seg}
DEVICE=${DEVICE:-cpu}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
SFT_ARGS=(); MASK_ARGS=(); GRPO_ARGS=(); EVAL_ARGS=()
[ -n "${SFT_STEPS:-}" ] && SFT_ARGS+=(--steps "$SFT_STEPS" --eval_every_steps "$SFT_STEPS")
[ -n "${MASK_STEPS:-}" ] && MASK_ARGS+=(--steps "$MASK_STEPS" --eval_every_steps "$MASK_STEPS")
[ -n "${GRPO_STEPS:-}" ] && GRPO_ARGS+=(--max_steps "$GRPO_STEPS")
[ -n "${EVAL_REFS:-}" ] && EVAL_ARGS+=(--max-refs "$EVAL_REFS")
# shellcheck disable=SC2206  # SFT_EXTRA / MASK_EXTRA / GRPO_EXTRA: more --field value words
SFT_ARGS+=(${SFT_EXTRA:-}); MASK_ARGS+=(${MASK_EXTRA:-}); GRPO_ARGS+=(${GRPO_EXTRA:-})
[ -n "${EVAL_SCENES:-}" ] && SFT_ARGS+=(--eval_scenes "$EVAL_SCENES") &&
    MASK_ARGS+=(--eval_scenes "$EVAL_SCENES")
[ "$DEVICE" != cpu ] && EVAL_ARGS+=(--dtype float32)   # the demo model is trained in fp32
[ -t 1 ] || EVAL_ARGS+=(--no-progress)                 # no progress bars in a log file
overlay() { [ -n "${OVERLAY:-}" ] && echo "--config config/demo/$1_${OVERLAY}.yaml" || true; }
FROM=${FROM:-sft}
rank() { case "$1" in sft) echo 0;; mask) echo 1;; grpo) echo 2;; *) echo -1;; esac; }
[ "$(rank "$FROM")" -ge 0 ] || { echo "FROM must be sft, mask or grpo, not '$FROM'" >&2; exit 2; }
due() { [ "$(rank "$1")" -ge "$(rank "$FROM")" ]; }   # STAGE is FROM or comes after it
mkdir -p "$RUN"
start=$(date +%s)
step() { echo; echo "== [$(( $(date +%s) - start )) s] $*"; }

step "scene pools in $POOLS (train-split seeds; skipped when present)"
W=(--workers "${POOL_WORKERS:-1}")
[ -f "$POOLS/easy.npz" ] || "$PY" -m lens_ros.demo.pool --out "$POOLS" "${W[@]}" \
    --name easy --scenes "${POOL_EASY:-6000}" --min-objects 1 --max-objects 3 --offset 5000000
[ -f "$POOLS/normal.npz" ] || "$PY" -m lens_ros.demo.pool --out "$POOLS" "${W[@]}" \
    --name normal --scenes "${POOL_NORMAL:-16000}"
[ -f "$REFER/synthetic/instances.json" ] || "$PY" -m lens_ros.synthetic refcoco \
    --out "$REFER" --train 0 --val 0 --test "${TEST_SCENES:-400}" --expressions 2

due sft && step "stage 0: supervised warm-up (format, reasoning, grounding)" &&
"$PY" -m lens_ros.demo.train sft --config config/demo/sft.yaml $(overlay sft) --output_dir "$RUN/sft" --pool_dir "$POOLS" \
    --seed "$SEED" "${SFT_ARGS[@]}"

due mask && step "stage 1: mask head + SAM on the frozen LM" &&
"$PY" -m lens_ros.demo.train mask --config config/demo/mask.yaml $(overlay mask) --init "$RUN/sft/last" \
    --output_dir "$RUN/mask" --pool_dir "$POOLS" --seed "$SEED" "${MASK_ARGS[@]}"

due mask && step "held-out test split before GRPO" &&
"$PY" -m lens_ros.evaluation.cli --model "$RUN/mask/best" --data-root "$REFER" \
    --splits synthetic/test -o "$RUN/eval_before_grpo" --device "$DEVICE" "${EVAL_ARGS[@]}"

due mask && "$PY" -m lens_ros.demo.errors "$RUN/eval_before_grpo" --data-root "$REFER" \
    | tee "$RUN/errors_before_grpo.md"

step "stage 2: GRPO with the joint mask loss (skipped when $RUN/grpo/final exists)"
if [ ! -f "$RUN/grpo/final/inference_config.json" ]; then
    "$PY" -m lens_ros.training.cli grpo --config config/demo/grpo.yaml $(overlay grpo) \
        --model_path "$RUN/mask/best" --output_dir "$RUN/grpo" --seed "$SEED" "${GRPO_ARGS[@]}"
    # the GRPO trainer saves weights + processor; keep the demo inference defaults (reasoning on)
    cp "$RUN/mask/best/inference_config.json" "$RUN/grpo/final/"
fi
"$PY" -m lens_ros.training.cli plot "$RUN/grpo" || true

step "held-out test split after GRPO"
"$PY" -m lens_ros.evaluation.cli --model "$RUN/grpo/final" --data-root "$REFER" \
    --splits synthetic/test -o "$RUN/eval_after_grpo" --device "$DEVICE" "${EVAL_ARGS[@]}"

"$PY" -m lens_ros.demo.errors "$RUN/eval_after_grpo" --data-root "$REFER" \
    | tee "$RUN/errors_after_grpo.md"

step "before/after table; ship the better model to $SHIP"
# (printed, then its last line kept; no `tee /dev/stderr`: reopening a log file truncates it)
table_out=$("$PY" -m lens_ros.demo.tables "$RUN/eval_before_grpo" "$RUN/eval_after_grpo" \
    --out "$RUN/table.md" --pick-best "$RUN/mask/best" "$RUN/grpo/final")
echo "$table_out"
best=$(tail -n 1 <<< "$table_out")
printf '{"seed": %s, "minutes": %s, "source": "%s", "recipe": "scripts/train_demo.sh"}\n' \
    "$SEED" "$(( ($(date +%s) - start) / 60 ))" "$best" > "$RUN/ship_notes.json"
"$PY" -m lens_ros.demo.export "$best" "$SHIP" --notes "$RUN/ship_notes.json"
step "done: $SHIP (table: $RUN/table.md)"
if [ -f "$SHIP/tracker.safetensors" ]; then
    echo "note: $SHIP/tracker.safetensors was trained with the previous SAM image encoder;" \
         "retrain it for track mode: python -m lens_ros.demo.tracker_training (see docs/demo.md)"
fi
