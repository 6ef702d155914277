#!/usr/bin/env bash
# The body of `make demo` (setup already done by make): run the real lens_node on the shipped
# demo model, replay the bundled synthetic bag through it (lens-bag play), record the results
# (lens-bag record) and write overlays, reasoning and a summary to the demo folder.
#   bash scripts/run_demo.sh [OUT_DIR]        (default outputs/demo; DEMO_MODEL/DEMO_BAG override)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
OUT=${1:-outputs/demo}
MODEL=${DEMO_MODEL:-models/lens-demo}
BAG=${DEMO_BAG:-data/demo_bag}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
export AMENT_PREFIX_PATH=${AMENT_PREFIX_PATH:-$(cd "$VENV" && pwd)}
exec "$VENV/bin/python" -m lens_ros.demo.bag --model "$MODEL" --bag "$BAG" --out "$OUT"
