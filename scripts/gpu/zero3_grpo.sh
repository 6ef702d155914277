#!/usr/bin/env bash
# GRPO under DeepSpeed ZeRO-3 on one GPU: a few steps with the `tiny` and the `mid` preset
# (random weights, generated shapes data), then checks that every run reached its step count,
# logged the raised ZeRO-3 persistence threshold and wrote a loadable final checkpoint.
#
# Usage (from the repository root):
#   scripts/gpu/zero3_grpo.sh [--dry-run | --cpu] [--presets "tiny mid"] [--steps N] [--out DIR]
#                             [--wheels DIR]
#   --dry-run       CPU only, `tiny`, no DeepSpeed: the same GRPO steps without ZeRO-3
#                   (checks the command lines and the checks themselves).
#   --cpu           DeepSpeed ZeRO-3 on CPU (one process, fp32, `tiny`): the same engine and
#                   code path as on the GPU, without a GPU (needs DeepSpeed installed).
#   --presets LIST  space-separated LENS presets to run (default "tiny mid"; dry run: "tiny").
#   --steps N       optimizer steps per preset (default 3).
#   --out DIR       output folder (default ${OUT:-runs}/gpu_zero3); one sub-folder per preset,
#                   each with train.log, summary.json, metrics.jsonl, final/.
#   --wheels DIR    install DeepSpeed from these wheel files first when it is not importable
#                   (pip --no-index; build them where the registry is reachable with
#                   `DS_BUILD_OPS=0 pip wheel --no-build-isolation --no-deps deepspeed==0.19.8
#                   hjson py-cpuinfo msgpack ninja einops`, see requirements/gpu.txt).
# Exit status: 0 when every preset passed; the last line is "zero3_grpo: PASS" or "... FAIL".
set -uo pipefail

DRY=0; CPU=0; PRESETS=""; STEPS=3; OUTDIR="${OUT:-runs}/gpu_zero3"; WHEELS=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dry-run) DRY=1; shift ;;
    --cpu) CPU=1; shift ;;
    --presets) PRESETS="$2"; shift 2 ;;
    --steps) STEPS="$2"; shift 2 ;;
    --out) OUTDIR="$2"; shift 2 ;;
    --wheels) WHEELS="$2"; shift 2 ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "zero3_grpo: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ -z "$PRESETS" ]] && { [[ $DRY == 1 || $CPU == 1 ]] && PRESETS="tiny" || PRESETS="tiny mid"; }
PY="${PYTHON:-python}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUTDIR"

if [[ $DRY == 0 ]]; then
  if ! "$PY" -c "import deepspeed" 2>/dev/null; then
    if [[ -n "$WHEELS" ]]; then
      DS_BUILD_OPS=0 "$PY" -m pip install --no-index --find-links "$WHEELS" deepspeed || exit 1
    else
      echo "zero3_grpo: deepspeed is not importable; pass --wheels DIR or install requirements/gpu.txt" >&2
      echo "zero3_grpo: FAIL"; exit 1
    fi
  fi
  [[ $CPU == 1 ]] || "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" || {
    echo "zero3_grpo: no CUDA device (use --cpu or --dry-run)" >&2; echo "zero3_grpo: FAIL"; exit 1; }
fi

status=0
for preset in $PRESETS; do
  run="$OUTDIR/$preset"
  rm -rf "$run"; mkdir -p "$run"
  common=(grpo --config config/train_grpo.yaml --config config/train_grpo_cpu_tiny.yaml
          --preset "$preset" --output_dir "$run" --max_steps "$STEPS" --save_steps "$STEPS"
          --toy_images 4 --report_to none)
  t0=$(date +%s)
  if [[ $DRY == 1 ]]; then
    "$PY" -m lens_ros.training.cli "${common[@]}" > "$run/train.log" 2>&1
  else
    if [[ $CPU == 1 ]]; then precision=(--mixed_precision no); device=(--bf16 false)
    else precision=(--mixed_precision bf16); device=(--use_cpu false --bf16 true); fi
    "$PY" -m accelerate.commands.launch --num_processes 1 --num_machines 1 "${precision[@]}" \
      --use_deepspeed --deepspeed_config_file config/deepspeed_zero3.json \
      --zero3_init_flag false -m lens_ros.training.cli "${common[@]}" "${device[@]}" \
      > "$run/train.log" 2>&1
  fi
  rc=$?
  secs=$(( $(date +%s) - t0 ))
  "$PY" - "$run" "$STEPS" "$DRY" "$rc" "$secs" "$preset" "$CPU" <<'PYCHECK'
import json, sys
from pathlib import Path
run, steps, dry, rc, secs, preset = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1", int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
problems = []
if rc != 0:
    problems.append(f"training exited {rc} (tail of train.log below)")
summary = run / "summary.json"
if summary.is_file():
    got = json.loads(summary.read_text())["global_step"]
    if got != steps:
        problems.append(f"global_step {got} != {steps}")
elif rc == 0:
    problems.append("summary.json missing")
log = (run / "train.log").read_text(errors="replace")
if not dry and "ZeRO-3: stage3_param_persistence_threshold" not in log:
    problems.append("the ZeRO-3 persistence threshold was not set (log line missing)")
losses = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()] if (run / "metrics.jsonl").is_file() else []
losses = [r for r in losses if "loss" in r]
if not problems:
    from lens_ros.model.build import load_checkpoint
    try:
        model = load_checkpoint(run / "final").model
    except Exception as err:  # noqa: BLE001 - reported, not raised
        problems.append(f"final checkpoint does not load: {err}")
mode = "cpu dry run" if dry else ("ZeRO-3 CPU" if sys.argv[7] == "1" else "ZeRO-3 1 GPU")
last = losses[-1] if losses else {}
print(f"zero3_grpo {preset} ({mode}): {'PASS' if not problems else 'FAIL'} in {secs} s; "
      f"steps {len(losses)}, last loss {last.get('loss')}, mask_loss {last.get('mask_loss')}")
for p in problems:
    print(f"  problem: {p}")
if problems:
    print("\n".join(log.splitlines()[-40:]))
sys.exit(1 if problems else 0)
PYCHECK
  [[ $? == 0 ]] || status=1
done
[[ $status == 0 ]] && echo "zero3_grpo: PASS" || echo "zero3_grpo: FAIL"
exit $status
