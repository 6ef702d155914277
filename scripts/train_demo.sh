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
#   FROM=mask bash scripts/train_demo.sh    (resume at a stage: sft | mask | grpo; the earlier
#       stages' outputs in $RUN are reused as they are)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${VENV:-.venv}/bin
SEED=${SEED:-0}
RUN=${RUN:-runs/demo}
SHIP=${SHIP:-models/lens-demo}
POOLS=${POOLS:-data/demo_pool}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
SFT_ARGS=(); MASK_ARGS=(); GRPO_ARGS=(); EVAL_ARGS=()
[ -n "${SFT_STEPS:-}" ] && SFT_ARGS+=(--steps "$SFT_STEPS" --eval_every_steps "$SFT_STEPS")
[ -n "${MASK_STEPS:-}" ] && MASK_ARGS+=(--steps "$MASK_STEPS" --eval_every_steps "$MASK_STEPS")
[ -n "${GRPO_STEPS:-}" ] && GRPO_ARGS+=(--max_steps "$GRPO_STEPS")
[ -n "${EVAL_REFS:-}" ] && EVAL_ARGS+=(--max-refs "$EVAL_REFS")
FROM=${FROM:-sft}
rank() { case "$1" in sft) echo 0;; mask) echo 1;; grpo) echo 2;; *) echo -1;; esac; }
[ "$(rank "$FROM")" -ge 0 ] || { echo "FROM must be sft, mask or grpo, not '$FROM'" >&2; exit 2; }
due() { [ "$(rank "$1")" -ge "$(rank "$FROM")" ]; }   # STAGE is FROM or comes after it
mkdir -p "$RUN"
start=$(date +%s)
step() { echo; echo "== [$(( ($(date +%s) - start) / 60 )) min] $*"; }

step "scene pools in $POOLS (train-split seeds; skipped when present)"
[ -f "$POOLS/easy.npz" ] || "$PY/python" -m lens_ros.demo.pool --out "$POOLS" \
    --name easy --scenes 6000 --min-objects 1 --max-objects 3 --offset 5000000
[ -f "$POOLS/normal.npz" ] || "$PY/python" -m lens_ros.demo.pool --out "$POOLS" \
    --name normal --scenes 16000
[ -f data/refer_seg/synthetic/instances.json ] || "$PY/python" -m lens_ros.synthetic refcoco \
    --out data/refer_seg --train 0 --val 0 --test 400 --expressions 2

due sft && step "stage 0: supervised warm-up (format, reasoning, grounding)" &&
"$PY/python" -m lens_ros.demo.train sft --config config/demo/sft.yaml --output_dir "$RUN/sft" --pool_dir "$POOLS" \
    --seed "$SEED" "${SFT_ARGS[@]}"

due mask && step "stage 1: mask head + SAM on the frozen LM" &&
"$PY/python" -m lens_ros.demo.train mask --config config/demo/mask.yaml --init "$RUN/sft/last" \
    --output_dir "$RUN/mask" --pool_dir "$POOLS" --seed "$SEED" "${MASK_ARGS[@]}"

due mask && step "held-out test split before GRPO" &&
"$PY/lens-eval" --model "$RUN/mask/best" --data-root data/refer_seg --splits synthetic/test \
    -o "$RUN/eval_before_grpo" --device cpu "${EVAL_ARGS[@]}"

due mask && "$PY/python" -m lens_ros.demo.errors "$RUN/eval_before_grpo" \
    | tee "$RUN/errors_before_grpo.md"

step "stage 2: GRPO with the joint mask loss"
"$PY/lens-train" grpo --config config/demo/grpo.yaml --model_path "$RUN/mask/best" \
    --output_dir "$RUN/grpo" --seed "$SEED" "${GRPO_ARGS[@]}"
# the GRPO trainer saves weights + processor; keep the demo inference defaults (reasoning on)
cp "$RUN/mask/best/inference_config.json" "$RUN/grpo/final/"
"$PY/lens-train" plot "$RUN/grpo" || true

step "held-out test split after GRPO"
"$PY/lens-eval" --model "$RUN/grpo/final" --data-root data/refer_seg --splits synthetic/test \
    -o "$RUN/eval_after_grpo" --device cpu "${EVAL_ARGS[@]}"

"$PY/python" -m lens_ros.demo.errors "$RUN/eval_after_grpo" \
    | tee "$RUN/errors_after_grpo.md"

step "before/after table; ship the better model to $SHIP"
best=$("$PY/python" -m lens_ros.demo.tables "$RUN/eval_before_grpo" \
    "$RUN/eval_after_grpo" --out "$RUN/table.md" --pick-best "$RUN/mask/best" "$RUN/grpo/final" \
    | tee /dev/stderr | tail -n 1)
printf '{"seed": %s, "minutes": %s, "source": "%s", "recipe": "scripts/train_demo.sh"}\n' \
    "$SEED" "$(( ($(date +%s) - start) / 60 ))" "$best" > "$RUN/ship_notes.json"
"$PY/python" -m lens_ros.demo.export "$best" "$SHIP" --notes "$RUN/ship_notes.json"
step "done: $SHIP (table: $RUN/table.md)"
if [ -f "$SHIP/tracker.safetensors" ]; then
    echo "note: $SHIP/tracker.safetensors was trained with the previous SAM image encoder;" \
         "retrain it for track mode: python -m lens_ros.demo.tracker_training (see docs/demo.md)"
fi
